// lbf_reader.cpp: reading .lbf files (formats/lbf.md): the mapping, the parser that distrusts every
// byte, and the metadata containers. Also the name/value checks that the writer shares, so that
// the writer cannot produce a file the reader rejects.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <type_traits>

#include "formats/checksum.h"
#include "formats/lbf.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the .lbf reader maps little-endian fields directly");

namespace lb {

// ---------------------------------------------------------------------------------------------
// MetaValue, Metadata

const char* meta_type_name(MetaType t) {
    static const char* const names[] = {"u8",  "i8",  "u16", "i16",  "u32",    "i32",  "u64",
                                        "i64", "f32", "f64", "bool", "string", "array"};
    const uint32_t i = uint32_t(t);
    return i < 13 ? names[i] : "?";
}

size_t MetaValue::array_size() const {
    return std::visit(
        [](const auto& x) -> size_t {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, std::string> || std::is_arithmetic_v<T>) {
                return 0;
            } else {
                return x.size();
            }
        },
        v_);
}

std::string MetaValue::type_string() const {
    if (!is_array()) return meta_type_name(type());
    return std::string("array of ") + meta_type_name(elem_type());
}

void Metadata::set(const std::string& key, MetaValue v) {
    auto it = index_.find(key);
    if (it != index_.end()) {
        entries_[it->second].second = std::move(v);
        return;
    }
    index_.emplace(key, entries_.size());
    entries_.emplace_back(key, std::move(v));
}

const MetaValue* Metadata::find(const std::string& key) const {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : &entries_[it->second].second;
}

uint64_t TensorInfo::n() const {
    uint64_t n = 1;
    for (size_t i = 1; i < dims.size(); i++) n *= dims[i];  // no overflow: checked when read or added
    return n;
}

// ---------------------------------------------------------------------------------------------
// checks shared with the writer

// Index of the first byte of an invalid UTF-8 sequence (overlong forms, surrogates and code points
// above U+10FFFF are invalid), or n if all of s is valid.
static size_t utf8_invalid_at(const uint8_t* s, size_t n) {
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};  // smallest code point per length
    size_t i = 0;
    while (i < n) {
        const uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1Fu;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0Fu;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07u;
        } else {
            return i;
        }
        if (n - i < len) return i;
        for (size_t j = 1; j < len; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (s[i + j] & 0x3Fu);
        }
        if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += len;
    }
    return n;
}

std::string lbf_name_problem(const char* s, size_t n) {
    if (n == 0) return "is empty";
    if (n > lbf::kMaxKeyBytes)
        return strfmt("is %llu bytes long (limit %llu)", (unsigned long long)n, (unsigned long long)lbf::kMaxKeyBytes);
    const uint8_t* u = reinterpret_cast<const uint8_t*>(s);
    const size_t bad = utf8_invalid_at(u, n);
    if (bad != n) return strfmt("is not valid UTF-8 (byte %zu)", bad);
    for (size_t i = 0; i < n; i++)
        if (u[i] < 0x20 || u[i] == 0x7f) return strfmt("contains control character 0x%02x at byte %zu", u[i], i);
    return {};
}

static std::string string_problem(const std::string& s) {
    if (s.size() > lbf::kMaxStringBytes)
        return strfmt("string length %zu exceeds the limit of %llu bytes", s.size(),
                      (unsigned long long)lbf::kMaxStringBytes);
    const size_t nul = s.find('\0');
    if (nul != std::string::npos) return strfmt("string contains a NUL byte at position %zu", nul);
    return {};
}

std::string lbf_value_problem(const MetaValue& v) {
    if (const auto* s = v.get_if<std::string>()) return string_problem(*s);
    if (v.array_size() > lbf::kMaxArrayLen)
        return strfmt("array length %zu exceeds the limit of %llu elements", v.array_size(),
                      (unsigned long long)lbf::kMaxArrayLen);
    if (const auto* a = v.get_if<std::vector<std::string>>()) {
        for (size_t i = 0; i < a->size(); i++) {
            std::string p = string_problem((*a)[i]);
            if (!p.empty()) return strfmt("element %zu: ", i) + p;
        }
    }
    return {};
}

// printable form of a string: control bytes escaped, cut after max_chars bytes
static std::string escaped(const std::string& s, size_t max_chars) {
    std::string r;
    for (size_t i = 0; i < s.size() && i < max_chars; i++) {
        const uint8_t c = uint8_t(s[i]);
        if (c == '\n') {
            r += "\\n";
        } else if (c == '"' || c == '\\') {
            r += '\\';
            r += char(c);
        } else if (c < 0x20 || c == 0x7f) {
            r += strfmt("\\x%02x", c);
        } else {
            r += char(c);
        }
    }
    if (s.size() > max_chars) r += "...";
    return r;
}

std::string meta_value_summary(const MetaValue& v, size_t max_chars) {
    return std::visit(
        [&](const auto& x) -> std::string {
            using T = std::decay_t<decltype(x)>;
            auto one = [&](const auto& e) -> std::string {
                using E = std::decay_t<decltype(e)>;
                if constexpr (std::is_same_v<E, std::string>) {
                    return "\"" + escaped(e, max_chars) + "\"";
                } else if constexpr (std::is_same_v<E, bool>) {
                    return e ? "true" : "false";
                } else if constexpr (std::is_floating_point_v<E>) {
                    return strfmt("%.9g", double(e));
                } else if constexpr (std::is_signed_v<E>) {
                    return std::to_string((long long)e);
                } else {
                    return std::to_string((unsigned long long)e);
                }
            };
            if constexpr (std::is_same_v<T, std::string> || std::is_arithmetic_v<T>) {
                return one(x);
            } else {
                std::string r = "[" + std::to_string(x.size()) + " x " + v.type_string().substr(9) + "]";
                for (size_t i = 0; i < x.size() && r.size() < max_chars; i++) r += (i ? ", " : " ") + one(x[i]);
                if (r.size() >= max_chars && x.size()) r += " ...";
                return r;
            }
        },
        v.variant());
}

// ---------------------------------------------------------------------------------------------
// The parser

namespace {

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }  // callers keep x < 2^63

std::string dims_string(const std::vector<uint64_t>& d) {
    std::string s = "[";
    for (size_t i = 0; i < d.size(); i++) s += (i ? ", " : "") + std::to_string(d[i]);
    return s + "]";
}

// Reads little-endian fields from [p, p + size) and turns every problem into lb::Error
// "<origin>: <context>: <what>".
class Parser {
 public:
    Parser(const uint8_t* p, uint64_t size, const std::string& origin) : p_(p), size_(size), origin_(origin) {}

    uint64_t pos = 0;     // next byte to read
    std::string context;  // which entry is being read, e.g. "tensor 'blk.0.attn_q.weight'"

    [[noreturn]] void fail(const std::string& what) const {
        throw Error(origin_ + ": " + (context.empty() ? "" : context + ": ") + what);
    }

    uint64_t left() const { return size_ - pos; }

    // ensures `n` more bytes exist
    void need(uint64_t n, const char* what) const {
        if (n > left())
            fail(strfmt("truncated: %s needs %llu bytes at offset %llu, but the file ends at %llu", what,
                        (unsigned long long)n, (unsigned long long)pos, (unsigned long long)size_));
    }

    template <class T>
    T get(const char* what) {
        static_assert(std::is_arithmetic_v<T>, "scalar fields only");
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, p_ + pos, sizeof(T));
        pos += sizeof(T);
        return v;
    }

    // u64 length + bytes, length at most `limit`
    std::string get_string(const char* what, uint64_t limit) {
        const uint64_t n = get<uint64_t>(what);
        if (n > limit)
            fail(strfmt("%s length %llu exceeds the limit of %llu bytes", what, (unsigned long long)n,
                        (unsigned long long)limit));
        need(n, what);
        std::string s(reinterpret_cast<const char*>(p_ + pos), size_t(n));
        pos += n;
        return s;
    }

    // a key or tensor name
    std::string get_name(const char* what) {
        std::string s = get_string(what, lbf::kMaxKeyBytes);
        std::string problem = lbf_name_problem(s.data(), s.size());
        if (!problem.empty()) fail(std::string(what) + " " + problem);
        return s;
    }

    std::string get_value_string() {
        std::string s = get_string("string", lbf::kMaxStringBytes);
        const size_t nul = s.find('\0');
        if (nul != std::string::npos) fail(strfmt("string contains a NUL byte at position %zu", nul));
        return s;
    }

    bool get_bool() {
        const uint8_t b = get<uint8_t>("bool");
        if (b > 1) fail(strfmt("bool value %u is neither 0 nor 1", b));
        return b == 1;
    }

    MetaValue get_value(uint32_t type) {
        switch (MetaType(type)) {
            case MetaType::u8:
                return get<uint8_t>("u8 value");
            case MetaType::i8:
                return get<int8_t>("i8 value");
            case MetaType::u16:
                return get<uint16_t>("u16 value");
            case MetaType::i16:
                return get<int16_t>("i16 value");
            case MetaType::u32:
                return get<uint32_t>("u32 value");
            case MetaType::i32:
                return get<int32_t>("i32 value");
            case MetaType::u64:
                return get<uint64_t>("u64 value");
            case MetaType::i64:
                return get<int64_t>("i64 value");
            case MetaType::f32:
                return get<float>("f32 value");
            case MetaType::f64:
                return get<double>("f64 value");
            case MetaType::boolean:
                return get_bool();
            case MetaType::string:
                return get_value_string();
            case MetaType::array:
                return get_array();
        }
        fail(strfmt("value type %u unknown (0..12)", type));
    }

 private:
    template <class T>
    std::vector<T> get_scalars(uint64_t count) {
        std::vector<T> v(count);  // count * sizeof(T) bytes were checked to be present
        if (count) std::memcpy(v.data(), p_ + pos, count * sizeof(T));  // data() may be null when empty
        pos += count * sizeof(T);
        return v;
    }

    MetaValue get_array() {
        const uint32_t et = get<uint32_t>("array element type");
        if (et >= uint32_t(MetaType::array))
            fail(strfmt("array element type %u unknown (0..11; arrays of arrays are not allowed)", et));
        const uint64_t count = get<uint64_t>("array length");
        if (count > lbf::kMaxArrayLen)
            fail(strfmt("array length %llu exceeds the limit of %llu elements", (unsigned long long)count,
                        (unsigned long long)lbf::kMaxArrayLen));
        // every element takes at least this many bytes: check before allocating anything
        static const uint64_t min_bytes[12] = {1, 1, 2, 2, 4, 4, 8, 8, 4, 8, 1, 8};
        uint64_t total;
        if (__builtin_mul_overflow(count, min_bytes[et], &total) || total > left())
            fail(
                strfmt("truncated: array of %llu %s elements needs at least %llu bytes at offset %llu, but the file "
                       "ends at %llu",
                       (unsigned long long)count, meta_type_name(MetaType(et)),
                       (unsigned long long)count * min_bytes[et], (unsigned long long)pos, (unsigned long long)size_));
        switch (MetaType(et)) {
            case MetaType::u8:
                return get_scalars<uint8_t>(count);
            case MetaType::i8:
                return get_scalars<int8_t>(count);
            case MetaType::u16:
                return get_scalars<uint16_t>(count);
            case MetaType::i16:
                return get_scalars<int16_t>(count);
            case MetaType::u32:
                return get_scalars<uint32_t>(count);
            case MetaType::i32:
                return get_scalars<int32_t>(count);
            case MetaType::u64:
                return get_scalars<uint64_t>(count);
            case MetaType::i64:
                return get_scalars<int64_t>(count);
            case MetaType::f32:
                return get_scalars<float>(count);
            case MetaType::f64:
                return get_scalars<double>(count);
            case MetaType::boolean: {
                std::vector<bool> v(count);
                for (uint64_t i = 0; i < count; i++) v[i] = get_bool();
                return v;
            }
            case MetaType::string: {
                std::vector<std::string> v;
                v.reserve(count);
                for (uint64_t i = 0; i < count; i++) v.push_back(get_value_string());
                return v;
            }
            case MetaType::array:
                break;
        }
        fail("unreachable array type");
    }

    const uint8_t* p_;
    uint64_t size_;
    const std::string& origin_;
};

}  // namespace

void LbfFile::parse() {
    Parser in(base_, size_, origin_);
    meta_.set_origin(origin_);

    // ---- header (40 bytes)
    if (size_ >= 4 && std::memcmp(base_, lbf::kMagic, 4) != 0) {
        std::string found;
        for (int i = 0; i < 4; i++) {
            const uint8_t c = base_[i];
            found += c >= 0x20 && c < 0x7f ? std::string(1, char(c)) : strfmt("\\x%02x", c);
        }
        in.fail("bad magic '" + found + "' (expected 'LBF1'): not an .lbf file");
    }
    in.need(lbf::kHeaderBytes, "header");
    in.pos = 4;
    version_ = in.get<uint32_t>("version");
    if (version_ != lbf::kVersion)
        in.fail(strfmt("unsupported format version %u (this build reads version %u)", version_, lbf::kVersion));
    const uint64_t n_meta = in.get<uint64_t>("metadata count");
    const uint64_t n_tensors = in.get<uint64_t>("tensor count");
    data_offset_ = in.get<uint64_t>("data offset");
    const uint64_t index_checksum = in.get<uint64_t>("index checksum");
    if (n_meta > lbf::kMaxMetadata)
        in.fail(strfmt("metadata count %llu exceeds the limit of %llu", (unsigned long long)n_meta,
                       (unsigned long long)lbf::kMaxMetadata));
    if (n_tensors > lbf::kMaxTensors)
        in.fail(strfmt("tensor count %llu exceeds the limit of %llu", (unsigned long long)n_tensors,
                       (unsigned long long)lbf::kMaxTensors));
    if (data_offset_ % lbf::kAlign != 0 || data_offset_ < lbf::kHeaderBytes)
        in.fail(strfmt("data offset %llu is not a multiple of 64 past the header", (unsigned long long)data_offset_));
    if (data_offset_ > size_)
        in.fail(strfmt("data offset %llu lies beyond the end of the file (%llu bytes): truncated?",
                       (unsigned long long)data_offset_, (unsigned long long)size_));
    const uint64_t data_size = size_ - data_offset_;

    // ---- metadata
    for (uint64_t i = 0; i < n_meta; i++) {
        in.context = strfmt("metadata entry %llu", (unsigned long long)i);
        std::string key = in.get_name("key");
        in.context = "metadata key '" + key + "'";
        if (meta_.contains(key)) in.fail("duplicate metadata key");
        const uint32_t type = in.get<uint32_t>("value type");
        meta_.set(key, in.get_value(type));
    }

    // ---- tensor directory
    tensors_.reserve(std::min<uint64_t>(n_tensors, in.left() / 99));  // an entry takes >= 99 bytes
    for (uint64_t i = 0; i < n_tensors; i++) {
        in.context = strfmt("tensor %llu", (unsigned long long)i);
        TensorInfo t;
        t.name = in.get_name("name");
        in.context = "tensor '" + t.name + "'";
        if (by_name_.count(t.name)) in.fail("duplicate tensor name");
        const uint16_t type_id = in.get<uint16_t>("type id");
        const TypeTraits* tr = type_traits(type_id);
        if (!tr) in.fail(strfmt("type id %u is not a type of this build", type_id));
        t.type = tr->type;
        const uint32_t layout_version = in.get<uint32_t>("layout version");
        if (layout_version != tr->layout_version)
            in.fail(strfmt("layout version %u of type %s is not supported (this build: %u)", layout_version, tr->name,
                           tr->layout_version));
        QParams& p = t.params;
        p.bits = in.get<uint8_t>("params.bits");
        p.sbits = in.get<uint8_t>("params.sbits");
        p.zbits = in.get<uint8_t>("params.zbits");
        p.zmode = ZeroMode(in.get<uint8_t>("params.zmode"));  // any u8 is a valid ZeroMode object; validate checks
        p.group = in.get<uint32_t>("params.group");
        static const char* const map_field[2][5] = {{"params.smap.rdiv", "params.smap.rstride", "params.smap.cstride",
                                                     "params.smap.period", "params.smap.count"},
                                                    {"params.zmap.rdiv", "params.zmap.rstride", "params.zmap.cstride",
                                                     "params.zmap.period", "params.zmap.count"}};
        for (int j = 0; j < 2; j++) {
            MetaMap& m = j == 0 ? p.smap : p.zmap;
            m.rdiv = in.get<uint32_t>(map_field[j][0]);
            m.rstride = in.get<uint32_t>(map_field[j][1]);
            m.cstride = in.get<uint32_t>(map_field[j][2]);
            m.period = in.get<uint32_t>(map_field[j][3]);
            m.count = in.get<uint32_t>(map_field[j][4]);
        }
        const uint32_t ndims = in.get<uint32_t>("ndims");
        if (ndims < 1 || ndims > lbf::kMaxDims) in.fail(strfmt("ndims %u out of range (1..%u)", ndims, lbf::kMaxDims));
        in.need(8ull * ndims, "dims");
        uint64_t n = 1;
        for (uint32_t d = 0; d < ndims; d++) {
            t.dims.push_back(in.get<uint64_t>("dims"));
            if (t.dims[d] == 0) in.fail(strfmt("dims[%u] is 0", d));
            if (d > 0 && __builtin_mul_overflow(n, t.dims[d], &n))
                in.fail("dims " + dims_string(t.dims) + ": element count overflows 64 bits");
        }
        t.offset = in.get<uint64_t>("offset");
        t.nbytes = in.get<uint64_t>("byte size");
        t.checksum = in.get<uint64_t>("checksum");

        uint64_t expected;
        try {
            expected = tensor_nbytes(t.type, p, n, t.k());  // validates the parameters and the shape
        } catch (const Error& e) {
            in.fail(std::string("type ") + tr->name + ", dims " + dims_string(t.dims) + ": " + e.what());
        }
        if (t.nbytes != expected)
            in.fail(strfmt("byte size %llu does not match type %s with dims %s (expected %llu)",
                           (unsigned long long)t.nbytes, tr->name, dims_string(t.dims).c_str(),
                           (unsigned long long)expected));
        if (t.offset % lbf::kAlign != 0) in.fail(strfmt("offset %llu not aligned to 64", (unsigned long long)t.offset));
        by_name_.emplace(t.name, tensors_.size());
        tensors_.push_back(std::move(t));
    }

    // ---- padding up to the data section: exactly to the next multiple of 64, all zero
    in.context = "directory";
    if (align_up(in.pos, lbf::kAlign) != data_offset_)
        in.fail(strfmt("the directory ends at byte %llu, so the data offset must be %llu, but the header says %llu",
                       (unsigned long long)in.pos, (unsigned long long)align_up(in.pos, lbf::kAlign),
                       (unsigned long long)data_offset_));
    for (uint64_t i = in.pos; i < data_offset_; i++)
        if (base_[i] != 0) in.fail(strfmt("padding byte at offset %llu is not zero", (unsigned long long)i));

    // ---- every tensor inside the data section, no two overlapping, and the file ends right after
    // the last one (padded to 64)
    std::vector<const TensorInfo*> sorted;
    for (auto& t : tensors_) {
        in.context = "tensor '" + t.name + "'";
        uint64_t end;
        if (__builtin_add_overflow(t.offset, t.nbytes, &end) || end > data_size)
            in.fail(strfmt("offset %llu + byte size %llu runs past the end of the data section (%llu bytes)",
                           (unsigned long long)t.offset, (unsigned long long)t.nbytes, (unsigned long long)data_size));
        t.data = base_ + data_offset_ + t.offset;
        sorted.push_back(&t);
    }
    in.context.clear();
    std::sort(sorted.begin(), sorted.end(),
              [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
    uint64_t data_end = 0;
    for (size_t i = 0; i < sorted.size(); i++) {
        const TensorInfo& t = *sorted[i];
        if (i > 0 && sorted[i - 1]->offset + sorted[i - 1]->nbytes > t.offset) {
            const TensorInfo& s = *sorted[i - 1];
            in.fail(strfmt("tensors '%s' (offset %llu, %llu bytes) and '%s' (offset %llu) overlap", s.name.c_str(),
                           (unsigned long long)s.offset, (unsigned long long)s.nbytes, t.name.c_str(),
                           (unsigned long long)t.offset));
        }
        data_end = std::max(data_end, t.offset + t.nbytes);
    }
    const uint64_t expected_size = data_offset_ + align_up(data_end, lbf::kAlign);
    if (size_ != expected_size)
        in.fail(strfmt("file size %llu, but the data section ends at %llu (%s)", (unsigned long long)size_,
                       (unsigned long long)expected_size, size_ < expected_size ? "truncated" : "trailing bytes"));

    // ---- index checksum: seeded with the first 32 header bytes, over [40, data offset)
    const uint64_t computed = lbsum64(base_ + lbf::kHeaderBytes, data_offset_ - lbf::kHeaderBytes, lbsum64(base_, 32));
    if (computed != index_checksum)
        in.fail(
            strfmt("index checksum %016llx does not match the stored %016llx: metadata or tensor directory "
                   "corrupted",
                   (unsigned long long)computed, (unsigned long long)index_checksum));
}

// ---------------------------------------------------------------------------------------------
// LbfFile

std::unique_ptr<LbfFile> LbfFile::from_memory(const void* data, size_t size, const std::string& origin) {
    std::unique_ptr<LbfFile> f(new LbfFile());
    f->base_ = static_cast<const uint8_t*>(data);
    f->size_ = size;
    f->origin_ = origin;
    f->parse();
    return f;
}

std::unique_ptr<LbfFile> LbfFile::open(const std::string& path) {
    std::unique_ptr<LbfFile> f(new LbfFile());
    f->origin_ = path;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error(path + ": cannot open: " + std::strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        const int err = errno;
        ::close(fd);
        throw Error(path + ": cannot stat: " + std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        throw Error(path + ": not a regular file");
    }
    f->size_ = uint64_t(st.st_size);
    if (f->size_ > 0) {
        void* m = mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            const int err = errno;
            ::close(fd);
            throw Error(path + ": cannot map " + std::to_string(f->size_) + " bytes: " + std::strerror(err));
        }
        f->base_ = static_cast<const uint8_t*>(m);
        f->mapped_ = true;
    }
    ::close(fd);  // the mapping stays valid without the descriptor
    f->parse();   // on error, ~LbfFile unmaps
    return f;
}

LbfFile::~LbfFile() {
    if (mapped_) munmap(const_cast<uint8_t*>(base_), size_);
}

const TensorInfo* LbfFile::find_tensor(const std::string& name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

void LbfFile::release(const void* p, uint64_t n) const {
    if (!mapped_ || n == 0) return;
    const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE)), lo = uintptr_t(base_), hi = lo + size_;
    uintptr_t b = uintptr_t(p), e = b + n;
    if (b < lo || e > hi || e < b) return;
    b = (b + page - 1) / page * page;
    e = e / page * page;
    // a read-only private file mapping: the pages go back to the page cache, nothing is lost
    if (b < e) madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
}

bool LbfFile::verify(const TensorInfo& t) const { return lbsum64(t.data, t.nbytes) == t.checksum; }

std::vector<std::string> LbfFile::verify_checksums() const {
    std::vector<std::string> bad;
    for (const auto& t : tensors_)
        if (!verify(t)) bad.push_back(t.name);
    return bad;
}

}  // namespace lb
