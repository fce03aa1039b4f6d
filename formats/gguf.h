// gguf.h: reader of GGUF files (versions 2 and 3), the container of llama.cpp models and vocabularies.
// The file is mapped read-only (or parsed from caller memory); every count, length and offset is
// checked against the bytes that are actually there before it is used, so a truncated or hostile
// file gives an lb::Error naming the field, never a crash or a huge allocation.
// Metadata is exposed through lb::Metadata (formats/lbf.h) with the GGUF value types mapped to
// the lowbit ones (GGUF u32 -> MetaType::u32, ...); tensor infos are exposed as they are stored,
// with the ggml type id left for a family importer to interpret.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "formats/lbf.h"
#include "formats/mapped_file.h"

namespace lb {

namespace gguf {
constexpr char kMagic[4] = {'G', 'G', 'U', 'F'};
constexpr uint32_t kMinVersion = 2, kMaxVersion = 3;  // v1 (32-bit counts) is not read
constexpr uint32_t kDefaultAlignment = 32;            // unless general.alignment says otherwise
constexpr uint32_t kMaxDims = 4;
constexpr uint64_t kMaxKeyBytes = 65536;

// GGUF value type codes as stored in the file.
enum ValueType : uint32_t {
    u8 = 0,
    i8 = 1,
    u16 = 2,
    i16 = 3,
    u32 = 4,
    i32 = 5,
    f32 = 6,
    boolean = 7,
    string = 8,
    array = 9,
    u64 = 10,
    i64 = 11,
    f64 = 12,
};

// Bytes of `n` elements of ggml type `type` (0 = f32, 1 = f16, 2 = q4_0, ...), or 0 if this
// reader does not know the type's block layout (the importer decides what to do with it).
uint64_t ggml_type_nbytes(uint32_t type, uint64_t n);
const char* ggml_type_name(uint32_t type);  // "f32", "q4_1", ... or "?"
}  // namespace gguf

struct GgufTensorInfo {
    std::string name;
    std::vector<uint64_t> dims;     // dims[0] is the innermost (contiguous) dimension
    uint32_t type = 0;              // ggml type id
    uint64_t offset = 0;            // bytes from the start of the data section
    uint64_t nbytes = 0;            // 0 if the type's layout is unknown to this reader
    const uint8_t* data = nullptr;  // into the file's bytes; null if nbytes is 0
    uint64_t n_elements() const;
};

class GgufFile : MappedSource {
 public:
    static std::unique_ptr<GgufFile> open(const std::string& path);
    // Parses `size` bytes at `data` without copying; the memory must outlive the GgufFile.
    static std::unique_ptr<GgufFile> from_memory(const void* data, size_t size, const std::string& origin = "<memory>");
    ~GgufFile();
    GgufFile(const GgufFile&) = delete;
    GgufFile& operator=(const GgufFile&) = delete;

    const std::string& origin() const { return origin_; }
    uint32_t version() const { return version_; }
    uint64_t file_size() const { return size_; }
    uint32_t alignment() const { return alignment_; }
    uint64_t data_offset() const { return data_offset_; }  // absolute; == file size if no tensors
    const Metadata& metadata() const { return meta_; }
    const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
    const GgufTensorInfo* find_tensor(const std::string& name) const;  // nullptr if absent

    // Integer metadata of any integer type (GGUF writers disagree on u32 vs i32 for ids).
    // Throws if the key is absent (first form) or not an integer or out of int64 range.
    int64_t get_int(const std::string& key) const;
    int64_t get_int(const std::string& key, int64_t fallback) const;

 private:
    GgufFile() = default;
    void parse();
    uint32_t version_ = 0;
    uint32_t alignment_ = gguf::kDefaultAlignment;
    uint64_t data_offset_ = 0;
    Metadata meta_;
    std::vector<GgufTensorInfo> tensors_;
    std::unordered_map<std::string, size_t> by_name_;
};

}  // namespace lb
