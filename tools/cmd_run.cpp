// cmd_run.cpp: `lowbit run`: text generation from a .lbf model, built on the public C API
// (include/lowbit.h): lb_model_load, lb_tokenize, lb_generate (the prompt evaluated as one batch,
// then tokens decoded one at a time and streamed to stdout as they come: only whole UTF-8
// characters, and text that could still become a stop string is held back), the lb_sampler chain and
// lb_chat_tokenize. Generation stops at an end token (EOS, BOS, <|eot_id|>, <|im_end|>), a stop
// string, -n tokens, or a full context. A timing line goes to stderr. `--chat` reads user lines from
// stdin and keeps the KV cache across turns: each turn only evaluates its own new tokens.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "formats/mapped_file.h"
#include "include/lowbit.h"
#include "models/chat.h"
#include "tools/args.h"
#include "tools/backend_opt.h"
#include "tools/commands.h"

namespace lb {
namespace {

// An API failure becomes the CLI's error (lb_last_error() says what was wrong).
void check(lb_status st) {
    if (st != LB_OK) throw Error(lb_last_error());
}

void usage(FILE* f) {
    std::fprintf(f,
                 "usage: lowbit run -m MODEL.lbf [-p PROMPT | -f FILE] [options]\n"
                 "  -m, --model FILE        the model (.lbf)\n"
                 "  -p, --prompt TEXT       prompt (with --chat: the system message)\n"
                 "  -f, --file FILE         read the prompt from FILE\n"
                 "  --chat                  interactive chat: one user message per stdin line, EOF ends\n"
                 "  --chat-template NAME    llama2, chatml or llama3 (default: from the model's metadata)\n"
                 "  -n, --n-predict N       tokens to generate, -1 = until an end (default -1)\n"
                 "  -c, --ctx-size N        context length (default: the model's training context, at most 4096)\n"
                 "  -t, --threads N         threads (default: min(4, cores))\n"
                 "  --backend B             cpu (default) or cuda (builds with CUDA, on a CUDA device)\n"
                 "  --temp T                temperature, 0 = greedy (default 0.8)\n"
                 "  --top-k K               0 = off (default 40)\n"
                 "  --top-p P               in (0, 1], 1 = off (default 0.95)\n"
                 "  --min-p P               in [0, 1], 0 = off (default 0.05)\n"
                 "  --repeat-penalty R      > 0, 1 = off (default 1)\n"
                 "  --repeat-last-n N       tokens of history for the penalty (default 64)\n"
                 "  --seed S                RNG seed (default: random, printed on stderr)\n"
                 "  --stop STR              stop when STR is generated (repeatable)\n"
                 "  --no-bos                do not add BOS to the prompt (default: as the tokenizer says)\n"
                 "  --verbose-prompt        print the prompt tokens on stderr\n");
}

struct Options {
    std::string model, prompt, prompt_file, chat_template;
    bool have_prompt = false, chat = false, no_bos = false, verbose_prompt = false;
    int64_t n_predict = -1, n_ctx = 0;  // 0: the model's
    int threads = 0;
    std::string backend = "cpu";
    lb_sampler_params sp = lb_sampler_default_params();
    bool have_seed = false;
    std::vector<std::string> stops;
};

// returns false if --help was printed
bool parse(int argc, char** argv, Options& o) {
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto val = [&]() -> std::string {
            LB_CHECK(i + 1 < argc, "option %s needs a value", a.c_str());
            return argv[++i];
        };
        if (a == "-m" || a == "--model") {
            o.model = val();
        } else if (a == "-p" || a == "--prompt") {
            LB_CHECK(!o.have_prompt, "give the prompt once: -p or -f");
            o.prompt = val();
            o.have_prompt = true;
        } else if (a == "-f" || a == "--file") {
            LB_CHECK(!o.have_prompt, "give the prompt once: -p or -f");
            o.prompt_file = val();
            o.have_prompt = true;
        } else if (a == "--chat") {
            o.chat = true;
        } else if (a == "--chat-template") {
            o.chat_template = val();
            const char* family;  // checks the name now
            check(lb_chat_template(nullptr, o.chat_template.c_str(), &family));
        } else if (a == "-n" || a == "--n-predict") {
            o.n_predict = parse_int(val(), "-n", -1, int64_t(1) << 40);
        } else if (a == "-c" || a == "--ctx-size") {
            o.n_ctx = parse_int(val(), "-c", 1, int64_t(1) << 20);
        } else if (a == "-t" || a == "--threads") {
            o.threads = int(parse_int(val(), "-t", 1, 1024));
        } else if (a == "--backend") {
            o.backend = val();
            parse_backend(o.backend);
        } else if (a == "--temp") {
            o.sp.temperature = parse_float(val(), "--temp");
        } else if (a == "--top-k") {
            o.sp.top_k = int32_t(parse_int(val(), "--top-k", 0, INT32_MAX));
        } else if (a == "--top-p") {
            o.sp.top_p = parse_float(val(), "--top-p");
        } else if (a == "--min-p") {
            o.sp.min_p = parse_float(val(), "--min-p");
        } else if (a == "--repeat-penalty") {
            o.sp.repeat_penalty = parse_float(val(), "--repeat-penalty");
        } else if (a == "--repeat-last-n") {
            o.sp.repeat_last_n = int32_t(parse_int(val(), "--repeat-last-n", 0, 1 << 20));
        } else if (a == "--seed") {
            o.sp.seed = uint64_t(parse_int(val(), "--seed", 0, INT64_MAX));
            o.have_seed = true;
        } else if (a == "--stop") {
            o.stops.push_back(val());
            LB_CHECK(!o.stops.back().empty(), "--stop: the stop string is empty");
        } else if (a == "--no-bos") {
            o.no_bos = true;
        } else if (a == "--verbose-prompt") {
            o.verbose_prompt = true;
        } else if (a == "-h" || a == "--help") {
            usage(stdout);
            return false;
        } else {
            throw Error(strfmt("unknown option '%s' (see --help)", a.c_str()));
        }
    }
    LB_CHECK(!o.model.empty(), "no model: give -m MODEL.lbf");
    LB_CHECK(o.have_prompt || o.chat, "no prompt: give -p TEXT, -f FILE or --chat");
    return true;
}

// The handles of one run, freed in reverse order.
struct Session {
    lb_model* model = nullptr;
    lb_context* ctx = nullptr;
    lb_sampler* smpl = nullptr;
    ~Session() {
        lb_sampler_free(smpl);
        lb_context_free(ctx);
        lb_model_free(model);
    }
};

struct Stats {
    int64_t n_prompt = 0, n_gen = 0;
    double t_prompt = 0, t_gen = 0;
};

// Generates after `ids` (evaluated first) and streams the text to stdout.
class Runner {
 public:
    Runner(const Options& o, Session& s) : s_(s) {
        for (const std::string& st : o.stops) stops_.push_back(st.c_str());
        gp_ = lb_generate_default_params();
        gp_.n_predict = o.n_predict > INT32_MAX ? -1 : int32_t(o.n_predict);  // the context ends it first
        gp_.stop = stops_.data();
        gp_.n_stop = stops_.size();
        gp_.on_text = [](const char* p, size_t n, void*) {
            std::fwrite(p, 1, n, stdout);
            std::fflush(stdout);
            return true;
        };
    }

    int64_t n_past() const { return lb_context_pos(s_.ctx); }
    int64_t n_ctx() const { return lb_context_n_ctx(s_.ctx); }
    const Stats& stats() const { return stats_; }

    // Evaluates `ids` after what is in the cache, then generates up to -n tokens. The end token,
    // when one is sampled, is neither printed nor put in the cache.
    void generate(const std::vector<int32_t>& ids) {
        LB_CHECK(n_past() + int64_t(ids.size()) <= n_ctx(),
                 "the prompt is %zu tokens and %lld are in the context already: more than the context of %lld "
                 "tokens (-c)",
                 ids.size(), (long long)n_past(), (long long)n_ctx());
        lb_generate_result r;
        check(lb_generate(s_.ctx, s_.smpl, ids.data(), int32_t(ids.size()), &gp_, &r));
        stats_.n_prompt += r.n_prompt;
        stats_.t_prompt += r.t_prompt_s;
        stats_.n_gen += r.n_generated;
        stats_.t_gen += r.t_generate_s;
        if (r.stop_reason == LB_STOP_CONTEXT_FULL)
            std::fprintf(stderr, "\n[context full: %lld tokens]\n", (long long)n_ctx());
    }

 private:
    Session& s_;
    std::vector<const char*> stops_;
    lb_generate_params gp_;
    Stats stats_;
};

void print_timing(const Stats& s) {
    auto rate = [](int64_t n, double t) { return t > 0 ? double(n) / t : 0.0; };
    std::fprintf(stderr,
                 "\nprompt: %lld tokens in %.3f s (%.1f tokens/s); generated: %lld tokens in %.3f s (%.1f tokens/s)\n",
                 (long long)s.n_prompt, s.t_prompt, rate(s.n_prompt, s.t_prompt), (long long)s.n_gen, s.t_gen,
                 rate(s.n_gen, s.t_gen));
}

void show_tokens(const lb_model* m, const std::vector<int32_t>& ids) {
    std::fprintf(stderr, "prompt: %zu tokens\n", ids.size());
    for (int32_t id : ids) {
        const char* text = "";
        check(lb_token_text(m, id, &text));
        std::fprintf(stderr, "%6d -> '%s'\n", id, text);
    }
}

// The API's two-call convention: ask for the size when the first guess is too small.
template <class Fill>
std::vector<int32_t> get_tokens(size_t guess, Fill fill) {
    std::vector<int32_t> ids(guess);
    size_t n = 0;
    lb_status st = fill(ids.data(), ids.size(), &n);
    if (st == LB_ERR_BUFFER_TOO_SMALL) {
        ids.resize(n);
        st = fill(ids.data(), ids.size(), &n);
    }
    check(st);
    ids.resize(n);
    return ids;
}

void check_utf8(const std::string& s, const char* what) {
    const Utf8Scan u = utf8_scan(s.data(), s.size());
    LB_CHECK(u.complete == s.size(), "%s is not valid UTF-8 (%s sequence at byte %zu)", what,
             u.malformed ? "a malformed" : "an unfinished", u.complete);
}

int run(int argc, char** argv) {
    Options o;
    if (!parse(argc, argv, o)) return 0;
    if (o.threads == 0) o.threads = int(std::max(1u, std::min(4u, std::thread::hardware_concurrency())));
    if (!o.have_seed) o.sp.seed = (uint64_t(std::random_device{}()) << 32) ^ uint64_t(std::random_device{}());
    if (!o.prompt_file.empty()) o.prompt = read_text_file(o.prompt_file);
    if (o.have_prompt) check_utf8(o.prompt, o.prompt_file.empty() ? "the prompt (-p)" : "the prompt file (-f)");

    Session s;
    lb_model_params mp = lb_model_default_params();
    mp.n_threads = o.threads;
    mp.backend = o.backend.c_str();
    check(lb_model_load(o.model.c_str(), &mp, &s.model));
    check(lb_sampler_create(s.model, &o.sp, &s.smpl));
    lb_model_info info;
    check(lb_model_get_info(s.model, &info));
    lb_context_params cp = lb_context_default_params();
    cp.n_ctx = int32_t(o.n_ctx);
    check(lb_context_create(s.model, &cp, &s.ctx));
    const int64_t n_ctx = lb_context_n_ctx(s.ctx);
    if (n_ctx > info.n_ctx_train)
        std::fprintf(stderr, "warning: -c %lld is longer than the model's training context of %lld\n", (long long)n_ctx,
                     (long long)info.n_ctx_train);

    const char* tmpl = nullptr;  // the chat template family
    if (o.chat && lb_chat_template(s.model, o.chat_template.c_str(), &tmpl) != LB_OK)
        throw Error(std::string(lb_last_error()) + " (--chat-template)");
    std::fprintf(
        stderr, "lowbit run: %s: %lld layers, width %lld, vocabulary %lld; context %lld, %d threads, seed %llu%s%s\n",
        o.model.c_str(), (long long)info.n_layer, (long long)info.n_embd, (long long)info.n_vocab, (long long)n_ctx,
        o.threads, (unsigned long long)o.sp.seed, tmpl ? ", chat template " : "", tmpl ? tmpl : "");

    Runner r(o, s);
    if (!o.chat) {
        const std::vector<int32_t> ids = get_tokens(o.prompt.size() + 2, [&](int32_t* t, size_t cap, size_t* n) {
            return lb_tokenize(s.model, o.prompt.data(), o.prompt.size(), !o.no_bos && info.token_add_bos, false, t,
                               cap, n);
        });
        if (o.verbose_prompt) show_tokens(s.model, ids);
        LB_CHECK(!ids.empty(), "the prompt is empty (and no BOS is added): nothing to start from");
        LB_CHECK(int64_t(ids.size()) <= n_ctx, "the prompt is %zu tokens, longer than the context of %lld tokens (-c)",
                 ids.size(), (long long)n_ctx);
        std::fwrite(o.prompt.data(), 1, o.prompt.size(), stdout);
        std::fflush(stdout);
        r.generate(ids);
        std::fputc('\n', stdout);
        std::fflush(stdout);
        print_timing(r.stats());
        return 0;
    }

    // chat
    std::vector<lb_chat_message> first;
    if (o.have_prompt) first.push_back({"system", o.prompt.c_str()});
    const bool tty = ::isatty(0);
    bool first_turn = true;
    struct LineBuf {
        char* p = nullptr;
        size_t cap = 0;
        ~LineBuf() { std::free(p); }
    } line;
    for (;;) {
        if (tty) std::fprintf(stderr, "\n> ");
        const ssize_t len = ::getline(&line.p, &line.cap, stdin);
        if (len < 0) break;
        std::string user(line.p, size_t(len));
        while (!user.empty() && (user.back() == '\n' || user.back() == '\r')) user.pop_back();
        if (user.empty()) continue;
        if (!utf8_valid(user)) {
            std::fprintf(stderr, "lowbit run: the input line is not valid UTF-8; ignored\n");
            continue;
        }
        std::vector<lb_chat_message> msgs = first_turn ? first : std::vector<lb_chat_message>();
        msgs.push_back({"user", user.c_str()});
        // the first turn is the whole conversation; later ones close the reply and continue
        const unsigned flags = (first_turn ? 0u : LB_CHAT_CONTINUATION) | (o.no_bos ? LB_CHAT_NO_BOS : 0u);
        const std::vector<int32_t> ids = get_tokens(256, [&](int32_t* t, size_t cap, size_t* n) {
            return lb_chat_tokenize(s.model, tmpl, msgs.data(), msgs.size(), flags, t, cap, n);
        });
        if (o.verbose_prompt) show_tokens(s.model, ids);
        if (r.n_past() + int64_t(ids.size()) > r.n_ctx()) {
            std::fprintf(stderr, "lowbit run: the context is full (%lld of %lld tokens used); the conversation ends\n",
                         (long long)r.n_past(), (long long)r.n_ctx());
            break;
        }
        first_turn = false;
        r.generate(ids);
        std::fputc('\n', stdout);
        std::fflush(stdout);
        if (r.n_past() >= r.n_ctx()) break;
    }
    print_timing(r.stats());
    return 0;
}

}  // namespace

int cmd_run(int argc, char** argv) { return report_errors("run", run, argc, argv); }

}  // namespace lb
