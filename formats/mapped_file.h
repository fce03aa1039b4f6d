// mapped_file.h: a whole file mapped read-only, shared by the readers of foreign containers
// (torch zip, safetensors) and by everything that points into it: tensors hold a reference so that
// the mapping outlives them. An empty file has no mapping (data() is null, size() 0).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace lb {

class MappedFile {
 public:
    // Throws lb::Error naming the path if it cannot be opened, is not a regular file or cannot be mapped.
    static std::shared_ptr<const MappedFile> open(const std::string& path);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const uint8_t* data() const { return data_; }
    uint64_t size() const { return size_; }
    const std::string& path() const { return path_; }

 private:
    MappedFile() = default;
    const uint8_t* data_ = nullptr;
    uint64_t size_ = 0;
    std::string path_;
};

}  // namespace lb
