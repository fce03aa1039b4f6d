// mapped_file.h: a whole file mapped read-only, shared by the readers of foreign containers
// (GGUF, torch zip, safetensors) and by everything that points into it: tensors hold a reference
// so that the mapping outlives them. An empty file has no mapping (data() is null, size() 0).
// Also: the bytes a container reader parses (MappedSource), and whole small text files.
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

// The bytes a container reader parses (GgufFile, SafetensorsFile, TorchFile derive from it): a
// file's mapping, or memory the caller keeps alive (from_memory), and where they came from, for
// error messages.
class MappedSource {
 protected:
    void attach(const std::string& path);
    void attach(const void* data, uint64_t size, const std::string& origin);

    std::shared_ptr<const MappedFile> map_;  // null for memory
    const uint8_t* base_ = nullptr;
    uint64_t size_ = 0;
    std::string origin_;
};

// The whole file as bytes (config.json, tokenizer files, prompts); throws lb::Error naming it.
std::string read_text_file(const std::string& path);

}  // namespace lb
