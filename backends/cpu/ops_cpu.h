// ops_cpu.h: the CPU reference kernels of the graph ops (one per compute row of LB_OPS in
// core/ops.h). Every kernel splits its work by rows over the thread pool and allocates nothing
// (exceptions: quantized get_rows, and mul_mat of a quantized weight that is a row view or has
// non-contiguous activations: they go through lb::dequant_row_ref, which allocates a row buffer).
// mul_mat of a whole 2-D weight (quantized or float) by contiguous activations runs the matmul
// driver (backends/cpu/matmul.h) with the best CPU kernels, its scratch in the graph's arena.
#pragma once
#include <cstdint>

#include "core/tensor.h"
#include "core/threadpool.h"

namespace lb {

struct CpuCtx {
    ThreadPool* pool = nullptr;
    uint8_t* work = nullptr;  // cpu_work_bytes(node, pool->size()) bytes, 64-byte aligned
};

// Runs node `t` (sources already computed, t->data set). Views and leaves: nothing.
// Throws lb::Error (before any thread starts) on bad data, e.g. an id out of range.
void cpu_compute(Tensor& t, const CpuCtx& ctx);
// Scratch bytes node `t` needs with `n_threads` threads.
uint64_t cpu_work_bytes(const Tensor& t, int n_threads);

// Decode projections: mul_mat nodes of one activation column by an rg or sign weight can run
// together as one pool job (backends/cpu/matmul.h, matmul_group), up to kCpuGroupMax of them,
// all with the same src[1]. The graph's plan() places such nodes next to each other.
constexpr size_t kCpuGroupMax = 8;
bool cpu_groupable(const Tensor& t);
uint64_t cpu_group_work_bytes(Tensor* const* nodes, size_t count, int n_threads);
void cpu_compute_group(Tensor* const* nodes, size_t count, const CpuCtx& ctx);

}  // namespace lb
