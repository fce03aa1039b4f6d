// gguf.cpp: the GGUF v2/v3 parser (formats/gguf.h). A cursor walks the bytes and checks every
// read against the end first; counts are checked against the bytes left before anything is
// allocated for them, and all offset arithmetic is done in checked u64.
#include "formats/gguf.h"

#include <cerrno>
#include <cstring>
#include <limits>

#include "formats/mapped_file.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the GGUF reader loads little-endian fields directly");

namespace lb {

namespace gguf {

namespace {
struct GgmlType {
    uint32_t id;
    const char* name;
    uint32_t block;  // elements per block
    uint32_t bytes;  // bytes per block
};
// The ggml block layouts this reader can size (ids are ggml's, fixed by the GGUF format).
constexpr GgmlType kGgmlTypes[] = {
    {0, "f32", 1, 4},       {1, "f16", 1, 2},       {2, "q4_0", 32, 18},    {3, "q4_1", 32, 20},
    {6, "q5_0", 32, 22},    {7, "q5_1", 32, 24},    {8, "q8_0", 32, 34},    {9, "q8_1", 32, 36},
    {10, "q2_K", 256, 84},  {11, "q3_K", 256, 110}, {12, "q4_K", 256, 144}, {13, "q5_K", 256, 176},
    {14, "q6_K", 256, 210}, {15, "q8_K", 256, 292}, {24, "i8", 1, 1},       {25, "i16", 1, 2},
    {26, "i32", 1, 4},      {27, "i64", 1, 8},      {28, "f64", 1, 8},      {30, "bf16", 1, 2},
};
const GgmlType* find_type(uint32_t id) {
    for (const GgmlType& t : kGgmlTypes)
        if (t.id == id) return &t;
    return nullptr;
}
}  // namespace

uint64_t ggml_type_nbytes(uint32_t type, uint64_t n) {
    const GgmlType* t = find_type(type);
    if (!t || n % t->block != 0) return 0;
    const uint64_t blocks = n / t->block;
    if (blocks > std::numeric_limits<uint64_t>::max() / t->bytes) return 0;
    return blocks * t->bytes;
}

const char* ggml_type_name(uint32_t type) {
    const GgmlType* t = find_type(type);
    return t ? t->name : "?";
}

}  // namespace gguf

uint64_t GgufTensorInfo::n_elements() const {
    uint64_t n = 1;
    for (uint64_t d : dims) n *= d;  // no overflow: checked when read
    return n;
}

namespace {

// Bounds-checked little-endian reader over [p, end). Errors name the origin, offset and field.
class Cursor {
 public:
    Cursor(const uint8_t* base, uint64_t size, const std::string& origin) : base_(base), size_(size), origin_(origin) {}
    uint64_t pos() const { return pos_; }
    uint64_t left() const { return size_ - pos_; }

    [[noreturn]] void fail(const std::string& what) const {
        throw Error(origin_ + ": GGUF offset " + std::to_string(pos_) + ": " + what);
    }
    void need(uint64_t n, const std::string& field) const {
        if (n > left())
            fail(field + ": needs " + std::to_string(n) + " bytes, only " + std::to_string(left()) +
                 " left (truncated file?)");
    }
    template <class T>
    T get(const std::string& field) {
        need(sizeof(T), field);
        T v;
        std::memcpy(&v, base_ + pos_, sizeof v);
        pos_ += sizeof v;
        return v;
    }
    std::string str(const std::string& field, uint64_t max_len = std::numeric_limits<uint64_t>::max()) {
        const uint64_t n = get<uint64_t>(field + " length");
        if (n > max_len)
            fail(field + ": length " + std::to_string(n) + " exceeds the limit " + std::to_string(max_len));
        need(n, field);
        std::string s(reinterpret_cast<const char*>(base_ + pos_), size_t(n));
        pos_ += n;
        return s;
    }
    // A count of elements that each take at least `min_bytes`: rejected before any allocation
    // if the remaining bytes cannot hold them.
    uint64_t count(const std::string& field, uint64_t min_bytes) {
        const uint64_t n = get<uint64_t>(field);
        if (min_bytes > 0 && n > left() / min_bytes)
            fail(field + ": " + std::to_string(n) + " elements cannot fit in the " + std::to_string(left()) +
                 " bytes left");
        return n;
    }

 private:
    const uint8_t* base_;
    uint64_t size_;
    uint64_t pos_ = 0;
    const std::string& origin_;
};

template <class T>
MetaValue read_array(Cursor& c, uint64_t n, const std::string& field) {
    std::vector<T> v(static_cast<size_t>(n));
    for (uint64_t i = 0; i < n; i++) v[size_t(i)] = c.get<T>(field);
    return MetaValue(std::move(v));
}

uint64_t scalar_bytes(uint32_t type) {
    using namespace gguf;
    switch (type) {
        case u8:
        case i8:
        case boolean:
            return 1;
        case u16:
        case i16:
            return 2;
        case u32:
        case i32:
        case f32:
            return 4;
        case u64:
        case i64:
        case f64:
            return 8;
        default:
            return 0;
    }
}

bool read_bool(Cursor& c, const std::string& field) {
    const uint8_t b = c.get<uint8_t>(field);
    if (b > 1) c.fail(field + ": bool value " + std::to_string(b) + " is not 0 or 1");
    return b != 0;
}

MetaValue read_value(Cursor& c, uint32_t type, const std::string& field) {
    using namespace gguf;
    switch (type) {
        case u8:
            return c.get<uint8_t>(field);
        case i8:
            return c.get<int8_t>(field);
        case u16:
            return c.get<uint16_t>(field);
        case i16:
            return c.get<int16_t>(field);
        case u32:
            return c.get<uint32_t>(field);
        case i32:
            return c.get<int32_t>(field);
        case f32:
            return c.get<float>(field);
        case boolean:
            return read_bool(c, field);
        case string:
            return c.str(field);
        case u64:
            return c.get<uint64_t>(field);
        case i64:
            return c.get<int64_t>(field);
        case f64:
            return c.get<double>(field);
        case array: {
            const uint32_t et = c.get<uint32_t>(field + " element type");
            if (et == array) c.fail(field + ": arrays of arrays are not supported");
            if (et == string) {
                const uint64_t n = c.count(field + " element count", 8);
                std::vector<std::string> v;
                v.reserve(size_t(n));
                for (uint64_t i = 0; i < n; i++) v.push_back(c.str(field + "[" + std::to_string(i) + "]"));
                return MetaValue(std::move(v));
            }
            const uint64_t eb = scalar_bytes(et);
            if (eb == 0) c.fail(field + ": unknown array element type " + std::to_string(et) + " (supported: 0..12)");
            const uint64_t n = c.count(field + " element count", eb);
            switch (et) {
                case u8:
                    return read_array<uint8_t>(c, n, field);
                case i8:
                    return read_array<int8_t>(c, n, field);
                case u16:
                    return read_array<uint16_t>(c, n, field);
                case i16:
                    return read_array<int16_t>(c, n, field);
                case u32:
                    return read_array<uint32_t>(c, n, field);
                case i32:
                    return read_array<int32_t>(c, n, field);
                case f32:
                    return read_array<float>(c, n, field);
                case u64:
                    return read_array<uint64_t>(c, n, field);
                case i64:
                    return read_array<int64_t>(c, n, field);
                case f64:
                    return read_array<double>(c, n, field);
                default: {  // boolean
                    std::vector<bool> v(static_cast<size_t>(n));
                    for (uint64_t i = 0; i < n; i++) v[size_t(i)] = read_bool(c, field);
                    return MetaValue(std::move(v));
                }
            }
        }
        default:
            c.fail(field + ": unknown value type " + std::to_string(type) + " (supported: 0..12)");
    }
}

}  // namespace

// ---------------------------------------------------------------------------------------------

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
    std::unique_ptr<GgufFile> f(new GgufFile());
    f->attach(path);
    f->parse();
    return f;
}

std::unique_ptr<GgufFile> GgufFile::from_memory(const void* data, size_t size, const std::string& origin) {
    std::unique_ptr<GgufFile> f(new GgufFile());
    f->attach(data, size, origin);
    f->parse();
    return f;
}

GgufFile::~GgufFile() = default;

void GgufFile::parse() {
    meta_.set_origin(origin_);
    Cursor c(base_, size_, origin_);
    c.need(4, "magic");
    if (std::memcmp(base_, gguf::kMagic, 4) != 0) c.fail("magic: not a GGUF file (expected \"GGUF\")");
    c.get<uint32_t>("magic");
    version_ = c.get<uint32_t>("version");
    if (version_ < gguf::kMinVersion || version_ > gguf::kMaxVersion)
        c.fail("version: found " + std::to_string(version_) + ", this build reads GGUF versions 2 and 3");
    // every tensor info takes at least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset) bytes,
    // every key/value at least 8 (key length) + 4 (type) + 1 (value)
    const uint64_t n_tensors = c.count("tensor_count", 24);
    const uint64_t n_kv = c.count("metadata_kv_count", 13);

    for (uint64_t i = 0; i < n_kv; i++) {
        const std::string key = c.str("metadata key #" + std::to_string(i), gguf::kMaxKeyBytes);
        if (meta_.contains(key)) c.fail("metadata key '" + key + "' appears twice");
        const uint32_t type = c.get<uint32_t>("metadata '" + key + "' type");
        meta_.set(key, read_value(c, type, "metadata '" + key + "'"));
    }
    if (const MetaValue* a = meta_.find("general.alignment")) {
        const uint32_t* v = a->get_if<uint32_t>();
        if (!v) c.fail("general.alignment: expected u32, found " + a->type_string());
        if (*v == 0 || (*v & (*v - 1)) != 0)
            c.fail("general.alignment: " + std::to_string(*v) + " is not a power of two");
        alignment_ = *v;
    }

    tensors_.reserve(size_t(n_tensors));
    for (uint64_t i = 0; i < n_tensors; i++) {
        GgufTensorInfo t;
        const std::string field = "tensor #" + std::to_string(i);
        t.name = c.str(field + " name", gguf::kMaxKeyBytes);
        const std::string tf = "tensor '" + t.name + "'";
        if (by_name_.count(t.name)) c.fail(tf + " appears twice");
        const uint32_t nd = c.get<uint32_t>(tf + " n_dims");
        if (nd == 0 || nd > gguf::kMaxDims)
            c.fail(tf + " n_dims: " + std::to_string(nd) + ", supported 1.." + std::to_string(gguf::kMaxDims));
        uint64_t n = 1;
        for (uint32_t d = 0; d < nd; d++) {
            const uint64_t dim = c.get<uint64_t>(tf + " dim " + std::to_string(d));
            if (dim == 0 || n > (uint64_t(1) << 62) / dim)
                c.fail(tf + " dim " + std::to_string(d) + ": " + std::to_string(dim) + " is zero or too large");
            n *= dim;
            t.dims.push_back(dim);
        }
        t.type = c.get<uint32_t>(tf + " type");
        t.offset = c.get<uint64_t>(tf + " offset");
        if (t.offset % alignment_ != 0)
            c.fail(tf + " offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
                   std::to_string(alignment_));
        t.nbytes = gguf::ggml_type_nbytes(t.type, n);
        by_name_.emplace(t.name, tensors_.size());
        tensors_.push_back(std::move(t));
    }

    // the data section starts at the next multiple of the alignment (or is absent)
    const uint64_t pad = (alignment_ - c.pos() % alignment_) % alignment_;
    data_offset_ = n_tensors == 0 ? c.pos() : c.pos() + pad;
    if (n_tensors > 0 && data_offset_ > size_)
        c.fail("data section: starts at " + std::to_string(data_offset_) + ", beyond the end of the file");
    const uint64_t data_size = size_ - data_offset_;
    for (GgufTensorInfo& t : tensors_) {
        const std::string tf = origin_ + ": tensor '" + t.name + "'";
        LB_CHECK(t.offset <= data_size, "%s: offset %llu is beyond the data section (%llu bytes)", tf.c_str(),
                 (unsigned long long)t.offset, (unsigned long long)data_size);
        if (t.nbytes == 0) continue;  // unknown layout: the importer must reject or size it
        LB_CHECK(t.nbytes <= data_size - t.offset,
                 "%s: %llu bytes at offset %llu run past the end of the data section (%llu bytes)", tf.c_str(),
                 (unsigned long long)t.nbytes, (unsigned long long)t.offset, (unsigned long long)data_size);
        t.data = base_ + data_offset_ + t.offset;
    }
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

int64_t GgufFile::get_int(const std::string& key) const {
    const MetaValue* v = meta_.find(key);
    LB_CHECK(v, "%s: metadata key '%s' not found", origin_.c_str(), key.c_str());
    return std::visit(
        [&](const auto& x) -> int64_t {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
                if constexpr (std::is_same_v<T, uint64_t>)
                    LB_CHECK(x <= uint64_t(std::numeric_limits<int64_t>::max()),
                             "%s: metadata key '%s': %llu is too large", origin_.c_str(), key.c_str(),
                             (unsigned long long)x);
                return int64_t(x);
            } else {
                throw Error(origin_ + ": metadata key '" + key + "': expected an integer, found " + v->type_string());
            }
        },
        v->variant());
}

int64_t GgufFile::get_int(const std::string& key, int64_t fallback) const {
    return meta_.contains(key) ? get_int(key) : fallback;
}

}  // namespace lb
