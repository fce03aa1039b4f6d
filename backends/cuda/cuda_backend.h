// cuda_backend.h: the CUDA backend's host interface (no CUDA headers: included by the C API and
// the CLI, compiled only when the build has CUDA, LB_HAVE_CUDA). A backend executes planned
// lb::Graph objects on one GPU: every op of core/ops.h has a kernel (backends/cuda/ops.cu,
// backends/cuda/matmul.cu); weights and other user memory are mirrored on the device.
//
//   auto w = cuda::upload_weights(model, 0);        // every tensor of a LlamaModel -> device
//   auto be = cuda::make_backend(w);                 // one per context (owns its KV cache mirror)
//   LlamaGraphOptions o; o.backend = be.get();       // LlamaGraph then runs on the GPU
//
// Host memory that a graph references and that is not an uploaded weight (a KV cache, a test's
// tensors) is copied to the device once, when the first graph using it is prepared; from then on
// the device copy is the one that is read and written (the host copy goes stale).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "core/graph.h"

namespace lb {
class LlamaModel;
}

namespace lb::cuda {

// CUDA devices this process can use; 0 with the reason in *why when there is none.
int device_count(std::string* why = nullptr);
// "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)"
std::string device_description(int device);

// device copies of every tensor of a model, keyed by their host addresses
struct DeviceWeights;
// Uploads every tensor of m (the mmap'd .lbf or checkpoint memory stays on the host as well).
// Throws lb::Error ("no CUDA device: ..." when there is none).
std::shared_ptr<DeviceWeights> upload_weights(const LlamaModel& m, int device);
uint64_t device_bytes(const DeviceWeights& w);

// A backend over uploaded weights (null: mirror everything on first use, as the tests do).
std::unique_ptr<GraphBackend> make_backend(std::shared_ptr<DeviceWeights> w, int device = 0);

// The batch path of quantized weights (more than 4 columns): false (default, or LB_CUDA_GEMM unset):
// weight tiles dequantized into shared memory + wmma; true (LB_CUDA_GEMM=dequant): the whole weight
// dequantized to f16 + cuBLAS. Set it before preparing graphs (it sizes their scratch); not
// thread-safe: for tests and benchmarks.
void set_gemm_dequant_cublas(bool on);

// ---- benchmarks (tools/cmd_bench.cpp) ----
// device-to-device copy bandwidth in GB/s (bytes read + written per second)
double measure_copy_bandwidth(int device, uint64_t bytes, int reps);
// milliseconds per y = W x with ncols columns, W an n x k weight of (type, params) given as a host
// blob, averaged over reps after a warm-up
double time_matmul(int device, Type type, const QParams& p, uint64_t n, uint64_t k, const void* blob, uint64_t ncols,
                   int reps);

}  // namespace lb::cuda
