// decode_ptx.cu: compiled to PTX by tests/cuda/check_decode_ptx.cmake (builds with CUDA only): the
// device code of backends/cuda/decode.h must contain no fused multiply-add, so that the device
// rounds every product and sum as the host reference does (tests/test_cuda_decode.cpp).
#include "backends/cuda/decode.h"

__global__ void decode_weight(lb::dec::QWeight w, float* y, unsigned long long row, unsigned long long col) {
    y[0] = lb::dec::weight_at(w, row, col);
}
__global__ void decode_field(const uint8_t* row, const uint8_t* tab, uint32_t fbits, lb::dec::Map map, float* y) {
    y[0] = lb::dec::field_value(row, tab, fbits, map, 3, 5, 1.0f);
}
__global__ void round_half(const float* x, float* y) { y[0] = lb::dec::round_f16(x[0]); }
