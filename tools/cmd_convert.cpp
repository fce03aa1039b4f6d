// cmd_convert.cpp: `lowbit convert SRC -o OUT.lbf [--adapter FILE] [--tokenizer FILE] [--dry-run]`:
// reads a model directory as its publisher ships it (GreenBit, OneBit, HQQ / HQQ+, plain HF
// LLaMA: formats/hf_import.h), a GGUF llama model or a llama2.c legacy checkpoint, prints what it
// found (kind, hyper-parameters, per tensor the lowbit type, bits per weight and the source,
// totals), and writes one .lbf file. A directory is read by formats/hf_import.h (which detects
// the family from the tensors); a file's kind is detected from its bytes: the GGUF magic, else a
// llama2.c header that validates against the file size. The .lbf writer publishes atomically (temporary file + rename),
// so an error at any point leaves no output file. Exit 0: written (or checked, --dry-run);
// 1: bad input; 2: usage.
#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/types.h"
#include "formats/gguf.h"
#include "formats/gguf_import.h"
#include "formats/hf_import.h"
#include "formats/llama2c.h"
#include "models/llama.h"
#include "models/tokenizer.h"
#include "tools/commands.h"

namespace lb {
namespace {

void usage(FILE* f) {
    std::fprintf(f,
                 "usage: lowbit convert SRC -o OUT.lbf [--adapter FILE] [--tokenizer FILE] [--dry-run]\n"
                 "  converts a model into one .lbf file (weights, hyper-parameters, tokenizer, chat template),\n"
                 "  without loss: the weights are the source's own dequantization\n"
                 "  SRC kinds:\n"
                 "    a directory with config.json, as downloaded from its publisher (the family is detected\n"
                 "      from the tensors): GreenBit low_bit_llama (pytorch_model.bin), OneBit (packed or\n"
                 "      training), HQQ 0.1.x / 0.2.x (qmodel.pt), transformers HqqConfig or plain LLaMA\n"
                 "      (safetensors or pytorch_model.bin, sharded or not)\n"
                 "    GGUF       llama.cpp models of architecture 'llama' (f32, f16, bf16, q8_0, q4_0, q4_1, q6_K)\n"
                 "    llama2.c   legacy (version 0) checkpoints such as stories260K.bin\n"
                 "  -o, --output FILE   the .lbf file to write (never the input)\n"
                 "  --adapter FILE      directories: an HQQ+ LoRA adapter (e.g. adapter_v0.1.lora) to add\n"
                 "  --tokenizer FILE    llama2.c and directories: a SentencePiece .model to store with the weights\n"
                 "  --dry-run           read, transcode and report; write nothing\n");
}

std::string dims_string(const std::vector<uint64_t>& d) {
    std::string s;
    for (size_t i = 0; i < d.size(); i++) s += (i ? " x " : "") + std::to_string(d[i]);
    return s;
}

// the first bytes of a regular file; errors for a missing file
std::string head_bytes(const std::string& path, size_t n) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) throw Error(path + ": no such file");
    if (!S_ISREG(st.st_mode)) throw Error(path + ": not a regular file");
    std::ifstream f(path, std::ios::binary);
    if (!f) throw Error(path + ": cannot open for reading");
    std::string s(n, '\0');
    f.read(&s[0], std::streamsize(n));
    s.resize(size_t(f.gcount()));
    return s;
}

bool same_file(const std::string& a, const std::string& b) {
    struct stat sa, sb;
    return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

void print_report(const std::string& kind, const LlamaCheckpoint& ck, const std::vector<std::string>& src_types,
                  const std::vector<uint64_t>& src_bytes) {
    const LlamaHParams& hp = ck.hp;
    std::printf("source: %s\nkind: %s\n", ck.source.c_str(), kind.c_str());
    std::printf(
        "hyper-parameters: n_vocab %lld, n_embd %lld, n_ff %lld, n_layer %lld, n_head %lld, n_head_kv %lld, "
        "head_dim %lld, n_ctx_train %lld\n"
        "  rms_eps %g, rope theta %g, rope freq_scale %g, rope mode %s, output %s\n",
        (long long)hp.n_vocab, (long long)hp.n_embd, (long long)hp.n_ff, (long long)hp.n_layer, (long long)hp.n_head,
        (long long)hp.n_head_kv, (long long)hp.head_dim(), (long long)hp.n_ctx_train, double(hp.rms_eps),
        double(hp.rope_theta), double(hp.rope_freq_scale), hp.rope_mode == rope_neox ? "neox" : "interleaved",
        hp.tied_output ? "tied to token_embd" : "separate");
    if (hp.proj_norm_eps > 0)
        std::printf("  parameter-free LayerNorm after every layer projection (OneBit), eps %g\n",
                    double(hp.proj_norm_eps));
    for (const auto& [k, v] : ck.provenance) std::printf("  %s: %s\n", k.c_str(), v.c_str());
    if (ck.tokenizer)
        std::printf("tokenizer: %s%s%s, %zu tokens, bos %d, eos %d\n", ck.tokenizer->kind.c_str(),
                    ck.tokenizer->pretokenizer.empty() ? "" : " / ", ck.tokenizer->pretokenizer.c_str(),
                    ck.tokenizer->tokens.size(), ck.tokenizer->bos, ck.tokenizer->eos);
    else
        std::printf("tokenizer: none (give one with --tokenizer)\n");
    std::printf("chat template: %s\n", ck.chat_template.empty() ? "none" : "yes");
    std::printf("tensors:\n  %-28s %-14s %7s  %-48s %s\n", "name", "dims (K first)", "bpw", "lowbit type", "source");
    uint64_t weights = 0, bytes = 0, sbytes = 0, qweights = 0, qbytes = 0, qsbytes = 0;
    for (size_t i = 0; i < ck.tensors.size(); ++i) {
        const CheckpointTensor& t = ck.tensors[i];
        uint64_t k = t.dims[0], n = 1;
        for (size_t d = 1; d < t.dims.size(); ++d) n *= t.dims[d];
        std::printf("  %-28s %-14s %7.3f  %-48s %s\n", t.name.c_str(), dims_string(t.dims).c_str(),
                    bits_per_weight(t.type, t.params, n, k), describe(t.type, t.params).c_str(), src_types[i].c_str());
        weights += n * k;
        bytes += t.data.size();
        sbytes += src_bytes[i];
        if (traits(t.type).kind == Kind::quant) {
            qweights += n * k;
            qbytes += t.data.size();
            qsbytes += src_bytes[i];
        }
    }
    std::printf("totals: %zu tensors, %llu weights, source %llu bytes (%.3f bpw), lowbit %llu bytes (%.3f bpw)\n",
                ck.tensors.size(), (unsigned long long)weights, (unsigned long long)sbytes,
                weights ? 8.0 * double(sbytes) / double(weights) : 0.0, (unsigned long long)bytes,
                weights ? 8.0 * double(bytes) / double(weights) : 0.0);
    if (qweights)
        std::printf("quantized weights: %llu, source %.4f bpw, lowbit %.4f bpw (%+.2f%%)\n",
                    (unsigned long long)qweights, 8.0 * double(qsbytes) / double(qweights),
                    8.0 * double(qbytes) / double(qweights),
                    qsbytes ? 100.0 * (double(qbytes) / double(qsbytes) - 1.0) : 0.0);
}

}  // namespace

int cmd_convert(int argc, char** argv) {
    std::string src, out, tok, adapter;
    bool dry = false, options_done = false;
    for (int i = 1; i < argc; i++) {
        const char* a = argv[i];
        auto value = [&](const char* opt) -> const char* {
            if (i + 1 >= argc) throw Error(std::string(opt) + ": missing value");
            return argv[++i];
        };
        if (!options_done && (!std::strcmp(a, "--help") || !std::strcmp(a, "-h"))) {
            usage(stdout);
            return 0;
        } else if (!options_done && (!std::strcmp(a, "-o") || !std::strcmp(a, "--output"))) {
            out = value(a);
        } else if (!options_done && !std::strcmp(a, "--adapter")) {
            adapter = value(a);
        } else if (!options_done && !std::strcmp(a, "--tokenizer")) {
            tok = value(a);
        } else if (!options_done && !std::strcmp(a, "--dry-run")) {
            dry = true;
        } else if (!options_done && !std::strcmp(a, "--")) {
            options_done = true;
        } else if (!options_done && a[0] == '-' && a[1] != '\0') {
            std::fprintf(stderr, "lowbit convert: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (!src.empty()) {
            std::fprintf(stderr, "lowbit convert: one source at a time ('%s' and '%s' given)\n", src.c_str(), a);
            return 2;
        } else {
            src = a;
        }
    }
    if (src.empty() || (out.empty() && !dry)) {
        std::fprintf(stderr, "lowbit convert: %s\n",
                     src.empty() ? "no source file given" : "no output given (-o OUT.lbf)");
        usage(stderr);
        return 2;
    }

    try {
        struct stat sst;
        const bool is_dir = ::stat(src.c_str(), &sst) == 0 && S_ISDIR(sst.st_mode);
        LB_CHECK(is_dir || adapter.empty(), "--adapter: only for model directories (HQQ+), not for %s", src.c_str());
        const std::string head = is_dir ? std::string() : head_bytes(src, 4);
        if (!out.empty()) {
            LB_CHECK(!same_file(src, out), "-o %s: is the input file; refusing to overwrite it", out.c_str());
            struct stat st;
            LB_CHECK(!(::stat(out.c_str(), &st) == 0 && S_ISDIR(st.st_mode)), "-o %s: is a directory", out.c_str());
        }
        LlamaCheckpoint ck;
        std::string kind;
        std::vector<std::string> src_types;
        std::vector<uint64_t> src_bytes;
        if (is_dir) {
            LB_CHECK(is_hf_model_dir(src),
                     "%s: a directory without config.json (expected a model directory as "
                     "its publisher ships it)",
                     src.c_str());
            HfImportOptions o;
            o.adapter = adapter;
            o.tokenizer = tok;
            HfImportResult r = import_hf_model(src, o);
            kind = r.kind;
            ck = std::move(r.ck);
            src_types = std::move(r.src_desc);
            src_bytes = std::move(r.src_bytes);
            for (const std::string& note : r.notes) std::printf("note: %s\n", note.c_str());
        } else if (head.size() == 4 && std::memcmp(head.data(), gguf::kMagic, 4) == 0) {
            kind = "GGUF";
            LB_CHECK(tok.empty(), "--tokenizer: only for llama2.c sources; a GGUF file carries its own tokenizer");
            const std::unique_ptr<GgufFile> f = GgufFile::open(src);
            kind += " v" + std::to_string(f->version());
            ck = import_gguf_llama(*f);
            for (const auto& t : ck.tensors) {
                const GgufTensorInfo* info = f->find_tensor(t.name);
                src_types.push_back(info ? gguf::ggml_type_name(info->type) : "?");
                src_bytes.push_back(info ? info->nbytes : 0);
            }
        } else {
            try {
                ck = read_llama2c(src);
            } catch (const Error& e) {
                throw Error(src + ": unknown kind: not GGUF (no 'GGUF' magic) and not a llama2.c checkpoint (" +
                            e.what() + ")");
            }
            kind = "llama2.c (legacy version 0)";
            if (!tok.empty()) {
                ck.tokenizer = Tokenizer::load_sentencepiece(tok).data();
                LB_CHECK(int64_t(ck.tokenizer->tokens.size()) == ck.hp.n_vocab,
                         "--tokenizer %s: %zu tokens, but the model's vocabulary is %lld", tok.c_str(),
                         ck.tokenizer->tokens.size(), (long long)ck.hp.n_vocab);
            }
            check_llama_tensors(ck, src);
            for (const auto& t : ck.tensors) {
                src_types.push_back("f32");
                src_bytes.push_back(t.data.size());
            }
        }
        print_report(kind, ck, src_types, src_bytes);
        if (dry) {
            std::printf("dry run: nothing written\n");
            return 0;
        }
        save_llama_lbf(ck, out);
        struct stat st;
        const long long size = ::stat(out.c_str(), &st) == 0 ? (long long)st.st_size : -1;
        std::printf("wrote %s (%lld bytes)\n", out.c_str(), size);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "lowbit convert: error: %s\n", e.what());
        return 1;
    }
}

}  // namespace lb
