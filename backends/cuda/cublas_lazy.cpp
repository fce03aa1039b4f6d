// cublas_lazy.cpp: see cublas_lazy.h.
#include "backends/cuda/cublas_lazy.h"

#include <dlfcn.h>

#include <string>
#include <type_traits>

#include "core/error.h"

// the exported name of an entry point (cublasCreate is a macro for cublasCreate_v2, ...)
#define LB_CUBLAS_NAME2(x) #x
#define LB_CUBLAS_NAME(x) LB_CUBLAS_NAME2(x)

namespace lb::cuda {

static Cublas load_cublas() {
    const std::string soname = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);
    void* h = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
    std::string why = h ? "" : dlerror();
#ifdef LB_CUDA_LIBRARY_DIR
    if (!h) {
        const std::string path = std::string(LB_CUDA_LIBRARY_DIR) + "/" + soname;
        h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (!h) why += std::string("; ") + dlerror();
    }
#endif
    if (!h) throw Error("cuBLAS: cannot load " + soname + ": " + why);
    Cublas c{};
    auto get = [&](auto& fn, const char* name) {
        void* p = dlsym(h, name);
        if (!p) throw Error(strfmt("cuBLAS: %s has no %s", soname.c_str(), name));
        fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(p);
    };
    get(c.create, LB_CUBLAS_NAME(cublasCreate));
    get(c.destroy, LB_CUBLAS_NAME(cublasDestroy));
    get(c.set_stream, LB_CUBLAS_NAME(cublasSetStream));
    get(c.gemm_ex, LB_CUBLAS_NAME(cublasGemmEx));
    get(c.gemm_strided_batched_ex, LB_CUBLAS_NAME(cublasGemmStridedBatchedEx));
    return c;  // the library stays loaded for the life of the process
}

const Cublas& cublas() {
    static const Cublas c = load_cublas();  // a throw leaves it unset: the next call tries again
    return c;
}

}  // namespace lb::cuda
