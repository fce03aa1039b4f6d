// api_internal.h: what the C API's implementation files (models/api*.cpp) share: the structs behind
// the opaque handles of include/lowbit.h, the exception-to-status guard, the thread-local error
// message and the log hook. Not installed; C++ only.
#pragma once
#include <atomic>
#include <cstdlib>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/threadpool.h"
#include "include/lowbit.h"
#include "models/llama.h"
#include "models/sampler.h"
#include "models/tokenizer.h"

namespace lb::cuda {
struct DeviceWeights;  // backends/cuda/cuda_backend.h (only in builds with CUDA)
}

namespace lb::api {

// An error with the status it maps to (lb::Error from the engine maps to each call's default).
class ApiError : public std::runtime_error {
 public:
    ApiError(lb_status s, const std::string& msg) : std::runtime_error(msg), status(s) {}
    lb_status status;
};

#define LB_API_CHECK(cond, status, ...)                                              \
    do {                                                                             \
        if (!(cond)) throw ::lb::api::ApiError((status), ::lb::strfmt(__VA_ARGS__)); \
    } while (0)

// Records msg as this thread's last error (no allocation) and returns s.
lb_status fail(lb_status s, const char* msg) noexcept;

// Runs f() (which returns lb_status) and turns every exception into a status: ApiError -> its own,
// lb::Error -> `engine_status`, std::bad_alloc / std::length_error -> LB_ERR_OUT_OF_MEMORY,
// anything else -> LB_ERR_INTERNAL.
template <class F>
lb_status guard(lb_status engine_status, F&& f) noexcept {
    try {
        return f();
    } catch (const ApiError& e) {
        return fail(e.status, e.what());
    } catch (const Error& e) {
        return fail(engine_status, e.what());
    } catch (const std::bad_alloc&) {
        return fail(LB_ERR_OUT_OF_MEMORY, "out of memory");
    } catch (const std::length_error& e) {
        return fail(LB_ERR_OUT_OF_MEMORY, e.what());
    } catch (const std::exception& e) {
        return fail(LB_ERR_INTERNAL, e.what());
    } catch (...) {
        return fail(LB_ERR_INTERNAL, "unknown exception");
    }
}

// Sends one formatted line to the lb_log_set callback, if any (never throws).
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void log(lb_log_level level, const char* fmt, ...) noexcept;

struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
};

}  // namespace lb::api

// The handles. Members are destroyed in reverse order: `buffer` (the file's bytes when not mmap'd)
// outlives the model that points into it.
struct lb_model {
    std::unique_ptr<uint8_t, lb::api::FreeDeleter> buffer;
    std::unique_ptr<lb::LlamaModel> llama;  // owns the LbfFile
    // backend "cuda": the device copies of every tensor of `llama` (null on the CPU)
    std::shared_ptr<lb::cuda::DeviceWeights> cuda_weights;
    std::string backend = "cpu";
    std::optional<lb::Tokenizer> tok;
    int n_threads = 1;
    std::vector<int32_t> end_ids;
    bool strip_after_bos = false;  // spm with a dummy prefix: the first piece after BOS loses its space
    std::string bos_text, eos_text;
    std::string arch, source, block_types, chat_template, family;
    lb_model_info info{};
};

struct lb_context {
    lb_context(const lb_model* m, int64_t n_ctx, int n_batch, int n_threads);
    const lb_model* model;
    lb::KvCache cache;
    // where the graphs run: null = the CPU; the CUDA backend (its KV-cache mirror is the cache
    // that counts then; `cache` on the host is only its initial content)
    std::unique_ptr<lb::GraphBackend> backend;
    lb::LlamaDecoder dec;
    lb::ThreadPool pool;
    int n_batch, n_threads;
    int64_t n_past = 0;
    std::vector<int32_t> tokens;  // [n_ctx]: the token at each position in use
    int32_t last_token() const { return n_past > 0 ? tokens[size_t(n_past - 1)] : -1; }
    std::vector<float> logits;    // rows copied out of batch graphs
    const float* rows = nullptr;  // the logits of the last decode: n_rows rows of n_vocab
    int64_t n_rows = 0;
    std::atomic<bool> cancel{false};
};

struct lb_sampler {
    lb_sampler(const lb_model* m, const lb::SamplerParams& p) : model(m), s(p, m->llama->hp.n_vocab) {}
    const lb_model* model;
    lb::Sampler s;
};
