// matmul.h: the CPU matmul driver, shared by every ISA: y[j] = W x[j] for a weight of any type
// and ncols f32 activation rows (ncols = 1: GEMV for decode; ncols > 1: GEMM for prompts).
// The per-ISA work is in the CpuKernels primitives (core/quant.h); this file only orders it.
//
// A call has two phases so that a thread pool can run both without allocating:
//   prepare(part, nparts)   quantizes the activations (columns split over parts); skipped by a
//                           GEMV of an rg or sign weight (run as a matmul_group of one), where
//                           each thread quantizes the one column into its own scratch on its
//                           first range of the call
//   run(unit_begin, unit_end, thread_scratch)
//                           computes a range of work units: one unit = one output row, except
//                           for a0 weights where one unit = one row class (the `group` rows
//                           that share a scaled activation), and for rg and sign weights with a
//                           tiled copy (WeightView::tiles, backends/cpu/tiled.h) run by a kernel
//                           table with `tiles` (matmul_uses_tiles), where one unit = one tile
//                           of 16 rows (the last unit: the untiled rows, through the row kernels)
// Scratch sizes are known before the call (shared_bytes, thread_bytes).
#pragma once
#include <cstdint>

#include "core/quant.h"

namespace lb {

// Whether a product of w (with its tiled copy, if any) runs the tiled kernels.
bool matmul_uses_tiles(const WeightView& w, const CpuKernels& kern);

struct Matmul {
    const WeightView* w = nullptr;
    const CpuKernels* kern = nullptr;
    const float* x = nullptr;  // [ncols][k]
    uint64_t ncols = 0;
    float* y = nullptr;         // [ncols][n]
    uint8_t* shared = nullptr;  // shared_bytes(): quantized activations and group sums
    uint64_t call_id = 0;       // unique per call (GEMV of rg/sign: tags each thread's own activation)

    static uint64_t shared_bytes(const WeightView& w, uint64_t ncols);
    static uint64_t thread_bytes(const WeightView& w);
    uint64_t units() const;

    void prepare(uint64_t part, uint64_t nparts) const;
    // column j of x -> its q8 row at act and its sums at sums
    void quantize_column(uint64_t j, uint8_t* act, float* sums) const;
    void run(uint64_t unit_begin, uint64_t unit_end, uint8_t* thread_scratch) const;
};

class ThreadPool;

// f32, f16, bf16 and the quantized types can be matmul weights
bool is_weight_type(Type t);

// Bytes of scratch that matmul() needs for this weight, ncols and thread count.
uint64_t matmul_scratch_bytes(const WeightView& w, uint64_t ncols, int nthreads);

// y = W x on all threads of `pool`, using `scratch` (matmul_scratch_bytes, any alignment);
// allocates nothing.
void matmul(const WeightView& w, const CpuKernels& kern, const float* x, uint64_t ncols, float* y, ThreadPool& pool,
            uint8_t* scratch);

// Several GEMVs of one activation column, y[i] = W[i] x, as one job on the pool (a layer's q, k
// and v projections, or its gate and up): one round trip instead of one per weight, and no
// thread idles at the end of a small matrix. Every weight must be rg or sign
// (matmul_groupable). Weights with the same activation quantization (rg of the same k and
// group) share each thread's quantized column.
bool matmul_groupable(const WeightView& w, uint64_t ncols);
uint64_t matmul_group_scratch_bytes(const WeightView* const* ws, size_t count, int nthreads);
void matmul_group(const WeightView* const* ws, float* const* ys, size_t count, const CpuKernels& kern, const float* x,
                  ThreadPool& pool, uint8_t* scratch);

// Convenience for tests: allocates scratch and runs on the calling thread.
void matmul_simple(const WeightView& w, const CpuKernels& kern, const float* x, uint64_t ncols, float* y);

}  // namespace lb
