// gguf_import.h: GGUF (llama.cpp) LLaMA models -> the canonical LLaMA checkpoint of models/llama.h.
//
// Accepts general.architecture "llama" (dense; no experts). Hyper-parameters come from the
// llama.* keys; the tokenizer from tokenizer.ggml.* (Tokenizer::from_gguf); the chat template from
// tokenizer.chat_template. Rope: llama.cpp's converter permutes HF q/k rows back into Meta's
// order and llama.cpp runs "llama" models with its normal (adjacent-pair) rope, so GGUF llama
// q/k are in the interleaved order and the checkpoint says rope_interleaved.
//
// Tensors are transcoded without loss (every weight the GGUF reference dequantization gives is
// reproduced bit for bit by lowbit's reference dequantization):
//   ggml F32 / F16 / BF16   -> f32 / f16 / bf16 (bytes copied)
//   ggml Q8_0  (fp16 d, 32 x int8 qi; w = d*qi)              -> rg q8_g32_f16: q = qi + 128, s = d, z = 128d
//   ggml Q4_0  (fp16 d, 16 bytes of nibbles; w = d*(q - 8))  -> rg q4_g32_f16: s = d, z = 8d
//   ggml Q4_1  (fp16 d, fp16 m, nibbles; w = d*q + m)        -> rg q4_g32_f16: s = d, z = -m
//   ggml Q6_K  (256-element super-blocks)                     -> f32 (lowbit has no 6-bit type; the
//                                                                products d*sc*q are exact in f32)
// (Q4_0/Q4_1 nibbles: element j < 16 is the low nibble of byte j, element j >= 16 the high nibble
// of byte j - 16.) z = 128d or 8d is exact in fp16 unless it overflows; such a block (or a
// non-finite d) is an error naming the tensor, row and block. Any other ggml type is an error
// naming the tensor and its type.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "models/llama.h"

namespace lb {

class GgufFile;

namespace ggml_id {
// ggml type ids (fixed by the GGUF format) that the importer transcodes
constexpr uint32_t f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q8_0 = 8, q6_K = 14, bf16 = 30;
}  // namespace ggml_id

// Transcodes one ggml tensor (dims[0] = K innermost, as in GGUF and lowbit) whose `nbytes` bytes
// are at `data` into a checkpoint tensor as described above. Errors name `name`.
CheckpointTensor transcode_ggml_tensor(const std::string& name, uint32_t ggml_type, const std::vector<uint64_t>& dims,
                                       const void* data, uint64_t nbytes);

// The hyper-parameters of a GGUF llama model (validated); errors name the file and the key.
LlamaHParams gguf_llama_hparams(const GgufFile& f);

// The whole model: hyper-parameters, every tensor (checked against the hyper-parameters: each
// expected name present with the expected dims, no unknown names), tokenizer, chat template.
LlamaCheckpoint import_gguf_llama(const GgufFile& f);

// Checks a checkpoint's tensor set against its hyper-parameters (names and dims of
// models/llama.h; output.weight present exactly when the output is not tied). Throws naming
// `origin` and the first bad tensor.
void check_llama_tensors(const LlamaCheckpoint& ck, const std::string& origin);

}  // namespace lb
