// ops.cuh: launchers of the CUDA kernels of the graph ops (backends/cuda/ops.cu) and of mul_mat
// (backends/cuda/matmul.cu). Each takes the node (shapes, strides and parameters, as the CPU
// backend sees them) and the device addresses of its result and sources.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "backends/cuda/common.cuh"
#include "backends/cuda/decode.h"

namespace lb::cuda {

struct NodePtrs {
    uint8_t* dst;
    const uint8_t* src[2];
};

void run_get_rows(const Tensor& t, const NodePtrs& p, cudaStream_t s);
void run_rms_norm(const Tensor& t, const NodePtrs& p, cudaStream_t s);
void run_layer_norm(const Tensor& t, const NodePtrs& p, cudaStream_t s);
void run_add(const Tensor& t, const NodePtrs& p, cudaStream_t s);
void run_mul(const Tensor& t, const NodePtrs& p, cudaStream_t s);
void run_scale(const Tensor& t, const NodePtrs& p, cudaStream_t s);
void run_rope(const Tensor& t, const NodePtrs& p, cudaStream_t s);
void run_softmax(const Tensor& t, const NodePtrs& p, cudaStream_t s);
void run_silu(const Tensor& t, const NodePtrs& p, cudaStream_t s);
void run_swiglu(const Tensor& t, const NodePtrs& p, cudaStream_t s);
void run_cpy(const Tensor& t, const NodePtrs& p, cudaStream_t s);  // cpy and cont
void run_argmax(const Tensor& t, const NodePtrs& p, cudaStream_t s);

// mul_mat needs cuBLAS and a scratch buffer (dequantized weights and f16 activations for the
// tensor-core path); matmul_scratch_bytes() says how much a node needs.
struct MatmulCtx {
    cublasHandle_t blas;
    uint8_t* scratch;
    uint64_t scratch_bytes;
    cudaStream_t stream;
};
uint64_t matmul_scratch_bytes(const Tensor& t);
void run_mul_mat(const Tensor& t, const NodePtrs& p, const MatmulCtx& c);

// the batch path of quantized weights: tiles dequantized into shared memory + wmma (default), or
// the whole weight dequantized to f16 + cuBLAS (LB_CUDA_GEMM=dequant); the tests run both
enum class GemmPath { wmma, dequant_cublas };
GemmPath gemm_path();
void set_gemm_path(GemmPath p);  // not thread-safe: tests and benchmarks only

// y[ncols][n] = W x[ncols][k] for a quantized weight (contiguous x and y); the kernel choice of
// run_mul_mat (GEMV for one column, dequantize + tensor-core GEMM otherwise)
void mul_mat_quant(const dec::QWeight& w, const float* x, uint64_t ncols, float* y, const MatmulCtx& c);
// the device reference of the quantized GEMV: one thread per row, dec::weight_at per element
void gemv_ref(const dec::QWeight& w, const float* x, float* y, cudaStream_t s);

}  // namespace lb::cuda
