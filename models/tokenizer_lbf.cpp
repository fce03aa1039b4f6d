// tokenizer_lbf.cpp: the tokenizer as .lbf metadata. Keys (all under "tokenizer."):
//   tokenizer.kind                     string  "spm" (SentencePiece BPE) or "bpe" (byte-level BPE)
//   tokenizer.pretokenizer             string  bpe: "gpt2", "llama3" or "smollm"; spm: ""
//   tokenizer.tokens                   string array  one per id (spm pieces with "▁"; bpe tokens in
//                                                    GPT-2's byte-to-unicode alphabet)
//   tokenizer.scores                   f32 array     optional: spm merge scores
//   tokenizer.types                    i32 array     optional: token types (1 normal, 2 unknown,
//                                                    3 control, 4 user-defined, 6 byte)
//   tokenizer.merges                   string array  optional: bpe merges "left right" by priority
//   tokenizer.bos_id, .eos_id, .unk_id i32           -1 when the vocabulary has none
//   tokenizer.add_bos                  bool
//   tokenizer.add_dummy_prefix         bool          spm
//   tokenizer.remove_extra_whitespaces bool          spm
//   tokenizer.chat_template            string        optional (written by the importers)
#include "core/error.h"
#include "formats/lbf.h"
#include "models/tokenizer.h"

namespace lb {

std::vector<std::pair<std::string, MetaValue>> tokenizer_metadata(const TokenizerData& d) {
    std::vector<std::pair<std::string, MetaValue>> kv;
    kv.emplace_back("tokenizer.kind", d.kind);
    kv.emplace_back("tokenizer.pretokenizer", d.pretokenizer);
    kv.emplace_back("tokenizer.tokens", d.tokens);
    if (!d.scores.empty()) kv.emplace_back("tokenizer.scores", d.scores);
    if (!d.types.empty()) kv.emplace_back("tokenizer.types", d.types);
    if (!d.merges.empty()) kv.emplace_back("tokenizer.merges", d.merges);
    kv.emplace_back("tokenizer.bos_id", d.bos);
    kv.emplace_back("tokenizer.eos_id", d.eos);
    kv.emplace_back("tokenizer.unk_id", d.unk);
    kv.emplace_back("tokenizer.add_bos", d.add_bos);
    kv.emplace_back("tokenizer.add_dummy_prefix", d.add_dummy_prefix);
    kv.emplace_back("tokenizer.remove_extra_whitespaces", d.remove_extra_whitespaces);
    return kv;
}

TokenizerData tokenizer_data_from_metadata(const Metadata& md) {
    LB_CHECK(md.contains("tokenizer.kind"), "the model has no tokenizer (metadata key 'tokenizer.kind' not found)");
    TokenizerData d;
    d.kind = md.get_string("tokenizer.kind");
    d.pretokenizer = md.get_string("tokenizer.pretokenizer");
    d.tokens = md.get_array<std::string>("tokenizer.tokens");
    if (md.contains("tokenizer.scores")) d.scores = md.get_array<float>("tokenizer.scores");
    if (md.contains("tokenizer.types")) d.types = md.get_array<int32_t>("tokenizer.types");
    if (md.contains("tokenizer.merges")) d.merges = md.get_array<std::string>("tokenizer.merges");
    d.bos = md.get_i32("tokenizer.bos_id");
    d.eos = md.get_i32("tokenizer.eos_id");
    d.unk = md.get_i32("tokenizer.unk_id");
    d.add_bos = md.get_bool("tokenizer.add_bos");
    d.add_dummy_prefix = md.get_bool("tokenizer.add_dummy_prefix");
    d.remove_extra_whitespaces = md.get_bool("tokenizer.remove_extra_whitespaces");
    return d;  // Tokenizer::from_data validates sizes and ids
}

}  // namespace lb
