// bench.cu: device measurements for `lowbit bench kernels --backend cuda`: the device-to-device
// copy bandwidth (the roofline the GEMV kernels are compared with) and the time of one mul_mat
// of a given weight through the same entry the graph executor uses (backends/cuda/matmul.cu),
// rotating over copies of the weight larger than L2 together (a DRAM-bound measurement).
#include <algorithm>
#include <memory>
#include <vector>

#include "backends/cuda/cublas_lazy.h"
#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/ops.cuh"
#include "backends/cuda/qweight.h"

namespace lb::cuda {

namespace {
// owns a few device allocations, an event pair, a stream and a cuBLAS handle for one measurement
struct BenchEnv {
    std::vector<void*> bufs;
    cudaStream_t s{};
    cudaEvent_t a{}, b{};
    cublasHandle_t blas{};
    explicit BenchEnv(int device) {
        std::string why;
        if (device_count(&why) == 0) throw Error("no CUDA device: " + why);
        cublas();  // loads cuBLAS (throws when it cannot) before anything needs freeing
        LB_CUDA_CHECK(cudaSetDevice(device));
        LB_CUDA_CHECK(cudaStreamCreate(&s));
        LB_CUDA_CHECK(cudaEventCreate(&a));
        LB_CUDA_CHECK(cudaEventCreate(&b));
        LB_CHECK(cublas().create(&blas) == CUBLAS_STATUS_SUCCESS, "cuBLAS: cublasCreate failed");
        cublas().set_stream(blas, s);
    }
    ~BenchEnv() {
        for (void* p : bufs) cudaFree(p);
        cublas().destroy(blas);
        cudaEventDestroy(a);
        cudaEventDestroy(b);
        cudaStreamDestroy(s);
    }
    uint8_t* alloc(uint64_t n) {
        void* p = nullptr;
        LB_CUDA_CHECK(cudaMalloc(&p, n ? n : 1));
        bufs.push_back(p);
        return static_cast<uint8_t*>(p);
    }
    template <class F>
    double ms(int reps, F&& f) {  // average milliseconds of f() after one warm-up call
        f();
        LB_CUDA_CHECK(cudaEventRecord(a, s));
        for (int i = 0; i < reps; ++i) f();
        LB_CUDA_CHECK(cudaEventRecord(b, s));
        LB_CUDA_CHECK(cudaEventSynchronize(b));
        float t = 0;
        LB_CUDA_CHECK(cudaEventElapsedTime(&t, a, b));
        return double(t) / reps;
    }
};
}  // namespace

double measure_copy_bandwidth(int device, uint64_t bytes, int reps) {
    BenchEnv e(device);
    uint8_t *src = e.alloc(bytes), *dst = e.alloc(bytes);
    LB_CUDA_CHECK(cudaMemsetAsync(src, 1, bytes, e.s));
    const double ms =
        e.ms(reps, [&] { LB_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, e.s)); });
    return 2.0 * double(bytes) / (ms * 1e-3) / 1e9;
}

double time_matmul(int device, Type type, const QParams& p, uint64_t n, uint64_t k, const void* blob, uint64_t ncols,
                   int reps) {
    BenchEnv e(device);
    const WeightView v = make_view(type, p, n, k, blob);
    const uint64_t bytes = tensor_nbytes(type, p, n, k);
    // copies of the weight visited round-robin, together at least 4 x the L2 cache (at most
    // 2 GiB), so that the GEMV reads device memory as it does in a model, not L2
    int l2 = 0;
    LB_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device));
    const uint64_t want = 4 * uint64_t(l2 > 0 ? l2 : 0);
    const uint64_t copies =
        std::max<uint64_t>(1, std::min<uint64_t>((want + bytes - 1) / bytes, (uint64_t(2) << 30) / bytes));
    std::vector<uint8_t*> ws;
    for (uint64_t i = 0; i < copies; ++i) {
        ws.push_back(e.alloc(bytes));
        LB_CUDA_CHECK(cudaMemcpy(ws.back(), blob, bytes, cudaMemcpyHostToDevice));
    }
    float* x = reinterpret_cast<float*>(e.alloc(ncols * k * 4));
    float* y = reinterpret_cast<float*>(e.alloc(ncols * n * 4));
    LB_CUDA_CHECK(cudaMemsetAsync(x, 0, ncols * k * 4, e.s));
    const uint64_t scratch_bytes =
        ((n * k * 2 + 255) & ~uint64_t(255)) + ((ncols * k * 4 + 255) & ~uint64_t(255)) + 256;
    const MatmulCtx c{e.blas, e.alloc(scratch_bytes), scratch_bytes, e.s};
    uint64_t next = 0;
    if (traits(type).kind == Kind::quant) {
        std::vector<dec::QWeight> qs;
        for (uint8_t* w : ws) qs.push_back(dec::to_qweight(v, w));
        return e.ms(reps, [&] { mul_mat_quant(qs[next++ % copies], x, ncols, y, c); });
    }
    // plain weights: through run_mul_mat on stand-alone tensors
    Tensor tw, tx, ty;
    init_weight(tw, type, p, n, k, blob);
    const int64_t xne[2] = {int64_t(k), int64_t(ncols)}, yne[2] = {int64_t(n), int64_t(ncols)};
    init_tensor(tx, Type::f32, 2, xne, nullptr);
    init_tensor(ty, Type::f32, 2, yne, nullptr);
    ty.op = Op::mul_mat;
    ty.src[0] = &tw;
    ty.src[1] = &tx;
    return e.ms(reps, [&] {
        const NodePtrs np{reinterpret_cast<uint8_t*>(y), {ws[next++ % copies], reinterpret_cast<const uint8_t*>(x)}};
        run_mul_mat(ty, np, c);
    });
}

}  // namespace lb::cuda
