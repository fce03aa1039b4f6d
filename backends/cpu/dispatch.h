// dispatch.h: which CPU kernel table runs. Every ISA this build compiled and this CPU supports
// is listed; the best one is the default; LB_ISA=ref|avx2|avx512|neon forces one (an unknown or
// unsupported name is an error, never a silent fallback).
#pragma once
#include <vector>

#include "core/quant.h"

namespace lb {

std::vector<const CpuKernels*> kernels_available();  // ref first, best last
const CpuKernels& kernels_best();
const CpuKernels& kernels_by_name(const char* isa);  // throws if not available here

// per-ISA tables (defined in kernels_<isa>.cpp, compiled only for their architecture)
const CpuKernels& kernels_avx2();
const CpuKernels& kernels_avx512();
const CpuKernels& kernels_neon();

// x86: the CPU has GFNI (CPUID.7.0:ECX bit 8)
bool cpu_has_gfni();
// kernels of tiled weights: the avx512 table's (tiles_avx512_gfni.cpp: AVX-512 + GFNI) and the
// avx2 table's (tiles_avx2.cpp; also the avx512 table's on CPUs without GFNI)
void tiles_avx512(const TiledArgs& a, uint64_t t0, uint64_t t1, float* scratch);
void tiles_avx2(const TiledArgs& a, uint64_t t0, uint64_t t1, float* scratch);

}  // namespace lb
