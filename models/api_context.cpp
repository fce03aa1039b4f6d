// api_context.cpp: the C API (include/lowbit.h), part 2: contexts (KV cache, positions, batched
// decoding, logits), the sampler and one-call streaming generation. Batches of more than one token
// run a LlamaGraph of their length; single tokens run the context's allocation-free LlamaDecoder.
#include <algorithm>
#include <chrono>
#include <cstring>

#include "models/api_internal.h"
#if defined(LB_HAVE_CUDA)
#include "backends/cuda/cuda_backend.h"
#endif
#include "models/chat.h"

using namespace lb;
using namespace lb::api;

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void check_ctx(const lb_context* c, const char* fn) { LB_API_CHECK(c, LB_ERR_INVALID_ARGUMENT, "%s: ctx is NULL", fn); }

// Checks that tokens[0..n) are ids of the model and fit after the context's positions.
void check_batch(const lb_context* c, const int32_t* tokens, int64_t n, const char* fn) {
    LB_API_CHECK(tokens || n == 0, LB_ERR_INVALID_ARGUMENT, "%s: tokens is NULL", fn);
    LB_API_CHECK(n >= 0, LB_ERR_INVALID_ARGUMENT, "%s: n_tokens %lld is negative", fn, (long long)n);
    const int64_t n_vocab = c->model->llama->hp.n_vocab;
    for (int64_t i = 0; i < n; ++i)
        LB_API_CHECK(tokens[i] >= 0 && tokens[i] < n_vocab, LB_ERR_INVALID_ARGUMENT,
                     "%s: token %d (at %lld) is outside the model's vocabulary 0..%lld", fn, tokens[i], (long long)i,
                     (long long)(n_vocab - 1));
    LB_API_CHECK(c->n_past + n <= c->cache.n_ctx, LB_ERR_CONTEXT_FULL,
                 "%s: %lld tokens do not fit: %lld of the context's %lld positions are in use", fn, (long long)n,
                 (long long)c->n_past, (long long)c->cache.n_ctx);
}

void check_cancel(lb_context* c) {
    if (c->cancel.exchange(false)) throw ApiError(LB_ERR_CANCELLED, "cancelled by lb_context_cancel()");
}

// Evaluates checked tokens in batches of n_batch. The logits that stay readable: with all_logits,
// every row, copied into c->logits; else the last row, read in place from the decoder (a last batch
// of one token) or copied out of the batch graph, which goes away at the end of its batch.
void decode(lb_context* c, const int32_t* tokens, int64_t n, bool all_logits) {
    const int64_t n_vocab = c->model->llama->hp.n_vocab, start = c->n_past;
    const size_t row_bytes = size_t(n_vocab) * sizeof(float);
    const bool keep_all = all_logits && n > 1;
    c->rows = nullptr;
    c->n_rows = 0;
    try {
        c->logits.resize(size_t(keep_all ? n : 1) * size_t(n_vocab));
        const float* last = nullptr;  // the last row, when it is the decoder's
        for (int64_t i = 0; i < n;) {
            check_cancel(c);
            const int64_t b = std::min<int64_t>(c->n_batch, n - i);
            if (b == 1) {
                const float* out = c->dec.eval(tokens[i], c->n_past, c->pool);
                if (keep_all) std::memcpy(c->logits.data() + i * n_vocab, out, row_bytes);
                last = out;
            } else {
                LlamaGraphOptions go;
                go.n_tokens = b;
                go.n_kv = c->n_past + b;
                go.all_logits = keep_all;
                go.max_threads = c->n_threads;
                go.backend = c->backend.get();
                LlamaGraph g(*c->model->llama, c->cache, go);
                const float* out = g.eval(tokens + i, c->n_past, c->pool);  // n_logits() rows
                if (keep_all)
                    std::memcpy(c->logits.data() + i * n_vocab, out, size_t(b) * row_bytes);
                else
                    std::memcpy(c->logits.data(), out, row_bytes);
                last = nullptr;
            }
            std::copy(tokens + i, tokens + i + b, c->tokens.begin() + c->n_past);
            c->n_past += b;
            i += b;
        }
        c->rows = keep_all || !last ? c->logits.data() : last;
        c->n_rows = keep_all ? n : 1;
    } catch (...) {
        c->n_past = start;  // what was written past it is ignored and overwritten later
        c->rows = nullptr;
        c->n_rows = 0;
        throw;
    }
}

SamplerParams to_internal(const lb_sampler_params& p) {
    SamplerParams s;
    s.temperature = p.temperature;
    s.top_k = p.top_k;
    s.top_p = p.top_p;
    s.min_p = p.min_p;
    s.repeat_penalty = p.repeat_penalty;
    s.repeat_last_n = p.repeat_last_n;
    s.seed = p.seed;
    return s;
}

}  // namespace

// the graph backend of a new context: the model's backend
static std::unique_ptr<lb::GraphBackend> context_backend(const lb_model* m) {
#if defined(LB_HAVE_CUDA)
    if (m->cuda_weights) return lb::cuda::make_backend(m->cuda_weights);
#else
    (void)m;
#endif
    return nullptr;
}

lb_context::lb_context(const lb_model* m, int64_t n_ctx, int n_batch_, int n_threads_)
    : model(m),
      cache(m->llama->hp, n_ctx),
      backend(context_backend(m)),
      dec(*m->llama, cache, n_threads_, backend.get()),
      pool(n_threads_),
      n_batch(n_batch_),
      n_threads(n_threads_),
      tokens(size_t(n_ctx), -1) {}

extern "C" {

// ---- context --------------------------------------------------------------------------------------
lb_context_params lb_context_default_params(void) {
    lb_context_params p;
    p.n_ctx = 0;
    p.n_batch = 512;
    p.n_threads = 0;
    return p;
}

lb_status lb_context_create(const lb_model* model, const lb_context_params* params, lb_context** out) {
    return guard(LB_ERR_INVALID_ARGUMENT, [&] {
        LB_API_CHECK(model && out, LB_ERR_INVALID_ARGUMENT, "lb_context_create: %s is NULL", model ? "out" : "model");
        const lb_context_params p = params ? *params : lb_context_default_params();
        const LlamaHParams& hp = model->llama->hp;
        LB_API_CHECK(p.n_ctx >= 0 && p.n_ctx <= (1 << 24), LB_ERR_INVALID_ARGUMENT,
                     "context: n_ctx %d, supported 1..16777216 or 0 (the model's, at most 4096)", p.n_ctx);
        LB_API_CHECK(p.n_batch >= 1 && p.n_batch <= 65536, LB_ERR_INVALID_ARGUMENT,
                     "context: n_batch %d, supported 1..65536", p.n_batch);
        LB_API_CHECK(p.n_threads >= 0 && p.n_threads <= 1024, LB_ERR_INVALID_ARGUMENT,
                     "context: n_threads %d, supported 1..1024 or 0 (the model's)", p.n_threads);
        const int64_t n_ctx = p.n_ctx ? p.n_ctx : std::min<int64_t>(hp.n_ctx_train, 4096);
        if (n_ctx > hp.n_ctx_train)
            api::log(LB_LOG_WARN, "context length %lld is longer than the model's training context of %lld",
                     (long long)n_ctx, (long long)hp.n_ctx_train);
        *out = new lb_context(model, n_ctx, p.n_batch, p.n_threads ? p.n_threads : model->n_threads);
        return LB_OK;
    });
}

void lb_context_free(lb_context* ctx) { delete ctx; }

const lb_model* lb_context_model(const lb_context* ctx) { return ctx ? ctx->model : nullptr; }
int32_t lb_context_n_ctx(const lb_context* ctx) { return ctx ? int32_t(ctx->cache.n_ctx) : 0; }
int32_t lb_context_pos(const lb_context* ctx) { return ctx ? int32_t(ctx->n_past) : 0; }

lb_status lb_context_reset(lb_context* ctx) {
    return guard(LB_ERR_INTERNAL, [&] {
        check_ctx(ctx, "lb_context_reset");
        ctx->cache.clear();
        ctx->n_past = 0;
        ctx->rows = nullptr;
        ctx->n_rows = 0;
        return LB_OK;
    });
}

lb_status lb_context_truncate(lb_context* ctx, int32_t pos) {
    return guard(LB_ERR_INTERNAL, [&] {
        check_ctx(ctx, "lb_context_truncate");
        LB_API_CHECK(pos >= 0 && pos <= ctx->n_past, LB_ERR_INVALID_ARGUMENT,
                     "lb_context_truncate: position %d, supported 0..%lld (the positions in use)", pos,
                     (long long)ctx->n_past);
        // positions >= pos stay in the cache but are masked out (attention reads 0..pos + n - 1)
        // until they are overwritten
        ctx->n_past = pos;
        ctx->rows = nullptr;
        ctx->n_rows = 0;
        return LB_OK;
    });
}

lb_status lb_decode(lb_context* ctx, const int32_t* tokens, int32_t n_tokens, bool all_logits) {
    return guard(LB_ERR_INTERNAL, [&] {
        check_ctx(ctx, "lb_decode");
        LB_API_CHECK(n_tokens >= 1, LB_ERR_INVALID_ARGUMENT, "lb_decode: n_tokens %d, must be >= 1", n_tokens);
        check_batch(ctx, tokens, n_tokens, "lb_decode");
        decode(ctx, tokens, n_tokens, all_logits);
        return LB_OK;
    });
}

lb_status lb_get_logits(const lb_context* ctx, int32_t i, const float** logits) {
    return guard(LB_ERR_INTERNAL, [&] {
        check_ctx(ctx, "lb_get_logits");
        LB_API_CHECK(logits, LB_ERR_INVALID_ARGUMENT, "lb_get_logits: logits is NULL");
        LB_API_CHECK(ctx->rows, LB_ERR_INVALID_ARGUMENT,
                     "lb_get_logits: no logits: nothing was decoded since the "
                     "context was created, reset or truncated");
        if (i == -1) i = int32_t(ctx->n_rows - 1);
        LB_API_CHECK(i >= 0 && i < ctx->n_rows, LB_ERR_INVALID_ARGUMENT,
                     "lb_get_logits: row %d, the last decode kept rows 0..%lld (or -1)", i,
                     (long long)(ctx->n_rows - 1));
        *logits = ctx->rows + int64_t(i) * ctx->model->llama->hp.n_vocab;
        return LB_OK;
    });
}

void lb_context_cancel(lb_context* ctx) {
    if (ctx) ctx->cancel.store(true);
}

// ---- sampler ----------------------------------------------------------------------------------------
lb_sampler_params lb_sampler_default_params(void) {
    const SamplerParams d;
    lb_sampler_params p;
    p.temperature = d.temperature;
    p.top_k = d.top_k;
    p.top_p = d.top_p;
    p.min_p = d.min_p;
    p.repeat_penalty = d.repeat_penalty;
    p.repeat_last_n = d.repeat_last_n;
    p.seed = d.seed;
    return p;
}

lb_status lb_sampler_create(const lb_model* model, const lb_sampler_params* params, lb_sampler** out) {
    return guard(LB_ERR_INVALID_ARGUMENT, [&] {
        LB_API_CHECK(model && out, LB_ERR_INVALID_ARGUMENT, "lb_sampler_create: %s is NULL", model ? "out" : "model");
        const SamplerParams sp = to_internal(params ? *params : lb_sampler_default_params());
        try {
            sp.validate();
        } catch (const Error& e) {
            throw ApiError(LB_ERR_INVALID_ARGUMENT, std::string("sampler: ") + e.what());
        }
        *out = new lb_sampler(model, sp);
        return LB_OK;
    });
}

void lb_sampler_free(lb_sampler* smpl) { delete smpl; }

lb_status lb_sampler_sample(lb_sampler* smpl, const lb_context* ctx, int32_t* token) {
    return guard(LB_ERR_INTERNAL, [&] {
        LB_API_CHECK(smpl && ctx && token, LB_ERR_INVALID_ARGUMENT, "lb_sampler_sample: %s is NULL",
                     !smpl  ? "smpl"
                     : !ctx ? "ctx"
                            : "token");
        LB_API_CHECK(smpl->model == ctx->model, LB_ERR_MODEL_MISMATCH,
                     "lb_sampler_sample: the sampler and the context were made from different models");
        LB_API_CHECK(ctx->rows, LB_ERR_INVALID_ARGUMENT, "lb_sampler_sample: the context has no logits (decode first)");
        *token = smpl->s.sample(ctx->rows + (ctx->n_rows - 1) * ctx->model->llama->hp.n_vocab);
        return LB_OK;
    });
}

lb_status lb_sampler_accept(lb_sampler* smpl, int32_t token) {
    return guard(LB_ERR_INTERNAL, [&] {
        LB_API_CHECK(smpl, LB_ERR_INVALID_ARGUMENT, "lb_sampler_accept: smpl is NULL");
        const int64_t n_vocab = smpl->model->llama->hp.n_vocab;
        LB_API_CHECK(token >= 0 && token < n_vocab, LB_ERR_INVALID_ARGUMENT,
                     "lb_sampler_accept: token %d is outside the model's vocabulary 0..%lld", token,
                     (long long)(n_vocab - 1));
        smpl->s.accept(token);
        return LB_OK;
    });
}

lb_status lb_sampler_reset(lb_sampler* smpl) {
    return guard(LB_ERR_INTERNAL, [&] {
        LB_API_CHECK(smpl, LB_ERR_INVALID_ARGUMENT, "lb_sampler_reset: smpl is NULL");
        smpl->s.reset();
        return LB_OK;
    });
}

// ---- generation -------------------------------------------------------------------------------------
lb_generate_params lb_generate_default_params(void) {
    lb_generate_params p;
    p.n_predict = -1;
    p.stop = nullptr;
    p.n_stop = 0;
    p.on_text = nullptr;
    p.on_token = nullptr;
    p.user_data = nullptr;
    return p;
}

lb_status lb_generate(lb_context* ctx, lb_sampler* smpl, const int32_t* prompt, int32_t n_prompt,
                      const lb_generate_params* params, lb_generate_result* result) {
    lb_generate_result res{};
    res.last_token = -1;
    const lb_status st = guard(LB_ERR_INTERNAL, [&] {
        LB_API_CHECK(ctx && smpl, LB_ERR_INVALID_ARGUMENT, "lb_generate: %s is NULL", ctx ? "smpl" : "ctx");
        LB_API_CHECK(smpl->model == ctx->model, LB_ERR_MODEL_MISMATCH,
                     "lb_generate: the sampler and the context were made from different models");
        const lb_generate_params p = params ? *params : lb_generate_default_params();
        LB_API_CHECK(p.n_predict >= -1, LB_ERR_INVALID_ARGUMENT,
                     "lb_generate: n_predict %d, must be >= -1 (-1 = no limit)", p.n_predict);
        LB_API_CHECK(p.stop || p.n_stop == 0, LB_ERR_INVALID_ARGUMENT, "lb_generate: stop is NULL, n_stop is %zu",
                     p.n_stop);
        std::vector<std::string> stops;
        for (size_t i = 0; i < p.n_stop; ++i) {
            LB_API_CHECK(p.stop[i] && *p.stop[i], LB_ERR_INVALID_ARGUMENT, "lb_generate: stop string %zu is %s", i,
                         p.stop[i] ? "empty" : "NULL");
            stops.emplace_back(p.stop[i]);
        }
        check_batch(ctx, prompt, n_prompt, "lb_generate");
        LB_API_CHECK(n_prompt > 0 || ctx->rows, LB_ERR_INVALID_ARGUMENT,
                     "lb_generate: no prompt and no logits to continue from");
        const lb_model& m = *ctx->model;

        auto t0 = Clock::now();
        if (n_prompt > 0) {
            decode(ctx, prompt, n_prompt, false);
            for (int32_t i = 0; i < n_prompt; ++i) smpl->s.accept(prompt[i]);
            res.n_prompt = n_prompt;
        }
        res.t_prompt_s = seconds_since(t0);

        t0 = Clock::now();
        bool stopped_by_user = false;
        TextStream stream(std::move(stops), [&](const char* s, size_t n) {
            if (!stopped_by_user && p.on_text && !p.on_text(s, n, p.user_data)) stopped_by_user = true;
        });
        const float* logits = ctx->rows + (ctx->n_rows - 1) * m.llama->hp.n_vocab;
        res.stop_reason = LB_STOP_N_PREDICT;
        for (int64_t n = 0; p.n_predict < 0 || n < p.n_predict;) {
            // a cancel is seen before the first token and then before each evaluation, so that the
            // last streamed token is never in the cache, whatever ends the generation
            if (n == 0 && ctx->cancel.exchange(false)) {
                stopped_by_user = true;
                break;
            }
            const int32_t t = smpl->s.sample(logits);
            if (lb_token_is_end(&m, t)) {
                res.stop_reason = LB_STOP_END_TOKEN;
                break;
            }
            smpl->s.accept(t);
            res.n_generated = int32_t(++n);
            res.last_token = t;
            if (p.on_token && !p.on_token(t, p.user_data)) {
                stopped_by_user = true;
                break;
            }
            // an spm text starts with the dummy-prefix space: not streamed right after BOS (run.c)
            const std::string& piece = m.tok->token_to_piece(t);
            const size_t skip = m.strip_after_bos && ctx->last_token() == m.tok->bos() && !piece.empty() &&
                                piece[0] == ' ' && m.tok->type(t) != TokenType::byte;
            if (stream.push(piece.data() + skip, piece.size() - skip)) {
                res.stop_reason = LB_STOP_STRING;
                break;
            }
            if (stopped_by_user || ctx->cancel.exchange(false)) {
                stopped_by_user = true;
                break;
            }
            if (p.n_predict >= 0 && n >= p.n_predict) break;
            if (ctx->n_past >= ctx->cache.n_ctx) {
                res.stop_reason = LB_STOP_CONTEXT_FULL;
                break;
            }
            logits = ctx->dec.eval(t, ctx->n_past, ctx->pool);
            ctx->rows = logits;
            ctx->n_rows = 1;
            ctx->tokens[size_t(ctx->n_past++)] = t;
        }
        if (!stopped_by_user) stream.flush();  // on a cancel, the held-back text is dropped
        res.t_generate_s = seconds_since(t0);
        if (stopped_by_user) {
            res.stop_reason = LB_STOP_CANCELLED;
            throw ApiError(LB_ERR_CANCELLED, "lb_generate: cancelled");
        }
        return LB_OK;
    });
    if (st == LB_ERR_CANCELLED) res.stop_reason = LB_STOP_CANCELLED;  // also when the prompt was cancelled
    if (result && (st == LB_OK || st == LB_ERR_CANCELLED)) *result = res;
    return st;
}

lb_status lb_generate_text(lb_context* ctx, lb_sampler* smpl, const char* prompt, const lb_generate_params* params,
                           lb_generate_result* result) {
    std::vector<int32_t> ids;
    const lb_status st = guard(LB_ERR_INVALID_ARGUMENT, [&] {
        LB_API_CHECK(ctx && prompt, LB_ERR_INVALID_ARGUMENT, "lb_generate_text: %s is NULL", ctx ? "prompt" : "ctx");
        const Tokenizer& tok = *ctx->model->tok;
        ids = tok.encode(prompt, ctx->n_past == 0 && tok.bos() >= 0);
        return LB_OK;
    });
    if (st != LB_OK) return st;
    return lb_generate(ctx, smpl, ids.data(), int32_t(ids.size()), params, result);
}

}  // extern "C"
