// safetensors.h: reader of .safetensors files: a u64 little-endian header length, a JSON header
// {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the
// tensor bytes (offsets relative to the end of the header). The file is mapped read-only and every
// tensor points into the mapping. Checked: the header fits in the file, dtypes are known, each
// tensor's byte range lies inside the data and matches shape x element size, and no two ranges
// overlap. formats/containers.md lists what is accepted.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "formats/mapped_file.h"
#include "formats/source_tensor.h"

namespace lb {

class SafetensorsFile : MappedSource {
 public:
    static constexpr uint64_t kMaxHeaderBytes = uint64_t(100) << 20;  // as the reference implementation
    static constexpr unsigned kMaxRank = 32;

    static std::unique_ptr<SafetensorsFile> open(const std::string& path);
    // Parses `size` bytes at `data` without copying; the memory must outlive the SafetensorsFile.
    static std::unique_ptr<SafetensorsFile> from_memory(const void* data, size_t size,
                                                        const std::string& origin = "<memory>");
    // True if the first bytes of a file (at least 9 of them) start like a safetensors file: a header
    // length of at least 2, then '{'. Whether the header fits is left to open().
    static bool looks_like_safetensors(const uint8_t* head, size_t head_size);

    const std::string& origin() const { return origin_; }
    // Tensors in header order.
    const std::vector<std::pair<std::string, SourceTensor>>& tensors() const { return tensors_; }
    const SourceTensor* find(const std::string& name) const;                          // nullptr if absent
    const std::map<std::string, std::string>& metadata() const { return metadata_; }  // "__metadata__"
    uint64_t header_size() const { return header_size_; }

 private:
    SafetensorsFile() = default;
    void parse();

    uint64_t header_size_ = 0;
    std::vector<std::pair<std::string, SourceTensor>> tensors_;
    std::unordered_map<std::string, size_t> by_name_;
    std::map<std::string, std::string> metadata_;
};

}  // namespace lb
