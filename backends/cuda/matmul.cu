// matmul.cu: mul_mat on the GPU.
//   quantized weight (rg, a0, sign), one activation column (decode): a fused dequantize-GEMV per
//     code width (k_gemv<BITS>): one warp per weight row, the activation row in shared memory,
//     codes and compact meta read straight from global memory through the shared decoder
//     (backends/cuda/decode.h), each meta column decoded once per warp by one lane and handed
//     to the lanes that need it by shuffle, a warp reduction;
//   quantized weight, 2..4 columns: the GEMV per column;
//   quantized weight, more columns: k_gemm_wmma: 64 x 64 output tiles, per 32-input step the
//     weight tile is dequantized into shared memory as f16 (the shared decoder per element) and
//     the activation tile converted to f16 beside it, then multiplied with wmma 16x16x16 on the
//     tensor cores (f32 accumulation); LB_CUDA_GEMM=dequant selects instead: the whole weight
//     dequantized to f16 (k_dequant_f16) and cuBLAS GemmEx (f16 inputs, f32 accumulation);
//   f32 / f16 / bf16 2-D weights: cuBLAS (f32 without TF32; f16 / bf16 with the activations
//     converted to the weight's type); batched strided weights (attention over the f16 KV-cache
//     views, GQA) with several query columns: cuBLAS strided-batched GEMM, one batch per kv head;
//     everything else (one query column, odd strides) the generic kernel k_mm_plain.
// k_gemv_ref (thread per row, dec::weight_at per element) is the device reference of k_gemv.
#include <mma.h>

#include <cstdlib>
#include <cstring>

#include "backends/cuda/cublas_lazy.h"
#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/ops.cuh"
#include "backends/cuda/qweight.h"

namespace lb::cuda {

#define LB_CUBLAS_CHECK(expr)                                                                               \
    do {                                                                                                    \
        const cublasStatus_t st_ = (expr);                                                                  \
        if (st_ != CUBLAS_STATUS_SUCCESS)                                                                   \
            throw ::lb::Error(                                                                              \
                ::lb::strfmt("cuBLAS: %s failed: status %d (%s:%d)", #expr, int(st_), __FILE__, __LINE__)); \
    } while (0)

namespace {

constexpr int kGemvWarps = 4;
constexpr uint64_t kSmemX = 48 * 1024;  // activation row in shared memory up to this many bytes

// ---- fused dequantize-GEMV ------------------------------------------------------------------------
template <uint32_t BITS>
__global__ void __launch_bounds__(32 * kGemvWarps)
    k_gemv(dec::QWeight w, const float* __restrict__ x, float* __restrict__ y, int x_in_smem) {
    extern __shared__ float xs[];
    const float* xv = x;
    if (x_in_smem) {
        for (uint64_t i = threadIdx.x; i < w.k; i += blockDim.x) xs[i] = x[i];
        __syncthreads();
        xv = xs;
    }
    const int lane = threadIdx.x & 31;
    const uint64_t row = uint64_t(blockIdx.x) * kGemvWarps + (threadIdx.x >> 5);
    if (row >= w.n) return;
    const uint8_t* codes = dec::code_row(w, row);
    float acc = 0;
    if (w.geo == dec::geo_sign) {  // y = h[row] * sum_i S[row][i] g[i] x[i]
        const float* g = reinterpret_cast<const float*>(w.data + w.off_gvec);
        for (uint64_t i = lane; i < w.k; i += 32) {
            const float gx = g[i] * xv[i];
            acc += dec::code_at<BITS>(codes, i) ? -gx : gx;
        }
        acc = warp_sum(acc);
        if (lane == 0) y[row] = acc * reinterpret_cast<const float*>(w.data + w.off_hvec)[row];
        return;
    }
    // w = q s + m. The meta is decoded once per meta column and warp, not per weight: the warp keeps
    // a window of 32 consecutive meta columns [cbase, cbase + 32), lane j holding the (s, m) of
    // column cbase + j, and each run of 32 inputs (lane = input) fetches its (s, m) by shuffle. The
    // window moves (warp-uniformly) when a run reaches past it: every 32 groups for rg (a decode
    // per group), every run for a0 (a decode per input column: a0 has one (s, m) per column).
    const uint64_t mrow = dec::meta_row(w, row);
    const uint64_t ncol = w.geo == dec::geo_rg ? w.k / w.group : w.k;
    uint64_t cbase = 0;
    bool have = false;
    float ws = 0, wm = 0;  // this lane's window entry
    for (uint64_t i0 = 0; i0 < w.k; i0 += 32) {
        const uint64_t i = i0 + lane, last = i0 + 31 < w.k ? i0 + 31 : w.k - 1;
        if (!have || dec::meta_col(w, last) >= cbase + 32) {
            cbase = dec::meta_col(w, i0);
            have = true;
            if (cbase + lane < ncol) dec::meta_sm(w, mrow, cbase + lane, ws, wm);
        }
        const int src = int(dec::meta_col(w, i < w.k ? i : last) - cbase);  // 0..31
        const float s = __shfl_sync(0xffffffffu, ws, src), m = __shfl_sync(0xffffffffu, wm, src);
        if (i < w.k) acc += (float(dec::code_at<BITS>(codes, i)) * s + m) * xv[i];
    }
    acc = warp_sum(acc);
    if (lane == 0) y[row] = acc;
}

// the device reference: one thread per row, the decoder per element
__global__ void k_gemv_ref(dec::QWeight w, const float* x, float* y) {
    const uint64_t row = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (row >= w.n) return;
    float acc = 0;
    for (uint64_t i = 0; i < w.k; ++i) acc += dec::weight_at(w, row, i) * x[i];
    y[row] = acc;
}

// ---- dequantize to f16 for the tensor-core GEMM ------------------------------------------------------
__global__ void k_dequant_f16(dec::QWeight w, __half* out) {
    const uint64_t f = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (f >= w.n * w.k) return;
    out[f] = __float2half_rn(dec::weight_at(w, f / w.k, f % w.k));
}

// ---- dequantize tiles into shared memory + tensor-core GEMM -------------------------------------------
// y[j][o] = sum_i W[o][i] x[j][i] for o < n, j < ncols (x dense [ncols][k], y dense [ncols][n]).
// Block: 4 warps, a 64 (rows of W) x 64 (columns of x) tile; warp (wm, wn) owns 32 x 32 of it.
constexpr int kTm = 64, kTn = 64, kTk = 32;
__global__ void __launch_bounds__(128)
    k_gemm_wmma(dec::QWeight w, const float* __restrict__ x, float* __restrict__ y, uint64_t ncols) {
    using namespace nvcuda;
    __shared__ __align__(32) __half As[kTm * kTk];       // W tile, row-major [row][i]
    __shared__ __align__(32) __half Bs[kTn * kTk];       // x tile: [col][i] = col-major K x N
    __shared__ __align__(32) float Cs[kTn * (kTm + 4)];  // result, [col][row]
    const uint64_t row0 = uint64_t(blockIdx.x) * kTm, col0 = uint64_t(blockIdx.y) * kTn;
    const int warp = threadIdx.x >> 5, wm = warp & 1, wn = warp >> 1;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
    for (int a = 0; a < 2; ++a)
        for (int b = 0; b < 2; ++b) wmma::fill_fragment(acc[a][b], 0.0f);
    for (uint64_t k0 = 0; k0 < w.k; k0 += kTk) {
        for (int e = threadIdx.x; e < kTm * kTk; e += blockDim.x) {
            const uint64_t r = row0 + uint64_t(e / kTk), i = k0 + uint64_t(e % kTk);
            As[e] = __float2half_rn(r < w.n && i < w.k ? dec::weight_at(w, r, i) : 0.0f);
        }
        for (int e = threadIdx.x; e < kTn * kTk; e += blockDim.x) {
            const uint64_t j = col0 + uint64_t(e / kTk), i = k0 + uint64_t(e % kTk);
            Bs[e] = __float2half_rn(j < ncols && i < w.k ? x[j * w.k + i] : 0.0f);
        }
        __syncthreads();
        for (int kk = 0; kk < kTk; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> fb[2];
            for (int a = 0; a < 2; ++a) wmma::load_matrix_sync(fa[a], As + (wm * 32 + a * 16) * kTk + kk, kTk);
            for (int b = 0; b < 2; ++b) wmma::load_matrix_sync(fb[b], Bs + (wn * 32 + b * 16) * kTk + kk, kTk);
            for (int a = 0; a < 2; ++a)
                for (int b = 0; b < 2; ++b) wmma::mma_sync(acc[a][b], fa[a], fb[b], acc[a][b]);
        }
        __syncthreads();
    }
    // C (rows x cols) stored column-major: Cs[col * (kTm + 4) + row]
    for (int a = 0; a < 2; ++a)
        for (int b = 0; b < 2; ++b)
            wmma::store_matrix_sync(Cs + (wn * 32 + b * 16) * (kTm + 4) + wm * 32 + a * 16, acc[a][b], kTm + 4,
                                    wmma::mem_col_major);
    __syncthreads();
    for (int e = threadIdx.x; e < kTm * kTn; e += blockDim.x) {
        const int c = e / kTm, r = e % kTm;  // consecutive threads: consecutive rows of one column
        if (row0 + uint64_t(r) < w.n && col0 + uint64_t(c) < ncols)
            y[(col0 + c) * w.n + row0 + r] = Cs[c * (kTm + 4) + r];
    }
}

// strided f32 activations -> dense [rows][K] of type et (f32 / f16 / bf16)
__global__ void k_pack_act(const uint8_t* x, TD tx, uint8_t* out, int et, uint64_t n) {
    const uint64_t f = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (f >= n) return;
    const int64_t K = tx.ne[0], r = int64_t(f / uint64_t(K)), i = int64_t(f % uint64_t(K));
    const float v = *reinterpret_cast<const float*>(x + row_offset(tx, r) + uint64_t(i) * tx.nb[0]);
    store_elem(et, out + f * (et == et_f32 ? 4 : 2), v);
}

// ---- generic float weights: one warp per output element --------------------------------------------
// y[b3][b2][j][o] = sum_i W[b3 / r3][b2 / r2][o][i] x[b3][b2][j][i]
__global__ void k_mm_plain(const uint8_t* w, TD tw, int etw, const uint8_t* x, TD tx, float* y, uint64_t n_out) {
    const uint64_t e = (uint64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (e >= n_out) return;
    const int64_t N = tw.ne[1], M = tx.ne[1], B2 = tx.ne[2];
    const int64_t o = int64_t(e % uint64_t(N)), j = int64_t((e / uint64_t(N)) % uint64_t(M));
    const int64_t b2 = int64_t((e / uint64_t(N * M)) % uint64_t(B2)), b3 = int64_t(e / uint64_t(N * M * B2));
    const int64_t r2 = B2 / tw.ne[2], r3 = tx.ne[3] / tw.ne[3];
    const uint8_t* wr = w + uint64_t(o) * tw.nb[1] + uint64_t(b2 / r2) * tw.nb[2] + uint64_t(b3 / r3) * tw.nb[3];
    const uint8_t* xr = x + uint64_t(j) * tx.nb[1] + uint64_t(b2) * tx.nb[2] + uint64_t(b3) * tx.nb[3];
    float acc = 0;
    for (int64_t i = lane; i < tw.ne[0]; i += 32)
        acc += load_elem(etw, wr + uint64_t(i) * tw.nb[0]) * *reinterpret_cast<const float*>(xr + uint64_t(i) * 4);
    acc = warp_sum(acc);
    if (lane == 0) y[e] = acc;
}

void check_launch() { LB_CUDA_CHECK(cudaGetLastError()); }
uint64_t align256(uint64_t v) { return (v + 255) & ~uint64_t(255); }

template <uint32_t BITS>
void launch_gemv(const dec::QWeight& w, const float* x, float* y, cudaStream_t s) {
    const bool smem = w.k * 4 <= kSmemX;
    const unsigned blocks = unsigned((w.n + kGemvWarps - 1) / kGemvWarps);
    k_gemv<BITS><<<blocks, 32 * kGemvWarps, smem ? w.k * 4 : 0, s>>>(w, x, y, smem ? 1 : 0);
}

// C[ncols][n] (f32) = A[n][k] B[ncols][k]^T on cuBLAS; A and B of type `dt`
void gemm_blas(cublasHandle_t h, cudaDataType_t dt, const void* a, const void* b, float* c, uint64_t n, uint64_t ncols,
               uint64_t k) {
    const float one = 1.0f, zero = 0.0f;
    LB_CUBLAS_CHECK(cublas().gemm_ex(h, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(ncols), int(k), &one, a, dt, int(k), b,
                                     dt, int(k), &zero, c, CUDA_R_32F, int(n), CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT));
}

// up to this many columns, GEMV per column beats dequantizing the whole weight
constexpr uint64_t kGemvMaxCols = 4;

}  // namespace

static GemmPath g_gemm_path = [] {
    const char* e = std::getenv("LB_CUDA_GEMM");
    return e && std::strcmp(e, "dequant") == 0 ? GemmPath::dequant_cublas : GemmPath::wmma;
}();
GemmPath gemm_path() { return g_gemm_path; }
void set_gemm_path(GemmPath p) { g_gemm_path = p; }
void set_gemm_dequant_cublas(bool on) { set_gemm_path(on ? GemmPath::dequant_cublas : GemmPath::wmma); }

void mul_mat_quant(const dec::QWeight& w, const float* x, uint64_t ncols, float* y, const MatmulCtx& c) {
    if (ncols <= kGemvMaxCols) {
        for (uint64_t j = 0; j < ncols; ++j) {
            const float* xj = x + j * w.k;
            float* yj = y + j * w.n;
            switch (w.bits) {
                case 1:
                    launch_gemv<1>(w, xj, yj, c.stream);
                    break;
                case 2:
                    launch_gemv<2>(w, xj, yj, c.stream);
                    break;
                case 3:
                    launch_gemv<3>(w, xj, yj, c.stream);
                    break;
                case 4:
                    launch_gemv<4>(w, xj, yj, c.stream);
                    break;
                case 8:
                    launch_gemv<8>(w, xj, yj, c.stream);
                    break;
                default:
                    throw Error(strfmt("CUDA mul_mat: %u-bit codes are not supported", w.bits));
            }
            check_launch();
        }
        return;
    }
    if (gemm_path() == GemmPath::wmma) {
        const dim3 grid(unsigned((w.n + kTm - 1) / kTm), unsigned((ncols + kTn - 1) / kTn));
        LB_CHECK(grid.y <= 65535, "CUDA mul_mat: %llu columns is too many for one launch", (unsigned long long)ncols);
        k_gemm_wmma<<<grid, 128, 0, c.stream>>>(w, x, y, ncols);
        check_launch();
        return;
    }
    // dequantize to f16, activations to f16, tensor-core GEMM with f32 accumulation
    const uint64_t wbytes = align256(w.n * w.k * 2), xbytes = align256(ncols * w.k * 2);
    LB_CHECK(wbytes + xbytes <= c.scratch_bytes, "CUDA mul_mat: scratch of %llu bytes, %llu needed",
             (unsigned long long)c.scratch_bytes, (unsigned long long)(wbytes + xbytes));
    __half* wh = reinterpret_cast<__half*>(c.scratch);
    uint8_t* xh = c.scratch + wbytes;
    k_dequant_f16<<<blocks_for(w.n * w.k, 256), 256, 0, c.stream>>>(w, wh);
    check_launch();
    TD tx{{int64_t(w.k), int64_t(ncols), 1, 1}, {4, w.k * 4, w.k * 4 * ncols, w.k * 4 * ncols}};
    k_pack_act<<<blocks_for(ncols * w.k, 256), 256, 0, c.stream>>>(reinterpret_cast<const uint8_t*>(x), tx, xh, et_f16,
                                                                   ncols * w.k);
    check_launch();
    gemm_blas(c.blas, CUDA_R_16F, wh, xh, y, w.n, ncols, w.k);
}

// Batched float weights that cuBLAS can take as strided batches (the attention products over
// the KV-cache views, several query columns): rows of w at a whole-element stride >= K, one
// batch dimension (dims 3 are 1), x with several columns per batch. Query heads sharing a kv
// head (GQA, r2 = B2 / A2) are consecutive x batches, so after packing x densely as
// [B2][M][K] they are r2 * M consecutive columns of one GEMM per weight batch.
static bool batched_blas(const Tensor& w, const Tensor& x) {
    const uint64_t es = type_size(w.type);
    return !w.quantized() && w.ne[3] == 1 && x.ne[3] == 1 && x.ne[1] > 1 && w.nb[0] == es && w.nb[1] % es == 0 &&
           w.nb[2] % es == 0 && w.nb[1] / es >= uint64_t(w.ne[0]) && w.nb[1] / es < (uint64_t(1) << 31) &&
           x.nelements() < (int64_t(1) << 31);
}

uint64_t matmul_scratch_bytes(const Tensor& t) {
    const Tensor &w = *t.src[0], &x = *t.src[1];
    const uint64_t K = uint64_t(w.ne[0]), N = uint64_t(w.ne[1]), cols = uint64_t(x.nrows());
    if (w.quantized()) {  // dense f32 activations when x is strided; f16 weight and activations for the GEMM
        const uint64_t pack = x.is_contiguous() ? 0 : align256(cols * K * 4);
        const bool dq = cols > kGemvMaxCols && gemm_path() == GemmPath::dequant_cublas;
        return pack + (dq ? align256(N * K * 2) + align256(cols * K * 2) : 0);
    }
    const bool blas = w.is_contiguous() && w.ne[2] == 1 && w.ne[3] == 1;
    return blas || batched_blas(w, x) ? align256(cols * K * 4) : 0;  // activations in the weight's type
}

void run_mul_mat(const Tensor& t, const NodePtrs& p, const MatmulCtx& c) {
    const Tensor &w = *t.src[0], &x = *t.src[1];
    const uint64_t K = uint64_t(w.ne[0]), N = uint64_t(w.ne[1]), cols = uint64_t(x.nrows());
    float* y = reinterpret_cast<float*>(p.dst);
    const bool x_dense = x.is_contiguous();
    if (w.quantized()) {
        dec::QWeight q = dec::to_qweight(w.weight_view(), p.src[0]);
        LB_CHECK(w.qrow0 == 0 && uint64_t(w.ne[1]) == w.qrows,
                 "CUDA mul_mat '%s': a row range of a quantized weight is not supported", t.name);
        const float* xd = reinterpret_cast<const float*>(p.src[1]);
        MatmulCtx cc = c;
        if (!x_dense) {  // pack the strided activations first
            k_pack_act<<<blocks_for(cols * K, 256), 256, 0, c.stream>>>(p.src[1], td_of(x), c.scratch, et_f32,
                                                                        cols * K);
            check_launch();
            xd = reinterpret_cast<const float*>(c.scratch);
            cc.scratch += align256(cols * K * 4);
            cc.scratch_bytes -= align256(cols * K * 4);
        }
        mul_mat_quant(q, xd, cols, y, cc);
        return;
    }
    const bool blas = w.is_contiguous() && w.ne[2] == 1 && w.ne[3] == 1;
    if (blas) {  // y[cols][N] = W x, the activations converted to the weight's type
        const int et = et_of(w.type);
        const cudaDataType_t dt = et == et_f32 ? CUDA_R_32F : et == et_f16 ? CUDA_R_16F : CUDA_R_16BF;
        const void* xb = p.src[1];
        if (et != et_f32 || !x_dense) {
            k_pack_act<<<blocks_for(cols * K, 256), 256, 0, c.stream>>>(p.src[1], td_of(x), c.scratch, et, cols * K);
            check_launch();
            xb = c.scratch;
        }
        gemm_blas(c.blas, dt, p.src[0], xb, y, N, cols, K);
        return;
    }
    if (batched_blas(w, x)) {  // one GEMM per weight batch over its r2 * M columns
        const int et = et_of(w.type);
        const uint64_t es = type_size(w.type);
        const cudaDataType_t dt = et == et_f32 ? CUDA_R_32F : et == et_f16 ? CUDA_R_16F : CUDA_R_16BF;
        k_pack_act<<<blocks_for(cols * K, 256), 256, 0, c.stream>>>(p.src[1], td_of(x), c.scratch, et, cols * K);
        check_launch();
        const int64_t M = x.ne[1], r2 = x.ne[2] / w.ne[2], ncol = r2 * M;
        const float one = 1.0f, zero = 0.0f;
        LB_CUBLAS_CHECK(cublas().gemm_strided_batched_ex(
            c.blas, CUBLAS_OP_T, CUBLAS_OP_N, int(N), int(ncol), int(K), &one, p.src[0], dt, int(w.nb[1] / es),
            (long long)(w.nb[2] / es), c.scratch, dt, int(K), (long long)(ncol * int64_t(K)), &zero, y, CUDA_R_32F,
            int(N), (long long)(ncol * int64_t(N)), int(w.ne[2]), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        return;
    }
    const uint64_t n_out = uint64_t(t.nelements());
    k_mm_plain<<<blocks_for(n_out * 32, 256), 256, 0, c.stream>>>(p.src[0], td_of(w), et_of(w.type), p.src[1], td_of(x),
                                                                  y, n_out);
    check_launch();
}

// keeps the reference kernel referenced (it is launched by the backend tests through this entry)
void gemv_ref(const dec::QWeight& w, const float* x, float* y, cudaStream_t s) {
    k_gemv_ref<<<blocks_for(w.n, 128), 128, 0, s>>>(w, x, y);
    check_launch();
}

}  // namespace lb::cuda
