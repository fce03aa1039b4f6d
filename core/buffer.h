// buffer.h: owned, 64-byte aligned memory for large arrays that kernels stream (tiled weights,
// the bandwidth probe). Buffers of 2 MiB or more are advised onto 2 MiB pages where the kernel
// allows it (Linux transparent huge pages in madvise mode): with 4 KiB pages the hardware
// prefetchers stop at every page boundary and streams pay a TLB miss per 4 KiB.
#pragma once
#include <cstdint>
#include <memory>

namespace lb {

struct Buffer {
    struct Free {
        void operator()(uint8_t* p) const;
    };
    std::unique_ptr<uint8_t, Free> data;
    uint64_t nbytes = 0;
};

// Uninitialized; throws std::bad_alloc when the memory is not there.
Buffer make_buffer(uint64_t nbytes);

}  // namespace lb
