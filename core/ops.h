// ops.h: the one list of graph ops. LB_OPS generates the Op enum and names (here), the shape
// check / result-shape table (core/graph.cpp: shape_<name>) and the CPU dispatch table
// (backends/cpu/ops_cpu.cpp: cpu_<name>, and work_<name> where `work` is 1). Adding an op is one
// row here plus those functions; a missing function is a compile error, never a silent gap.
//
// Shapes follow ggml: ne[0] is the innermost (contiguous) dimension. Sources are dst->src[i];
// parameters are dst->ip[] (int32) and dst->fp[] (float). Inputs of compute ops must have
// contiguous rows (nb[0] == element size) unless stated; results are contiguous.
//
//   get_rows   src0 [K, N] any type (quantized: dequant_row_ref), src1 ids i32 [n, a, b]
//              -> f32 [K, n, a, b]: row ids[i] of src0 (embedding lookup)
//   rms_norm   src0 f32 -> f32, per row x / sqrt(mean(x^2) + fp[0])
//   layer_norm src0 f32 -> f32, per row (x - mean) / sqrt(var + fp[0]), no affine (OneBit)
//   add, mul   src0 f32 [K, ...], src1 f32/f16/bf16 with ne[0] == K and each other dim equal or 1
//              (broadcast: src1 may be a single row)
//   scale      src0 f32 * fp[0]
//   mul_mat    src0 weight [K, N, A2, A3] (any type; quantized: 2-D only), src1 f32 [K, M, B2, B3]
//              with B2 % A2 == 0, B3 % A3 == 0 -> f32 [N, M, B2, B3]; y = W x per column;
//              weight batch index b2 / (B2 / A2) (grouped-query attention: heads share a kv head)
//   rope       src0 f32 [D, H, T, B] (any strides), src1 positions i32 [T]; ip[0] = n_dims rotated
//              (even, <= D), ip[1] = rope_neox (HF rotate-half) or rope_interleaved,
//              fp[0] = theta base, fp[1] = frequency scale (linear position scaling, usually 1)
//   softmax    src0 f32 [Nkv, Nq, ...], optional src1 query positions i32 [Nq] (causal mask: key j
//              is visible to query i iff j <= pos[i]); softmax(fp[0] * x) per row; a row with no
//              visible key is all zeros
//   silu       src0 f32 -> x * sigmoid(x)
//   swiglu     src0, src1 f32 same shape -> silu(a) * b
//   cpy        src0 (any strides, f32/f16/bf16) into src1 (a tensor or a view, e.g. of the f16
//              KV cache, same element count, f32/f16/bf16): the result is a view of src1. Side
//              effect: it always runs, and later-built readers of src1's storage run after it
//   cont       src0 (any strides, plain type) -> contiguous copy, same type
//   argmax     src0 f32 [N, a, b, c] -> i32 [a, b, c]: index of the first maximum per row
//   reshape, view, permute, transpose: views, no computation (see core/tensor.h)
#pragma once
#include <cstdint>

namespace lb {

// X(name, n_src, kind, work)
//   kind: leaf (no op), compute (a CPU kernel runs), view (aliases src0, nothing runs)
//   work: 1 when the CPU kernel needs scratch (work_<name> gives the bytes), else 0
#define LB_OPS(X)                \
    X(none, 0, leaf, 0)          \
    X(get_rows, 2, compute, 0)   \
    X(rms_norm, 1, compute, 0)   \
    X(layer_norm, 1, compute, 0) \
    X(add, 2, compute, 0)        \
    X(mul, 2, compute, 0)        \
    X(scale, 1, compute, 0)      \
    X(mul_mat, 2, compute, 1)    \
    X(rope, 2, compute, 1)       \
    X(softmax, 2, compute, 0)    \
    X(silu, 1, compute, 0)       \
    X(swiglu, 2, compute, 0)     \
    X(cpy, 2, compute, 0)        \
    X(cont, 1, compute, 0)       \
    X(argmax, 1, compute, 0)     \
    X(reshape, 1, view, 0)       \
    X(view, 1, view, 0)          \
    X(permute, 1, view, 0)       \
    X(transpose, 1, view, 0)

enum class Op : uint8_t {
#define LB_X(name, nsrc, kind, work) name,
    LB_OPS(LB_X)
#undef LB_X
        count
};

enum class OpKind : uint8_t { leaf, compute, view };

const char* op_name(Op op);
OpKind op_kind(Op op);
int op_n_src(Op op);  // the most sources the op takes (softmax's second one is optional)

// rope variants (dst->ip[1])
enum RopeMode : int32_t {
    rope_neox = 0,         // HF rotate-half: pairs (x[i], x[i + n_dims/2])
    rope_interleaved = 1,  // GPT-J / Meta: pairs (x[2i], x[2i + 1])
};

}  // namespace lb
