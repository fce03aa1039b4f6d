// source_tensor.h: a tensor as a foreign container (safetensors, torch.save zip) stores it, before
// any family importer interprets it: element type, shape in the source's (torch) order, and the
// bytes, row-major and contiguous. The bytes are borrowed: they live in the file's mapping or in a
// buffer owned by the file object that handed the tensor out, and stay valid while it lives.
#pragma once
#include <cstdint>
#include <vector>

namespace lb {

// Element types of source tensors (torch / safetensors names: float16, bfloat16, float32, float64,
// int8, uint8, int16, int32, int64, bool). All are little-endian in the file.
enum class DType { f16, bf16, f32, f64, i8, u8, i16, i32, i64, boolean };

inline const char* dtype_name(DType t) {
    switch (t) {
        case DType::f16:
            return "f16";
        case DType::bf16:
            return "bf16";
        case DType::f32:
            return "f32";
        case DType::f64:
            return "f64";
        case DType::i8:
            return "i8";
        case DType::u8:
            return "u8";
        case DType::i16:
            return "i16";
        case DType::i32:
            return "i32";
        case DType::i64:
            return "i64";
        case DType::boolean:
            return "bool";
    }
    return "?";
}

// Bytes per element.
inline uint32_t dtype_size(DType t) {
    switch (t) {
        case DType::f16:
        case DType::bf16:
        case DType::i16:
            return 2;
        case DType::f32:
        case DType::i32:
            return 4;
        case DType::f64:
        case DType::i64:
            return 8;
        case DType::i8:
        case DType::u8:
        case DType::boolean:
            return 1;
    }
    return 0;
}

struct SourceTensor {
    DType dtype = DType::f32;
    std::vector<int64_t> shape;     // torch order (outermost first), row-major, contiguous; {} = scalar
    const uint8_t* data = nullptr;  // nbytes bytes (may be null when nbytes == 0)
    uint64_t nbytes = 0;            // == numel() * dtype_size(dtype)

    // Elements (1 for a 0-dim tensor). The readers check that this cannot overflow.
    uint64_t numel() const {
        uint64_t n = 1;
        for (int64_t d : shape) n *= uint64_t(d);
        return n;
    }
};

}  // namespace lb
