// llama2c.h: reader of llama2.c legacy ("version 0") checkpoints, e.g. karpathy's tinyllamas
// stories260K.bin (format: shared/data/README.md section 1; also summarized in llama2c.cpp).
//
// The file is a header of 7 little-endian int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
// vocab_size, seq_len; vocab_size < 0 means an unshared classifier after the RoPE tables) and f32
// arrays. Every header value is range-checked and the file size must be exactly what the header
// implies; any problem is an lb::Error naming the file and the field.
//
// The result is the canonical LLaMA checkpoint of models/llama.h: f32 tensors with GGUF-style
// names in HF/ggml orientation (llama2.c matrices are already [out][in]), rope_interleaved (run.c
// rotates adjacent pairs, so q/k rows are kept in their stored order), rms_eps 1e-5, theta 10000.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "models/llama.h"

namespace lb {

struct Llama2cHeader {
    int32_t dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, vocab_size = 0, seq_len = 0;
};

// Parses `size` bytes at `data` (copied into the checkpoint's tensors). Errors name `origin`.
LlamaCheckpoint parse_llama2c(const void* data, size_t size, const std::string& origin = "<memory>");
// Maps `path` read-only and parses it.
LlamaCheckpoint read_llama2c(const std::string& path);

}  // namespace lb
