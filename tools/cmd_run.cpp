// cmd_run.cpp: `lowbit run`: text generation from a .lbf model. The prompt is evaluated as one
// batch (a LlamaGraph of the prompt's length), then tokens are decoded one at a time with the
// allocation-free LlamaDecoder and streamed to stdout as they come (only whole UTF-8 characters, and
// text that could still become a stop string is held back). Generation stops at an end token (EOS,
// BOS, <|eot_id|>, <|im_end|>), a stop string, -n tokens, or a full context. A timing line goes to
// stderr. `--chat` reads user lines from stdin and keeps the KV cache across turns: each turn only
// evaluates its own new tokens.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/threadpool.h"
#include "formats/lbf.h"
#include "models/chat.h"
#include "models/llama.h"
#include "models/sampler.h"
#include "models/tokenizer.h"
#include "tools/args.h"
#include "tools/commands.h"

namespace lb {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void usage(FILE* f) {
    std::fprintf(f,
                 "usage: lowbit run -m MODEL.lbf [-p PROMPT | -f FILE] [options]\n"
                 "  -m, --model FILE        the model (.lbf)\n"
                 "  -p, --prompt TEXT       prompt (with --chat: the system message)\n"
                 "  -f, --file FILE         read the prompt from FILE\n"
                 "  --chat                  interactive chat: one user message per stdin line, EOF ends\n"
                 "  --chat-template NAME    llama2 or chatml (default: from the model's metadata)\n"
                 "  -n, --n-predict N       tokens to generate, -1 = until an end (default -1)\n"
                 "  -c, --ctx-size N        context length (default: the model's training context, at most 4096)\n"
                 "  -t, --threads N         threads (default: min(4, cores))\n"
                 "  --temp T                temperature, 0 = greedy (default 0.8)\n"
                 "  --top-k K               0 = off (default 40)\n"
                 "  --top-p P               in (0, 1], 1 = off (default 0.95)\n"
                 "  --min-p P               in [0, 1], 0 = off (default 0.05)\n"
                 "  --repeat-penalty R      > 0, 1 = off (default 1)\n"
                 "  --repeat-last-n N       tokens of history for the penalty (default 64)\n"
                 "  --seed S                RNG seed (default: random, printed on stderr)\n"
                 "  --stop STR              stop when STR is generated (repeatable)\n"
                 "  --no-bos                do not add BOS to the prompt\n"
                 "  --verbose-prompt        print the prompt tokens on stderr\n");
}

struct Options {
    std::string model, prompt, prompt_file, chat_template;
    bool have_prompt = false, chat = false, no_bos = false, verbose_prompt = false;
    int64_t n_predict = -1, n_ctx = 0;  // 0: the model's
    int threads = 0;
    SamplerParams sp;
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
            chat_template_from_name(o.chat_template);  // checks the name now
        } else if (a == "-n" || a == "--n-predict") {
            o.n_predict = parse_int(val(), "-n", -1, int64_t(1) << 40);
        } else if (a == "-c" || a == "--ctx-size") {
            o.n_ctx = parse_int(val(), "-c", 1, int64_t(1) << 20);
        } else if (a == "-t" || a == "--threads") {
            o.threads = int(parse_int(val(), "-t", 1, 1024));
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
    o.sp.validate();
    return true;
}

struct Stats {
    int64_t n_prompt = 0, n_gen = 0;
    double t_prompt = 0, t_gen = 0;
};

class Runner {
 public:
    Runner(const Options& o, const LlamaModel& m, const Tokenizer& tok, int64_t n_ctx)
        : o_(o),
          m_(m),
          tok_(tok),
          cache_(m.hp, n_ctx),
          dec_(m, cache_, o.threads),
          pool_(o.threads),
          sampler_(o.sp, m.hp.n_vocab),
          stream_(o.stops, [](const char* p, size_t n) {
              std::fwrite(p, 1, n, stdout);
              std::fflush(stdout);
          }) {
        auto add_end = [&](int32_t id) {
            if (id >= 0 && id < m.hp.n_vocab) end_ids_.push_back(id);
        };
        add_end(tok.eos());
        add_end(tok.bos());  // llama2.c models end a story by starting the next one
        add_end(tok.find("<|eot_id|>"));
        add_end(tok.find("<|im_end|>"));
        const TokenizerData& d = tok.data();
        strip_after_bos_ = d.kind == "spm" && d.add_dummy_prefix;
    }

    int64_t n_past() const { return n_past_; }
    int64_t n_ctx() const { return cache_.n_ctx; }
    Stats& stats() { return stats_; }

    // Evaluates `ids` after what is in the cache; the logits of the last one are then ready.
    void feed(const std::vector<int32_t>& ids) {
        if (ids.empty()) return;
        const int64_t n = int64_t(ids.size());
        LB_CHECK(n_past_ + n <= cache_.n_ctx,
                 "the prompt is %lld tokens and %lld are in the context already: more than the context of %lld "
                 "tokens (-c)",
                 (long long)n, (long long)n_past_, (long long)cache_.n_ctx);
        for (int32_t id : ids)
            LB_CHECK(id >= 0 && id < m_.hp.n_vocab, "prompt token %d is outside the model's vocabulary of %lld", id,
                     (long long)m_.hp.n_vocab);
        const auto t0 = Clock::now();
        if (n == 1) {
            logits_ = dec_.eval(ids[0], n_past_, pool_);
        } else {
            LlamaGraphOptions go;
            go.n_tokens = n;
            go.n_kv = n_past_ + n;
            go.all_logits = false;
            go.max_threads = o_.threads;
            LlamaGraph g(m_, cache_, go);
            logits_ = g.eval(ids.data(), n_past_, pool_);
            last_logits_.assign(logits_, logits_ + m_.hp.n_vocab);  // the graph goes away
            logits_ = last_logits_.data();
        }
        stats_.t_prompt += seconds_since(t0);
        stats_.n_prompt += n;
        n_past_ += n;
        last_fed_ = ids.back();
        for (int32_t id : ids) sampler_.accept(id);
    }

    // Generates up to n_predict tokens (-1: no limit) after feed() and streams them to stdout. The
    // end token, when one is sampled, is neither printed nor put in the cache.
    void generate(int64_t n_predict) {
        const auto t0 = Clock::now();
        int64_t n = 0;
        while (n_predict < 0 || n < n_predict) {
            const int32_t t = sampler_.sample(logits_);
            if (std::find(end_ids_.begin(), end_ids_.end(), t) != end_ids_.end()) break;
            sampler_.accept(t);
            ++n;
            // an spm text starts with the dummy-prefix space: not printed right after BOS (run.c)
            const std::string& piece = tok_.token_to_piece(t);
            const size_t skip = strip_after_bos_ && last_fed_ == tok_.bos() && !piece.empty() && piece[0] == ' ' &&
                                tok_.type(t) != TokenType::byte;
            if (stream_.push(piece.data() + skip, piece.size() - skip)) break;
            if (n_predict >= 0 && n >= n_predict) break;
            if (n_past_ >= cache_.n_ctx) {
                stream_.flush();
                std::fprintf(stderr, "\n[context full: %lld tokens]\n", (long long)cache_.n_ctx);
                break;
            }
            logits_ = dec_.eval(t, n_past_, pool_);
            ++n_past_;
            last_fed_ = t;
        }
        stream_.flush();
        stats_.t_gen += seconds_since(t0);
        stats_.n_gen += n;
    }

 private:
    const Options& o_;
    const LlamaModel& m_;
    const Tokenizer& tok_;
    KvCache cache_;
    LlamaDecoder dec_;
    ThreadPool pool_;
    Sampler sampler_;
    TextStream stream_;
    std::vector<int32_t> end_ids_;
    std::vector<float> last_logits_;
    const float* logits_ = nullptr;
    int64_t n_past_ = 0;
    int32_t last_fed_ = -1;  // the last token in the cache
    bool strip_after_bos_ = false;
    Stats stats_;
};

void print_timing(const Stats& s) {
    auto rate = [](int64_t n, double t) { return t > 0 ? double(n) / t : 0.0; };
    std::fprintf(stderr,
                 "\nprompt: %lld tokens in %.3f s (%.1f tokens/s); generated: %lld tokens in %.3f s (%.1f tokens/s)\n",
                 (long long)s.n_prompt, s.t_prompt, rate(s.n_prompt, s.t_prompt), (long long)s.n_gen, s.t_gen,
                 rate(s.n_gen, s.t_gen));
}

void show_tokens(const Tokenizer& tok, const std::vector<int32_t>& ids) {
    std::fprintf(stderr, "prompt: %zu tokens\n", ids.size());
    for (int32_t id : ids) std::fprintf(stderr, "%6d -> '%s'\n", id, tok.data().tokens[size_t(id)].c_str());
}

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    LB_CHECK(f.good(), "-f %s: cannot open the file", path.c_str());
    return std::string(std::istreambuf_iterator<char>(f), {});
}

void check_utf8(const std::string& s, const char* what) {
    const Utf8Scan u = utf8_scan(s.data(), s.size());
    LB_CHECK(u.complete == s.size(), "%s is not valid UTF-8 (%s sequence at byte %zu)", what,
             u.malformed ? "a malformed" : "an unfinished", u.complete);
}

// A llama2 chat prompt: the text between the BOS / EOS markers is encoded piece by piece, so that
// an spm tokenizer gives each piece its dummy-prefix space as Meta's reference encoder does
// ("<s>[INST] Hi [/INST]" -> <s> "▁[INST] Hi [/INST]").
std::vector<int32_t> encode_llama2_chat(const Tokenizer& tok, const std::string& text, const std::string& bos_text,
                                        const std::string& eos_text) {
    std::vector<int32_t> ids;
    size_t i = 0;
    while (i < text.size()) {
        size_t next = text.size(), len = 0;
        int32_t id = -1;
        for (auto [marker, mid] : {std::make_pair(&bos_text, tok.bos()), std::make_pair(&eos_text, tok.eos())}) {
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

int run(int argc, char** argv) {
    Options o;
    if (!parse(argc, argv, o)) return 0;
    if (o.threads == 0) o.threads = int(std::max(1u, std::min(4u, std::thread::hardware_concurrency())));
    if (!o.have_seed) o.sp.seed = (uint64_t(std::random_device{}()) << 32) ^ uint64_t(std::random_device{}());
    if (!o.prompt_file.empty()) o.prompt = read_file(o.prompt_file);
    if (o.have_prompt) check_utf8(o.prompt, o.prompt_file.empty() ? "the prompt (-p)" : "the prompt file (-f)");

    std::unique_ptr<LbfFile> file = LbfFile::open(o.model);
    const Metadata& md = file->metadata();
    std::unique_ptr<LlamaModel> model = LlamaModel::load_lbf(o.model);
    LB_CHECK(md.contains("tokenizer.kind"), "%s: the model has no tokenizer (metadata key 'tokenizer.kind' not found)",
             o.model.c_str());
    const Tokenizer tok = Tokenizer::from_data(tokenizer_data_from_metadata(md));
    const LlamaHParams& hp = model->hp;
    const int64_t n_ctx = o.n_ctx ? o.n_ctx : std::min<int64_t>(hp.n_ctx_train, 4096);
    if (n_ctx > hp.n_ctx_train)
        std::fprintf(stderr, "warning: -c %lld is longer than the model's training context of %lld\n", (long long)n_ctx,
                     (long long)hp.n_ctx_train);

    std::optional<ChatTemplate> tmpl;
    if (o.chat) {
        const MetaValue* v = md.find("tokenizer.chat_template");
        const std::string* jt = v ? v->get_if<std::string>() : nullptr;
        tmpl = chat_template_choose(o.chat_template, jt);
    }
    std::fprintf(stderr,
                 "lowbit run: %s: %lld layers, width %lld, vocabulary %lld; context %lld, %d threads, seed %llu%s%s\n",
                 o.model.c_str(), (long long)hp.n_layer, (long long)hp.n_embd, (long long)hp.n_vocab, (long long)n_ctx,
                 o.threads, (unsigned long long)o.sp.seed, tmpl ? ", chat template " : "",
                 tmpl ? chat_template_name(*tmpl) : "");

    Runner r(o, *model, tok, n_ctx);
    if (!o.chat) {
        const bool bos = !o.no_bos && tok.bos() >= 0;
        std::vector<int32_t> ids = tok.encode(o.prompt, bos);
        if (o.verbose_prompt) show_tokens(tok, ids);
        LB_CHECK(!ids.empty(), "the prompt is empty (and no BOS is added): nothing to start from");
        LB_CHECK(int64_t(ids.size()) <= n_ctx, "the prompt is %zu tokens, longer than the context of %lld tokens (-c)",
                 ids.size(), (long long)n_ctx);
        std::fwrite(o.prompt.data(), 1, o.prompt.size(), stdout);
        std::fflush(stdout);
        r.feed(ids);
        r.generate(o.n_predict);
        std::fputc('\n', stdout);
        std::fflush(stdout);
        print_timing(r.stats());
        return 0;
    }

    // chat
    const auto& tokens = tok.data().tokens;
    const std::string bos_text = tok.bos() >= 0 ? tokens[size_t(tok.bos())] : std::string();
    const std::string eos_text = tok.eos() >= 0 ? tokens[size_t(tok.eos())] : std::string();
    std::vector<ChatMessage> first;
    if (o.have_prompt) first.push_back({"system", o.prompt});
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
        std::vector<ChatMessage> msgs = first_turn ? first : std::vector<ChatMessage>();
        msgs.push_back({"user", user});
        const std::string text = first_turn ? chat_render(*tmpl, msgs, true, bos_text, eos_text)
                                            : chat_render_continuation(*tmpl, msgs, bos_text, eos_text);
        // chatml prompts carry no BOS text: add the tokenizer's BOS at the start when it asks for one
        const bool add_bos = first_turn && *tmpl == ChatTemplate::chatml && tok.data().add_bos && !o.no_bos;
        const std::vector<int32_t> ids = *tmpl == ChatTemplate::llama2
                                             ? encode_llama2_chat(tok, text, bos_text, eos_text)
                                             : tok.encode(text, add_bos, true);
        if (o.verbose_prompt) show_tokens(tok, ids);
        if (r.n_past() + int64_t(ids.size()) > r.n_ctx()) {
            std::fprintf(stderr, "lowbit run: the context is full (%lld of %lld tokens used); the conversation ends\n",
                         (long long)r.n_past(), (long long)r.n_ctx());
            break;
        }
        r.feed(ids);
        first_turn = false;
        r.generate(o.n_predict);
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
