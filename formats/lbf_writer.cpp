// lbf_writer.cpp: LbfWriter (formats/lbf.md): checks every key, value and tensor when it is added,
// then finish() serializes the index (header, metadata, tensor directory), streams the tensor data
// and publishes the file atomically: temporary file in the same directory, fsync, rename.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <type_traits>

#include "formats/checksum.h"
#include "formats/lbf.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the .lbf writer stores host words as little-endian");

namespace lb {
namespace {

uint64_t align64(uint64_t x) { return (x + lbf::kAlign - 1) / lbf::kAlign * lbf::kAlign; }

std::string dims_string(const std::vector<uint64_t>& d) {
    std::string s = "[";
    for (size_t i = 0; i < d.size(); i++) s += (i ? ", " : "") + std::to_string(d[i]);
    return s + "]";
}

// little-endian serialization into a growing buffer
struct Bytes {
    std::vector<uint8_t> b;
    template <class T>
    void put(T v) {
        static_assert(std::is_arithmetic_v<T>, "scalar fields only");
        const size_t at = b.size();
        b.resize(at + sizeof(T));
        std::memcpy(b.data() + at, &v, sizeof(T));
    }
    void put_string(const std::string& s) {
        put<uint64_t>(s.size());
        b.insert(b.end(), s.begin(), s.end());
    }
    template <class T>
    void put_elem(const T& v) {
        if constexpr (std::is_same_v<T, std::string>) {
            put_string(v);
        } else if constexpr (std::is_same_v<T, bool>) {
            put<uint8_t>(v ? 1 : 0);
        } else {
            put<T>(v);
        }
    }
    void put_value(const MetaValue& v) {
        put<uint32_t>(uint32_t(v.type()));
        std::visit(
            [&](const auto& x) {
                using T = std::decay_t<decltype(x)>;
                if constexpr (std::is_same_v<T, std::string> || std::is_arithmetic_v<T>) {
                    put_elem(x);
                } else {
                    put<uint32_t>(uint32_t(v.elem_type()));
                    put<uint64_t>(x.size());
                    for (const auto& e : x) put_elem<typename T::value_type>(e);
                }
            },
            v.variant());
    }
};

// write(2) until done; Linux moves at most ~2 GiB per call
void write_all(int fd, const void* data, uint64_t n, const std::string& what) {
    const uint8_t* p = static_cast<const uint8_t*>(data);
    while (n > 0) {
        const ssize_t w = ::write(fd, p, size_t(std::min<uint64_t>(n, 1ull << 30)));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) throw Error(what + ": write failed: " + std::strerror(w < 0 ? errno : EIO));
        p += w;
        n -= uint64_t(w);
    }
}

std::string parent_dir(const std::string& path) {
    const size_t slash = path.find_last_of('/');
    if (slash == std::string::npos) return ".";
    return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

LbfWriter::LbfWriter(std::string path) : path_(std::move(path)) {}

LbfWriter::~LbfWriter() = default;  // nothing reaches the disk before finish()

void LbfWriter::check_open() const {
    if (finished_) throw Error(path_ + ": the writer has already finished");
}

void LbfWriter::set(const std::string& key, MetaValue value) {
    check_open();
    std::string problem = lbf_name_problem(key.data(), key.size());
    if (!problem.empty()) throw Error(path_ + ": metadata key " + problem);
    problem = lbf_value_problem(value);
    if (!problem.empty()) throw Error(path_ + ": metadata key '" + key + "': " + problem);
    if (!meta_.contains(key) && meta_.size() >= lbf::kMaxMetadata)
        throw Error(path_ + strfmt(": more than %llu metadata keys", (unsigned long long)lbf::kMaxMetadata));
    meta_.set(key, std::move(value));
}

void LbfWriter::add_tensor(const std::string& name, Type type, const QParams& params, std::vector<uint64_t> dims,
                           const void* data, size_t nbytes) {
    check_open();
    std::string problem = lbf_name_problem(name.data(), name.size());
    if (!problem.empty()) throw Error(path_ + ": tensor name " + problem);
    const std::string where = path_ + ": tensor '" + name + "': ";
    if (names_.count(name)) throw Error(where + "duplicate tensor name");
    if (tensors_.size() >= lbf::kMaxTensors)
        throw Error(where + strfmt("more than %llu tensors", (unsigned long long)lbf::kMaxTensors));
    if (dims.empty() || dims.size() > lbf::kMaxDims)
        throw Error(where + strfmt("ndims %zu out of range (1..%u)", dims.size(), lbf::kMaxDims));
    uint64_t n = 1;
    for (size_t d = 0; d < dims.size(); d++) {
        if (dims[d] == 0) throw Error(where + strfmt("dims[%zu] is 0", d));
        if (d > 0 && __builtin_mul_overflow(n, dims[d], &n))
            throw Error(where + "dims " + dims_string(dims) + ": element count overflows 64 bits");
    }
    uint64_t expected;
    try {
        expected = tensor_nbytes(type, params, n, dims[0]);  // validates type, parameters and shape
    } catch (const Error& e) {
        throw Error(where + "type " + type_name(type) + ", dims " + dims_string(dims) + ": " + e.what());
    }
    if (nbytes != expected)
        throw Error(where + strfmt("byte size %zu does not match type %s with dims %s (expected %llu)", nbytes,
                                   type_name(type), dims_string(dims).c_str(), (unsigned long long)expected));
    if (!data) throw Error(where + "data is null");

    auto p = std::make_unique<Pending>();
    p->info.name = name;
    p->info.type = type;
    p->info.params = params;
    p->info.dims = std::move(dims);
    p->info.nbytes = nbytes;
    p->info.data = static_cast<const uint8_t*>(data);
    names_.emplace(name, tensors_.size());
    tensors_.push_back(std::move(p));
}

void LbfWriter::add_tensor_owned(const std::string& name, Type type, const QParams& params, std::vector<uint64_t> dims,
                                 std::vector<uint8_t> data) {
    add_tensor(name, type, params, std::move(dims), data.data(), data.size());
    Pending& p = *tensors_.back();
    p.owned = std::move(data);  // the buffer moves with its address unchanged
    p.info.data = p.owned.data();
}

void LbfWriter::finish() {
    check_open();
    finished_ = true;  // one attempt: a failed finish() leaves the writer spent

    // ---- the index: header (fields filled in last), metadata, directory, zero padding
    Bytes ix;
    ix.b.resize(lbf::kHeaderBytes);
    for (const auto& [key, value] : meta_.entries()) {
        ix.put_string(key);
        ix.put_value(value);
    }
    uint64_t data_size = 0;  // tensors in order, each at the next multiple of 64
    for (auto& pt : tensors_) {
        TensorInfo& t = pt->info;
        t.offset = data_size;
        t.checksum = lbsum64(t.data, t.nbytes);
        data_size = align64(data_size + t.nbytes);
        ix.put_string(t.name);
        ix.put<uint16_t>(uint16_t(t.type));
        ix.put<uint32_t>(traits(t.type).layout_version);
        const QParams& p = t.params;
        ix.put<uint8_t>(p.bits);
        ix.put<uint8_t>(p.sbits);
        ix.put<uint8_t>(p.zbits);
        ix.put<uint8_t>(uint8_t(p.zmode));
        ix.put<uint32_t>(p.group);
        for (const MetaMap* m : {&p.smap, &p.zmap}) {
            ix.put<uint32_t>(m->rdiv);
            ix.put<uint32_t>(m->rstride);
            ix.put<uint32_t>(m->cstride);
            ix.put<uint32_t>(m->period);
            ix.put<uint32_t>(m->count);
        }
        ix.put<uint32_t>(uint32_t(t.dims.size()));
        for (uint64_t d : t.dims) ix.put<uint64_t>(d);
        ix.put<uint64_t>(t.offset);
        ix.put<uint64_t>(t.nbytes);
        ix.put<uint64_t>(t.checksum);
    }
    const uint64_t data_offset = align64(ix.b.size());
    ix.b.resize(data_offset, 0);

    Bytes head;
    head.b.assign(lbf::kMagic, lbf::kMagic + 4);
    head.put<uint32_t>(lbf::kVersion);
    head.put<uint64_t>(meta_.size());
    head.put<uint64_t>(tensors_.size());
    head.put<uint64_t>(data_offset);
    head.put<uint64_t>(
        lbsum64(ix.b.data() + lbf::kHeaderBytes, data_offset - lbf::kHeaderBytes, lbsum64(head.b.data(), 32)));
    std::memcpy(ix.b.data(), head.b.data(), lbf::kHeaderBytes);

    // ---- write the temporary file, then publish it
    const std::string tmp = path_ + ".tmp." + std::to_string(::getpid());
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw Error(path_ + ": cannot create temporary file '" + tmp + "': " + std::strerror(errno));
    try {
        static const uint8_t zeros[lbf::kAlign] = {};
        write_all(fd, ix.b.data(), ix.b.size(), path_);
        for (const auto& pt : tensors_) {
            const TensorInfo& t = pt->info;
            write_all(fd, t.data, t.nbytes, path_);
            write_all(fd, zeros, align64(t.nbytes) - t.nbytes, path_);
        }
        if (::fsync(fd) != 0) throw Error(path_ + ": fsync failed: " + std::strerror(errno));
        const int rc = ::close(fd);
        fd = -1;
        if (rc != 0) throw Error(path_ + ": close failed: " + std::strerror(errno));
        if (::rename(tmp.c_str(), path_.c_str()) != 0)
            throw Error(path_ + ": cannot rename '" + tmp + "' into place: " + std::strerror(errno));
    } catch (...) {
        if (fd >= 0) ::close(fd);
        ::unlink(tmp.c_str());
        throw;
    }
    // make the rename itself durable; best effort, the file is complete and in place already
    const int dfd = ::open(parent_dir(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)::fsync(dfd);
        ::close(dfd);
    }
}

}  // namespace lb
