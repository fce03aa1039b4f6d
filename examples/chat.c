/* chat.c: a minimal chat program on the lowbit C library: loads a model, reads one user message
 * per stdin line and streams each reply to stdout, keeping the conversation in the KV cache.
 *
 *   chat MODEL.lbf [TEMPLATE]     TEMPLATE: llama2, chatml or llama3 (default: the model's chat template)
 *
 * Build against an installed lowbit:
 *   cc -std=c99 chat.c $(pkg-config --cflags --libs lowbit) -o chat
 * or with CMake: find_package(lowbit) and target_link_libraries(chat PRIVATE lowbit::lowbit). */
#include <lowbit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool on_text(const char* text, size_t len, void* user_data) {
    (void)user_data;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true; /* false would stop the reply */
}

static int fail(const char* what, lb_status st) {
    fprintf(stderr, "chat: %s: %s: %s\n", what, lb_status_str(st), lb_last_error());
    return 1;
}

int main(int argc, char** argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: chat MODEL.lbf [llama2|chatml|llama3]\n");
        return 2;
    }
    const char* tmpl = argc == 3 ? argv[2] : NULL;
    lb_model* model = NULL;
    lb_context* ctx = NULL;
    lb_sampler* smpl = NULL;
    int32_t* tokens = NULL;
    int rc = 1;
    lb_status st;
    const char* family;

    if ((st = lb_model_load(argv[1], NULL, &model)) != LB_OK) return fail("load", st);
    if ((st = lb_chat_template(model, tmpl, &family)) != LB_OK) {
        rc = fail("chat template", st);
        goto done;
    }
    if ((st = lb_context_create(model, NULL, &ctx)) != LB_OK) {
        rc = fail("context", st);
        goto done;
    }
    lb_sampler_params sp = lb_sampler_default_params();
    sp.seed = 42;
    if ((st = lb_sampler_create(model, &sp, &smpl)) != LB_OK) {
        rc = fail("sampler", st);
        goto done;
    }

    size_t capacity = (size_t)lb_context_n_ctx(ctx);
    tokens = malloc(capacity * sizeof *tokens);
    if (!tokens) goto done;
    lb_generate_params gp = lb_generate_default_params();
    gp.n_predict = 256;
    gp.on_text = on_text;

    char line[4096];
    unsigned flags = 0; /* the first turn renders the whole conversation, later ones continue it */
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0]) continue;
        lb_chat_message msg = {"user", line};
        size_t n = 0;
        st = lb_chat_tokenize(model, family, &msg, 1, flags, tokens, capacity, &n);
        if (st == LB_ERR_BUFFER_TOO_SMALL || (st == LB_OK && (size_t)lb_context_pos(ctx) + n > capacity)) {
            fprintf(stderr, "chat: the context is full; the conversation ends\n");
            break;
        }
        if (st != LB_OK) {
            rc = fail("tokenize", st);
            goto done;
        }
        lb_generate_result res;
        st = lb_generate(ctx, smpl, tokens, (int32_t)n, &gp, &res);
        if (st != LB_OK) {
            rc = fail("generate", st);
            goto done;
        }
        printf("\n");
        fflush(stdout);
        fprintf(stderr, "[%d tokens, %.1f tokens/s]\n", res.n_generated,
                res.t_generate_s > 0 ? res.n_generated / res.t_generate_s : 0.0);
        if (res.stop_reason == LB_STOP_CONTEXT_FULL) break;
        flags = LB_CHAT_CONTINUATION;
    }
    rc = 0;
done:
    free(tokens);
    lb_sampler_free(smpl);
    lb_context_free(ctx);
    lb_model_free(model);
    return rc;
}
