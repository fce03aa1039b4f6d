// llama_io.cpp: a LLaMA checkpoint to .lbf and back (by mmap, weights used in place).
//
// Metadata keys of a LLaMA .lbf file (all required unless marked optional):
//   general.architecture                   string  "llama"
//   general.source                         string  optional: where the weights came from
//   llama.vocab_size                       u32     n_vocab
//   llama.embedding_length                 u32     n_embd (model width)
//   llama.feed_forward_length              u32     n_ff (MLP hidden width)
//   llama.block_count                      u32     n_layer
//   llama.attention.head_count             u32     n_head
//   llama.attention.head_count_kv          u32     n_head_kv
//   llama.context_length                   u32     n_ctx_train
//   llama.attention.layer_norm_rms_epsilon f32     rms_eps
//   llama.rope.freq_base                   f32     rope theta
//   llama.rope.freq_scale                  f32     linear position scale (1 = none)
//   llama.rope.mode                        string  "interleaved" (adjacent pairs: Meta, llama2.c,
//                                                  GGUF llama) or "neox" (halves: HF)
//   llama.output_tied                      bool    true: no output.weight, lm_head = token_embd
//   llama.projection_norm_epsilon          f32     optional (OneBit): eps of the parameter-free
//                                                  LayerNorm after every layer projection; absent = none
//   general.<key>                          string  optional provenance (LlamaCheckpoint::provenance):
//                                                  source.family, source.layout, source.dtype,
//                                                  converter.version, ...
// Tensor names and orientation: models/llama.h.
#include <cstring>

#include "core/error.h"
#include "formats/lbf.h"
#include "models/llama.h"

namespace lb {

void save_llama_lbf(const LlamaCheckpoint& ck, const std::string& path) {
    const LlamaHParams& hp = ck.hp;
    hp.validate();
    LbfWriter w(path);
    w.set("general.architecture", "llama");
    if (!ck.source.empty()) w.set("general.source", ck.source);
    w.set("llama.vocab_size", uint32_t(hp.n_vocab));
    w.set("llama.embedding_length", uint32_t(hp.n_embd));
    w.set("llama.feed_forward_length", uint32_t(hp.n_ff));
    w.set("llama.block_count", uint32_t(hp.n_layer));
    w.set("llama.attention.head_count", uint32_t(hp.n_head));
    w.set("llama.attention.head_count_kv", uint32_t(hp.n_head_kv));
    w.set("llama.context_length", uint32_t(hp.n_ctx_train));
    w.set("llama.attention.layer_norm_rms_epsilon", hp.rms_eps);
    w.set("llama.rope.freq_base", hp.rope_theta);
    w.set("llama.rope.freq_scale", hp.rope_freq_scale);
    w.set("llama.rope.mode", hp.rope_mode == rope_neox ? "neox" : "interleaved");
    w.set("llama.output_tied", hp.tied_output);
    if (hp.proj_norm_eps > 0) w.set("llama.projection_norm_epsilon", hp.proj_norm_eps);
    for (const auto& [k, v] : ck.provenance) w.set("general." + k, v);
    if (ck.tokenizer)
        for (auto& [k, v] : tokenizer_metadata(*ck.tokenizer)) w.set(k, std::move(v));
    if (!ck.chat_template.empty()) w.set("tokenizer.chat_template", ck.chat_template);
    for (const auto& t : ck.tensors) w.add_tensor(t.name, t.type, t.params, t.dims, t.data.data(), t.data.size());
    w.finish();
}

LlamaHParams llama_hparams_from_lbf(const LbfFile& f) {
    const Metadata& md = f.metadata();
    const std::string& arch = md.get_string("general.architecture");
    LB_CHECK(arch == "llama", "%s: general.architecture is '%s', expected 'llama'", f.origin().c_str(), arch.c_str());
    LlamaHParams hp;
    hp.n_vocab = md.get_u32("llama.vocab_size");
    hp.n_embd = md.get_u32("llama.embedding_length");
    hp.n_ff = md.get_u32("llama.feed_forward_length");
    hp.n_layer = md.get_u32("llama.block_count");
    hp.n_head = md.get_u32("llama.attention.head_count");
    hp.n_head_kv = md.get_u32("llama.attention.head_count_kv");
    hp.n_ctx_train = md.get_u32("llama.context_length");
    hp.rms_eps = md.get_f32("llama.attention.layer_norm_rms_epsilon");
    hp.rope_theta = md.get_f32("llama.rope.freq_base");
    hp.rope_freq_scale = md.get_f32("llama.rope.freq_scale");
    const std::string& mode = md.get_string("llama.rope.mode");
    LB_CHECK(mode == "interleaved" || mode == "neox",
             "%s: metadata key 'llama.rope.mode' is '%s', supported 'interleaved', 'neox'", f.origin().c_str(),
             mode.c_str());
    hp.rope_mode = mode == "neox" ? rope_neox : rope_interleaved;
    hp.tied_output = md.get_bool("llama.output_tied");
    if (md.contains("llama.projection_norm_epsilon")) hp.proj_norm_eps = md.get_f32("llama.projection_norm_epsilon");
    try {
        hp.validate();
    } catch (const Error& e) {
        throw Error(f.origin() + ": " + e.what());
    }
    return hp;
}

std::unique_ptr<LlamaModel> LlamaModel::load_lbf(const std::string& path) { return from_lbf(LbfFile::open(path)); }

std::unique_ptr<LlamaModel> LlamaModel::from_lbf(std::unique_ptr<LbfFile> file) {
    LB_CHECK(file != nullptr, "llama model: no file");
    std::unique_ptr<LlamaModel> m(new LlamaModel());
    m->file_ = std::move(file);
    const LbfFile& f = *m->file_;
    m->hp = llama_hparams_from_lbf(f);
    m->bind(
        [&f](const std::string& name) {
            WeightRef r;
            if (const TensorInfo* t = f.find_tensor(name)) {
                r.found = true;
                r.type = t->type;
                r.params = t->params;
                r.dims = t->dims;
                r.data = t->data;
            }
            return r;
        },
        f.origin());
    return m;
}

}  // namespace lb
