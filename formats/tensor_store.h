// tensor_store.h: one flat name -> tensor view over the weight files of a downloaded checkpoint,
// whatever container they use: safetensors (one file, or shards + model.safetensors.index.json) or
// torch.save zips (pytorch_model.bin, or shards + pytorch_model.bin.index.json). Family importers
// (GreenBit, OneBit, ...) look tensors up by their checkpoint names here; the HQQ importer, which
// needs the non-tensor values of qmodel.pt, opens that file with TorchFile::open directly.
//
// In a directory, the weights are looked for in this order (the first that exists wins):
//   model.safetensors.index.json, model.safetensors, the only *.safetensors file,
//   pytorch_model.bin.index.json, pytorch_model.bin.
// A file path is read by its content (zip = torch.save, else safetensors); a path ending in
// ".index.json" is a shard index. Torch files whose root is a dict are flattened: nested dicts give
// names joined with '.', tensors become entries, other values are skipped (torch_roots() keeps them).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "formats/safetensors.h"
#include "formats/source_tensor.h"
#include "formats/torch_zip.h"

namespace lb {

class TensorStore {
 public:
    enum class Format { safetensors, torch };

    // Throws lb::Error naming the path and what is wrong (nothing found, a bad shard index, a
    // tensor in two shards, an index entry missing from its shard, any container error).
    static TensorStore open(const std::string& path);

    const SourceTensor* find(const std::string& name) const;          // nullptr if absent
    const SourceTensor& get(const std::string& name) const;           // throws, naming the tensor and the store
    const std::vector<std::string>& names() const { return names_; }  // file order, shards in name order
    size_t size() const { return names_.size(); }
    // The weight file that holds `name` (throws if absent).
    const std::string& file_of(const std::string& name) const;

    Format format() const { return format_; }
    const std::string& path() const { return path_; }                 // what open() was given
    const std::vector<std::string>& files() const { return files_; }  // the weight files read
    // e.g. "safetensors, 2 shards, 291 tensors (dir/model.safetensors.index.json)"
    std::string describe() const;

    // The value tree of each torch file, in files() order (empty for safetensors).
    const std::vector<PyRef>& torch_roots() const { return torch_roots_; }
    // The "__metadata__" of each safetensors file, in files() order (empty for torch).
    std::vector<const std::map<std::string, std::string>*> safetensors_metadata() const;

 private:
    struct Entry {
        const SourceTensor* tensor;
        size_t file;  // index into files_
    };
    void add(const std::string& name, const SourceTensor* t, size_t file);
    void add_safetensors(const std::string& file);
    void add_torch(const std::string& file);
    void add_torch_tree(const PyObj& obj, const std::string& prefix, size_t file);
    void open_index(const std::string& index_path, Format format);

    Format format_ = Format::safetensors;
    std::string path_;
    bool sharded_ = false;
    std::vector<std::string> files_;
    std::vector<std::string> names_;
    std::unordered_map<std::string, Entry> by_name_;
    std::vector<std::shared_ptr<const SafetensorsFile>> st_files_;
    std::vector<std::shared_ptr<const TorchFile>> torch_files_;
    std::vector<PyRef> torch_roots_;
};

}  // namespace lb
