/* lowbit.h: the C API of lowbit, for programs that embed a low-bit LLaMA-family model (a game, an
 * editor plugin, a server written in another language). C99; the only header a user needs.
 *
 * Objects (opaque handles, each with one create call and one free call):
 *   lb_model    a loaded .lbf model: weights (mmap'd or read into memory), tokenizer, chat template
 *   lb_context  one conversation over a model: KV cache, thread pool, the last logits
 *   lb_sampler  the sampling chain of one generation stream (repetition penalty -> greedy or
 *               top-k -> top-p -> min-p -> temperature -> seeded draw), with its token history
 *
 * A typical program:
 *   lb_model* m; lb_context* c; lb_sampler* s;
 *   lb_model_load("model.lbf", NULL, &m);              (NULL params: lb_model_default_params())
 *   lb_context_create(m, NULL, &c);
 *   lb_sampler_create(m, NULL, &s);
 *   lb_generate_text(c, s, "Once upon a time", &gp, NULL);   (gp.on_text streams the reply)
 *   lb_sampler_free(s); lb_context_free(c); lb_model_free(m);
 *
 * Conventions
 *   - Every call that can fail returns an lb_status; LB_OK is 0. On failure, lb_last_error() gives
 *     a message saying what was wrong (the bad field, what was found, what is supported), and the
 *     output arguments are left unchanged unless documented otherwise.
 *   - Every params struct has an lb_*_default_params() function; start from it and change fields.
 *     A NULL params pointer means the defaults.
 *   - Freeing NULL is a no-op. Handles must be freed in reverse order of dependence: samplers and
 *     contexts before the model they were created from.
 *   - No C++ exception, abort or exit crosses this interface: out-of-memory is LB_ERR_OUT_OF_MEMORY,
 *     an unexpected internal failure LB_ERR_INTERNAL.
 *   - Strings are UTF-8. Text in is (pointer, byte length); text out goes into caller buffers
 *     with the needed length reported, or is a pointer owned by the object it came from.
 *
 * Thread safety
 *   - An lb_model is read-only after lb_model_load(): any number of threads may use one model at
 *     the same time (tokenize, detokenize, info, creating contexts and samplers, and running their
 *     own contexts over it). Free it only after every context and sampler made from it is freed.
 *   - An lb_context and an lb_sampler belong to one thread at a time: calls on the same context or
 *     sampler must not overlap. The exception is lb_context_cancel(), which any thread may call.
 *   - lb_last_error() is per thread. lb_log_set() may be called at any time; the callback may be
 *     called from any thread that calls into the library.
 *   - Each context has its own worker threads (lb_context_params.n_threads).
 */
#ifndef LOWBIT_H
#define LOWBIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* liblowbit.so is built with hidden visibility: only what is marked LB_API is exported. */
#if defined(__GNUC__)
#define LB_API __attribute__((visibility("default")))
#else
#define LB_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- version, status, errors, logging ------------------------------------------------------ */

#define LB_VERSION_MAJOR 0
#define LB_VERSION_MINOR 1
#define LB_VERSION_PATCH 0

typedef enum lb_status {
    LB_OK = 0,
    LB_ERR_INVALID_ARGUMENT = 1, /* NULL handle or pointer, a parameter out of range, a token id
                                    outside the vocabulary, a call in the wrong state */
    LB_ERR_IO = 2,               /* a file cannot be opened or read */
    LB_ERR_BAD_MODEL = 3,        /* the file is not a valid .lbf model this build can run */
    LB_ERR_UNSUPPORTED = 4,      /* valid, but not in this build (a backend, a chat template family) */
    LB_ERR_CONTEXT_FULL = 5,     /* the tokens do not fit in the context's remaining positions */
    LB_ERR_MODEL_MISMATCH = 6,   /* objects made from different models used together */
    LB_ERR_BUFFER_TOO_SMALL = 7, /* an output buffer is too small; the needed size is reported */
    LB_ERR_CANCELLED = 8,        /* stopped by a callback or by lb_context_cancel() */
    LB_ERR_OUT_OF_MEMORY = 9,
    LB_ERR_INTERNAL = 10 /* a bug in lowbit: please report it with lb_last_error() */
} lb_status;

/* A short constant description of a status ("invalid argument"); "unknown status" for others. */
LB_API const char* lb_status_str(lb_status status);

/* The message of the last failed call on this thread ("" if none). Valid until the next failing
 * call on this thread; successful calls do not clear it. */
LB_API const char* lb_last_error(void);

/* The library's version, e.g. "0.1.0"; compare with LB_VERSION_* to detect a header mismatch. */
LB_API const char* lb_version(void);

typedef struct lb_build_info {
    const char* version;       /* "0.1.0" */
    const char* isa;           /* the CPU kernel table in use: "ref", "avx2", "avx512", "neon" */
    const char* isa_available; /* every table this build and this CPU support: "ref,avx2,avx512" */
    const char* backends;      /* backends compiled in: "cpu" or "cpu,cuda" */
    const char* compiler;      /* e.g. "gcc 12.2.0" */
} lb_build_info;

/* Fills *info with constant strings. Fails (LB_ERR_UNSUPPORTED) when LB_ISA names a kernel table
 * that this machine or build lacks. */
LB_API lb_status lb_get_build_info(lb_build_info* info);

typedef enum lb_log_level { LB_LOG_DEBUG = 0, LB_LOG_INFO = 1, LB_LOG_WARN = 2, LB_LOG_ERROR = 3 } lb_log_level;

/* msg is one line without a trailing newline, valid only during the call. */
typedef void (*lb_log_fn)(lb_log_level level, const char* msg, void* user_data);

/* Routes the library's log messages (model loading, warnings such as a context longer than the
 * training context) to fn. The default is no logging at all; NULL restores it. */
LB_API void lb_log_set(lb_log_fn fn, void* user_data);

/* ---- model -------------------------------------------------------------------------------- */

typedef struct lb_model lb_model;
typedef struct lb_context lb_context;
typedef struct lb_sampler lb_sampler;

/* Called during loading with progress in [0, 1] (1 at the end). Return false to cancel the load
 * (lb_model_load then returns LB_ERR_CANCELLED). */
typedef bool (*lb_progress_fn)(float progress, void* user_data);

typedef struct lb_model_params {
    const char* backend;     /* "cpu" (default; NULL means "cpu"). "cuda": the weights are uploaded to
                                CUDA device 0 and every context runs its graphs there; in a build
                                without CUDA, or with no CUDA device ("no CUDA device: ..."),
                                LB_ERR_UNSUPPORTED. Anything else: LB_ERR_INVALID_ARGUMENT. */
    int32_t n_threads;       /* default thread count of contexts made from this model: 1..1024, or
                                0 = min(4, CPU cores) (default 0) */
    bool use_mmap;           /* true (default): weights are used in place from a read-only mapping;
                                false: the file is read into memory (no file stays open) */
    lb_progress_fn progress; /* NULL (default): no progress reports */
    void* progress_user_data;
} lb_model_params;

LB_API lb_model_params lb_model_default_params(void);

/* Loads a .lbf model (convert other formats with `lowbit convert`). The file is validated
 * completely (header, metadata, every tensor against the hyper-parameters) and must carry a
 * tokenizer. params may be NULL. Errors: LB_ERR_INVALID_ARGUMENT (NULL path or out, bad params),
 * LB_ERR_IO (cannot open or read), LB_ERR_BAD_MODEL (not a valid .lbf LLaMA model with a
 * tokenizer), LB_ERR_UNSUPPORTED (backend), LB_ERR_CANCELLED (progress callback). */
LB_API lb_status lb_model_load(const char* path, const lb_model_params* params, lb_model** out);
LB_API void lb_model_free(lb_model* model);

typedef struct lb_model_info {
    const char* architecture; /* "llama" */
    const char* source;       /* where the weights came from (converter note), may be "" */
    int64_t n_vocab, n_embd, n_ff, n_layer, n_head, n_head_kv;
    int64_t n_ctx_train;              /* the context length the model was trained with */
    uint64_t n_params;                /* weights, all tensors */
    uint64_t n_bytes;                 /* bytes of tensor data */
    const char* block_types;          /* tensor types with counts, e.g. "q4_g32_f16 x35, f32 x11" */
    const char* tokenizer;            /* "spm" (SentencePiece BPE) or "bpe" (byte-level BPE) */
    int32_t token_bos, token_eos;     /* -1 if none */
    const char* chat_template;        /* the model's Jinja chat template, "" if it has none */
    const char* chat_template_family; /* "llama2", "chatml" or "llama3" as recognized, "" if none */
    int32_t token_add_bos;            /* 1: the tokenizer starts a text with BOS by default (GGUF
                                         add_bos_token, tokenizer_config.json add_bos_token), else 0 */
} lb_model_info;

/* Fills *info; its strings belong to the model and live as long as it. */
LB_API lb_status lb_model_get_info(const lb_model* model, lb_model_info* info);

/* ---- tokens --------------------------------------------------------------------------------- */

/* Text (len bytes) to token ids. add_bos: start with the BOS token (if the model has one).
 * parse_special: the text of control tokens (e.g. "<|im_end|>") becomes those tokens.
 * *n_tokens receives the number of ids of the text; if it exceeds capacity, nothing is written and
 * the result is LB_ERR_BUFFER_TOO_SMALL (call again with a larger buffer). tokens may be NULL when
 * capacity is 0. */
LB_API lb_status lb_tokenize(const lb_model* model, const char* text, size_t len, bool add_bos, bool parse_special,
                             int32_t* tokens, size_t capacity, size_t* n_tokens);

/* Token ids to text: the exact bytes (control tokens give nothing; an spm dummy-prefix space at
 * the start is removed). *len receives the text's length in bytes; when buf has room for it plus
 * a NUL, the text is written NUL-terminated, else LB_ERR_BUFFER_TOO_SMALL. buf may be NULL when
 * capacity is 0. Errors: LB_ERR_INVALID_ARGUMENT for an id outside the vocabulary. */
LB_API lb_status lb_detokenize(const lb_model* model, const int32_t* tokens, size_t n_tokens, char* buf,
                               size_t capacity, size_t* len);

/* The bytes one token adds to a stream of text (spaces as ' ', byte tokens as the raw byte,
 * control tokens empty). *piece points into the model (not NUL-terminated), *len bytes. */
LB_API lb_status lb_token_to_piece(const lb_model* model, int32_t token, const char** piece, size_t* len);

/* The token as written in the vocabulary ("\xE2\x96\x81Once", "<0x0A>", "<s>"), NUL-terminated,
 * owned by the model. For diagnostics. */
LB_API lb_status lb_token_text(const lb_model* model, int32_t token, const char** text);

/* Whether generation ends at this token: EOS, BOS (llama2.c models begin the next story with it),
 * "<|eot_id|>", "<|im_end|>". False for ids outside the vocabulary. */
LB_API bool lb_token_is_end(const lb_model* model, int32_t token);

/* ---- context: KV cache, positions, decoding ----------------------------------------------------- */

typedef struct lb_context_params {
    int32_t n_ctx;     /* positions in the KV cache: 1..16777216, or 0 = min(n_ctx_train, 4096) (default 0) */
    int32_t n_batch;   /* most tokens evaluated in one graph; longer inputs to lb_decode are split
                          (1..65536, default 512) */
    int32_t n_threads; /* threads of this context: 1..1024, or 0 = the model's n_threads (default 0) */
} lb_context_params;

LB_API lb_context_params lb_context_default_params(void);

/* A context over model (which must outlive it). Allocates the KV cache (f16, 2 * n_layer * n_ctx *
 * kv_dim * 2 bytes) and the decode graphs. A context length above the model's training context
 * is allowed and logged as a warning. */
LB_API lb_status lb_context_create(const lb_model* model, const lb_context_params* params, lb_context** out);
LB_API void lb_context_free(lb_context* ctx);

/* The model the context was made from; NULL for a NULL context. */
LB_API const lb_model* lb_context_model(const lb_context* ctx);
/* The context length (positions); 0 for a NULL context. */
LB_API int32_t lb_context_n_ctx(const lb_context* ctx);
/* Positions in use: the next decoded token goes to this position; 0 for a NULL context. */
LB_API int32_t lb_context_pos(const lb_context* ctx);

/* Empties the KV cache: position 0, no logits. */
LB_API lb_status lb_context_reset(lb_context* ctx);

/* Forgets the positions pos.. (0 <= pos <= lb_context_pos()): the next token goes to pos. For
 * example, to regenerate a reply or drop the end of a conversation. The logits are gone too. */
LB_API lb_status lb_context_truncate(lb_context* ctx, int32_t pos);

/* Evaluates n_tokens tokens at positions lb_context_pos().. and appends them to the KV cache.
 * all_logits: keep the logits of every token (rows 0..n_tokens-1), else of the last one only.
 * All ids are checked first: LB_ERR_INVALID_ARGUMENT for an id outside the vocabulary, and
 * LB_ERR_CONTEXT_FULL when pos + n_tokens > n_ctx; the context is then unchanged. Returns
 * LB_ERR_CANCELLED if lb_context_cancel() was called (between batches of n_batch tokens); the
 * position then stays where it was. */
LB_API lb_status lb_decode(lb_context* ctx, const int32_t* tokens, int32_t n_tokens, bool all_logits);

/* Logits of the last lb_decode (or lb_generate step): row i of n_vocab floats, i in 0..n-1 when
 * all_logits was set (n = its n_tokens), else i = 0 only; i = -1 is always the last token's row.
 * *logits stays valid until the next call that changes the context. */
LB_API lb_status lb_get_logits(const lb_context* ctx, int32_t i, const float** logits);

/* Asks the context's running or next lb_decode / lb_generate to stop (LB_ERR_CANCELLED). Safe to
 * call from any thread, e.g. a UI thread. A request is used up by the first call that sees it. */
LB_API void lb_context_cancel(lb_context* ctx);

/* ---- sampler ----------------------------------------------------------------------------------- */

typedef struct lb_sampler_params {
    float temperature;     /* >= 0; 0 = greedy (argmax, lowest id on ties) (default 0.8) */
    int32_t top_k;         /* >= 0; 0 = off (default 40) */
    float top_p;           /* (0, 1]; 1 = off (default 0.95) */
    float min_p;           /* [0, 1]; 0 = off (default 0.05) */
    float repeat_penalty;  /* > 0; 1 = off (default 1) */
    int32_t repeat_last_n; /* 0..1048576 tokens of history for the penalty (default 64) */
    uint64_t seed;         /* RNG seed: the same seed gives the same tokens on every machine (default 0) */
} lb_sampler_params;

LB_API lb_sampler_params lb_sampler_default_params(void);

/* The chain, in order: repetition penalty over the last repeat_last_n accepted tokens ->
 * temperature 0: greedy, nothing else applies -> top-k -> top-p -> min-p -> softmax at the
 * temperature -> one draw from the seeded xoshiro256** RNG. Bad params: LB_ERR_INVALID_ARGUMENT
 * naming the field and its range. */
LB_API lb_status lb_sampler_create(const lb_model* model, const lb_sampler_params* params, lb_sampler** out);
LB_API void lb_sampler_free(lb_sampler* smpl);

/* Picks a token from the context's last logits row (the context must come from the sampler's
 * model: else LB_ERR_MODEL_MISMATCH). Does not accept it: call lb_sampler_accept. */
LB_API lb_status lb_sampler_sample(lb_sampler* smpl, const lb_context* ctx, int32_t* token);
/* Adds a token to the repetition-penalty history. */
LB_API lb_status lb_sampler_accept(lb_sampler* smpl, int32_t token);
/* Clears the history (the RNG goes on). */
LB_API lb_status lb_sampler_reset(lb_sampler* smpl);

/* ---- one-call generation ------------------------------------------------------------------------ */

/* Receives the reply as it is generated: always whole, valid UTF-8 characters (a malformed byte
 * from the model comes out as U+FFFD), never text that is part of a stop string. Not
 * NUL-terminated. Return false to cancel (lb_generate then returns LB_ERR_CANCELLED). */
typedef bool (*lb_text_fn)(const char* text, size_t len, void* user_data);
/* Receives each generated token id (before its text), end tokens excluded. Return false to cancel. */
typedef bool (*lb_token_fn)(int32_t token, void* user_data);

typedef struct lb_generate_params {
    int32_t n_predict;       /* most tokens to generate; -1 = until an end token or a full context
                                (default -1) */
    const char* const* stop; /* stop strings (n_stop of them, none empty): generation ends when one
                                is complete; it and what follows are not streamed (default none) */
    size_t n_stop;
    lb_text_fn on_text;   /* may be NULL */
    lb_token_fn on_token; /* may be NULL */
    void* user_data;      /* passed to both callbacks */
} lb_generate_params;

LB_API lb_generate_params lb_generate_default_params(void);

typedef enum lb_stop_reason {
    LB_STOP_END_TOKEN = 0,    /* the model produced an end token (not streamed, not in the cache) */
    LB_STOP_N_PREDICT = 1,    /* n_predict tokens were generated */
    LB_STOP_STRING = 2,       /* a stop string was completed */
    LB_STOP_CONTEXT_FULL = 3, /* the context is full */
    LB_STOP_CANCELLED = 4
} lb_stop_reason;

typedef struct lb_generate_result {
    lb_stop_reason stop_reason;
    int32_t n_prompt;    /* prompt tokens evaluated */
    int32_t n_generated; /* tokens generated (streamed), end token excluded */
    int32_t last_token;  /* the last generated token (not in the cache), -1 if none */
    double t_prompt_s;   /* seconds spent evaluating the prompt */
    double t_generate_s; /* seconds spent generating */
} lb_generate_result;

/* Decodes the prompt tokens after what the context holds (they are also accepted into the
 * sampler's history), then samples and streams tokens until an end token, n_predict tokens, a
 * stop string or a full context. A sampled end token is neither streamed nor put in the cache, so
 * a conversation can go on with lb_chat_tokenize(..., LB_CHAT_CONTINUATION, ...). The last
 * generated token is streamed but never evaluated, whatever ends the generation (as `lowbit run`
 * does): to go on generating, pass it (result->last_token) as the prompt of the next call. n_prompt may be 0 to
 * continue from the current logits, e.g. after lb_decode. Errors as lb_decode (the prompt is checked as a whole before
 * anything is evaluated), LB_ERR_MODEL_MISMATCH, LB_ERR_CANCELLED (what was streamed stays valid; the tokens generated
 * so far are in the cache). result may be NULL; it is filled on LB_OK and LB_ERR_CANCELLED. */
LB_API lb_status lb_generate(lb_context* ctx, lb_sampler* smpl, const int32_t* prompt, int32_t n_prompt,
                             const lb_generate_params* params, lb_generate_result* result);

/* lb_generate of a text prompt: tokenized with BOS (when the model has one and the context is
 * empty), without special-token parsing. */
LB_API lb_status lb_generate_text(lb_context* ctx, lb_sampler* smpl, const char* prompt,
                                  const lb_generate_params* params, lb_generate_result* result);

/* ---- chat templates ----------------------------------------------------------------------------- */

typedef struct lb_chat_message {
    const char* role;    /* "system", "user" or "assistant" */
    const char* content; /* UTF-8, NUL-terminated */
} lb_chat_message;

/* The chat template family to use: `name` ("llama2", "llama-2", "chatml", "llama3" or "llama-3") if
 * not NULL or "", else the family of the model's tokenizer.chat_template. *family receives "llama2",
 * "chatml" or "llama3".
 * model may be NULL when a name is given (checks the name). Errors: LB_ERR_UNSUPPORTED (unknown
 * name, the model has no template, or one of no family this build knows). No Jinja engine: a
 * model's template is only inspected to tell its family. */
LB_API lb_status lb_chat_template(const lb_model* model, const char* name, const char** family);

/* Renders messages with the template (`template_name` as in lb_chat_template). With
 * add_generation_prompt the text ends where the assistant's reply begins. Output as
 * lb_detokenize: *len = the length, NUL-terminated into buf when it fits, else
 * LB_ERR_BUFFER_TOO_SMALL. Errors: an unknown role, a llama2 system message that is not first. */
LB_API lb_status lb_chat_apply_template(const lb_model* model, const char* template_name, const lb_chat_message* msgs,
                                        size_t n_msgs, bool add_generation_prompt, char* buf, size_t capacity,
                                        size_t* len);

#define LB_CHAT_CONTINUATION                                                                  \
    1u                    /* the messages follow an assistant reply that lb_generate ended at \
                             its end token: the text first closes that reply */
#define LB_CHAT_NO_BOS 2u /* do not add BOS at the start (chatml models that ask for one) */

/* The tokens to decode for a chat turn, ready for lb_generate: the messages rendered with the
 * template and the generation prompt, tokenized with special tokens parsed (llama2: the text
 * between <s> / </s> encoded piece by piece, as Meta's encoder does). Without
 * LB_CHAT_CONTINUATION this is the whole conversation; with it, only what follows the previous
 * reply. flags: LB_CHAT_* or 0. Output as lb_tokenize. */
LB_API lb_status lb_chat_tokenize(const lb_model* model, const char* template_name, const lb_chat_message* msgs,
                                  size_t n_msgs, unsigned flags, int32_t* tokens, size_t capacity, size_t* n_tokens);

#ifdef __cplusplus
}
#endif

#endif /* LOWBIT_H */
