// dispatch.cpp: runtime choice of the CPU kernel table by CPUID (x86) or by build (aarch64).
#include "backends/cpu/dispatch.h"

#include <cstdlib>
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include <cstring>
#include <string>

#include "core/error.h"

namespace lb {

std::vector<const CpuKernels*> kernels_available() {
    std::vector<const CpuKernels*> v{&kernels_ref()};
#if defined(__x86_64__)
    __builtin_cpu_init();
    // F16C (CPUID leaf 1, ECX bit 29) is not known to every compiler's __builtin_cpu_supports
    unsigned a = 0, b = 0, c = 0, d = 0;
    const bool f16c = __get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1u);
    const bool avx2 =
        __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c && __builtin_cpu_supports("bmi2");
    if (avx2) v.push_back(&kernels_avx2());
    if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"))
        v.push_back(&kernels_avx512());
#elif defined(__aarch64__)
    v.push_back(&kernels_neon());
#endif
    return v;
}

bool cpu_has_gfni() {
#if defined(__x86_64__)
    unsigned a = 0, b = 0, c = 0, d = 0;
    return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (c >> 8 & 1u);
#else
    return false;
#endif
}

const CpuKernels& kernels_by_name(const char* isa) {
    std::string have;
    for (const CpuKernels* k : kernels_available()) {
        if (!std::strcmp(k->isa, isa)) return *k;
        have += std::string(have.empty() ? "" : ", ") + k->isa;
    }
    throw Error(strfmt("CPU kernels '%s' are not available on this machine/build (available: %s)", isa, have.c_str()));
}

const CpuKernels& kernels_best() {
    static const CpuKernels* best = [] {
        const char* env = std::getenv("LB_ISA");
        if (env && *env) return &kernels_by_name(env);
        return kernels_available().back();
    }();
    return *best;
}

}  // namespace lb
