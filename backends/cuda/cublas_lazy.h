// cublas_lazy.h: cuBLAS entry points, loaded on first use (dlopen) instead of linked. A linked
// cuBLAS maps libcublasLt at every start of the program, CPU-only runs included: about 215 MB
// of resident memory and 70 ms before main() (measured with a program that only links it).
// The CUDA runtime (libcudart, under 1 MB) stays linked.
#pragma once
#include <cublas_v2.h>

namespace lb::cuda {

struct Cublas {
    decltype(&cublasCreate) create;
    decltype(&cublasDestroy) destroy;
    decltype(&cublasSetStream) set_stream;
    // the exported forms (cublasComputeType_t compute types; the headers add C++ overloads)
    cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*,
                              const void*, cudaDataType, int, const void*, cudaDataType, int, const void*, void*,
                              cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);
    cublasStatus_t (*gemm_strided_batched_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                              const void*, const void*, cudaDataType, int, long long, const void*,
                                              cudaDataType, int, long long, const void*, void*, cudaDataType, int,
                                              long long, int, cublasComputeType_t, cublasGemmAlgo_t);
};

// The entry points of libcublas.so.<major of the headers built against>, from the dynamic
// loader's search path, else from the toolkit's library directory of the build. Throws an
// lb::Error naming the library and the loader's message when it or a symbol is missing.
const Cublas& cublas();

}  // namespace lb::cuda
