// tensor_store.cpp: finding the weight files of a checkpoint and flattening them into one name ->
// tensor map (formats/tensor_store.h).
#include "formats/tensor_store.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace lb {

namespace {

bool is_dir(const std::string& p) {
    struct stat st;
    return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool is_file(const std::string& p) {
    struct stat st;
    return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
bool ends_with(const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}
std::string join(const std::string& dir, const std::string& name) {
    return dir.empty() || dir.back() == '/' ? dir + name : dir + "/" + name;
}
std::string dir_of(const std::string& path) {
    const size_t s = path.rfind('/');
    return s == std::string::npos ? "." : path.substr(0, s + 1);
}

// Names of the regular files in `dir` whose names end in `ext`, sorted.
std::vector<std::string> list_files(const std::string& dir, const std::string& ext) {
    std::vector<std::string> out;
    // <filesystem> is avoided on purpose: opendir keeps this to POSIX like the rest of formats/
    if (DIR* d = ::opendir(dir.c_str())) {
        while (const dirent* e = ::readdir(d)) {
            const std::string n = e->d_name;
            if (ends_with(n, ext) && is_file(join(dir, n))) out.push_back(n);
        }
        ::closedir(d);
    }
    std::sort(out.begin(), out.end());
    return out;
}

// The first bytes of a file (at most n).
std::string head_bytes(const std::string& path, size_t n) {
    std::ifstream f(path, std::ios::binary);
    LB_CHECK(f, "%s: cannot open", path.c_str());
    std::string s(n, '\0');
    f.read(&s[0], std::streamsize(n));
    s.resize(size_t(f.gcount()));
    return s;
}

}  // namespace

TensorStore TensorStore::open(const std::string& path) {
    TensorStore s;
    s.path_ = path;
    if (is_dir(path)) {
        const std::string st_index = join(path, "model.safetensors.index.json");
        const std::string bin_index = join(path, "pytorch_model.bin.index.json");
        if (is_file(st_index)) {
            s.open_index(st_index, Format::safetensors);
        } else if (is_file(join(path, "model.safetensors"))) {
            s.add_safetensors(join(path, "model.safetensors"));
        } else if (const auto st = list_files(path, ".safetensors"); !st.empty()) {
            if (st.size() > 1) {
                std::string all;
                for (const std::string& n : st) all += (all.empty() ? "" : ", ") + n;
                throw Error(path + ": several .safetensors files (" + all +
                            ") and no model.safetensors.index.json saying how they fit together");
            }
            s.add_safetensors(join(path, st[0]));
        } else if (is_file(bin_index)) {
            s.open_index(bin_index, Format::torch);
        } else if (is_file(join(path, "pytorch_model.bin"))) {
            s.add_torch(join(path, "pytorch_model.bin"));
        } else {
            throw Error(
                path +
                ": no weights found (looked for model.safetensors.index.json, model.safetensors, *.safetensors, "
                "pytorch_model.bin.index.json, pytorch_model.bin)");
        }
        return s;
    }
    LB_CHECK(is_file(path), "%s: no such file or directory", path.c_str());
    if (ends_with(path, ".index.json")) {
        s.open_index(path, ends_with(path, ".safetensors.index.json") ? Format::safetensors : Format::torch);
        return s;
    }
    const std::string head = head_bytes(path, 16);
    const auto* h = reinterpret_cast<const uint8_t*>(head.data());
    if (TorchFile::looks_like_zip(h, head.size()) || (!head.empty() && h[0] == 0x80))
        s.add_torch(path);  // a zip, or a legacy torch file that TorchFile explains
    else if (SafetensorsFile::looks_like_safetensors(h, head.size()))
        s.add_safetensors(path);
    else
        throw Error(path + ": not a weight file this reader knows (neither a torch.save zip nor safetensors)");
    return s;
}

void TensorStore::add(const std::string& name, const SourceTensor* t, size_t file) {
    auto [it, fresh] = by_name_.emplace(name, Entry{t, file});
    if (!fresh) {
        if (it->second.file == file) throw Error(files_[file] + ": tensor '" + name + "' appears twice");
        throw Error(path_ + ": tensor '" + name + "' is in two shards: " + files_[it->second.file] + " and " +
                    files_[file]);
    }
    names_.push_back(name);
}

void TensorStore::add_safetensors(const std::string& file) {
    format_ = Format::safetensors;
    std::shared_ptr<const SafetensorsFile> f = SafetensorsFile::open(file);
    const size_t idx = files_.size();
    files_.push_back(file);
    st_files_.push_back(f);
    for (const auto& [name, t] : f->tensors()) add(name, &t, idx);
}

void TensorStore::add_torch(const std::string& file) {
    format_ = Format::torch;
    std::shared_ptr<const TorchFile> f = TorchFile::open(file);
    const size_t idx = files_.size();
    files_.push_back(file);
    torch_files_.push_back(f);
    torch_roots_.push_back(f->root_ref());
    if (f->root().is(PyKind::dict)) add_torch_tree(f->root(), "", idx);
}

void TensorStore::add_torch_tree(const PyObj& obj, const std::string& prefix, size_t file) {
    // recursion depth is bounded by the unpickler's nesting limit
    for (const auto& [k, v] : obj.as_dict().items()) {
        if (!k->is(PyKind::str)) continue;  // state dicts have str keys; others stay in torch_roots()
        const std::string name = prefix.empty() ? k->as_str() : prefix + "." + k->as_str();
        if (v->is(PyKind::tensor))
            add(name, &v->as_source(), file);
        else if (v->is(PyKind::dict))
            add_torch_tree(*v, name, file);
    }
}

void TensorStore::open_index(const std::string& index_path, Format format) {
    sharded_ = true;
    format_ = format;
    std::ifstream in(index_path, std::ios::binary);
    LB_CHECK(in, "%s: cannot open", index_path.c_str());
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    nlohmann::ordered_json j;
    try {
        j = nlohmann::ordered_json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        throw Error(index_path + ": not valid JSON: " + e.what());
    }
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
        throw Error(index_path +
                    ": no \"weight_map\" object (expected {\"metadata\": ..., \"weight_map\": {name: file}})");
    const auto& wm = j["weight_map"];
    std::map<std::string, std::string> want;  // tensor -> shard, as the index says
    std::vector<std::string> shards;
    for (auto it = wm.begin(); it != wm.end(); ++it) {
        if (!it.value().is_string()) throw Error(index_path + ": weight_map['" + it.key() + "'] is not a file name");
        const std::string shard = it.value().get<std::string>();
        if (shard.empty() || shard == "." || shard == ".." || shard.find('/') != std::string::npos ||
            shard.find('\0') != std::string::npos)
            throw Error(index_path + ": weight_map['" + it.key() + "'] = '" + shard +
                        "' is not a plain file name in the index's folder");
        want[it.key()] = shard;
        if (std::find(shards.begin(), shards.end(), shard) == shards.end()) shards.push_back(shard);
    }
    if (shards.empty()) throw Error(index_path + ": weight_map is empty");
    std::sort(shards.begin(), shards.end());
    const std::string dir = dir_of(index_path);
    for (const std::string& shard : shards) {
        const std::string file = join(dir, shard);
        if (!is_file(file)) throw Error(index_path + ": names shard '" + shard + "', but " + file + " does not exist");
        if (format == Format::safetensors)
            add_safetensors(file);
        else
            add_torch(file);
    }
    format_ = format;
    for (const auto& [name, shard] : want) {
        auto it = by_name_.find(name);
        if (it == by_name_.end() || files_[it->second.file] != join(dir, shard))
            throw Error(index_path + ": maps tensor '" + name + "' to " + shard + ", but that shard does not hold it" +
                        (it == by_name_.end() ? "" : " (it is in " + files_[it->second.file] + ")"));
    }
}

const SourceTensor* TensorStore::find(const std::string& name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : it->second.tensor;
}

const SourceTensor& TensorStore::get(const std::string& name) const {
    const SourceTensor* t = find(name);
    if (!t) throw Error("tensor '" + name + "' not found in " + describe());
    return *t;
}

const std::string& TensorStore::file_of(const std::string& name) const {
    auto it = by_name_.find(name);
    if (it == by_name_.end()) throw Error("tensor '" + name + "' not found in " + describe());
    return files_[it->second.file];
}

std::string TensorStore::describe() const {
    std::string s = format_ == Format::safetensors ? "safetensors" : "torch zip";
    s += sharded_ ? ", " + std::to_string(files_.size()) + " shards" : ", 1 file";
    s += ", " + std::to_string(names_.size()) + " tensors (" + path_ + ")";
    return s;
}

std::vector<const std::map<std::string, std::string>*> TensorStore::safetensors_metadata() const {
    std::vector<const std::map<std::string, std::string>*> out;
    for (const auto& f : st_files_) out.push_back(&f->metadata());
    return out;
}

}  // namespace lb
