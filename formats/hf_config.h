// hf_config.h: the non-weight files of a Hugging Face style model directory (GreenBit
// low_bit_llama, OneBit, HQQ, transformers save_pretrained) turned into lowbit's canonical
// structures: config.json -> LlamaHParams, the tokenizer files -> TokenizerData + chat template.
// Weight importers call these and add the tensors; errors are lb::Error naming the file and key.
//
// ---- config.json (hf_llama_hparams / read_hf_config) ---------------------------------------------
// model_type "llama" or "bitllama" (OneBit writes its own model_type, shared/formats/onebit.md 4.2);
// a config without model_type is accepted when architectures[0] names a LLaMA class (old LLaMA-1
// configs say "LLaMAForCausalLM"). Required integer keys: hidden_size, intermediate_size,
// num_hidden_layers, num_attention_heads, vocab_size. Missing keys take transformers' LlamaConfig
// defaults (greenbit.md 5: old 464-byte configs may lack them):
//   num_key_value_heads  = num_attention_heads
//   rms_norm_eps         = 1e-6
//   rope_theta           = 10000 (also read from the transformers >= 5 "rope_parameters" object)
//   max_position_embeddings -> n_ctx_train; else LLaMA-1's "max_sequence_length"; else 2048
//   tie_word_embeddings  = false (-> tied_output)
//   rope_scaling         = null; {"type" or "rope_type": "linear", "factor": f} -> rope_freq_scale = 1/f;
//                          "default" = none; any other type (llama3, dynamic, yarn, ...) is an error
//   head_dim             = hidden_size / num_attention_heads (a different value is an error)
// Also checked when present: hidden_act "silu", attention_bias / mlp_bias false. pretraining_tp is
// ignored (transformers' tp > 1 path slices the same matmuls: the same function). A
// quantization_config is not read here (greenbit.md 5: legacy GreenBit configs carry a stale one).
// rope_mode is rope_neox: HF checkpoints rotate halves (models/llama.h). Every key that is present
// but of the wrong JSON type, or absurd (<= 0, non-finite, too large), is an error.
//
// ---- tokenizer files (load_hf_tokenizer) -----------------------------------------------------------
// Vocabulary, first match wins:
//   1. tokenizer.model: a SentencePiece ModelProto (Tokenizer::from_sentencepiece), or, when the
//      file is a tiktoken rank file ("<base64> <rank>" lines), Meta's Llama 3 tokenizer (load_llama3)
//   2. tokenizer.json (HF tokenizers), see hf_tokenizer_json_data below
//   3. neither: data is empty (no tokenizer; not an error)
// Added tokens named by tokenizer_config.json "added_tokens_decoder" ({"id": {"content", "special"}})
// and added_tokens.json ({"content": id}) must match the vocabulary's token at an id below its size
// (a normal token becomes control / user-defined as "special" says) and extend it at ids from its
// size on, without gaps (SentencePiece models with chat tokens added by transformers).
// Special token ids: each of bos / eos / unk is set by the first source that names it:
//   special_tokens_map.json  >  tokenizer_config.json  >  the vocabulary's own (SentencePiece
//   "<s>" / "</s>" / the unknown piece; Llama 3 begin/end_of_text; tokenizer.json: model.unk_token
//   and the post_processor's leading special token as bos)  >  generation_config.json
//   ("bos_token_id", "eos_token_id": an int, or a list whose first element is taken).
// (special_tokens_map.json over tokenizer_config.json is transformers' own order. config.json's
// bos/eos_token_id are never read: LLaMA-1 era configs carry wrong ones, e.g. bos 0 = <unk>.)
// A token named by string ("<s>") or by an AddedToken object ({"content": "<s>", ...}) must be a
// token of the vocabulary; null or "" (LLaMA-1 era files) leaves the id to the next source.
// add_bos: tokenizer_config.json "add_bos_token" if present; else the vocabulary's default
// (SentencePiece and Llama 3: true; tokenizer.json: whether its TemplateProcessing post_processor
// starts with a special token).
// Chat template: chat_template.jinja, else tokenizer_config.json "chat_template" (a string, or a
// list of {"name", "template"} from which "default" is taken), else chat_template.json
// {"chat_template": ...}; empty if none.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "models/llama.h"
#include "models/tokenizer.h"

namespace lb {

// ---- config.json -----------------------------------------------------------------------------------
struct HfConfig {
    LlamaHParams hp;          // validated
    nlohmann::json raw;       // the whole config.json, for importers that need more keys
    std::string model_type;   // "llama" or "bitllama"
    std::string torch_dtype;  // "torch_dtype" (or transformers >= 4.56 "dtype"); empty if absent
    std::string origin;       // the file name used in errors
};

// Parses config.json text; `origin` names the file in errors.
HfConfig parse_hf_config(const std::string& config_json_text, const std::string& origin);
// `path` is config.json itself or the directory holding it.
HfConfig read_hf_config(const std::string& path);
// The hyper-parameters alone.
LlamaHParams hf_llama_hparams(const std::string& config_json_text, const std::string& origin);

// ---- tokenizer.json ----------------------------------------------------------------------------------
// The HF tokenizers file on its own. model.type must be "BPE"; vocab {token: id} plus added_tokens
// must cover ids 0..n-1 exactly once; merges are "left right" strings or ["left", "right"] pairs
// naming tokens of the vocabulary. Two families are recognised:
//   byte-level BPE (ByteLevel pre-tokenizer, byte_fallback false, no normalizer) -> kind "bpe";
//     pre_tokenizer ByteLevel(use_regex) or Split(GPT-2 regex) + ByteLevel -> "gpt2";
//     Split(Llama 3 regex, Isolated) + ByteLevel(no regex) -> "llama3";
//     Digits(individual_digits) + ByteLevel(use_regex) (SmolLM / SmolLM2) -> "smollm".
//     With model.ignore_merges (Llama 3) the merges must be in the order of their results' ids;
//     they are then dropped and merged by rank = id with whole-word lookup (tiktoken's rule, which
//     is what ignore_merges gives for such a vocabulary); otherwise ignore_merges is an error.
//   SentencePiece-style BPE (byte_fallback true, "▁" for spaces via a Prepend/Replace normalizer or
//     a Metaspace pre-tokenizer: what transformers writes for LlamaTokenizerFast) -> kind "spm".
//     The file has no scores, only merges in priority order (transformers sorts them by the
//     SentencePiece score of the merged piece), so score(t) = -(rank of the first merge whose
//     result is t); tokens that are no merge's result get -(n_merges + id), below all of them.
//     "<0xXX>" tokens are byte tokens, model.unk_token the unknown token; add_dummy_prefix from
//     Prepend("▁") / Metaspace prepend_scheme != "never"; no whitespace collapsing.
// added_tokens: "special": true -> control, false -> user-defined (matched in text with
// parse_special). Anything else (WordPiece, Unigram, other normalizers or pre-tokenizers, dropout,
// subword prefixes) is an error naming what was found. bos/eos stay -1 except as the post_processor
// implies (see load_hf_tokenizer); the result passes Tokenizer::from_data.
TokenizerData hf_tokenizer_json_data(const std::string& tokenizer_json_text, const std::string& origin);

// ---- a whole directory ---------------------------------------------------------------------------------
struct HfTokenizer {
    std::optional<TokenizerData> data;  // empty when the directory has no tokenizer files
    std::string chat_template;          // empty when none
    std::string origin;                 // which files were used, e.g. "DIR/tokenizer.json + DIR/tokenizer_config.json"
};
HfTokenizer load_hf_tokenizer(const std::string& dir);

}  // namespace lb
