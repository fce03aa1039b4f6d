// buffer.cpp: see buffer.h.
#include "core/buffer.h"

#include <cstdlib>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace lb {

void Buffer::Free::operator()(uint8_t* p) const { std::free(p); }

Buffer make_buffer(uint64_t nbytes) {
    constexpr uint64_t huge = uint64_t(2) << 20;
    const bool big = nbytes >= huge;
    const uint64_t align = big ? huge : 64;
    const uint64_t size = (nbytes + align - 1) / align * align;
    void* p = std::aligned_alloc(align, size ? size : align);
    if (!p) throw std::bad_alloc();
#if defined(__linux__)
    if (big) madvise(p, size, MADV_HUGEPAGE);  // advice only: a refusal leaves 4 KiB pages
#endif
    Buffer b;
    b.data.reset(static_cast<uint8_t*>(p));
    b.nbytes = nbytes;
    return b;
}

}  // namespace lb
