// api.cpp: the C API (include/lowbit.h), part 1: status strings, the thread-local error message,
// logging, version and build info, model loading and info, tokens and chat templates.
// Contexts, decoding, the sampler and generation are in api_context.cpp.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <string_view>
#include <thread>

#include "backends/cpu/dispatch.h"
#if defined(LB_HAVE_CUDA)
#include "backends/cuda/cuda_backend.h"
#endif
#include "formats/lbf.h"
#include "models/api_internal.h"
#include "models/chat.h"

using namespace lb;
using namespace lb::api;

// ---- errors and logging ------------------------------------------------------------------------
namespace {
thread_local char t_last_error[2048] = "";

std::mutex g_log_mu;
lb_log_fn g_log_fn = nullptr;
void* g_log_user = nullptr;
}  // namespace

namespace lb::api {

lb_status fail(lb_status s, const char* msg) noexcept {
    std::snprintf(t_last_error, sizeof t_last_error, "%s", msg ? msg : "");
    return s;
}

void log(lb_log_level level, const char* fmt, ...) noexcept {
    lb_log_fn fn;
    void* user;
    {
        std::lock_guard<std::mutex> lk(g_log_mu);
        fn = g_log_fn;
        user = g_log_user;
    }
    if (!fn) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fn(level, buf, user);
}

}  // namespace lb::api

extern "C" {

const char* lb_status_str(lb_status s) {
    switch (s) {
        case LB_OK:
            return "ok";
        case LB_ERR_INVALID_ARGUMENT:
            return "invalid argument";
        case LB_ERR_IO:
            return "i/o error";
        case LB_ERR_BAD_MODEL:
            return "bad model file";
        case LB_ERR_UNSUPPORTED:
            return "not supported by this build";
        case LB_ERR_CONTEXT_FULL:
            return "context full";
        case LB_ERR_MODEL_MISMATCH:
            return "objects of different models";
        case LB_ERR_BUFFER_TOO_SMALL:
            return "buffer too small";
        case LB_ERR_CANCELLED:
            return "cancelled";
        case LB_ERR_OUT_OF_MEMORY:
            return "out of memory";
        case LB_ERR_INTERNAL:
            return "internal error";
    }
    return "unknown status";
}

const char* lb_last_error(void) { return t_last_error; }

const char* lb_version(void) { return "0.1.0"; }

lb_status lb_get_build_info(lb_build_info* info) {
    return guard(LB_ERR_UNSUPPORTED, [&] {
        LB_API_CHECK(info, LB_ERR_INVALID_ARGUMENT, "lb_get_build_info: info is NULL");
        static const std::string available = [] {
            std::string s;
            for (const CpuKernels* k : kernels_available()) s += (s.empty() ? "" : ",") + std::string(k->isa);
            return s;
        }();
        const CpuKernels& best = kernels_best();  // throws for a bad LB_ISA
#if defined(__clang__)
        static const char* compiler = "clang " __clang_version__;
#elif defined(__GNUC__)
        static const char* compiler = "gcc " __VERSION__;
#else
        static const char* compiler = "unknown";
#endif
        info->version = lb_version();
        info->isa = best.isa;
        info->isa_available = available.c_str();
#if defined(LB_HAVE_CUDA)
        info->backends = "cpu,cuda";
#else
        info->backends = "cpu";
#endif
        info->compiler = compiler;
        return LB_OK;
    });
}

void lb_log_set(lb_log_fn fn, void* user_data) {
    std::lock_guard<std::mutex> lk(g_log_mu);
    g_log_fn = fn;
    g_log_user = fn ? user_data : nullptr;
}

// ---- model ----------------------------------------------------------------------------------------
lb_model_params lb_model_default_params(void) {
    lb_model_params p;
    p.backend = "cpu";
    p.n_threads = 0;
    p.use_mmap = true;
    p.progress = nullptr;
    p.progress_user_data = nullptr;
    return p;
}

}  // extern "C"

namespace {

void progress(const lb_model_params& p, float v) {
    if (p.progress && !p.progress(v, p.progress_user_data))
        throw ApiError(LB_ERR_CANCELLED, "model load: cancelled by the progress callback");
}

// Reads the whole file into 64-byte aligned memory (tensor data in a .lbf is 64-byte aligned).
std::unique_ptr<uint8_t, FreeDeleter> read_file(int fd, const char* path, uint64_t size, const lb_model_params& p) {
    void* mem = nullptr;
    if (posix_memalign(&mem, 64, size_t(std::max<uint64_t>(size, 64))) != 0) throw std::bad_alloc();
    std::unique_ptr<uint8_t, FreeDeleter> buf(static_cast<uint8_t*>(mem));
    uint64_t done = 0;
    const uint64_t chunk = uint64_t(16) << 20;
    while (done < size) {
        const ssize_t r = ::read(fd, buf.get() + done, size_t(std::min(chunk, size - done)));
        if (r < 0 && errno == EINTR) continue;
        LB_API_CHECK(r > 0, LB_ERR_IO, "%s: read failed at byte %llu: %s", path, (unsigned long long)done,
                     r < 0 ? std::strerror(errno) : "unexpected end of file");
        done += uint64_t(r);
        progress(p, 0.8f * float(double(done) / double(size)));
    }
    return buf;
}

// The block type of a tensor: its preset name when its parameters are exactly a preset's
std::string block_type(const TensorInfo& t) {
    if (traits(t.type).kind != Kind::quant) return type_name(t.type);
    size_t n = 0;
    const Preset* ps = all_presets(&n);
    for (size_t i = 0; i < n; ++i) {
        if (ps[i].type != t.type) continue;
        try {
            if (preset_params(ps[i], t.n(), t.k()) == t.params) return ps[i].name;
        } catch (const Error&) {
        }
    }
    return describe(t.type, t.params);
}

void fill_info(lb_model& m) {
    const LbfFile& f = *m.llama->file();
    const Metadata& md = f.metadata();
    const LlamaHParams& hp = m.llama->hp;
    m.arch = md.get_string("general.architecture");
    if (const MetaValue* v = md.find("general.source"))
        if (const std::string* s = v->get_if<std::string>()) m.source = *s;
    if (const MetaValue* v = md.find("tokenizer.chat_template"))
        if (const std::string* s = v->get_if<std::string>()) m.chat_template = *s;
    if (auto fam = chat_template_detect(m.chat_template); fam && !m.chat_template.empty())
        m.family = chat_template_name(*fam);
    std::vector<std::pair<std::string, int>> counts;  // block type -> tensors, in order of appearance
    uint64_t n_params = 0, n_bytes = 0;
    for (const TensorInfo& t : f.tensors()) {
        const std::string bt = block_type(t);
        auto it = std::find_if(counts.begin(), counts.end(), [&](const auto& c) { return c.first == bt; });
        if (it == counts.end())
            counts.push_back({bt, 1});
        else
            it->second++;
        n_params += t.n() * t.k();
        n_bytes += t.nbytes;
    }
    std::stable_sort(counts.begin(), counts.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    for (const auto& [bt, c] : counts)
        m.block_types += (m.block_types.empty() ? "" : ", ") + bt + " x" + std::to_string(c);

    lb_model_info& i = m.info;
    i.architecture = m.arch.c_str();
    i.source = m.source.c_str();
    i.n_vocab = hp.n_vocab;
    i.n_embd = hp.n_embd;
    i.n_ff = hp.n_ff;
    i.n_layer = hp.n_layer;
    i.n_head = hp.n_head;
    i.n_head_kv = hp.n_head_kv;
    i.n_ctx_train = hp.n_ctx_train;
    i.n_params = n_params;
    i.n_bytes = n_bytes;
    i.block_types = m.block_types.c_str();
    i.tokenizer = m.tok->data().kind.c_str();
    i.token_bos = m.tok->bos();
    i.token_add_bos = m.tok->data().add_bos && m.tok->bos() >= 0 ? 1 : 0;
    i.token_eos = m.tok->eos();
    i.chat_template = m.chat_template.c_str();
    i.chat_template_family = m.family.c_str();
}

}  // namespace

extern "C" {

lb_status lb_model_load(const char* path, const lb_model_params* params, lb_model** out) {
    return guard(LB_ERR_BAD_MODEL, [&] {
        LB_API_CHECK(path && out, LB_ERR_INVALID_ARGUMENT, "lb_model_load: %s is NULL", path ? "out" : "path");
        const lb_model_params p = params ? *params : lb_model_default_params();
        const std::string backend = p.backend ? p.backend : "cpu";
#if !defined(LB_HAVE_CUDA)
        LB_API_CHECK(backend != "cuda", LB_ERR_UNSUPPORTED,
                     "model load: backend 'cuda' is not in this build (backends built: cpu)");
#else
        if (backend == "cuda") {
            std::string why;
            LB_API_CHECK(cuda::device_count(&why) > 0, LB_ERR_UNSUPPORTED, "model load: backend 'cuda': no CUDA device: %s",
                         why.c_str());
        }
#endif
        LB_API_CHECK(backend == "cpu" || backend == "cuda", LB_ERR_INVALID_ARGUMENT,
                     "model load: backend '%s' is unknown: supported cpu, cuda", backend.c_str());
        LB_API_CHECK(p.n_threads >= 0 && p.n_threads <= 1024, LB_ERR_INVALID_ARGUMENT,
                     "model load: n_threads %d, supported 1..1024 or 0 (= min(4, cores))", p.n_threads);
        progress(p, 0.0f);

        // open errors are i/o errors; everything the reader finds wrong after that is a bad model
        const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
        LB_API_CHECK(fd >= 0, LB_ERR_IO, "%s: cannot open: %s", path, std::strerror(errno));
        struct Fd {
            int fd;
            ~Fd() { ::close(fd); }
        } closer{fd};
        struct stat st;
        LB_API_CHECK(::fstat(fd, &st) == 0, LB_ERR_IO, "%s: cannot stat: %s", path, std::strerror(errno));
        LB_API_CHECK(S_ISREG(st.st_mode), LB_ERR_IO, "%s: not a regular file", path);

        std::unique_ptr<lb_model> m(new lb_model());
        std::unique_ptr<LbfFile> file;
        if (p.use_mmap) {
            file = LbfFile::open(path);
        } else {
            m->buffer = read_file(fd, path, uint64_t(st.st_size), p);
            file = LbfFile::from_memory(m->buffer.get(), size_t(st.st_size), path);
        }
        progress(p, 0.85f);
        const Metadata& md = file->metadata();
        LB_CHECK(md.contains("tokenizer.kind"),
                 "%s: the model has no tokenizer (metadata key 'tokenizer.kind' not found)", path);
        m->tok = Tokenizer::from_data(tokenizer_data_from_metadata(md));
        m->llama = LlamaModel::from_lbf(std::move(file));
        const int64_t n_vocab = m->llama->hp.n_vocab;
        LB_CHECK(int64_t(m->tok->n_tokens()) <= n_vocab,
                 "%s: the tokenizer has %zu tokens, more than the model's vocabulary of %lld", path, m->tok->n_tokens(),
                 (long long)n_vocab);
        progress(p, 0.95f);
#if defined(LB_HAVE_CUDA)
        if (backend == "cuda") {
            m->cuda_weights = cuda::upload_weights(*m->llama, 0);
            m->backend = "cuda";
            api::log(LB_LOG_INFO, "cuda: %llu bytes of weights on %s",
                     (unsigned long long)cuda::device_bytes(*m->cuda_weights), cuda::device_description(0).c_str());
        }
#endif

        m->n_threads = p.n_threads ? p.n_threads : int(std::max(1u, std::min(4u, std::thread::hardware_concurrency())));
        const Tokenizer& tok = *m->tok;
        for (int32_t id : {tok.eos(), tok.bos(), tok.find("<|eot_id|>"), tok.find("<|im_end|>")})
            if (id >= 0 && id < n_vocab) m->end_ids.push_back(id);
        m->strip_after_bos = tok.data().kind == "spm" && tok.data().add_dummy_prefix;
        if (tok.bos() >= 0) m->bos_text = tok.data().tokens[size_t(tok.bos())];
        if (tok.eos() >= 0) m->eos_text = tok.data().tokens[size_t(tok.eos())];
        fill_info(*m);
        progress(p, 1.0f);
        api::log(LB_LOG_INFO, "loaded %s: %s, %lld layers, width %lld, vocabulary %lld, %s (%s)", path, m->arch.c_str(),
                 (long long)m->info.n_layer, (long long)m->info.n_embd, (long long)n_vocab, m->block_types.c_str(),
                 p.use_mmap ? "mmap" : "in memory");
        *out = m.release();
        return LB_OK;
    });
}

void lb_model_free(lb_model* model) { delete model; }

lb_status lb_model_get_info(const lb_model* model, lb_model_info* info) {
    return guard(LB_ERR_INTERNAL, [&] {
        LB_API_CHECK(model && info, LB_ERR_INVALID_ARGUMENT, "lb_model_get_info: %s is NULL", model ? "info" : "model");
        *info = model->info;
        return LB_OK;
    });
}

// ---- tokens -------------------------------------------------------------------------------------
}  // extern "C"

namespace {

void check_model(const lb_model* m, const char* fn) {
    LB_API_CHECK(m, LB_ERR_INVALID_ARGUMENT, "%s: model is NULL", fn);
}

void check_token(const lb_model* m, int32_t t, const char* fn) {
    LB_API_CHECK(t >= 0 && t < int32_t(m->tok->n_tokens()), LB_ERR_INVALID_ARGUMENT,
                 "%s: token %d is outside the vocabulary 0..%zu", fn, t, m->tok->n_tokens() - 1);
}

lb_status put_tokens(const std::vector<int32_t>& ids, int32_t* tokens, size_t capacity, size_t* n_tokens,
                     const char* fn) {
    *n_tokens = ids.size();
    LB_API_CHECK(ids.size() <= capacity, LB_ERR_BUFFER_TOO_SMALL, "%s: %zu tokens, the buffer holds %zu", fn,
                 ids.size(), capacity);
    if (!ids.empty()) std::memcpy(tokens, ids.data(), ids.size() * sizeof(int32_t));
    return LB_OK;
}

lb_status put_text(const std::string& s, char* buf, size_t capacity, size_t* len, const char* fn) {
    *len = s.size();
    LB_API_CHECK(s.size() < capacity, LB_ERR_BUFFER_TOO_SMALL, "%s: %zu bytes and a NUL, the buffer holds %zu", fn,
                 s.size(), capacity);
    std::memcpy(buf, s.data(), s.size());
    buf[s.size()] = '\0';
    return LB_OK;
}

void check_out_buffer(const void* p, size_t capacity, const void* n_out, const char* fn) {
    LB_API_CHECK(n_out, LB_ERR_INVALID_ARGUMENT, "%s: the length output is NULL", fn);
    LB_API_CHECK(p || capacity == 0, LB_ERR_INVALID_ARGUMENT, "%s: the buffer is NULL but capacity is %zu", fn,
                 capacity);
}

ChatTemplate resolve_template(const lb_model* m, const char* name) {
    const std::string override_name = name ? name : "";
    try {
        if (!override_name.empty()) return chat_template_from_name(override_name);
        LB_API_CHECK(m, LB_ERR_INVALID_ARGUMENT, "chat template: no model and no template name");
        LB_API_CHECK(!m->chat_template.empty(), LB_ERR_UNSUPPORTED,
                     "chat: the model has no chat template (metadata key 'tokenizer.chat_template'); name one: "
                     "llama2, chatml or llama3");
        auto t = chat_template_detect(m->chat_template);
        LB_API_CHECK(t.has_value(), LB_ERR_UNSUPPORTED,
                     "chat: the model's chat template (tokenizer.chat_template) is of no family this build knows (it "
                     "has none of <|im_start|>, <|start_header_id|>, [INST]); name one: llama2, chatml or llama3");
        return *t;
    } catch (const ApiError&) {
        throw;
    } catch (const Error& e) {
        throw ApiError(LB_ERR_UNSUPPORTED, e.what());
    }
}

std::vector<ChatMessage> to_messages(const lb_chat_message* msgs, size_t n, const char* fn) {
    LB_API_CHECK(msgs || n == 0, LB_ERR_INVALID_ARGUMENT, "%s: msgs is NULL", fn);
    std::vector<ChatMessage> v;
    for (size_t i = 0; i < n; ++i) {
        LB_API_CHECK(msgs[i].role && msgs[i].content, LB_ERR_INVALID_ARGUMENT, "%s: message %zu has a NULL %s", fn, i,
                     msgs[i].role ? "content" : "role");
        v.push_back({msgs[i].role, msgs[i].content});
    }
    return v;
}

// A llama2 chat prompt: the text between the BOS / EOS markers is encoded piece by piece, so that
// an spm tokenizer gives each piece its dummy-prefix space as Meta's reference encoder does
// ("<s>[INST] Hi [/INST]" -> <s> "▁[INST] Hi [/INST]").
std::vector<int32_t> encode_llama2_chat(const lb_model& m, const std::string& text) {
    const Tokenizer& tok = *m.tok;
    std::vector<int32_t> ids;
    size_t i = 0;
    while (i < text.size()) {
        size_t next = text.size(), len = 0;
        int32_t id = -1;
        for (auto [marker, mid] : {std::make_pair(&m.bos_text, tok.bos()), std::make_pair(&m.eos_text, tok.eos())}) {
            if (marker->empty() || mid < 0) continue;
            const size_t at = text.find(*marker, i);
            if (at < next) next = at, len = marker->size(), id = mid;
        }
        const std::vector<int32_t> part = tok.encode(std::string_view(text).substr(i, next - i), false, true);
        ids.insert(ids.end(), part.begin(), part.end());
        if (id < 0) break;
        ids.push_back(id);
        i = next + len;
    }
    return ids;
}

}  // namespace

extern "C" {

lb_status lb_tokenize(const lb_model* model, const char* text, size_t len, bool add_bos, bool parse_special,
                      int32_t* tokens, size_t capacity, size_t* n_tokens) {
    return guard(LB_ERR_INVALID_ARGUMENT, [&] {
        check_model(model, "lb_tokenize");
        LB_API_CHECK(text || len == 0, LB_ERR_INVALID_ARGUMENT, "lb_tokenize: text is NULL");
        check_out_buffer(tokens, capacity, n_tokens, "lb_tokenize");
        const std::vector<int32_t> ids = model->tok->encode(std::string_view(text ? text : "", len),
                                                            add_bos && model->tok->bos() >= 0, parse_special);
        return put_tokens(ids, tokens, capacity, n_tokens, "lb_tokenize");
    });
}

lb_status lb_detokenize(const lb_model* model, const int32_t* tokens, size_t n, char* buf, size_t capacity,
                        size_t* len) {
    return guard(LB_ERR_INVALID_ARGUMENT, [&] {
        check_model(model, "lb_detokenize");
        LB_API_CHECK(tokens || n == 0, LB_ERR_INVALID_ARGUMENT, "lb_detokenize: tokens is NULL");
        check_out_buffer(buf, capacity, len, "lb_detokenize");
        for (size_t i = 0; i < n; ++i) check_token(model, tokens[i], "lb_detokenize");
        return put_text(model->tok->decode(std::vector<int32_t>(tokens, tokens + n)), buf, capacity, len,
                        "lb_detokenize");
    });
}

lb_status lb_token_to_piece(const lb_model* model, int32_t token, const char** piece, size_t* len) {
    return guard(LB_ERR_INVALID_ARGUMENT, [&] {
        check_model(model, "lb_token_to_piece");
        LB_API_CHECK(piece && len, LB_ERR_INVALID_ARGUMENT, "lb_token_to_piece: an output is NULL");
        check_token(model, token, "lb_token_to_piece");
        const std::string& s = model->tok->token_to_piece(token);
        *piece = s.data();
        *len = s.size();
        return LB_OK;
    });
}

lb_status lb_token_text(const lb_model* model, int32_t token, const char** text) {
    return guard(LB_ERR_INVALID_ARGUMENT, [&] {
        check_model(model, "lb_token_text");
        LB_API_CHECK(text, LB_ERR_INVALID_ARGUMENT, "lb_token_text: text is NULL");
        check_token(model, token, "lb_token_text");
        *text = model->tok->data().tokens[size_t(token)].c_str();
        return LB_OK;
    });
}

bool lb_token_is_end(const lb_model* model, int32_t token) {
    if (!model) return false;
    return std::find(model->end_ids.begin(), model->end_ids.end(), token) != model->end_ids.end();
}

// ---- chat templates ---------------------------------------------------------------------------------
lb_status lb_chat_template(const lb_model* model, const char* name, const char** family) {
    return guard(LB_ERR_UNSUPPORTED, [&] {
        LB_API_CHECK(family, LB_ERR_INVALID_ARGUMENT, "lb_chat_template: family is NULL");
        *family = chat_template_name(resolve_template(model, name));
        return LB_OK;
    });
}

lb_status lb_chat_apply_template(const lb_model* model, const char* template_name, const lb_chat_message* msgs,
                                 size_t n_msgs, bool add_generation_prompt, char* buf, size_t capacity, size_t* len) {
    return guard(LB_ERR_INVALID_ARGUMENT, [&] {
        check_model(model, "lb_chat_apply_template");
        check_out_buffer(buf, capacity, len, "lb_chat_apply_template");
        const ChatTemplate t = resolve_template(model, template_name);
        const std::string text = chat_render(t, to_messages(msgs, n_msgs, "lb_chat_apply_template"),
                                             add_generation_prompt, model->bos_text, model->eos_text);
        return put_text(text, buf, capacity, len, "lb_chat_apply_template");
    });
}

lb_status lb_chat_tokenize(const lb_model* model, const char* template_name, const lb_chat_message* msgs, size_t n_msgs,
                           unsigned flags, int32_t* tokens, size_t capacity, size_t* n_tokens) {
    return guard(LB_ERR_INVALID_ARGUMENT, [&] {
        check_model(model, "lb_chat_tokenize");
        check_out_buffer(tokens, capacity, n_tokens, "lb_chat_tokenize");
        LB_API_CHECK((flags & ~(LB_CHAT_CONTINUATION | LB_CHAT_NO_BOS)) == 0, LB_ERR_INVALID_ARGUMENT,
                     "lb_chat_tokenize: unknown flags 0x%x", flags);
        const ChatTemplate t = resolve_template(model, template_name);
        const std::vector<ChatMessage> m = to_messages(msgs, n_msgs, "lb_chat_tokenize");
        const bool cont = flags & LB_CHAT_CONTINUATION;
        // llama3 prompts carry the BOS text themselves (special tokens are parsed below)
        const std::string bos = t == ChatTemplate::llama3 && (flags & LB_CHAT_NO_BOS) ? "" : model->bos_text;
        const std::string text =
            cont ? chat_render_continuation(t, m, bos, model->eos_text) : chat_render(t, m, true, bos, model->eos_text);
        // chatml prompts carry no BOS text: add the tokenizer's BOS at the start when it asks for one
        const bool add_bos = !cont && t == ChatTemplate::chatml && model->tok->data().add_bos &&
                             model->tok->bos() >= 0 && !(flags & LB_CHAT_NO_BOS);
        const std::vector<int32_t> ids =
            t == ChatTemplate::llama2 ? encode_llama2_chat(*model, text) : model->tok->encode(text, add_bos, true);
        return put_tokens(ids, tokens, capacity, n_tokens, "lb_chat_tokenize");
    });
}

}  // extern "C"
