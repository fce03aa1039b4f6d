// tensor.h: the n-dimensional tensor of the engine (up to 4 dims, ggml-style: ne[0] innermost,
// byte strides nb[]), its views (offset + new shape/strides, no copy) and shape helpers.
//
// Element types are lb::Type. Float activations are f32, KV-cache tensors f16; token ids and
// positions are i32 (Type::i32). A quantized weight is a 2-D tensor [K, N] (ne[0] = K inputs,
// ne[1] = N rows) whose data is the whole lb::layout blob; it can only be viewed by whole rows,
// which a view records as the row range [qrow0, qrow0 + ne[1]) of the blob's qrows rows
// (data keeps pointing at the blob, because a layout's planes are not row-interleaved).
// For quantized tensors nb[1] is the code-row size: a view offset is counted in rows of it.
//
// A Tensor is also a graph node (core/graph.h): op, sources and parameters live here.
#pragma once
#include <cstdint>
#include <type_traits>

#include "core/ops.h"
#include "core/quant.h"
#include "core/types.h"

namespace lb {

constexpr int kMaxDims = 4;
constexpr int kMaxSrc = 2;
constexpr int kNameLen = 48;

// tensor flags
enum : uint32_t {
    tf_external = 1u << 0,  // data is owned by the user (weights, KV cache, caller buffers)
    tf_input = 1u << 1,     // graph input: arena memory the user fills after plan(), never reused
    tf_output = 1u << 2,    // graph output: kept alive to the end of compute()
};

struct Tensor {
    Type type = Type::f32;
    QParams qp;                            // quantized types only
    int64_t ne[kMaxDims] = {1, 1, 1, 1};   // elements per dim
    uint64_t nb[kMaxDims] = {0, 0, 0, 0};  // byte strides per dim
    void* data = nullptr;
    uint64_t qrow0 = 0, qrows = 0;   // quantized: this is rows [qrow0, qrow0 + ne[1]) of qrows
    const uint8_t* tiles = nullptr;  // rg weights: optional tiled copy of the blob (WeightView::tiles)

    Op op = Op::none;
    Tensor* src[kMaxSrc] = {};
    Tensor* view_src = nullptr;  // views: the tensor viewed; data = view_src->data + view_offs
    uint64_t view_offs = 0;
    int32_t ip[4] = {};  // op parameters, see core/ops.h
    float fp[4] = {};
    uint32_t flags = 0;
    char name[kNameLen] = {};

    int64_t nelements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
    int64_t nrows() const { return ne[1] * ne[2] * ne[3]; }
    bool quantized() const;
    // byte size of the storage a contiguous tensor of this shape needs (quantized: the blob)
    uint64_t nbytes() const;
    // row r of the flattened rows (dims 1..3); plain types
    uint8_t* row(int64_t r) const {
        const int64_t i1 = r % ne[1], i2 = (r / ne[1]) % ne[2], i3 = r / (ne[1] * ne[2]);
        return static_cast<uint8_t*>(data) + i1 * nb[1] + i2 * nb[2] + i3 * nb[3];
    }
    // dims 0..3 laid out densely in order (plain types; quantized: 2-D, all rows)
    bool is_contiguous() const;
    // nb[0] == element size (each row is a dense vector)
    bool rows_contiguous() const;
    // bytes from data to one past the last element reached through ne/nb (plain types)
    uint64_t span() const;
    // the quantized (or plain 2-D) weight this tensor is rows of, as the quant API sees it
    WeightView weight_view() const;
};

// Element size in bytes of a plain type (f32, f16, bf16, i32); 0 for quantized types.
uint64_t type_size(Type t);
bool is_float_type(Type t);  // f32, f16, bf16

// ---- construction (standalone tensors; the graph builder uses the same helpers) ----
// Plain tensor with contiguous strides; dims beyond nd are 1.
void init_tensor(Tensor& t, Type type, int nd, const int64_t* ne, void* data = nullptr);
// Quantized (or plain) weight [K, N]; validates the parameters.
void init_weight(Tensor& t, Type type, const QParams& p, uint64_t n, uint64_t k, const void* data);
void set_name(Tensor& t, const char* name);

// ---- views: dst becomes a view of src (dst.view_src = &src); no data is copied ----
// General view: nd dims of ne with byte strides nb, starting `offset` bytes into src.
// Bounds are checked against src's storage; quantized: whole rows only (see above).
void init_view(Tensor& dst, Tensor& src, int nd, const int64_t* ne, const uint64_t* nb, uint64_t offset);
// Same elements in a new shape; src must be contiguous (plain types).
void init_reshape(Tensor& dst, Tensor& src, int nd, const int64_t* ne);
// dst dim axes[i] = src dim i (ggml convention); axes is a permutation of 0..3.
void init_permute(Tensor& dst, Tensor& src, const int* axes);
// swaps dims 0 and 1
void init_transpose(Tensor& dst, Tensor& src);

// "[K, N, ...] f32" for error messages
const char* shape_str(const Tensor& t, char* buf, int len);

}  // namespace lb
