/* test_capi.c: the C API (include/lowbit.h) tested from C99 through the public header only, on the
 * stories260K fixture model (shared/data/README.md section 1):
 *   - version, build info, status strings, model info, tokens, chat templates;
 *   - greedy generation equals the README's documented ids and the `lowbit run` CLI's output for
 *     the same prompt (the CLI output is written by a ctest fixture step);
 *   - decode / logits / sampler step by step equal the one-call lb_generate; reset and truncate;
 *   - misuse (NULL handles, objects of another model, out-of-range tokens, decode past the
 *     context, bad params) returns the documented status and never crashes;
 *   - eight threads, each with its own context over one shared model, give the same output as one.
 * usage: test_capi MODEL.lbf CLI_OUTPUT.txt NOT_A_MODEL_FILE */
#define _POSIX_C_SOURCE 200809L
#include <lowbit.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int g_checks = 0, g_failures = 0;

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        g_checks++;                                                                                                    \
        if (!(cond)) {                                                                                                 \
            g_failures++;                                                                                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, __LINE__, #cond, lb_last_error()); \
        }                                                                                                              \
    } while (0)

/* a call's status must be `want`; on an error its message must contain `msg` (NULL: any) */
static void check_st(lb_status got, lb_status want, const char* msg, const char* call, int line) {
    g_checks++;
    if (got != want || (msg && got != LB_OK && !strstr(lb_last_error(), msg))) {
        g_failures++;
        fprintf(stderr, "%s:%d: %s: got %s (%s), expected %s%s%s\n", __FILE__, line, call, lb_status_str(got),
                lb_last_error(), lb_status_str(want), msg ? " with " : "", msg ? msg : "");
    }
}
#define CHECK_ST(call, want, msg) check_st((call), (want), (msg), #call, __LINE__)

static const char* g_model_path;
static const char* g_cli_path;
static const char* g_not_model_path;

/* README section 1: greedy ids from BOS; the prompt "Once upon a time" is exactly its first four */
static const int32_t kGreedy[34] = {403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421,
                                    395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292,
                                    411, 322, 265, 282, 295, 433, 426, 385, 328, 432};
static const char* kPrompt = "Once upon a time";
static const char* kGreedyText =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day,";

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- a generation recorder (the callbacks' user data) ----------------------------------------- */
typedef struct Rec {
    char text[8192];
    size_t len;
    int32_t ids[1024];
    int n_ids;
    int cancel_after_chunks; /* > 0: on_text returns false after this many chunks */
    int chunks;
} Rec;

static bool rec_text(const char* text, size_t len, void* user) {
    Rec* r = (Rec*)user;
    if (r->len + len < sizeof r->text) {
        memcpy(r->text + r->len, text, len);
        r->len += len;
        r->text[r->len] = '\0';
    }
    r->chunks++;
    return !(r->cancel_after_chunks > 0 && r->chunks >= r->cancel_after_chunks);
}

static bool rec_token(int32_t token, void* user) {
    Rec* r = (Rec*)user;
    if (r->n_ids < 1024) r->ids[r->n_ids++] = token;
    return true;
}

static lb_generate_params rec_params(Rec* r, int32_t n_predict) {
    lb_generate_params gp = lb_generate_default_params();
    memset(r, 0, sizeof *r);
    gp.n_predict = n_predict;
    gp.on_text = rec_text;
    gp.on_token = rec_token;
    gp.user_data = r;
    return gp;
}

static lb_sampler* greedy_sampler(const lb_model* m) {
    lb_sampler_params sp = lb_sampler_default_params();
    lb_sampler* s = NULL;
    sp.temperature = 0.0f;
    CHECK_ST(lb_sampler_create(m, &sp, &s), LB_OK, NULL);
    return s;
}

static char* slurp(const char* path) {
    FILE* f = fopen(path, "rb");
    if (!f) return NULL;
    char* buf = malloc(1 << 16);
    size_t n = buf ? fread(buf, 1, (1 << 16) - 1, f) : 0;
    fclose(f);
    if (buf) buf[n] = '\0';
    return buf;
}

/* largest |a[i] - b[i]| (a plain loop: aarch64 gcc 12 -O3 crashes vectorizing fmax of fabs here) */
static double max_abs_diff(const float* a, const float* b, int n) {
    double m = 0;
    for (int i = 0; i < n; ++i) {
        const double d = (double)a[i] - (double)b[i];
        if (d > m) m = d;
        if (-d > m) m = -d;
    }
    return m;
}

/* ---- library info ------------------------------------------------------------------------------- */
static void test_version_and_status(void) {
    char want[32];
    lb_build_info bi;
    snprintf(want, sizeof want, "%d.%d.%d", LB_VERSION_MAJOR, LB_VERSION_MINOR, LB_VERSION_PATCH);
    CHECK(strcmp(lb_version(), want) == 0);
    CHECK_ST(lb_get_build_info(&bi), LB_OK, NULL);
    CHECK(strcmp(bi.version, want) == 0);
    CHECK(strstr(bi.isa_available, bi.isa) != NULL);
    CHECK(strncmp(bi.isa_available, "ref", 3) == 0);
    CHECK(strcmp(bi.backends, "cpu") == 0 || strcmp(bi.backends, "cpu,cuda") == 0);
    CHECK(bi.compiler[0] != '\0');
    printf("build: lowbit %s, isa %s (available %s), backends %s, %s\n", bi.version, bi.isa, bi.isa_available,
           bi.backends, bi.compiler);
    CHECK_ST(lb_get_build_info(NULL), LB_ERR_INVALID_ARGUMENT, "NULL");
    for (int s = LB_OK; s <= LB_ERR_INTERNAL; ++s) {
        CHECK(lb_status_str((lb_status)s)[0] != '\0');
        CHECK(strcmp(lb_status_str((lb_status)s), "unknown status") != 0);
        for (int t = LB_OK; t < s; ++t) CHECK(strcmp(lb_status_str((lb_status)s), lb_status_str((lb_status)t)) != 0);
    }
    CHECK(strcmp(lb_status_str((lb_status)12345), "unknown status") == 0);
}

/* ---- logging and progress -------------------------------------------------------------------------- */
typedef struct LogRec {
    int n_info, n_warn;
    char last_warn[512];
} LogRec;

static void log_cb(lb_log_level level, const char* msg, void* user) {
    LogRec* l = (LogRec*)user;
    if (level == LB_LOG_INFO) l->n_info++;
    if (level == LB_LOG_WARN) {
        l->n_warn++;
        snprintf(l->last_warn, sizeof l->last_warn, "%s", msg);
    }
}

typedef struct Progress {
    int calls, monotonic;
    float last;
    int cancel_at_call; /* > 0: return false at this call */
} Progress;

static bool progress_cb(float p, void* user) {
    Progress* pr = (Progress*)user;
    if (pr->calls > 0 && p < pr->last) pr->monotonic = 0;
    pr->last = p;
    pr->calls++;
    return !(pr->cancel_at_call > 0 && pr->calls >= pr->cancel_at_call);
}

static void test_load_variants(void) {
    LogRec lr;
    Progress pr;
    lb_model_params mp = lb_model_default_params();
    lb_model* m = NULL;
    lb_context* c = NULL;
    lb_context_params cp = lb_context_default_params();
    memset(&lr, 0, sizeof lr);
    memset(&pr, 0, sizeof pr);
    pr.monotonic = 1;
    lb_log_set(log_cb, &lr);

    /* read into memory, with progress reports */
    mp.use_mmap = false;
    mp.progress = progress_cb;
    mp.progress_user_data = &pr;
    CHECK_ST(lb_model_load(g_model_path, &mp, &m), LB_OK, NULL);
    CHECK(pr.calls >= 3 && pr.monotonic && pr.last == 1.0f);
    CHECK(lr.n_info == 1);
    /* a context longer than the training context: allowed, with a warning */
    cp.n_ctx = 1024;
    CHECK_ST(lb_context_create(m, &cp, &c), LB_OK, NULL);
    CHECK(lr.n_warn == 1 && strstr(lr.last_warn, "1024") && strstr(lr.last_warn, "training context of 512"));
    CHECK(lb_context_n_ctx(c) == 1024);
    {
        Rec r;
        lb_generate_params gp = rec_params(&r, 30);
        lb_sampler* s = greedy_sampler(m);
        CHECK_ST(lb_generate_text(c, s, kPrompt, &gp, NULL), LB_OK, NULL);
        CHECK(r.n_ids == 30 && memcmp(r.ids, kGreedy + 4, 30 * sizeof(int32_t)) == 0);
        lb_sampler_free(s);
    }
    lb_context_free(c);
    lb_model_free(m);
    lb_log_set(NULL, NULL);

    /* the progress callback cancels */
    m = NULL;
    memset(&pr, 0, sizeof pr);
    pr.cancel_at_call = 2;
    mp.use_mmap = true;
    CHECK_ST(lb_model_load(g_model_path, &mp, &m), LB_ERR_CANCELLED, "cancelled");
    CHECK(m == NULL);
}

/* ---- model info, tokens, chat --------------------------------------------------------------------- */
static void test_info_tokens_chat(const lb_model* m) {
    lb_model_info info;
    int32_t ids[64];
    size_t n = 0, len = 0;
    char buf[512];
    const char* piece;
    const char* fam;

    CHECK_ST(lb_model_get_info(m, &info), LB_OK, NULL);
    CHECK(strcmp(info.architecture, "llama") == 0);
    CHECK(info.n_vocab == 512 && info.n_embd == 64 && info.n_ff == 172 && info.n_layer == 5);
    CHECK(info.n_head == 8 && info.n_head_kv == 4 && info.n_ctx_train == 512);
    CHECK(info.n_params == 512 * 64 + 64 + 5 * (2 * 64 + 64 * 64 * 2 + 2 * 64 * 32 + 3 * 64 * 172));
    CHECK(info.n_bytes == 4 * info.n_params); /* all f32 */
    CHECK(strcmp(info.block_types, "f32 x47") == 0);
    CHECK(strcmp(info.tokenizer, "spm") == 0 && info.token_bos == 1 && info.token_eos == 2);
    CHECK(strcmp(info.chat_template, "") == 0 && strcmp(info.chat_template_family, "") == 0);
    printf("model: %s, %lld params, %s, source '%s'\n", info.architecture, (long long)info.n_params, info.block_types,
           info.source);

    /* tokenize / detokenize */
    CHECK_ST(lb_tokenize(m, kPrompt, strlen(kPrompt), true, false, ids, 16, &n), LB_OK, NULL);
    CHECK(n == 5 && ids[0] == 1 && memcmp(ids + 1, kGreedy, 4 * sizeof(int32_t)) == 0);
    CHECK_ST(lb_tokenize(m, kPrompt, strlen(kPrompt), false, false, ids, 16, &n), LB_OK, NULL);
    CHECK(n == 4 && ids[0] == 403);
    n = 0;
    CHECK_ST(lb_tokenize(m, kPrompt, strlen(kPrompt), true, false, ids, 3, &n), LB_ERR_BUFFER_TOO_SMALL, "5 tokens");
    CHECK(n == 5);
    CHECK_ST(lb_tokenize(m, kPrompt, strlen(kPrompt), true, false, NULL, 0, &n), LB_ERR_BUFFER_TOO_SMALL, NULL);
    CHECK(n == 5);
    CHECK_ST(lb_tokenize(m, "", 0, false, false, NULL, 0, &n), LB_OK, NULL);
    CHECK(n == 0);
    CHECK_ST(lb_detokenize(m, kGreedy, 34, buf, sizeof buf, &len), LB_OK, NULL);
    CHECK(strcmp(buf, kGreedyText) == 0 && len == strlen(kGreedyText));
    CHECK_ST(lb_detokenize(m, kGreedy, 34, buf, 10, &len), LB_ERR_BUFFER_TOO_SMALL, NULL);
    CHECK(len == strlen(kGreedyText));
    CHECK_ST(lb_token_to_piece(m, 403, &piece, &len), LB_OK, NULL);
    CHECK(len == 5 && memcmp(piece, " Once", 5) == 0);
    CHECK_ST(lb_token_text(m, 403, &piece), LB_OK, NULL);
    CHECK(strcmp(piece, "\xE2\x96\x81Once") == 0);
    CHECK(lb_token_is_end(m, 2) && lb_token_is_end(m, 1) && !lb_token_is_end(m, 403));
    CHECK(!lb_token_is_end(m, 600) && !lb_token_is_end(m, -1) && !lb_token_is_end(NULL, 2));

    /* chat templates */
    {
        const lb_chat_message conv[] = {{"system", "You are helpful."}, {"user", "Hi!"}};
        const lb_chat_message bad_role[] = {{"robot", "x"}};
        const lb_chat_message late_system[] = {{"user", "a"}, {"system", "b"}};
        CHECK_ST(lb_chat_template(m, NULL, &fam), LB_ERR_UNSUPPORTED, "the model has no chat template");
        CHECK_ST(lb_chat_template(m, "vicuna", &fam), LB_ERR_UNSUPPORTED,
                 "'vicuna' is unknown: supported llama2, chatml");
        CHECK_ST(lb_chat_template(NULL, "llama-2", &fam), LB_OK, NULL);
        CHECK(strcmp(fam, "llama2") == 0);
        CHECK_ST(lb_chat_template(NULL, NULL, &fam), LB_ERR_INVALID_ARGUMENT, "no model");
        CHECK_ST(lb_chat_apply_template(m, "chatml", conv + 1, 1, true, buf, sizeof buf, &len), LB_OK, NULL);
        CHECK(strcmp(buf, "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n") == 0);
        CHECK_ST(lb_chat_apply_template(m, "llama2", conv, 2, true, buf, sizeof buf, &len), LB_OK, NULL);
        CHECK(strcmp(buf, "<s>[INST] <<SYS>>\nYou are helpful.\n<</SYS>>\n\nHi! [/INST]") == 0);
        CHECK_ST(lb_chat_apply_template(m, "chatml", bad_role, 1, true, buf, sizeof buf, &len), LB_ERR_INVALID_ARGUMENT,
                 "role 'robot'");
        CHECK_ST(lb_chat_apply_template(m, "llama2", late_system, 2, true, buf, sizeof buf, &len),
                 LB_ERR_INVALID_ARGUMENT, "system message must be the first");
        CHECK_ST(lb_chat_apply_template(m, NULL, conv, 2, true, buf, sizeof buf, &len), LB_ERR_UNSUPPORTED, NULL);
        /* llama2 tokens: <s>, then "▁[INST]..." with the dummy-prefix space as Meta's encoder gives */
        CHECK_ST(lb_chat_tokenize(m, "llama2", conv + 1, 1, 0, ids, 64, &n), LB_OK, NULL);
        CHECK(n >= 3 && ids[0] == 1 && ids[1] == 410 && ids[2] == 508);
        CHECK_ST(lb_chat_tokenize(m, "llama2", conv + 1, 1, LB_CHAT_CONTINUATION, ids, 64, &n), LB_OK, NULL);
        CHECK(n >= 3 && ids[0] == 2 && ids[1] == 1 && ids[2] == 410);
        CHECK_ST(lb_chat_tokenize(m, "llama2", conv + 1, 1, 0x80, ids, 16, &n), LB_ERR_INVALID_ARGUMENT, "flags");
    }
}

/* ---- cancellation from another thread: on_token waits at the 4th token until the other thread
 * has called lb_context_cancel(); the generation loop must then stop before sampling again ---- */
typedef struct Canceller {
    lb_context* ctx;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n_tokens, ready, cancelled;
} Canceller;

static bool cancel_on_token(int32_t token, void* user) {
    Canceller* k = (Canceller*)user;
    (void)token;
    if (++k->n_tokens == 4) {
        pthread_mutex_lock(&k->mu);
        k->ready = 1;
        pthread_cond_broadcast(&k->cv);
        while (!k->cancelled) pthread_cond_wait(&k->cv, &k->mu);
        pthread_mutex_unlock(&k->mu);
    }
    return true;
}

static void* cancel_thread(void* arg) {
    Canceller* k = (Canceller*)arg;
    pthread_mutex_lock(&k->mu);
    while (!k->ready) pthread_cond_wait(&k->cv, &k->mu);
    lb_context_cancel(k->ctx);
    k->cancelled = 1;
    pthread_cond_broadcast(&k->cv);
    pthread_mutex_unlock(&k->mu);
    return NULL;
}

static void test_cancel_from_thread(const lb_model* m) {
    Canceller k;
    pthread_t th;
    lb_sampler* s = greedy_sampler(m);
    lb_generate_params gp = lb_generate_default_params();
    lb_generate_result res;
    memset(&k, 0, sizeof k);
    pthread_mutex_init(&k.mu, NULL);
    pthread_cond_init(&k.cv, NULL);
    CHECK_ST(lb_context_create(m, NULL, &k.ctx), LB_OK, NULL);
    gp.on_token = cancel_on_token;
    gp.user_data = &k;
    CHECK(pthread_create(&th, NULL, cancel_thread, &k) == 0);
    CHECK_ST(lb_generate_text(k.ctx, s, kPrompt, &gp, &res), LB_ERR_CANCELLED, "cancelled");
    pthread_join(th, NULL);
    CHECK(res.stop_reason == LB_STOP_CANCELLED && res.n_generated == 4 && k.n_tokens == 4);
    CHECK(res.last_token == kGreedy[7] && lb_context_pos(k.ctx) == 5 + 3);
    /* the context goes on: the 4th token (streamed, not evaluated) and on */
    {
        Rec r;
        const int32_t fourth = res.last_token;
        lb_generate_params gp2 = rec_params(&r, 3);
        CHECK_ST(lb_generate(k.ctx, s, &fourth, 1, &gp2, &res), LB_OK, NULL);
        CHECK(r.n_ids == 3 && memcmp(r.ids, kGreedy + 8, 3 * sizeof(int32_t)) == 0);
    }
    lb_context_free(k.ctx);
    lb_sampler_free(s);
    pthread_cond_destroy(&k.cv);
    pthread_mutex_destroy(&k.mu);
}

/* ---- greedy generation: README ids, the CLI's output, the step-by-step path ------------------------- */
static void test_greedy(const lb_model* m) {
    lb_context* c = NULL;
    lb_sampler* s = greedy_sampler(m);
    lb_context_params cp = lb_context_default_params();
    lb_generate_result res;
    Rec r;
    lb_generate_params gp = rec_params(&r, 30);
    char* cli;
    char api_out[8192 + 64];
    cp.n_threads = 1;
    CHECK_ST(lb_context_create(m, &cp, &c), LB_OK, NULL);
    CHECK(lb_context_model(c) == m && lb_context_n_ctx(c) == 512 && lb_context_pos(c) == 0);

    CHECK_ST(lb_generate_text(c, s, kPrompt, &gp, &res), LB_OK, NULL);
    CHECK(res.stop_reason == LB_STOP_N_PREDICT && res.n_prompt == 5 && res.n_generated == 30);
    CHECK(r.n_ids == 30 && memcmp(r.ids, kGreedy + 4, 30 * sizeof(int32_t)) == 0);
    CHECK(lb_context_pos(c) == 5 + 29); /* the last generated token is not evaluated */
    /* what `lowbit run -m MODEL -p PROMPT --temp 0 -n 30` printed: the prompt, the reply, a newline */
    snprintf(api_out, sizeof api_out, "%s%s\n", kPrompt, r.text);
    CHECK(strncmp(api_out, kGreedyText, strlen(kGreedyText)) == 0);
    cli = slurp(g_cli_path);
    CHECK(cli != NULL);
    if (cli) {
        CHECK(strcmp(cli, api_out) == 0);
        if (strcmp(cli, api_out) != 0) fprintf(stderr, "CLI: [%s]\nAPI: [%s]\n", cli, api_out);
    }
    free(cli);
    printf("greedy: %d prompt tokens in %.4f s, %d generated in %.4f s\n", res.n_prompt, res.t_prompt_s,
           res.n_generated, res.t_generate_s);

    /* step by step: decode, logits, sample, accept; the prompt as one batch with every row kept */
    {
        int32_t ids[64];
        int32_t prompt[5] = {1, 403, 407, 261, 378};
        const float* row = NULL;
        const float* last = NULL;
        float copy[512];
        double mx = -1e30, sum = 0;
        CHECK_ST(lb_context_reset(c), LB_OK, NULL);
        CHECK(lb_context_pos(c) == 0);
        CHECK_ST(lb_get_logits(c, -1, &row), LB_ERR_INVALID_ARGUMENT, "no logits");
        CHECK_ST(lb_decode(c, prompt, 5, true), LB_OK, NULL);
        CHECK(lb_context_pos(c) == 5);
        CHECK_ST(lb_get_logits(c, 4, &row), LB_OK, NULL);
        CHECK_ST(lb_get_logits(c, -1, &last), LB_OK, NULL);
        CHECK(row == last);
        CHECK_ST(lb_get_logits(c, 5, &row), LB_ERR_INVALID_ARGUMENT, "row 5");
        CHECK_ST(lb_get_logits(c, -2, &row), LB_ERR_INVALID_ARGUMENT, NULL);
        memcpy(copy, last, sizeof copy);
        /* README: the next-token softmax at T = 1 gives ',' (432) 0.9688 */
        for (int i = 0; i < 512; ++i) mx = copy[i] > mx ? copy[i] : mx;
        for (int i = 0; i < 512; ++i) sum += exp(copy[i] - mx);
        CHECK(fabs(exp(copy[432] - mx) / sum - 0.9688) < 5e-4);
        /* the same prompt with only the last row, and in batches of 2 (n_batch) */
        for (int variant = 0; variant < 2; ++variant) {
            lb_context* c2 = NULL;
            lb_context_params cp2 = lb_context_default_params();
            double maxdiff = 0;
            cp2.n_batch = variant ? 2 : 512;
            CHECK_ST(lb_context_create(m, &cp2, &c2), LB_OK, NULL);
            CHECK_ST(lb_decode(c2, prompt, 5, false), LB_OK, NULL);
            CHECK_ST(lb_get_logits(c2, 0, &row), LB_OK, NULL);
            CHECK_ST(lb_get_logits(c2, 1, &last), LB_ERR_INVALID_ARGUMENT, NULL);
            maxdiff = max_abs_diff(row, copy, 512);
            CHECK(maxdiff < 1e-3);
            lb_context_free(c2);
        }
        CHECK_ST(lb_get_logits(c, -1, &row), LB_OK, NULL);
        for (int i = 0; i < 30; ++i) {
            CHECK_ST(lb_sampler_sample(s, c, &ids[i]), LB_OK, NULL);
            CHECK_ST(lb_sampler_accept(s, ids[i]), LB_OK, NULL);
            CHECK_ST(lb_decode(c, &ids[i], 1, false), LB_OK, NULL);
        }
        CHECK(memcmp(ids, kGreedy + 4, 30 * sizeof(int32_t)) == 0);
        CHECK(lb_context_pos(c) == 35);

        /* truncate back to the prompt minus its last token and decode it again: the same story */
        CHECK_ST(lb_context_truncate(c, 36), LB_ERR_INVALID_ARGUMENT, "0..35");
        CHECK_ST(lb_context_truncate(c, 4), LB_OK, NULL);
        CHECK(lb_context_pos(c) == 4);
        CHECK_ST(lb_get_logits(c, -1, &row), LB_ERR_INVALID_ARGUMENT, NULL);
        gp = rec_params(&r, 10);
        CHECK_ST(lb_generate(c, s, prompt + 4, 1, &gp, &res), LB_OK, NULL);
        CHECK(r.n_ids == 10 && memcmp(r.ids, kGreedy + 4, 10 * sizeof(int32_t)) == 0);
        CHECK(strncmp(r.text, ", there was", 11) == 0);
        /* the last generated token is not in the cache: it is the prompt of the next call */
        {
            const int32_t last_id = r.ids[9];
            CHECK(lb_context_pos(c) == 4 + 1 + 9);
            gp = rec_params(&r, 5);
            CHECK_ST(lb_generate(c, s, &last_id, 1, &gp, &res), LB_OK, NULL);
            CHECK(r.n_ids == 5 && memcmp(r.ids, kGreedy + 14, 5 * sizeof(int32_t)) == 0);
        }
        /* n_prompt 0 continues from the current logits: after lb_decode of that token */
        {
            const int32_t last_id = r.ids[4];
            CHECK_ST(lb_decode(c, &last_id, 1, false), LB_OK, NULL);
            gp = rec_params(&r, 3);
            CHECK_ST(lb_generate(c, s, NULL, 0, &gp, &res), LB_OK, NULL);
            CHECK(r.n_ids == 3 && memcmp(r.ids, kGreedy + 19, 3 * sizeof(int32_t)) == 0);
        }
    }

    /* from BOS alone (an empty prompt): the story's first piece loses its dummy-prefix space */
    CHECK_ST(lb_context_reset(c), LB_OK, NULL);
    gp = rec_params(&r, 34);
    CHECK_ST(lb_generate_text(c, s, "", &gp, &res), LB_OK, NULL);
    CHECK(res.n_prompt == 1 && strcmp(r.text, kGreedyText) == 0);

    /* stop strings, end of context, cancellation */
    {
        const char* stops[] = {"xyz", "Lily"};
        lb_context* small = NULL;
        lb_context_params cps = lb_context_default_params();
        CHECK_ST(lb_context_reset(c), LB_OK, NULL);
        gp = rec_params(&r, 30);
        gp.stop = stops;
        gp.n_stop = 2;
        CHECK_ST(lb_generate_text(c, s, kPrompt, &gp, &res), LB_OK, NULL);
        CHECK(res.stop_reason == LB_STOP_STRING);
        CHECK(strcmp(r.text, ", there was a little girl named ") == 0);

        cps.n_ctx = 12;
        CHECK_ST(lb_context_create(m, &cps, &small), LB_OK, NULL);
        gp = rec_params(&r, -1);
        CHECK_ST(lb_generate_text(small, s, kPrompt, &gp, &res), LB_OK, NULL);
        CHECK(res.stop_reason == LB_STOP_CONTEXT_FULL && res.n_generated == 8 && lb_context_pos(small) == 12);
        CHECK(strcmp(r.text, ", there was a little girl") == 0);
        CHECK_ST(lb_generate(small, s, kGreedy, 1, &gp, &res), LB_ERR_CONTEXT_FULL, "12 of the context's 12");

        CHECK_ST(lb_context_reset(c), LB_OK, NULL);
        gp = rec_params(&r, 30);
        r.cancel_after_chunks = 3;
        CHECK_ST(lb_generate_text(c, s, kPrompt, &gp, &res), LB_ERR_CANCELLED, NULL);
        CHECK(res.stop_reason == LB_STOP_CANCELLED && r.chunks == 3 && res.n_generated == 3);
        lb_context_cancel(c);
        gp = rec_params(&r, 30);
        CHECK_ST(lb_generate(c, s, NULL, 0, &gp, &res), LB_ERR_CANCELLED, NULL);
        CHECK(r.n_ids == 0);
        lb_context_cancel(c); /* a decode stops before its first batch; the position stays */
        {
            const int32_t pos = lb_context_pos(c);
            CHECK_ST(lb_decode(c, kGreedy, 3, false), LB_ERR_CANCELLED, NULL);
            CHECK(lb_context_pos(c) == pos);
        }
        CHECK_ST(lb_decode(c, kGreedy, 3, false), LB_OK, NULL); /* the request was used up */
        lb_context_free(small);
    }
    lb_sampler_free(s);
    lb_context_free(c);
}

/* ---- misuse -------------------------------------------------------------------------------------------- */
static void* other_thread_error(void* arg) {
    (void)arg;
    return (void*)(size_t)(lb_last_error()[0] == '\0');
}

static void test_misuse(const lb_model* m) {
    lb_model* m2 = NULL;
    lb_model* none = NULL;
    lb_context* c = NULL;
    lb_context* c2 = NULL;
    lb_sampler* s = NULL;
    lb_sampler* s2 = NULL;
    lb_model_params mp = lb_model_default_params();
    lb_context_params cp = lb_context_default_params();
    lb_sampler_params sp = lb_sampler_default_params();
    lb_generate_params gp = lb_generate_default_params();
    int32_t ids[16] = {1, 403, 407, 261, 378, 5, 5, 5, 5};
    int32_t tok = -7;
    size_t n = 0, len = 0;
    const float* logits = NULL;
    const char* text = NULL;
    char buf[64];
    lb_model_info info;

    /* loading */
    CHECK_ST(lb_model_load(NULL, NULL, &none), LB_ERR_INVALID_ARGUMENT, "path is NULL");
    CHECK_ST(lb_model_load(g_model_path, NULL, NULL), LB_ERR_INVALID_ARGUMENT, "out is NULL");
    CHECK_ST(lb_model_load("/nonexistent/model.lbf", NULL, &none), LB_ERR_IO, "/nonexistent/model.lbf: cannot open");
    CHECK_ST(lb_model_load("/", NULL, &none), LB_ERR_IO, "not a regular file");
    CHECK_ST(lb_model_load(g_not_model_path, NULL, &none), LB_ERR_BAD_MODEL, NULL);
    mp.use_mmap = false;
    CHECK_ST(lb_model_load(g_not_model_path, &mp, &none), LB_ERR_BAD_MODEL, NULL);
    mp = lb_model_default_params();
    mp.backend = "cuda";
    {
        /* without CUDA in the build, or without a device: LB_ERR_UNSUPPORTED; with one it loads */
        lb_build_info b;
        lb_model* cm = NULL;
        CHECK_ST(lb_get_build_info(&b), LB_OK, NULL);
        if (strstr(b.backends, "cuda") == NULL) {
            CHECK_ST(lb_model_load(g_model_path, &mp, &none), LB_ERR_UNSUPPORTED, "backend 'cuda'");
        } else {
            const lb_status st = lb_model_load(g_model_path, &mp, &cm);
            CHECK(st == LB_OK || (st == LB_ERR_UNSUPPORTED && strstr(lb_last_error(), "no CUDA device") != NULL));
            lb_model_free(cm);
        }
    }
    mp.backend = "tpu";
    CHECK_ST(lb_model_load(g_model_path, &mp, &none), LB_ERR_INVALID_ARGUMENT, "backend 'tpu' is unknown");
    mp = lb_model_default_params();
    mp.n_threads = -1;
    CHECK_ST(lb_model_load(g_model_path, &mp, &none), LB_ERR_INVALID_ARGUMENT, "n_threads -1");
    CHECK(none == NULL);
    CHECK_ST(lb_model_get_info(NULL, &info), LB_ERR_INVALID_ARGUMENT, NULL);
    CHECK_ST(lb_model_get_info(m, NULL), LB_ERR_INVALID_ARGUMENT, NULL);

    /* the error message is per thread */
    {
        pthread_t th;
        void* fresh = NULL;
        CHECK(lb_last_error()[0] != '\0');
        CHECK(pthread_create(&th, NULL, other_thread_error, NULL) == 0);
        pthread_join(th, &fresh);
        CHECK(fresh == (void*)1);
    }

    /* contexts */
    CHECK_ST(lb_context_create(NULL, NULL, &c), LB_ERR_INVALID_ARGUMENT, "model is NULL");
    CHECK_ST(lb_context_create(m, NULL, NULL), LB_ERR_INVALID_ARGUMENT, "out is NULL");
    cp.n_ctx = -1;
    CHECK_ST(lb_context_create(m, &cp, &c), LB_ERR_INVALID_ARGUMENT, "n_ctx -1");
    cp = lb_context_default_params();
    cp.n_batch = 0;
    CHECK_ST(lb_context_create(m, &cp, &c), LB_ERR_INVALID_ARGUMENT, "n_batch 0");
    cp = lb_context_default_params();
    cp.n_threads = 5000;
    CHECK_ST(lb_context_create(m, &cp, &c), LB_ERR_INVALID_ARGUMENT, "n_threads 5000");
    CHECK(c == NULL);
    cp = lb_context_default_params();
    cp.n_ctx = 8;
    CHECK_ST(lb_context_create(m, &cp, &c), LB_OK, NULL);
    CHECK(lb_context_pos(NULL) == 0 && lb_context_n_ctx(NULL) == 0 && lb_context_model(NULL) == NULL);
    CHECK_ST(lb_context_reset(NULL), LB_ERR_INVALID_ARGUMENT, NULL);
    CHECK_ST(lb_context_truncate(NULL, 0), LB_ERR_INVALID_ARGUMENT, NULL);
    CHECK_ST(lb_context_truncate(c, -1), LB_ERR_INVALID_ARGUMENT, NULL);
    lb_context_cancel(NULL);

    /* decoding: NULLs, bad counts, out-of-range tokens, past the context */
    CHECK_ST(lb_decode(NULL, ids, 1, false), LB_ERR_INVALID_ARGUMENT, "ctx is NULL");
    CHECK_ST(lb_decode(c, NULL, 1, false), LB_ERR_INVALID_ARGUMENT, "tokens is NULL");
    CHECK_ST(lb_decode(c, ids, 0, false), LB_ERR_INVALID_ARGUMENT, "n_tokens 0");
    CHECK_ST(lb_decode(c, ids, -3, false), LB_ERR_INVALID_ARGUMENT, NULL);
    ids[5] = 512;
    CHECK_ST(lb_decode(c, ids, 6, false), LB_ERR_INVALID_ARGUMENT, "token 512 (at 5) is outside");
    ids[5] = -1;
    CHECK_ST(lb_decode(c, ids + 5, 1, false), LB_ERR_INVALID_ARGUMENT, "token -1");
    ids[5] = 0x7fffffff;
    CHECK_ST(lb_decode(c, ids + 5, 1, false), LB_ERR_INVALID_ARGUMENT, "outside");
    CHECK(lb_context_pos(c) == 0);
    ids[5] = 5;
    CHECK_ST(lb_decode(c, ids, 9, false), LB_ERR_CONTEXT_FULL, "9 tokens do not fit");
    CHECK_ST(lb_decode(c, ids, 5, false), LB_OK, NULL);
    CHECK_ST(lb_decode(c, ids, 4, false), LB_ERR_CONTEXT_FULL, "5 of the context's 8");
    CHECK(lb_context_pos(c) == 5);
    CHECK_ST(lb_get_logits(c, -1, &logits), LB_OK, NULL); /* the failed call kept the logits */
    ids[5] = ids[6] = ids[7] = 5;
    CHECK_ST(lb_decode(c, ids + 5, 3, false), LB_OK, NULL);
    CHECK(lb_context_pos(c) == 8);
    CHECK_ST(lb_decode(c, ids, 1, false), LB_ERR_CONTEXT_FULL, NULL);
    CHECK_ST(lb_get_logits(NULL, 0, &logits), LB_ERR_INVALID_ARGUMENT, NULL);
    CHECK_ST(lb_get_logits(c, 0, NULL), LB_ERR_INVALID_ARGUMENT, NULL);

    /* samplers: bad params, NULLs, another model's context */
    sp.temperature = -1.0f;
    CHECK_ST(lb_sampler_create(m, &sp, &s), LB_ERR_INVALID_ARGUMENT, "temperature -1");
    sp = lb_sampler_default_params();
    sp.temperature = NAN;
    CHECK_ST(lb_sampler_create(m, &sp, &s), LB_ERR_INVALID_ARGUMENT, "temperature");
    sp = lb_sampler_default_params();
    sp.top_k = -1;
    CHECK_ST(lb_sampler_create(m, &sp, &s), LB_ERR_INVALID_ARGUMENT, "top-k -1");
    sp = lb_sampler_default_params();
    sp.top_p = 0.0f;
    CHECK_ST(lb_sampler_create(m, &sp, &s), LB_ERR_INVALID_ARGUMENT, "top-p 0");
    sp = lb_sampler_default_params();
    sp.min_p = 1.5f;
    CHECK_ST(lb_sampler_create(m, &sp, &s), LB_ERR_INVALID_ARGUMENT, "min-p 1.5");
    sp = lb_sampler_default_params();
    sp.repeat_penalty = 0.0f;
    CHECK_ST(lb_sampler_create(m, &sp, &s), LB_ERR_INVALID_ARGUMENT, "repeat-penalty 0");
    sp = lb_sampler_default_params();
    sp.repeat_last_n = -1;
    CHECK_ST(lb_sampler_create(m, &sp, &s), LB_ERR_INVALID_ARGUMENT, "repeat-last-n -1");
    CHECK(s == NULL);
    CHECK_ST(lb_sampler_create(NULL, NULL, &s), LB_ERR_INVALID_ARGUMENT, "model is NULL");
    CHECK_ST(lb_sampler_create(m, NULL, &s), LB_OK, NULL);
    CHECK_ST(lb_sampler_sample(NULL, c, &tok), LB_ERR_INVALID_ARGUMENT, NULL);
    CHECK_ST(lb_sampler_sample(s, NULL, &tok), LB_ERR_INVALID_ARGUMENT, NULL);
    CHECK_ST(lb_sampler_sample(s, c, NULL), LB_ERR_INVALID_ARGUMENT, NULL);
    CHECK_ST(lb_sampler_accept(s, 512), LB_ERR_INVALID_ARGUMENT, "token 512");
    CHECK_ST(lb_sampler_accept(NULL, 1), LB_ERR_INVALID_ARGUMENT, NULL);
    CHECK_ST(lb_sampler_reset(NULL), LB_ERR_INVALID_ARGUMENT, NULL);
    CHECK(tok == -7);

    /* a second model (the same file, another handle): its objects do not mix with the first's */
    CHECK_ST(lb_model_load(g_model_path, NULL, &m2), LB_OK, NULL);
    CHECK_ST(lb_context_create(m2, NULL, &c2), LB_OK, NULL);
    CHECK_ST(lb_sampler_create(m2, NULL, &s2), LB_OK, NULL);
    CHECK_ST(lb_decode(c2, ids, 2, false), LB_OK, NULL);
    CHECK_ST(lb_sampler_sample(s, c2, &tok), LB_ERR_MODEL_MISMATCH, "different models");
    CHECK_ST(lb_generate(c2, s, ids, 1, &gp, NULL), LB_ERR_MODEL_MISMATCH, "different models");
    CHECK_ST(lb_generate(c, s2, NULL, 0, &gp, NULL), LB_ERR_MODEL_MISMATCH, NULL);
    CHECK(tok == -7 && lb_context_pos(c2) == 2);

    /* generation: bad params, nothing to continue from */
    CHECK_ST(lb_generate(NULL, s2, ids, 1, &gp, NULL), LB_ERR_INVALID_ARGUMENT, "ctx is NULL");
    CHECK_ST(lb_generate(c2, NULL, ids, 1, &gp, NULL), LB_ERR_INVALID_ARGUMENT, "smpl is NULL");
    gp.n_predict = -2;
    CHECK_ST(lb_generate(c2, s2, ids, 1, &gp, NULL), LB_ERR_INVALID_ARGUMENT, "n_predict -2");
    gp = lb_generate_default_params();
    {
        const char* empty_stop[] = {""};
        gp.stop = empty_stop;
        gp.n_stop = 1;
        CHECK_ST(lb_generate(c2, s2, ids, 1, &gp, NULL), LB_ERR_INVALID_ARGUMENT, "stop string 0 is empty");
        gp.stop = NULL;
        CHECK_ST(lb_generate(c2, s2, ids, 1, &gp, NULL), LB_ERR_INVALID_ARGUMENT, "stop is NULL");
    }
    gp = lb_generate_default_params();
    ids[0] = 9999;
    CHECK_ST(lb_generate(c2, s2, ids, 1, &gp, NULL), LB_ERR_INVALID_ARGUMENT, "token 9999");
    ids[0] = 1;
    CHECK_ST(lb_generate(c2, s2, ids, -1, &gp, NULL), LB_ERR_INVALID_ARGUMENT, NULL);
    CHECK_ST(lb_context_reset(c2), LB_OK, NULL);
    CHECK_ST(lb_generate(c2, s2, NULL, 0, &gp, NULL), LB_ERR_INVALID_ARGUMENT, "no prompt and no logits");
    CHECK_ST(lb_generate_text(c2, s2, NULL, &gp, NULL), LB_ERR_INVALID_ARGUMENT, "prompt is NULL");
    CHECK_ST(lb_generate_text(NULL, s2, "x", &gp, NULL), LB_ERR_INVALID_ARGUMENT, "ctx is NULL");

    /* tokens: NULLs, out-of-range ids */
    CHECK_ST(lb_tokenize(NULL, "x", 1, true, false, ids, 8, &n), LB_ERR_INVALID_ARGUMENT, "model is NULL");
    CHECK_ST(lb_tokenize(m, NULL, 1, true, false, ids, 8, &n), LB_ERR_INVALID_ARGUMENT, "text is NULL");
    CHECK_ST(lb_tokenize(m, "x", 1, true, false, ids, 8, NULL), LB_ERR_INVALID_ARGUMENT, NULL);
    CHECK_ST(lb_tokenize(m, "x", 1, true, false, NULL, 8, &n), LB_ERR_INVALID_ARGUMENT, NULL);
    ids[1] = 600;
    CHECK_ST(lb_detokenize(m, ids, 2, buf, sizeof buf, &len), LB_ERR_INVALID_ARGUMENT, "token 600");
    CHECK_ST(lb_detokenize(NULL, ids, 1, buf, sizeof buf, &len), LB_ERR_INVALID_ARGUMENT, NULL);
    CHECK_ST(lb_token_to_piece(m, -1, &text, &len), LB_ERR_INVALID_ARGUMENT, "token -1");
    CHECK_ST(lb_token_text(m, 512, &text), LB_ERR_INVALID_ARGUMENT, "token 512");
    CHECK_ST(lb_token_text(NULL, 1, &text), LB_ERR_INVALID_ARGUMENT, NULL);
    CHECK_ST(lb_chat_tokenize(NULL, "chatml", NULL, 0, 0, ids, 8, &n), LB_ERR_INVALID_ARGUMENT, NULL);
    CHECK_ST(lb_chat_tokenize(m, "chatml", NULL, 1, 0, ids, 8, &n), LB_ERR_INVALID_ARGUMENT, "msgs is NULL");
    {
        const lb_chat_message null_content[] = {{"user", NULL}};
        CHECK_ST(lb_chat_tokenize(m, "chatml", null_content, 1, 0, ids, 8, &n), LB_ERR_INVALID_ARGUMENT,
                 "NULL content");
    }

    /* freeing NULL is a no-op */
    lb_model_free(NULL);
    lb_context_free(NULL);
    lb_sampler_free(NULL);
    lb_sampler_free(s2);
    lb_context_free(c2);
    lb_model_free(m2);
    lb_sampler_free(s);
    lb_context_free(c);
}

/* ---- eight threads, one model ------------------------------------------------------------------------- */
#define N_GEN 48
#define N_ROUNDS 4
typedef struct Job {
    const lb_model* m;
    int32_t greedy[N_ROUNDS][N_GEN];
    int32_t sampled[N_ROUNDS][N_GEN];
    int n_greedy[N_ROUNDS], n_sampled[N_ROUNDS];
    int failures;
} Job;

/* one generation: its own context and sampler; `temp` 0 = greedy, else seeded sampling */
static int generate_ids(const lb_model* m, float temp, int32_t* out) {
    lb_context* c = NULL;
    lb_sampler* s = NULL;
    lb_context_params cp = lb_context_default_params();
    lb_sampler_params sp = lb_sampler_default_params();
    Rec* r = malloc(sizeof *r);
    lb_generate_params gp;
    int n = -1;
    if (!r) return -1;
    gp = rec_params(r, N_GEN);
    cp.n_ctx = 128;
    cp.n_threads = 1;
    sp.temperature = temp;
    sp.seed = 1234;
    sp.top_k = 0;
    sp.top_p = 1.0f;
    sp.min_p = 0.0f;
    if (lb_context_create(m, &cp, &c) == LB_OK && lb_sampler_create(m, &sp, &s) == LB_OK &&
        lb_generate_text(c, s, "Once", &gp, NULL) == LB_OK) {
        n = r->n_ids;
        memcpy(out, r->ids, sizeof(int32_t) * (size_t)n);
    }
    lb_sampler_free(s);
    lb_context_free(c);
    free(r);
    return n;
}

static void* thread_main(void* arg) {
    Job* j = (Job*)arg;
    for (int round = 0; round < N_ROUNDS; ++round) {
        j->n_greedy[round] = generate_ids(j->m, 0.0f, j->greedy[round]);
        j->n_sampled[round] = generate_ids(j->m, 1.0f, j->sampled[round]);
    }
    return NULL;
}

static void test_threads(const lb_model* m) {
    enum { T = 8 };
    Job* ref = calloc(1, sizeof(Job));
    Job* jobs = calloc(T, sizeof(Job));
    pthread_t th[T];
    double t0, t_one, t_eight;
    int same = 1;
    CHECK(ref && jobs);
    if (!ref || !jobs) return;
    ref->m = m;
    t0 = now_s();
    thread_main(ref);
    t_one = now_s() - t0;
    CHECK(ref->n_greedy[0] > 0 && ref->n_sampled[0] > 0);
    for (int r = 1; r < N_ROUNDS; ++r)
        CHECK(ref->n_greedy[r] == ref->n_greedy[0] &&
              memcmp(ref->greedy[r], ref->greedy[0], sizeof(int32_t) * (size_t)ref->n_greedy[0]) == 0);
    /* a sampled run differs from the greedy one (the test would be weak otherwise) */
    CHECK(memcmp(ref->sampled[0], ref->greedy[0], sizeof(int32_t) * 8) != 0);

    t0 = now_s();
    for (int i = 0; i < T; ++i) {
        jobs[i].m = m;
        CHECK(pthread_create(&th[i], NULL, thread_main, &jobs[i]) == 0);
    }
    for (int i = 0; i < T; ++i) pthread_join(th[i], NULL);
    t_eight = now_s() - t0;
    for (int i = 0; i < T; ++i)
        for (int r = 0; r < N_ROUNDS; ++r) {
            const int g = jobs[i].n_greedy[r] == ref->n_greedy[0] &&
                          memcmp(jobs[i].greedy[r], ref->greedy[0], sizeof(int32_t) * (size_t)ref->n_greedy[0]) == 0;
            const int s = jobs[i].n_sampled[r] == ref->n_sampled[0] &&
                          memcmp(jobs[i].sampled[r], ref->sampled[0], sizeof(int32_t) * (size_t)ref->n_sampled[0]) == 0;
            CHECK(g && s);
            same = same && g && s;
        }
    printf(
        "threads: 1 thread: %d generations of %d tokens in %.3f s; %d threads: %d generations in %.3f s; "
        "outputs %s\n",
        2 * N_ROUNDS, N_GEN, t_one, T, 2 * N_ROUNDS * T, t_eight, same ? "identical" : "DIFFERENT");
    free(ref);
    free(jobs);
}

int main(int argc, char** argv) {
    lb_model* m = NULL;
    if (argc != 4) {
        fprintf(stderr, "usage: test_capi MODEL.lbf CLI_OUTPUT.txt NOT_A_MODEL_FILE\n");
        return 2;
    }
    g_model_path = argv[1];
    g_cli_path = argv[2];
    g_not_model_path = argv[3];

    test_version_and_status();
    CHECK_ST(lb_model_load(g_model_path, NULL, &m), LB_OK, NULL);
    if (!m) return 1;
    test_info_tokens_chat(m);
    test_greedy(m);
    test_cancel_from_thread(m);
    test_load_variants();
    test_misuse(m);
    test_threads(m);
    lb_model_free(m);

    printf("%d checks, %d failed\n", g_checks, g_failures);
    return g_failures ? 1 : 0;
}
