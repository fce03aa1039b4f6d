// tensor.cpp: tensor sizes, contiguity, construction and the view helpers of core/tensor.h.
#include "core/tensor.h"

#include <cstdio>
#include <cstring>

#include "core/error.h"

namespace lb {

uint64_t type_size(Type t) {
    switch (t) {
        case Type::f32:
        case Type::i32:
            return 4;
        case Type::f16:
        case Type::bf16:
            return 2;
        default:
            return 0;
    }
}

bool is_float_type(Type t) { return t == Type::f32 || t == Type::f16 || t == Type::bf16; }

bool Tensor::quantized() const { return type != Type::i32 && type_size(type) == 0; }

uint64_t Tensor::nbytes() const {
    if (quantized()) return tensor_nbytes(type, qp, qrows, uint64_t(ne[0]));
    return uint64_t(nelements()) * type_size(type);
}

uint64_t Tensor::span() const {
    if (nelements() == 0) return 0;
    uint64_t s = type_size(type);
    for (int i = 0; i < kMaxDims; ++i) s += uint64_t(ne[i] - 1) * nb[i];
    return s;
}

bool Tensor::is_contiguous() const {
    if (quantized()) return qrow0 == 0 && uint64_t(ne[1]) == qrows;
    uint64_t expect = type_size(type);
    for (int i = 0; i < kMaxDims; ++i) {
        if (ne[i] != 1 && nb[i] != expect) return false;
        expect *= uint64_t(ne[i]);
    }
    return true;
}

bool Tensor::rows_contiguous() const { return quantized() || ne[0] == 1 || nb[0] == type_size(type); }

WeightView Tensor::weight_view() const {
    LB_CHECK(ne[2] == 1 && ne[3] == 1, "tensor '%s': a weight view needs a 2-D tensor", name);
    if (quantized()) {
        WeightView v = lb::make_view(type, qp, qrows, uint64_t(ne[0]), data);
        v.tiles = tiles;
        return v;
    }
    LB_CHECK(is_contiguous(), "tensor '%s': a weight view of a plain tensor needs contiguous data", name);
    return lb::make_view(type, QParams{}, uint64_t(ne[1]), uint64_t(ne[0]), data);
}

void set_name(Tensor& t, const char* name) { std::snprintf(t.name, sizeof t.name, "%s", name ? name : ""); }

static void check_dims(int nd, const int64_t* ne) {
    LB_CHECK(nd >= 1 && nd <= kMaxDims, "tensor: %d dims (1..%d supported)", nd, kMaxDims);
    for (int i = 0; i < nd; ++i)
        LB_CHECK(ne[i] >= 1 && ne[i] <= (int64_t(1) << 40), "tensor: dim %d is %lld (1..2^40 supported)", i,
                 (long long)ne[i]);
}

void init_tensor(Tensor& t, Type type, int nd, const int64_t* ne, void* data) {
    check_dims(nd, ne);
    LB_CHECK(type_size(type) != 0, "tensor: type %s is not a plain type (use init_weight)", type_name(type));
    t.type = type;
    uint64_t stride = type_size(type);
    for (int i = 0; i < kMaxDims; ++i) {
        t.ne[i] = i < nd ? ne[i] : 1;
        t.nb[i] = stride;
        stride *= uint64_t(t.ne[i]);
    }
    t.data = data;
}

void init_weight(Tensor& t, Type type, const QParams& p, uint64_t n, uint64_t k, const void* data) {
    const int64_t ne[2] = {int64_t(k), int64_t(n)};
    check_dims(2, ne);
    if (type_size(type) != 0) {
        init_tensor(t, type, 2, ne, const_cast<void*>(data));
        return;
    }
    const Layout lay = layout(type, p, n, k);  // validates
    t.type = type;
    t.qp = p;
    t.ne[0] = int64_t(k);
    t.ne[1] = int64_t(n);
    t.ne[2] = t.ne[3] = 1;
    t.nb[0] = 0;  // codes are packed: no per-element stride
    t.nb[1] = lay.code_row_bytes;
    t.nb[2] = t.nb[3] = lay.nbytes;
    t.qrow0 = 0;
    t.qrows = n;
    t.data = const_cast<void*>(data);
}

// the view-related fields all view helpers set
static void link_view(Tensor& dst, Tensor& src, uint64_t offset) {
    dst.view_src = &src;
    dst.view_offs = offset;
    dst.data = src.data ? static_cast<uint8_t*>(src.data) + offset : nullptr;
    dst.type = src.type;
    dst.qp = src.qp;
    dst.qrow0 = src.qrow0;
    dst.qrows = src.qrows;
}

void init_view(Tensor& dst, Tensor& src, int nd, const int64_t* ne, const uint64_t* nb, uint64_t offset) {
    check_dims(nd, ne);
    if (src.quantized()) {
        const uint64_t rb = src.nb[1];
        LB_CHECK(nd <= 2 && ne[0] == src.ne[0] && (nd < 2 || nb[1] == rb) && offset % rb == 0,
                 "view of quantized tensor '%s': only whole rows can be viewed", src.name);
        const uint64_t r0 = offset / rb, rows = nd == 2 ? uint64_t(ne[1]) : 1;
        LB_CHECK(r0 + rows <= uint64_t(src.ne[1]), "view of '%s': rows %llu..%llu out of %lld", src.name,
                 (unsigned long long)r0, (unsigned long long)(r0 + rows), (long long)src.ne[1]);
        link_view(dst, src, 0);
        dst.qrow0 = src.qrow0 + r0;
        for (int i = 0; i < kMaxDims; ++i) dst.nb[i] = src.nb[i];
        dst.ne[0] = ne[0];
        dst.ne[1] = int64_t(rows);
        dst.ne[2] = dst.ne[3] = 1;
        return;
    }
    Tensor probe;
    probe.type = src.type;
    for (int i = 0; i < kMaxDims; ++i) {
        probe.ne[i] = i < nd ? ne[i] : 1;
        probe.nb[i] = i < nd ? nb[i] : (i > 0 ? probe.nb[i - 1] * uint64_t(probe.ne[i - 1]) : type_size(src.type));
    }
    LB_CHECK(offset + probe.span() <= src.span(), "view of '%s': offset %llu + %llu bytes reaches past its %llu bytes",
             src.name, (unsigned long long)offset, (unsigned long long)probe.span(), (unsigned long long)src.span());
    link_view(dst, src, offset);
    for (int i = 0; i < kMaxDims; ++i) {
        dst.ne[i] = probe.ne[i];
        dst.nb[i] = probe.nb[i];
    }
}

void init_reshape(Tensor& dst, Tensor& src, int nd, const int64_t* ne) {
    check_dims(nd, ne);
    LB_CHECK(!src.quantized() && src.is_contiguous(), "reshape of '%s': needs a contiguous plain tensor (use cont)",
             src.name);
    int64_t n = 1;
    for (int i = 0; i < nd; ++i) n *= ne[i];
    LB_CHECK(n == src.nelements(), "reshape of '%s': %lld elements into %lld", src.name, (long long)src.nelements(),
             (long long)n);
    link_view(dst, src, 0);
    uint64_t stride = type_size(src.type);
    for (int i = 0; i < kMaxDims; ++i) {
        dst.ne[i] = i < nd ? ne[i] : 1;
        dst.nb[i] = stride;
        stride *= uint64_t(dst.ne[i]);
    }
}

void init_permute(Tensor& dst, Tensor& src, const int* axes) {
    LB_CHECK(!src.quantized(), "permute of quantized tensor '%s'", src.name);
    bool seen[kMaxDims] = {};
    for (int i = 0; i < kMaxDims; ++i) {
        LB_CHECK(axes[i] >= 0 && axes[i] < kMaxDims && !seen[axes[i]], "permute of '%s': axes are not a permutation",
                 src.name);
        seen[axes[i]] = true;
    }
    link_view(dst, src, 0);
    for (int i = 0; i < kMaxDims; ++i) {
        dst.ne[axes[i]] = src.ne[i];
        dst.nb[axes[i]] = src.nb[i];
    }
}

void init_transpose(Tensor& dst, Tensor& src) {
    const int axes[kMaxDims] = {1, 0, 2, 3};
    init_permute(dst, src, axes);
}

const char* shape_str(const Tensor& t, char* buf, int len) {
    std::snprintf(buf, size_t(len), "[%lld, %lld, %lld, %lld] %s", (long long)t.ne[0], (long long)t.ne[1],
                  (long long)t.ne[2], (long long)t.ne[3], type_name(t.type));
    return buf;
}

}  // namespace lb
