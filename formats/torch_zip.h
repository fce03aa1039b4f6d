// torch_zip.h: reader of torch.save files (torch >= 1.6: a zip archive of stored entries
// <root>/data.pkl, <root>/data/<key>, <root>/version, ...; formats/containers.md). The file is mapped
// read-only; the zip structure is taken from the central directory (ZIP64 records included) and
// checked entry by entry; data.pkl is read by the restricted unpickler (formats/pickle.h) with each
// storage resolved to its zip entry. Contiguous tensors point into the mapping (zero-copy);
// non-contiguous views are copied into buffers the tensor objects own.
//
// The value tree stays accessible (root()): family importers (HQQ's qmodel.pt) read non-tensor
// values such as meta['nbits'] or dtype globals from it. Tensor bytes stay valid while the
// TorchFile or any PyRef into its tree lives.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "formats/mapped_file.h"
#include "formats/pickle.h"

namespace lb {

struct ZipEntry {
    std::string name;     // full name, e.g. "archive/data/0"
    uint64_t offset = 0;  // of the entry's bytes in the file
    uint64_t size = 0;
    uint32_t crc32 = 0;  // from the central directory
};

class TorchFile : MappedSource {
 public:
    static std::unique_ptr<TorchFile> open(const std::string& path);
    // Parses `size` bytes at `data` without copying; the memory must outlive the TorchFile and every
    // PyRef taken from it. `check_crc` = false skips the CRC-32 checks of data.pkl and the small
    // records (the fuzz target does, so that mutated pickles inside a zip reach the unpickler).
    static std::unique_ptr<TorchFile> from_memory(const void* data, size_t size, const std::string& origin = "<memory>",
                                                  bool check_crc = true);

    // True if the bytes start like a zip archive (the torch.save format since torch 1.6).
    static bool looks_like_zip(const uint8_t* data, size_t size);

    const std::string& origin() const { return origin_; }
    const std::string& root_folder() const { return root_; }  // "archive", "pytorch_model", ...
    int version() const { return version_; }                  // the <root>/version record
    const PyObj& root() const { return *root_obj_; }
    const PyRef& root_ref() const { return root_obj_; }
    const std::vector<ZipEntry>& entries() const { return entries_; }
    // An entry by its name below the root folder ("data.pkl", "data/0"); nullptr if absent.
    const ZipEntry* find_entry(const std::string& rel_name) const;

 private:
    TorchFile() = default;
    void parse();
    void read_zip();

    std::string root_;
    int version_ = 0;
    bool check_crc_ = true;
    std::vector<ZipEntry> entries_;
    std::unordered_map<std::string, size_t> by_name_;
    PyRef root_obj_;
};

}  // namespace lb
