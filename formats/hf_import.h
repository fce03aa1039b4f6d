// hf_import.h: a model directory as its publisher ships it -> the canonical LLaMA checkpoint of
// models/llama.h, without Python and without loss.
//
// The directory holds config.json (formats/hf_config.h), tokenizer files, and weights in one of:
//   qmodel.pt                      HQQ 0.1.x (nested meta) or 0.2.x (flat) torch.save file
//   *.safetensors (+ index json)   plain HF, OneBit, or transformers HqqConfig (".W_q" tensors)
//   pytorch_model*.bin (+ index)   plain HF, GreenBit low_bit_llama, OneBit (torch.save zip)
// The family is detected from the tensors of each projection (not from file names):
//   <proj>.qweight + .qstatistic/.qzeros  GreenBit   (formats/import_greenbit.cpp)
//   <proj>.weight + .input_factor         OneBit     (formats/import_onebit.cpp; also sets the
//                                                     parameter-free LayerNorm after projections)
//   <proj>.W_q                            HQQ        (formats/import_hqq.cpp)
//   <proj>.weight                         float      (kept as stored: f16, bf16 or f32)
// Embeddings and the classifier keep their dtype, norm weights become f32 (exact), biases are
// kept. An HQQ+ LoRA adapter file (formats/import_lora.cpp) adds lora_a/lora_b/lora_scale tensors.
// Provenance goes into LlamaCheckpoint::provenance (source.family, source.layout, source.dtype,
// source.files, converter.version).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "formats/hf_common.h"
#include "models/llama.h"

namespace lb {

struct HfImportOptions {
    std::string adapter;    // HQQ+ LoRA adapter file (empty: none)
    std::string tokenizer;  // a SentencePiece .model to use instead of the directory's tokenizer files
};

struct HfImportResult {
    LlamaCheckpoint ck;
    std::string kind;                   // e.g. "GreenBit low_bit_llama (qstatistic 2-bit g8)"
    std::vector<std::string> src_desc;  // per checkpoint tensor (same order): what it came from
    std::vector<uint64_t> src_bytes;    // per checkpoint tensor: source bytes
    std::vector<std::string> notes;     // things the user should know (unused tensors, dense fallbacks)
};

// True if `path` is a directory with a config.json.
bool is_hf_model_dir(const std::string& path);
// Reads the directory; errors (lb::Error) name the file and the tensor or key at fault.
HfImportResult import_hf_model(const std::string& dir, const HfImportOptions& opt);

// Adds an HQQ+ LoRA adapter (formats/hqq.md section 5: the V0.2 {"peft_config", "parameters"}
// layout or the older flat one) to a checkpoint whose tensors are already imported: for each
// covered projection blk.L.P, lora_a [K, r] and lora_b [r, N] in `dtype` (the base's compute dtype,
// to which hqq casts them), lora_scale f32 [1], and the adapter's bias (replacing the base's, which
// hqq moves into the adapter). A module outside the model or a shape that does not fit is an error
// naming it ("an adapter for another model").
void apply_lora_adapter(HfImportResult& r, const std::string& path, Type dtype);

}  // namespace lb
