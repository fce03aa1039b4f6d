// hf_import.cpp: the driver of the HuggingFace-directory importers (see hf_import.h): finds the
// weights, detects the family per projection, assembles the canonical checkpoint with its
// hyper-parameters, tokenizer and provenance.
#include "formats/hf_import.h"

#include <sys/stat.h>

#include <map>
#include <memory>
#include <set>

#include "core/error.h"
#include "formats/gguf_import.h"
#include "formats/hf_config.h"
#include "formats/pickle.h"
#include "formats/tensor_store.h"
#include "formats/torch_zip.h"
#include "models/tokenizer.h"

namespace lb {

namespace {

bool exists(const std::string& p, bool dir = false) {
    struct stat st;
    return ::stat(p.c_str(), &st) == 0 && (dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));
}

// Where the tensors are: a TensorStore (safetensors / torch state dicts), or an HQQ qmodel.pt
// (dict of module -> dict) read as a pickle tree.
struct Weights {
    std::unique_ptr<TensorStore> store;
    std::unique_ptr<TorchFile> qmodel;
    std::map<std::string, const SourceTensor*> qmodel_tensors;  // float modules: "<module>.<key>"
    std::map<std::string, const PyObj*> qmodel_layers;          // HQQ modules: the entry dict
    std::string describe;
    std::set<std::string> used;

    const SourceTensor* find(const std::string& name) {
        const SourceTensor* t = nullptr;
        if (store) {
            t = store->find(name);
        } else {
            auto it = qmodel_tensors.find(name);
            t = it == qmodel_tensors.end() ? nullptr : it->second;
        }
        if (t) used.insert(name);
        return t;
    }
    std::vector<std::string> names() const {
        std::vector<std::string> v;
        if (store) return store->names();
        for (const auto& [k, t] : qmodel_tensors) v.push_back(k);
        return v;
    }
};

Weights open_weights(const std::string& dir) {
    Weights w;
    const std::string qm = dir + "/qmodel.pt";
    if (exists(qm)) {
        w.qmodel = TorchFile::open(qm);
        const PyObj& root = w.qmodel->root();
        LB_CHECK(root.is(PyKind::dict), "%s: the pickled object is a %s, expected a dict of modules", qm.c_str(),
                 py_kind_name(root.kind()));
        for (const auto& [k, v] : root.as_dict().items()) {
            LB_CHECK(k->is(PyKind::str) && v->is(PyKind::dict), "%s: entry %s is not 'module name': dict", qm.c_str(),
                     k->repr(80).c_str());
            const std::string& mod = k->as_str();
            if (v->get("W_q")) {
                w.qmodel_layers[mod] = v.get();
                continue;
            }
            for (const auto& [tk, tv] : v->as_dict().items()) {
                if (!tk->is(PyKind::str) || tv->is_none()) continue;
                LB_CHECK(tv->is(PyKind::tensor), "%s: '%s.%s' is a %s, expected a tensor", qm.c_str(), mod.c_str(),
                         tk->as_str().c_str(), py_kind_name(tv->kind()));
                w.qmodel_tensors[mod + "." + tk->as_str()] = &tv->as_source();
            }
        }
        w.describe = "qmodel.pt (torch.save, HQQ)";
        return w;
    }
    w.store = std::make_unique<TensorStore>(TensorStore::open(dir));
    w.describe = w.store->describe();
    return w;
}

enum class Family { greenbit, onebit, hqq, plain };
const char* family_name(Family f) {
    switch (f) {
        case Family::greenbit:
            return "GreenBit low_bit_llama";
        case Family::onebit:
            return "OneBit";
        case Family::hqq:
            return "HQQ";
        default:
            return "HF float";
    }
}

// K (inputs) of projection j (q, k, v, o, gate, up, down)
int64_t proj_inputs(const LlamaHParams& hp, int j) {
    return j == 3 ? hp.n_head * hp.head_dim() : j == 6 ? hp.n_ff : hp.n_embd;
}
int64_t proj_outputs(const LlamaHParams& hp, int j) {
    return j == 0               ? hp.n_head * hp.head_dim()
           : (j == 1 || j == 2) ? hp.kv_dim()
           : (j == 3 || j == 6) ? hp.n_embd
                                : hp.n_ff;
}

}  // namespace

bool is_hf_model_dir(const std::string& path) { return exists(path, true) && exists(path + "/config.json"); }

HfImportResult import_hf_model(const std::string& dir, const HfImportOptions& opt) {
    LB_CHECK(exists(dir, true), "%s: not a directory", dir.c_str());
    const HfConfig cfg = read_hf_config(dir);
    HfImportResult r;
    LlamaCheckpoint& ck = r.ck;
    ck.hp = cfg.hp;
    Weights w = open_weights(dir);
    TensorLookup find = [&w](const std::string& n) { return w.find(n); };

    // the family, from the first projection's tensors
    const std::string q0 = "model.layers.0.self_attn.q_proj";
    Family fam = Family::plain;
    if (w.qmodel_layers.count(q0) || w.find(q0 + ".W_q"))
        fam = Family::hqq;
    else if (greenbit_present(find, q0))
        fam = Family::greenbit;
    else if (onebit_present(find, q0))
        fam = Family::onebit;
    LB_CHECK(fam == Family::onebit || cfg.model_type != "bitllama",
             "%s: config.json says model_type 'bitllama' (OneBit) but '%s' has no input_factor tensor", dir.c_str(),
             q0.c_str());
    if (fam == Family::onebit) ck.hp.proj_norm_eps = 1e-5f;  // torch.nn.LayerNorm's default (onebit.md 1.2)

    auto add = [&](ImportedTensor&& t) {
        r.src_desc.push_back(std::move(t.src_desc));
        r.src_bytes.push_back(t.src_bytes);
        ck.tensors.push_back(std::move(t.t));
    };
    auto need_float = [&](const std::string& hf, const std::string& lb, bool to_f32) {
        const SourceTensor* t = w.find(hf);
        LB_CHECK(t, "%s: tensor '%s' not found (%s)", dir.c_str(), hf.c_str(), w.describe.c_str());
        add(import_float_tensor(*t, hf, lb, to_f32));
    };
    std::string layout;  // of the first quantized projection, for the report
    Type compute = Type::f16;
    // one linear (a projection, or the classifier): quantized per its own tensors, else float
    auto linear = [&](const std::string& mod, const std::string& lb, int64_t k, int64_t n) {
        ImportedTensor t;
        const SourceTensor* bias = nullptr;
        auto lit = w.qmodel_layers.find(mod);
        if (lit != w.qmodel_layers.end() || w.find(mod + ".W_q")) {
            const HqqLayer l = lit != w.qmodel_layers.end() ? hqq_layer_from_pickle(*lit->second, mod)
                                                            : hqq_layer_from_safetensors(find, mod);
            LB_CHECK(l.n == n && l.k == k, "HQQ layer '%s': shape [%lld, %lld], the config needs [%lld, %lld]",
                     mod.c_str(), (long long)l.n, (long long)l.k, (long long)n, (long long)k);
            t = hqq_linear(l, lb + ".weight");
            bias = l.bias;
            compute = l.compute == DType::bf16 ? Type::bf16 : l.compute == DType::f32 ? Type::f32 : Type::f16;
            if (t.t.type == Type::f16 || t.t.type == Type::bf16 || t.t.type == Type::f32)
                r.notes.push_back(mod + ": " + t.src_desc);
        } else if (greenbit_present(find, mod)) {
            t = greenbit_linear(find, mod, k, lb + ".weight");
            LB_CHECK(t.t.dims[1] == uint64_t(n), "GreenBit layer '%s': %llu outputs, the config needs %lld",
                     mod.c_str(), (unsigned long long)t.t.dims[1], (long long)n);
            find(mod + ".wf");    // the constant shift table: known, not needed
            find(mod + ".bias");  // GreenBit's bias buffer is never used by its forward (greenbit.md 2a)
        } else if (onebit_present(find, mod)) {
            t = onebit_linear(find, mod, k, n, lb + ".weight");
            bias = w.find(mod + ".bias");
        } else {
            const SourceTensor* f = w.find(mod + ".weight");
            LB_CHECK(f, "%s: no weight for '%s' (looked for %s.weight, .qweight, .W_q; %s)", dir.c_str(), mod.c_str(),
                     mod.c_str(), w.describe.c_str());
            t = import_float_tensor(*f, mod + ".weight", lb + ".weight");
            LB_CHECK(t.t.dims == std::vector<uint64_t>({uint64_t(k), uint64_t(n)}),
                     "tensor '%s.weight': shape %s, the config needs [%lld, %lld]", mod.c_str(),
                     shape_str(f->shape).c_str(), (long long)n, (long long)k);
            bias = w.find(mod + ".bias");
        }
        if (layout.empty() && t.t.type != Type::f16 && t.t.type != Type::bf16 && t.t.type != Type::f32)
            layout = t.src_desc;
        add(std::move(t));
        if (bias) add(import_float_tensor(*bias, mod + ".bias", lb + ".bias", true));
    };

    const LlamaHParams& hp = ck.hp;
    need_float("model.embed_tokens.weight", "token_embd.weight", false);
    need_float("model.norm.weight", "output_norm.weight", true);
    if (!hp.tied_output) {
        linear("lm_head", "output", hp.n_embd, hp.n_vocab);
    } else {
        w.find("lm_head.weight");  // a tied classifier may be saved too: the embedding is used
        w.qmodel_layers.erase("lm_head");
    }
    for (int64_t il = 0; il < hp.n_layer; ++il) {
        const std::string p = "model.layers." + std::to_string(il) + ".";
        const std::string b = "blk." + std::to_string(il) + ".";
        need_float(p + "input_layernorm.weight", b + "attn_norm.weight", true);
        need_float(p + "post_attention_layernorm.weight", b + "ffn_norm.weight", true);
        const std::vector<std::string> mods = hf_layer_projections(il);
        for (int j = 0; j < 7; ++j) {
            const std::string lb = hf_to_lb(mods[size_t(j)]);
            linear(mods[size_t(j)], lb, proj_inputs(hp, j), proj_outputs(hp, j));
        }
    }
    check_llama_tensors(ck, dir);

    // leftovers: not an error (publishers save buffers such as rotary_emb.inv_freq), but said
    std::vector<std::string> unused;
    for (const std::string& n : w.names())
        if (!w.used.count(n) && n.find("rotary_emb.inv_freq") == std::string::npos) unused.push_back(n);
    for (const auto& [mod, e] : w.qmodel_layers)
        if (hf_to_lb(mod).empty()) unused.push_back(mod + " (HQQ layer)");
    if (!unused.empty()) {
        std::string s = std::to_string(unused.size()) + " source tensor(s) not used:";
        for (size_t i = 0; i < unused.size() && i < 8; ++i) s += " " + unused[i];
        r.notes.push_back(s + (unused.size() > 8 ? " ..." : ""));
    }

    r.kind = std::string(family_name(fam)) + (layout.empty() ? "" : " (" + layout + ")");
    ck.source = dir;
    ck.provenance = {{"source.family", family_name(fam)},
                     {"source.layout", layout.empty() ? "float" : layout},
                     {"source.dtype", cfg.torch_dtype.empty() ? "unspecified" : cfg.torch_dtype},
                     {"source.files", w.describe},
                     {"converter.version", "lowbit 0.1.0"}};

    if (!opt.tokenizer.empty()) {
        ck.tokenizer = Tokenizer::load_sentencepiece(opt.tokenizer).data();
    } else {
        HfTokenizer tok = load_hf_tokenizer(dir);
        ck.tokenizer = std::move(tok.data);
        ck.chat_template = tok.chat_template;
    }
    if (ck.tokenizer)
        LB_CHECK(int64_t(ck.tokenizer->tokens.size()) <= hp.n_vocab,
                 "%s: the tokenizer has %zu tokens, more than the model's vocab_size %lld", dir.c_str(),
                 ck.tokenizer->tokens.size(), (long long)hp.n_vocab);
    if (!opt.adapter.empty()) {
        apply_lora_adapter(r, opt.adapter, compute);
        ck.provenance.push_back({"source.adapter", opt.adapter});
    }
    return r;
}

}  // namespace lb
