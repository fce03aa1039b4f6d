// cmd_perplexity.cpp: `lowbit perplexity`: chunked perplexity of a .lbf model on a text file, and
// optionally the KL divergence against the logits of a base model saved by an earlier run
// (models/perplexity.h has the method, the statistics and the logits file format). The text is
// read whole (it must be valid UTF-8), tokenized in one piece (with BOS when the tokenizer adds
// one; then every chunk starts with BOS), and scored chunk by chunk with a running perplexity on
// stdout.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "formats/lbf.h"
#include "formats/mapped_file.h"
#include "models/chat.h"
#include "models/llama.h"
#include "models/perplexity.h"
#include "models/tokenizer.h"
#include "tools/args.h"
#include "tools/backend_opt.h"
#include "tools/commands.h"

namespace lb {
namespace {

void usage(FILE* f) {
    std::fprintf(f,
                 "usage: lowbit perplexity -m MODEL.lbf -f TEXT [options]\n"
                 "  -m, --model FILE          the model (.lbf, with a tokenizer)\n"
                 "  -f, --file FILE           the text (UTF-8), tokenized whole\n"
                 "  -c, --ctx-size N          chunk length; the second half of each chunk is scored (default 512)\n"
                 "  --chunks N                score at most N chunks (default: all)\n"
                 "  --no-bos                  no BOS, even where the tokenizer adds one (chunks start with text)\n"
                 "  --cache-type T            KV cache element type: f16 (default) or f32\n"
                 "  -t, --threads N           threads (default: min(4, cores))\n"
                 "  --backend B               cpu (default) or cuda (builds with CUDA, on a CUDA device)\n"
                 "  --save-logits FILE        save the scored logits (a base for --kl-divergence)\n"
                 "  --kl-divergence FILE      KL divergence against base logits saved with --save-logits\n"
                 "                            (same text, -c and --chunks)\n");
}

struct Options {
    std::string model, text_file, save_logits, kl_base;
    int64_t n_ctx = 512, chunks = 0;
    int threads = 0;
    bool no_bos = false, cuda = false;
    Type cache_type = Type::f16;
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
        } else if (a == "-f" || a == "--file") {
            o.text_file = val();
        } else if (a == "-c" || a == "--ctx-size") {
            o.n_ctx = parse_int(val(), "-c", 4, 65536);
        } else if (a == "--cache-type") {
            const std::string t = val();
            LB_CHECK(t == "f16" || t == "f32", "--cache-type: '%s', supported f16, f32", t.c_str());
            o.cache_type = t == "f32" ? Type::f32 : Type::f16;
        } else if (a == "--no-bos") {
            o.no_bos = true;
        } else if (a == "--chunks") {
            o.chunks = parse_int(val(), "--chunks", 1, int64_t(1) << 40);
        } else if (a == "-t" || a == "--threads") {
            o.threads = int(parse_int(val(), "-t", 1, 1024));
        } else if (a == "--backend") {
            o.cuda = parse_backend(val());
        } else if (a == "--save-logits") {
            o.save_logits = val();
            LB_CHECK(!o.save_logits.empty(), "--save-logits: the file name is empty");
        } else if (a == "--kl-divergence") {
            o.kl_base = val();
            LB_CHECK(!o.kl_base.empty(), "--kl-divergence: the file name is empty");
        } else if (a == "-h" || a == "--help") {
            usage(stdout);
            return false;
        } else {
            throw Error(strfmt("unknown option '%s' (see --help)", a.c_str()));
        }
    }
    LB_CHECK(!o.model.empty(), "no model: give -m MODEL.lbf");
    LB_CHECK(!o.text_file.empty(), "no text: give -f TEXT");
    return true;
}

std::string read_text(const std::string& path) {
    const std::string s = read_text_file(path);
    const Utf8Scan u = utf8_scan(s.data(), s.size());
    LB_CHECK(u.complete == s.size(), "-f %s: not valid UTF-8 (%s sequence at byte %zu)", path.c_str(),
             u.malformed ? "a malformed" : "an unfinished", u.complete);
    return s;
}

int run(int argc, char** argv) {
    Options o;
    if (!parse(argc, argv, o)) return 0;
    if (o.threads == 0) o.threads = int(std::max(1u, std::min(4u, std::thread::hardware_concurrency())));
    const std::string text = read_text(o.text_file);

    std::unique_ptr<LbfFile> file = LbfFile::open(o.model);
    const Metadata& md = file->metadata();
    LB_CHECK(md.contains("tokenizer.kind"), "%s: the model has no tokenizer (metadata key 'tokenizer.kind' not found)",
             o.model.c_str());
    const Tokenizer tok = Tokenizer::from_data(tokenizer_data_from_metadata(md));
    std::unique_ptr<LlamaModel> model = LlamaModel::load_lbf(o.model);
    const LlamaHParams& hp = model->hp;
    if (o.n_ctx > hp.n_ctx_train)
        std::fprintf(stderr, "warning: -c %lld is longer than the model's training context of %lld\n",
                     (long long)o.n_ctx, (long long)hp.n_ctx_train);

    const bool add_bos = !o.no_bos && tok.data().add_bos && tok.bos() >= 0;
    const std::vector<int32_t> ids = tok.encode(text, add_bos);
    LB_CHECK(int64_t(ids.size()) >= 2 * o.n_ctx,
             "-f %s: the text is %zu tokens; -c %lld needs at least 2 * %lld = %lld tokens (use a longer text or a "
             "smaller -c)",
             o.text_file.c_str(), ids.size(), (long long)o.n_ctx, (long long)o.n_ctx, (long long)(2 * o.n_ctx));

    // the batch of one chunk keeps n_ctx rows of logits and n_head attention score matrices of n_ctx^2
    const double gib = double(o.n_ctx) * double(hp.n_vocab + hp.n_head * o.n_ctx) * 4.0 / double(1 << 30);
    LB_CHECK(gib <= 16.0,
             "-c %lld: one chunk would need %.1f GiB for its logits and attention scores (at most 16 GiB); use a "
             "smaller -c",
             (long long)o.n_ctx, gib);

    PerplexityOptions po;
    po.n_ctx = o.n_ctx;
    po.max_chunks = o.chunks;
    po.threads = o.threads;
    po.bos = add_bos ? tok.bos() : -1;
    po.cache_type = o.cache_type;
    po.save_logits = o.save_logits;
    po.kl_base = o.kl_base;
    const CliBackend be = make_cli_backend(o.cuda, *model);
    po.backend = be.get();
    const int64_t n_chunks =
        o.chunks ? std::min<int64_t>(o.chunks, int64_t(ids.size()) / o.n_ctx) : int64_t(ids.size()) / o.n_ctx;
    std::fprintf(
        stderr,
        "lowbit perplexity: %s: %lld layers, width %lld, vocabulary %lld; %s: %zu tokens; %lld chunks of %lld, "
        "%lld scored per chunk; %d threads; backend %s\n",
        o.model.c_str(), (long long)hp.n_layer, (long long)hp.n_embd, (long long)hp.n_vocab, o.text_file.c_str(),
        ids.size(), (long long)n_chunks, (long long)o.n_ctx, (long long)perplexity_scored_per_chunk(o.n_ctx), o.threads,
        be.description.c_str());

    const PerplexityResult r = perplexity(*model, ids, po, [&](const ChunkProgress& p) {
        std::printf("[%lld/%lld] ppl = %.4f", (long long)(p.chunk + 1), (long long)p.n_chunks, p.nll->ppl());
        if (p.kld) std::printf("  KLD = %.6f  same top = %.2f %%", p.kld->kld.mean(), 100.0 * p.kld->same_top_frac());
        std::printf("  (%.1f s)\n", p.seconds);
        std::fflush(stdout);
    });
    std::printf("ppl = %.4f +/- %.4f over %lld tokens (mean NLL %.5f +/- %.5f nats/token)\n", r.nll.ppl(),
                r.nll.ppl_se(), (long long)r.nll.n, r.nll.mean(), r.nll.se());
    if (r.have_kld)
        std::printf("mean KLD = %.6f +/- %.6f, same top = %.2f %% (%lld of %lld), max KLD = %.6f\n", r.kld.kld.mean(),
                    r.kld.kld.se(), 100.0 * r.kld.same_top_frac(), (long long)r.kld.same_top, (long long)r.kld.kld.n,
                    r.kld.max_kld);
    if (!o.save_logits.empty()) std::printf("logits saved to %s\n", o.save_logits.c_str());
    const double evaluated = double(r.n_chunks * o.n_ctx);
    std::fprintf(stderr, "%lld chunks, %.0f tokens evaluated in %.2f s (%.1f tokens/s)\n", (long long)r.n_chunks,
                 evaluated, r.seconds, r.seconds > 0 ? evaluated / r.seconds : 0.0);
    return 0;
}

}  // namespace

int cmd_perplexity(int argc, char** argv) { return report_errors("perplexity", run, argc, argv); }

}  // namespace lb
