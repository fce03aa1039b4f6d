// lbf.h: the .lbf container, lowbit's own single-file model format (spec: formats/lbf.md).
//   Metadata   typed key/value pairs (hyper-parameters, tokenizer, chat template, provenance)
//   LbfWriter  collects metadata and tensors (by pointer or owned) and publishes the file atomically
//   LbfFile    maps a file read-only, validates every byte of its index, gives zero-copy tensors
// Every problem with a file is reported as lb::Error naming the file, the field and the value found.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "core/error.h"
#include "core/types.h"

namespace lb {

// ---------------------------------------------------------------------------------------------
// Format constants and limits (lbf.md, "Limits"). Readers and the writer enforce the same limits,
// so every file the writer produces can be read back.
namespace lbf {
constexpr char kMagic[4] = {'L', 'B', 'F', '1'};  // never changes; the version field does
constexpr uint32_t kVersion = 1;                  // the only version this build reads and writes
constexpr uint64_t kHeaderBytes = 40;
constexpr uint64_t kAlign = 64;                     // data section and every tensor, in bytes
constexpr uint64_t kMaxKeyBytes = 65536;            // metadata keys and tensor names
constexpr uint64_t kMaxStringBytes = 256ull << 20;  // one string value
constexpr uint64_t kMaxArrayLen = 1ull << 28;       // elements of one array value
constexpr uint64_t kMaxMetadata = 1ull << 20;       // key/value pairs
constexpr uint64_t kMaxTensors = 1ull << 20;
constexpr uint32_t kMaxDims = 4;
}  // namespace lbf

// ---------------------------------------------------------------------------------------------
// Metadata values. The type codes are stored in files (u32): never renumber them.
enum class MetaType : uint32_t {
    u8 = 0,
    i8 = 1,
    u16 = 2,
    i16 = 3,
    u32 = 4,
    i32 = 5,
    u64 = 6,
    i64 = 7,
    f32 = 8,
    f64 = 9,
    boolean = 10,
    string = 11,
    array = 12,
};
const char* meta_type_name(MetaType t);  // "u32", "string", ...

// A value of any metadata type: a scalar, a string, or an array of scalars or strings.
// The variant's alternative index i is the MetaType for i < 12; an array of element type e is
// alternative 12 + e.
class MetaValue {
 public:
    using Variant =
        std::variant<uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t, uint64_t, int64_t, float, double, bool,
                     std::string,  //
                     std::vector<uint8_t>, std::vector<int8_t>, std::vector<uint16_t>, std::vector<int16_t>,
                     std::vector<uint32_t>, std::vector<int32_t>, std::vector<uint64_t>, std::vector<int64_t>,
                     std::vector<float>, std::vector<double>, std::vector<bool>, std::vector<std::string>>;

 private:
    template <class T, class... Ts>
    static constexpr bool is_alt(std::variant<Ts...>*) {
        return (std::is_same_v<T, Ts> || ...);
    }

 public:
    // true if T is one of the stored types
    template <class T>
    static constexpr bool is_alternative() {
        return is_alt<T>(static_cast<Variant*>(nullptr));
    }

    MetaValue() = default;  // u8 0
    // Exactly one constructor per stored type: no silent int -> bool or pointer -> bool picks.
    template <class T, class D = std::decay_t<T>, class = std::enable_if_t<is_alternative<D>()>>
    MetaValue(T&& v) : v_(std::forward<T>(v)) {}
    MetaValue(const char* s) : v_(std::string(s)) {}

    MetaType type() const { return v_.index() < 12 ? MetaType(v_.index()) : MetaType::array; }
    // element type of an array; the type itself for a scalar or string
    MetaType elem_type() const { return MetaType(v_.index() % 12); }
    bool is_array() const { return v_.index() >= 12; }
    size_t array_size() const;        // 0 for non-arrays
    std::string type_string() const;  // "u32", "string", "array of string"
    template <class T>
    const T* get_if() const {
        return std::get_if<T>(&v_);
    }
    const Variant& variant() const { return v_; }
    bool operator==(const MetaValue& o) const { return v_ == o.v_; }

    // name of the type that stores a T ("u32", "array of f32"); T must be a stored type
    template <class T>
    static std::string type_string_of() {
        return MetaValue(T{}).type_string();
    }

 private:
    Variant v_;
};
static_assert(std::variant_size_v<MetaValue::Variant> == 24 &&
                  std::is_same_v<std::variant_alternative_t<11, MetaValue::Variant>, std::string> &&
                  std::is_same_v<std::variant_alternative_t<12 + 11, MetaValue::Variant>, std::vector<std::string>>,
              "variant index = MetaType code (12 + element code for arrays)");

// Ordered key -> value map (insertion order = file order) with typed getters.
class Metadata {
 public:
    using Entry = std::pair<std::string, MetaValue>;

    // Adds `key`, or replaces its value in place (the position is kept).
    void set(const std::string& key, MetaValue v);
    const MetaValue* find(const std::string& key) const;  // nullptr if absent
    bool contains(const std::string& key) const { return find(key) != nullptr; }
    size_t size() const { return entries_.size(); }
    const std::vector<Entry>& entries() const { return entries_; }

    // Typed access. Throws lb::Error "<origin>: metadata key 'K' not found" or
    // "<origin>: metadata key 'K': expected u32, found string".
    template <class T>
    const T& get(const std::string& key) const {
        const MetaValue* v = find(key);
        if (!v) throw Error(prefix() + "metadata key '" + key + "' not found");
        const T* r = v->get_if<T>();
        if (!r)
            throw Error(prefix() + "metadata key '" + key + "': expected " + MetaValue::type_string_of<T>() +
                        ", found " + v->type_string());
        return *r;
    }
    uint8_t get_u8(const std::string& k) const { return get<uint8_t>(k); }
    int8_t get_i8(const std::string& k) const { return get<int8_t>(k); }
    uint16_t get_u16(const std::string& k) const { return get<uint16_t>(k); }
    int16_t get_i16(const std::string& k) const { return get<int16_t>(k); }
    uint32_t get_u32(const std::string& k) const { return get<uint32_t>(k); }
    int32_t get_i32(const std::string& k) const { return get<int32_t>(k); }
    uint64_t get_u64(const std::string& k) const { return get<uint64_t>(k); }
    int64_t get_i64(const std::string& k) const { return get<int64_t>(k); }
    float get_f32(const std::string& k) const { return get<float>(k); }
    double get_f64(const std::string& k) const { return get<double>(k); }
    bool get_bool(const std::string& k) const { return get<bool>(k); }
    const std::string& get_string(const std::string& k) const { return get<std::string>(k); }
    template <class E>
    const std::vector<E>& get_array(const std::string& k) const {
        return get<std::vector<E>>(k);
    }

    // Name put in front of getter errors (the reader sets it to the file name).
    void set_origin(std::string origin) { origin_ = std::move(origin); }

 private:
    std::string prefix() const { return origin_.empty() ? std::string() : origin_ + ": "; }
    std::vector<Entry> entries_;
    std::unordered_map<std::string, size_t> index_;
    std::string origin_;
};

// ---------------------------------------------------------------------------------------------
// One entry of the tensor directory. dims[0] = K (innermost); the tensor is viewed as an N x K
// matrix with N = product of dims[1..] (1 for a 1-D tensor).
struct TensorInfo {
    std::string name;
    Type type = Type::f32;
    QParams params;
    std::vector<uint64_t> dims;
    uint64_t offset = 0;            // bytes from the start of the data section (multiple of 64)
    uint64_t nbytes = 0;            // == tensor_nbytes(type, params, n(), k())
    uint64_t checksum = 0;          // lbsum64 of the data
    const uint8_t* data = nullptr;  // into the mapping (LbfFile) or the caller's memory
    uint64_t k() const { return dims.empty() ? 0 : dims[0]; }
    uint64_t n() const;
};

// ---------------------------------------------------------------------------------------------
// Writer. Nothing touches the disk before finish(); finish() writes `path + ".tmp.<pid>"` in the
// same directory, fsyncs it, renames it over `path` and fsyncs the directory. On any failure the
// temporary file is removed and lb::Error is thrown; a writer destroyed without finish() leaves
// nothing behind.
class LbfWriter {
 public:
    explicit LbfWriter(std::string path);
    LbfWriter(const LbfWriter&) = delete;
    LbfWriter& operator=(const LbfWriter&) = delete;
    ~LbfWriter();

    // Adds or replaces a metadata value (checked against the limits now).
    void set(const std::string& key, MetaValue value);
    const Metadata& metadata() const { return meta_; }

    // Records a tensor whose `nbytes` bytes at `data` stay owned by the caller and must stay valid
    // and unchanged until finish() returns. Checks the name (unique), the dims (1..4, dims[0] = K),
    // the parameters (lb::validate) and nbytes == tensor_nbytes.
    void add_tensor(const std::string& name, Type type, const QParams& params, std::vector<uint64_t> dims,
                    const void* data, size_t nbytes);
    // Same, the writer keeps the bytes.
    void add_tensor_owned(const std::string& name, Type type, const QParams& params, std::vector<uint64_t> dims,
                          std::vector<uint8_t> data);

    // Writes and publishes the file. May be called once.
    void finish();

 private:
    struct Pending {
        TensorInfo info;  // info.data points at the caller's bytes or into `owned`
        std::vector<uint8_t> owned;
    };
    void check_open() const;
    std::string path_;
    Metadata meta_;
    std::vector<std::unique_ptr<Pending>> tensors_;  // stable addresses: `owned` must not move
    std::unordered_map<std::string, size_t> names_;
    bool finished_ = false;
};

// ---------------------------------------------------------------------------------------------
// Reader. open() maps the file read-only and validates header, metadata and directory completely
// (including the index checksum); tensor data is only checksummed on request (it is GBs).
// The file must not be modified while it is open (a truncation under the mapping is a SIGBUS).
class LbfFile {
 public:
    static std::unique_ptr<LbfFile> open(const std::string& path);
    // Parses `size` bytes at `data` without copying; the memory must outlive the LbfFile. Tensor
    // data is 64-byte aligned only if `data` is. Errors are prefixed with `origin`.
    static std::unique_ptr<LbfFile> from_memory(const void* data, size_t size, const std::string& origin = "<memory>");
    ~LbfFile();
    LbfFile(const LbfFile&) = delete;
    LbfFile& operator=(const LbfFile&) = delete;

    const std::string& origin() const { return origin_; }  // path, or the from_memory origin
    uint32_t version() const { return version_; }
    uint64_t file_size() const { return size_; }
    uint64_t data_offset() const { return data_offset_; }  // absolute, start of the data section
    const Metadata& metadata() const { return meta_; }
    const std::vector<TensorInfo>& tensors() const { return tensors_; }
    const TensorInfo* find_tensor(const std::string& name) const;  // nullptr if absent

    // The whole pages of [p, p + n) leave the process's resident memory (madvise DONTNEED): a
    // later read brings them back from the page cache or the file. For data the runtime has
    // copied (backends/cpu/tiled.h) and reads no more. Nothing for a from_memory file or a range
    // outside the mapping.
    void release(const void* p, uint64_t n) const;

    bool verify(const TensorInfo& t) const;             // data checksum matches the directory
    std::vector<std::string> verify_checksums() const;  // names of the tensors that do not match

 private:
    LbfFile() = default;
    void parse();
    const uint8_t* base_ = nullptr;
    uint64_t size_ = 0;
    bool mapped_ = false;  // base_ is our mmap and is unmapped by the destructor
    std::string origin_;
    uint32_t version_ = 0;
    uint64_t data_offset_ = 0;
    Metadata meta_;
    std::vector<TensorInfo> tensors_;
    std::unordered_map<std::string, size_t> by_name_;
};

// ---------------------------------------------------------------------------------------------
// Helpers shared by the reader, the writer and `lowbit check`.

// Checks a key or tensor name: 1..64 KiB, valid UTF-8, no control characters (so names are safe
// to print). Returns an empty string if good, otherwise what is wrong.
std::string lbf_name_problem(const char* s, size_t n);
// Checks a metadata value against the limits (string length, no NUL bytes, array length).
// Returns an empty string if good, otherwise what is wrong.
std::string lbf_value_problem(const MetaValue& v);
// Short printable form of a value: strings quoted, escaped and cut after `max_chars`; arrays as
// "[N x type]" plus the first few elements.
std::string meta_value_summary(const MetaValue& v, size_t max_chars = 60);

}  // namespace lb
