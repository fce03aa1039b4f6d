// backend_opt.h: the `--backend cpu|cuda` option of `lowbit run | bench | perplexity`: parsing
// (cuda in a build without CUDA is an error that says so) and, for the commands that drive a
// LlamaModel directly, the CUDA backend over the model's uploaded weights.
#pragma once
#include <memory>
#include <string>

#include "core/error.h"
#include "core/graph.h"
#include "models/llama.h"
#if defined(LB_HAVE_CUDA)
#include "backends/cuda/cuda_backend.h"
#endif

namespace lb {

inline constexpr bool kBuildHasCuda =
#if defined(LB_HAVE_CUDA)
    true;
#else
    false;
#endif

// "cpu" -> false, "cuda" -> true (only in a build with CUDA); anything else throws
inline bool parse_backend(const std::string& v) {
    LB_CHECK(v == "cpu" || v == "cuda", "--backend: '%s', supported cpu, cuda", v.c_str());
    LB_CHECK(v == "cpu" || kBuildHasCuda, "--backend cuda: this build has no CUDA backend (built without nvcc)");
    return v == "cuda";
}

// The graph backend of a command: null for the CPU; for CUDA the model's tensors are uploaded to
// device 0 (throws "no CUDA device: ..." when there is none).
struct CliBackend {
#if defined(LB_HAVE_CUDA)
    std::shared_ptr<cuda::DeviceWeights> weights;
#endif
    std::unique_ptr<GraphBackend> backend;
    GraphBackend* get() const { return backend.get(); }
    std::string description = "cpu";
};

inline CliBackend make_cli_backend(bool cuda, const LlamaModel& m) {
    CliBackend b;
    if (!cuda) return b;
#if defined(LB_HAVE_CUDA)
    b.weights = cuda::upload_weights(m, 0);
    b.backend = cuda::make_backend(b.weights);
    b.description = "cuda: " + cuda::device_description(0);
#else
    (void)m;
#endif
    return b;
}

}  // namespace lb
