// ops.cu: CUDA kernels of every graph op except mul_mat (backends/cuda/matmul.cu), with the same
// semantics as the CPU backend (backends/cpu/ops_cpu.cpp, the reference): get_rows (every
// weight type, quantized rows through the shared decoder backends/cuda/decode.h), rms_norm,
// layer_norm, add, mul, scale, rope (neox and interleaved), softmax (scale and causal mask by
// position), silu, swiglu, cpy / cont (any strides, f32/f16/bf16 conversions) and argmax.
// Float sums use float block reductions (the CPU reference accumulates in double).
#include "backends/cuda/ops.cuh"
#include "backends/cuda/qweight.h"

namespace lb::cuda {

namespace {

constexpr unsigned kThreads = 256;

// ---- get_rows ---------------------------------------------------------------------------------
// an id outside 0..nrows-1 gives a row of NaN (the CPU backend throws; the device cannot)
__global__ void k_get_rows_quant(dec::QWeight w, uint64_t row0, int64_t nrows, const int32_t* ids, float* y) {
    const uint64_t r = blockIdx.x;
    const int32_t id = ids[r];
    if (id < 0 || id >= nrows) {
        for (uint64_t i = threadIdx.x; i < w.k; i += blockDim.x) y[r * w.k + i] = NAN;
        return;
    }
    const uint64_t row = row0 + uint64_t(id);
    for (uint64_t i = threadIdx.x; i < w.k; i += blockDim.x) y[r * w.k + i] = dec::weight_at(w, row, i);
}
__global__ void k_get_rows_plain(const uint8_t* a, TD ta, int et, const int32_t* ids, float* y) {
    const uint64_t r = blockIdx.x;
    if (ids[r] < 0 || ids[r] >= ta.ne[1]) {
        for (int64_t i = threadIdx.x; i < ta.ne[0]; i += blockDim.x) y[r * ta.ne[0] + i] = NAN;
        return;
    }
    const uint8_t* src = a + uint64_t(ids[r]) * ta.nb[1];
    for (int64_t i = threadIdx.x; i < ta.ne[0]; i += blockDim.x)
        y[r * ta.ne[0] + i] = load_elem(et, src + i * ta.nb[0]);
}

// ---- norms ------------------------------------------------------------------------------------
__global__ void k_rms_norm(const uint8_t* a, TD ta, float eps, float* y) {
    const int64_t r = blockIdx.x, K = ta.ne[0];
    const float* x = reinterpret_cast<const float*>(a + row_offset(ta, r));
    float ss = 0;
    for (int64_t i = threadIdx.x; i < K; i += blockDim.x) ss += x[i] * x[i];
    ss = block_sum(ss);
    const float inv = rsqrtf(ss / float(K) + eps);
    for (int64_t i = threadIdx.x; i < K; i += blockDim.x) y[r * K + i] = x[i] * inv;
}
__global__ void k_layer_norm(const uint8_t* a, TD ta, float eps, float* y) {
    const int64_t r = blockIdx.x, K = ta.ne[0];
    const float* x = reinterpret_cast<const float*>(a + row_offset(ta, r));
    float s = 0;
    for (int64_t i = threadIdx.x; i < K; i += blockDim.x) s += x[i];
    const float mean = block_sum(s) / float(K);
    float v = 0;
    for (int64_t i = threadIdx.x; i < K; i += blockDim.x) v += (x[i] - mean) * (x[i] - mean);
    const float inv = rsqrtf(block_sum(v) / float(K) + eps);
    for (int64_t i = threadIdx.x; i < K; i += blockDim.x) y[r * K + i] = (x[i] - mean) * inv;
}

// ---- elementwise ------------------------------------------------------------------------------
template <bool MUL>
__global__ void k_binary(const uint8_t* a, TD ta, const uint8_t* b, TD tb, int etb, float* y, uint64_t n) {
    const uint64_t f = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (f >= n) return;
    const int64_t K = ta.ne[0], r = int64_t(f / uint64_t(K)), i = int64_t(f % uint64_t(K));
    const int64_t i1 = r % ta.ne[1], i2 = (r / ta.ne[1]) % ta.ne[2], i3 = r / (ta.ne[1] * ta.ne[2]);
    const float x = *reinterpret_cast<const float*>(a + row_offset(ta, r) + uint64_t(i) * 4);
    const uint64_t bo = uint64_t(i1 % tb.ne[1]) * tb.nb[1] + uint64_t(i2 % tb.ne[2]) * tb.nb[2] +
                        uint64_t(i3 % tb.ne[3]) * tb.nb[3] + uint64_t(i) * tb.nb[0];
    const float v = load_elem(etb, b + bo);
    y[f] = MUL ? x * v : x + v;
}

enum { un_scale = 0, un_silu = 1 };
template <int OP>
__global__ void k_unary(const uint8_t* a, TD ta, float s, float* y, uint64_t n) {
    const uint64_t f = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (f >= n) return;
    const int64_t K = ta.ne[0], r = int64_t(f / uint64_t(K)), i = int64_t(f % uint64_t(K));
    const float x = *reinterpret_cast<const float*>(a + row_offset(ta, r) + uint64_t(i) * 4);
    y[f] = OP == un_scale ? x * s : x / (1.0f + expf(-x));
}

__global__ void k_swiglu(const uint8_t* a, TD ta, const uint8_t* b, TD tb, float* y, uint64_t n) {
    const uint64_t f = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (f >= n) return;
    const int64_t K = ta.ne[0], r = int64_t(f / uint64_t(K)), i = int64_t(f % uint64_t(K));
    const float x = *reinterpret_cast<const float*>(a + row_offset(ta, r) + uint64_t(i) * 4);
    const float g = *reinterpret_cast<const float*>(b + row_offset(tb, r) + uint64_t(i) * 4);
    y[f] = x / (1.0f + expf(-x)) * g;
}

// ---- rope: one block per (head, token, batch) row ----------------------------------------------
__global__ void k_rope(const uint8_t* a, TD ta, const int32_t* pos, int n_dims, int neox, float theta, float fscale,
                       float* y) {
    const int64_t row = blockIdx.x, H = ta.ne[1], T = ta.ne[2], D = ta.ne[0];
    const int64_t h = row % H, tt = (row / H) % T, bb = row / (H * T);
    const uint8_t* xr = a + uint64_t(h) * ta.nb[1] + uint64_t(tt) * ta.nb[2] + uint64_t(bb) * ta.nb[3];
    float* yr = y + D * row;
    const int half = n_dims / 2;
    const float p = float(pos[tt]) * fscale;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        const float inv_freq = 1.0f / powf(theta, float(2 * i) / float(n_dims));
        float sn, cs;
        sincosf(p * inv_freq, &sn, &cs);
        const int64_t i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
        const float x0 = *reinterpret_cast<const float*>(xr + uint64_t(i0) * ta.nb[0]);
        const float x1 = *reinterpret_cast<const float*>(xr + uint64_t(i1) * ta.nb[0]);
        yr[i0] = x0 * cs - x1 * sn;
        yr[i1] = x1 * cs + x0 * sn;
    }
    for (int64_t i = 2 * half + threadIdx.x; i < D; i += blockDim.x)
        yr[i] = *reinterpret_cast<const float*>(xr + uint64_t(i) * ta.nb[0]);
}

// ---- softmax: one block per row ------------------------------------------------------------------
__global__ void k_softmax(const uint8_t* a, TD ta, const int32_t* pos, float scale, float* y) {
    const int64_t r = blockIdx.x, K = ta.ne[0];
    const float* x = reinterpret_cast<const float*>(a + row_offset(ta, r));
    float* yr = y + r * K;
    int64_t vis = K;
    if (pos) {
        const int64_t v = int64_t(pos[r % ta.ne[1]]) + 1;
        vis = v < 0 ? 0 : v > K ? K : v;
    }
    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < vis; j += blockDim.x) mx = fmaxf(mx, scale * x[j]);
    mx = block_max(mx);
    float sum = 0;
    for (int64_t j = threadIdx.x; j < vis; j += blockDim.x) {
        const float e = expf(scale * x[j] - mx);
        yr[j] = e;
        sum += e;
    }
    sum = block_sum(sum);
    const float inv = vis ? 1.0f / sum : 0.0f;
    for (int64_t j = threadIdx.x; j < vis; j += blockDim.x) yr[j] *= inv;
    for (int64_t j = vis + threadIdx.x; j < K; j += blockDim.x) yr[j] = 0.0f;
}

// ---- copies: element f of src (row-major order) -> element f of dst ------------------------------
__global__ void k_copy(const uint8_t* s, TD ts, int ets, uint8_t* d, TD td, int etd, uint64_t n) {
    const uint64_t f = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (f >= n) return;
    const uint8_t* sp = s + elem_offset(ts, int64_t(f));
    uint8_t* dp = d + elem_offset(td, int64_t(f));
    if (ets == etd) {
        if (ets == et_f32 || ets == et_i32)
            *reinterpret_cast<uint32_t*>(dp) = *reinterpret_cast<const uint32_t*>(sp);
        else
            *reinterpret_cast<uint16_t*>(dp) = *reinterpret_cast<const uint16_t*>(sp);
        return;
    }
    store_elem(etd, dp, load_elem(ets, sp));
}

// ---- argmax: one block per row; the first maximum, NaN below every number ------------------------
__device__ inline bool better(float v, int64_t i, float bv, int64_t bi) {
    if (isnan(v)) return false;
    if (isnan(bv)) return true;
    return v > bv || (v == bv && i < bi);
}
__global__ void k_argmax(const uint8_t* a, TD ta, int32_t* y) {
    __shared__ float sv[kThreads];
    __shared__ int64_t si[kThreads];
    const int64_t r = blockIdx.x, K = ta.ne[0];
    const float* x = reinterpret_cast<const float*>(a + row_offset(ta, r));
    float bv = NAN;
    int64_t bi = K;  // K: none yet
    for (int64_t i = threadIdx.x; i < K; i += blockDim.x)
        if (bi == K || better(x[i], i, bv, bi)) bv = x[i], bi = i;
    sv[threadIdx.x] = bv;
    si[threadIdx.x] = bi;
    __syncthreads();
    for (unsigned st = blockDim.x / 2; st > 0; st >>= 1) {
        if (threadIdx.x < st) {
            const float v = sv[threadIdx.x + st];
            const int64_t i = si[threadIdx.x + st];
            if (i < K && (si[threadIdx.x] == K || better(v, i, sv[threadIdx.x], si[threadIdx.x]) ||
                          (isnan(sv[threadIdx.x]) && isnan(v) && i < si[threadIdx.x]))) {
                sv[threadIdx.x] = v;
                si[threadIdx.x] = i;
            }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) y[r] = int32_t(si[0] == K ? 0 : si[0]);
}

void check_launch() { LB_CUDA_CHECK(cudaGetLastError()); }

}  // namespace

void run_get_rows(const Tensor& t, const NodePtrs& p, cudaStream_t s) {
    const Tensor& a = *t.src[0];
    const unsigned n = unsigned(t.src[1]->nelements());
    const int32_t* ids = reinterpret_cast<const int32_t*>(p.src[1]);
    float* y = reinterpret_cast<float*>(p.dst);
    if (a.quantized())
        k_get_rows_quant<<<n, kThreads, 0, s>>>(dec::to_qweight(a.weight_view(), p.src[0]), a.qrow0, a.ne[1], ids, y);
    else
        k_get_rows_plain<<<n, kThreads, 0, s>>>(p.src[0], td_of(a), et_of(a.type), ids, y);
    check_launch();
}

void run_rms_norm(const Tensor& t, const NodePtrs& p, cudaStream_t s) {
    k_rms_norm<<<unsigned(t.nrows()), kThreads, 0, s>>>(p.src[0], td_of(*t.src[0]), t.fp[0],
                                                        reinterpret_cast<float*>(p.dst));
    check_launch();
}
void run_layer_norm(const Tensor& t, const NodePtrs& p, cudaStream_t s) {
    k_layer_norm<<<unsigned(t.nrows()), kThreads, 0, s>>>(p.src[0], td_of(*t.src[0]), t.fp[0],
                                                          reinterpret_cast<float*>(p.dst));
    check_launch();
}

template <bool MUL>
static void binary(const Tensor& t, const NodePtrs& p, cudaStream_t s) {
    const uint64_t n = uint64_t(t.nelements());
    k_binary<MUL><<<blocks_for(n, kThreads), kThreads, 0, s>>>(p.src[0], td_of(*t.src[0]), p.src[1], td_of(*t.src[1]),
                                                               et_of(t.src[1]->type), reinterpret_cast<float*>(p.dst),
                                                               n);
    check_launch();
}
void run_add(const Tensor& t, const NodePtrs& p, cudaStream_t s) { binary<false>(t, p, s); }
void run_mul(const Tensor& t, const NodePtrs& p, cudaStream_t s) { binary<true>(t, p, s); }

void run_scale(const Tensor& t, const NodePtrs& p, cudaStream_t s) {
    const uint64_t n = uint64_t(t.nelements());
    k_unary<un_scale><<<blocks_for(n, kThreads), kThreads, 0, s>>>(p.src[0], td_of(*t.src[0]), t.fp[0],
                                                                   reinterpret_cast<float*>(p.dst), n);
    check_launch();
}
void run_silu(const Tensor& t, const NodePtrs& p, cudaStream_t s) {
    const uint64_t n = uint64_t(t.nelements());
    k_unary<un_silu><<<blocks_for(n, kThreads), kThreads, 0, s>>>(p.src[0], td_of(*t.src[0]), 0.0f,
                                                                  reinterpret_cast<float*>(p.dst), n);
    check_launch();
}
void run_swiglu(const Tensor& t, const NodePtrs& p, cudaStream_t s) {
    const uint64_t n = uint64_t(t.nelements());
    k_swiglu<<<blocks_for(n, kThreads), kThreads, 0, s>>>(p.src[0], td_of(*t.src[0]), p.src[1], td_of(*t.src[1]),
                                                          reinterpret_cast<float*>(p.dst), n);
    check_launch();
}

void run_rope(const Tensor& t, const NodePtrs& p, cudaStream_t s) {
    const Tensor& a = *t.src[0];
    k_rope<<<unsigned(a.nrows()), 64, 0, s>>>(p.src[0], td_of(a), reinterpret_cast<const int32_t*>(p.src[1]), t.ip[0],
                                              t.ip[1] == rope_neox, t.fp[0], t.fp[1], reinterpret_cast<float*>(p.dst));
    check_launch();
}

void run_softmax(const Tensor& t, const NodePtrs& p, cudaStream_t s) {
    k_softmax<<<unsigned(t.nrows()), kThreads, 0, s>>>(p.src[0], td_of(*t.src[0]),
                                                       reinterpret_cast<const int32_t*>(p.src[1]), t.fp[0],
                                                       reinterpret_cast<float*>(p.dst));
    check_launch();
}

void run_cpy(const Tensor& t, const NodePtrs& p, cudaStream_t s) {
    const Tensor& a = *t.src[0];
    const uint64_t n = uint64_t(a.nelements());
    k_copy<<<blocks_for(n, kThreads), kThreads, 0, s>>>(p.src[0], td_of(a), et_of(a.type), p.dst, td_of(t),
                                                        et_of(t.type), n);
    check_launch();
}

void run_argmax(const Tensor& t, const NodePtrs& p, cudaStream_t s) {
    k_argmax<<<unsigned(t.src[0]->nrows()), kThreads, 0, s>>>(p.src[0], td_of(*t.src[0]),
                                                              reinterpret_cast<int32_t*>(p.dst));
    check_launch();
}

}  // namespace lb::cuda
