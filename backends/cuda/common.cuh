// common.cuh: what the CUDA sources of the backend share: error checks, the strided tensor
// descriptor passed to kernels by value, and warp / block reductions.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/error.h"
#include "core/tensor.h"

namespace lb::cuda {

#define LB_CUDA_CHECK(expr)                                                                                        \
    do {                                                                                                           \
        const cudaError_t err_ = (expr);                                                                           \
        if (err_ != cudaSuccess)                                                                                   \
            throw ::lb::Error(                                                                                     \
                ::lb::strfmt("CUDA: %s failed: %s (%s:%d)", #expr, cudaGetErrorString(err_), __FILE__, __LINE__)); \
    } while (0)

// shape and byte strides of a (possibly strided) tensor; the data pointer is passed separately
struct TD {
    int64_t ne[4];
    uint64_t nb[4];
};
inline TD td_of(const Tensor& t) {
    TD d;
    for (int i = 0; i < 4; ++i) {
        d.ne[i] = t.ne[i];
        d.nb[i] = t.nb[i];
    }
    return d;
}

// element types of plain tensors, as kernels see them
enum : int { et_f32 = 0, et_f16 = 1, et_bf16 = 2, et_i32 = 3 };
inline int et_of(Type t) {
    switch (t) {
        case Type::f32:
            return et_f32;
        case Type::f16:
            return et_f16;
        case Type::bf16:
            return et_bf16;
        case Type::i32:
            return et_i32;
        default:
            throw Error(strfmt("CUDA: type %s is not a plain element type", type_name(t)));
    }
}

// byte offset of flat row r (dims 1..3) of a descriptor
__host__ __device__ inline uint64_t row_offset(const TD& d, int64_t r) {
    const int64_t i1 = r % d.ne[1], i2 = (r / d.ne[1]) % d.ne[2], i3 = r / (d.ne[1] * d.ne[2]);
    return uint64_t(i1) * d.nb[1] + uint64_t(i2) * d.nb[2] + uint64_t(i3) * d.nb[3];
}
// byte offset of flat element f in row-major order of the descriptor's shape
__host__ __device__ inline uint64_t elem_offset(const TD& d, int64_t f) {
    uint64_t off = 0;
    for (int k = 0; k < 4; ++k) {
        off += uint64_t(f % d.ne[k]) * d.nb[k];
        f /= d.ne[k];
    }
    return off;
}

__device__ inline float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ inline float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
// sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result
__device__ inline float block_sum(float v) {
    __shared__ float part[32];
    v = warp_sum(v);
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    __syncthreads();  // part[] may still be read by a previous call
    if (lane == 0) part[w] = v;
    __syncthreads();
    v = lane < int(blockDim.x >> 5) ? part[lane] : 0.0f;
    return warp_sum(v);
}
__device__ inline float block_max(float v) {
    __shared__ float part[32];
    v = warp_max(v);
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) part[w] = v;
    __syncthreads();
    v = lane < int(blockDim.x >> 5) ? part[lane] : -INFINITY;
    return warp_max(v);
}

__device__ inline float load_elem(int et, const uint8_t* p) {
    switch (et) {
        case et_f32:
            return *reinterpret_cast<const float*>(p);
        case et_f16:
            return __half2float(*reinterpret_cast<const __half*>(p));
        default:
            return __uint_as_float(uint32_t(*reinterpret_cast<const uint16_t*>(p)) << 16);
    }
}
__device__ inline void store_elem(int et, uint8_t* p, float v) {
    switch (et) {
        case et_f32:
            *reinterpret_cast<float*>(p) = v;
            break;
        case et_f16:
            *reinterpret_cast<__half*>(p) = __float2half_rn(v);
            break;
        default: {  // bf16, round to nearest even (NaN kept quiet)
            const uint32_t u = __float_as_uint(v);
            const uint16_t h = (u & 0x7fffffffu) > 0x7f800000u ? uint16_t((u >> 16) | 0x40u)
                                                               : uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
            *reinterpret_cast<uint16_t*>(p) = h;
        }
    }
}

inline unsigned blocks_for(uint64_t n, unsigned threads) { return unsigned((n + threads - 1) / threads); }

}  // namespace lb::cuda
