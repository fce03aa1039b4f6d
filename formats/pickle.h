// pickle.h: a restricted unpickler for the pickles that torch.save writes (data.pkl, protocol 2;
// formats/containers.md says exactly what is accepted). It builds a tree of plain values
// (None, bool, int, float, str, bytes, tuple, list, dict, torch dtypes) and tensors; it never runs
// code: GLOBAL names outside a fixed allow-list (torch's tensor/parameter rebuild functions,
// collections.OrderedDict, torch.Size, torch dtypes and storage classes) are errors, and the allowed
// ones are interpreted by this file, not looked up anywhere.
//
// Values are shared, ref-counted objects, because the pickle memo really shares them (one
// OrderedDict global, one storage, one sub-dict used under several keys). Hostile input cannot
// exhaust memory or the C stack: the memo, the stack and the nesting depth are limited, containers
// cannot become cyclic, and every tensor view is checked against its storage before use.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "formats/source_tensor.h"

namespace lb {

class PyObj;
class PyDict;
using PyRef = std::shared_ptr<PyObj>;

enum class PyKind {
    none,
    boolean,
    integer,   // int64; wider ints are rejected when read
    floating,  // double
    str,       // UTF-8 bytes as pickled
    bytes,
    tuple,  // also what torch.Size becomes
    list,
    dict,     // plain dict and collections.OrderedDict, insertion-ordered
    dtype,    // a torch.<dtype> global, e.g. torch.float16
    global,   // an allowed callable or storage class, before REDUCE / inside a persistent id
    storage,  // a storage from a persistent id: the bytes of zip entry data/<key>
    tensor,   // from torch._utils._rebuild_tensor_v2 (and _rebuild_parameter*)
};
const char* py_kind_name(PyKind k);

// The allowed GLOBALs (besides the dtypes, which are values of kind dtype).
enum class PyGlobal {
    rebuild_tensor_v2,             // torch._utils._rebuild_tensor_v2
    rebuild_parameter,             // torch._utils._rebuild_parameter
    rebuild_parameter_with_state,  // torch._utils._rebuild_parameter_with_state
    ordered_dict,                  // collections.OrderedDict
    torch_size,                    // torch.Size
    storage_class,                 // torch.HalfStorage, torch.FloatStorage, ...
};

struct PyStorage {
    std::string key;                        // the zip entry is <root>/data/<key>
    std::string location;                   // "cpu", "cuda:0", ...: informational only
    DType dtype = DType::u8;                // from the storage class
    uint64_t numel = 0;                     // elements
    const uint8_t* data = nullptr;          // numel * dtype_size bytes; null if the unpickler had no resolver
    std::shared_ptr<const void> keepalive;  // owner of `data` (e.g. the file mapping), may be empty
};

struct PyTensor {
    PyRef storage;                // kind storage
    uint64_t storage_offset = 0;  // in elements
    std::vector<int64_t> stride;  // in elements, as pickled (source.shape holds the size)
    bool requires_grad = false;
    bool parameter = false;  // passed through _rebuild_parameter(_with_state)
    bool contiguous = true;  // false: source.data points into `owned`, a row-major copy of the view
    SourceTensor source;     // the view; data null if the storage has no bytes (no resolver)
    std::vector<uint8_t> owned;
};

class PyObj {
 public:
    PyKind kind() const { return kind_; }
    bool is(PyKind k) const { return kind_ == k; }
    bool is_none() const { return kind_ == PyKind::none; }

    // Typed access: each throws lb::Error ("expected int, found str") when the kind differs.
    bool as_bool() const;
    int64_t as_int() const;    // int only (a bool is not an int here)
    double as_number() const;  // float or int
    const std::string& as_str() const;
    const std::string& as_bytes() const;
    const std::vector<PyRef>& items() const;  // tuple or list
    const PyDict& as_dict() const;
    DType as_dtype() const;  // kind dtype
    const PyTensor& as_tensor() const;
    const SourceTensor& as_source() const { return as_tensor().source; }
    const PyStorage& as_storage() const;
    PyGlobal global_kind() const;            // kind global
    const std::string& global_name() const;  // kind dtype or global: "torch.float16", "torch.Size", ...

    // Dict helpers (throw if this is not a dict): the value under a str key, or nullptr / an error
    // naming the key and the keys present.
    const PyObj* get(const std::string& key) const;
    const PyObj& at(const std::string& key) const;

    // A short Python-like rendering for messages: 'abc', (1, 2), {'a': ...}, torch.float16,
    // tensor(f16, [1, 256]). Cut to about max_chars.
    std::string repr(size_t max_chars = 200) const;

 private:
    friend class Unpickler;
    explicit PyObj(PyKind k) : kind_(k) {}
    void repr_into(std::string& out, size_t max_chars) const;
    [[noreturn]] void wrong_kind(const char* wanted) const;

    PyKind kind_;
    bool contained_ = false;  // inside a tuple/list/dict: containers may no longer change (no cycles)
    uint32_t depth_ = 0;      // nesting depth of containers below this object
    bool b_ = false;
    int64_t i_ = 0;
    double f_ = 0;
    DType dtype_ = DType::u8;  // dtype, and a storage class global
    PyGlobal global_ = PyGlobal::torch_size;
    std::string s_;             // str, bytes, global/dtype name
    std::vector<PyRef> items_;  // tuple, list
    std::unique_ptr<PyDict> dict_;
    std::unique_ptr<PyTensor> tensor_;
    std::unique_ptr<PyStorage> storage_;
};

class PyDict {
 public:
    bool ordered() const { return ordered_; }  // built by collections.OrderedDict
    size_t size() const { return items_.size(); }
    const std::vector<std::pair<PyRef, PyRef>>& items() const { return items_; }
    const PyObj* find(const std::string& str_key) const;  // nullptr if absent
    std::vector<std::string> str_keys() const;            // the str keys, in order
    // Instance attributes set by BUILD, e.g. {'_metadata': OrderedDict(...)} on the OrderedDict that
    // nn.Module.state_dict() returns; nullptr if none.
    const PyObj* attributes() const { return attrs_.get(); }

 private:
    friend class Unpickler;
    bool ordered_ = false;
    std::vector<std::pair<PyRef, PyRef>> items_;
    std::unordered_map<std::string, size_t> index_;  // canonical key text -> position in items_
    PyRef attrs_;                                    // a dict, or null
};

// Gives the bytes of storage `key`: at least `nbytes` bytes that stay valid while `keepalive`
// lives (or, with an empty keepalive, while the caller keeps them). Throws lb::Error if the storage
// is missing or too short.
struct StorageBytes {
    const uint8_t* data = nullptr;
    std::shared_ptr<const void> keepalive;
};
using StorageResolver = std::function<StorageBytes(const std::string& key, uint64_t nbytes)>;

struct UnpickleLimits {
    uint32_t max_depth = 100;                       // container nesting
    uint64_t max_memo = uint64_t(1) << 24;          // memo entries
    uint64_t max_stack = uint64_t(1) << 24;         // stack entries and marks
    uint32_t max_rank = 32;                         // tensor dimensions
    uint64_t max_materialized = uint64_t(1) << 30;  // bytes of non-contiguous views copied, in all
    uint64_t max_key_text = 4096;                   // canonical text of one dict key
};

// Unpickles `size` bytes. `origin` names the input in errors ("model.bin: archive/data.pkl").
// Without a resolver, storages have no bytes (tensor views are still checked against them).
PyRef unpickle(const uint8_t* data, size_t size, const std::string& origin, const StorageResolver& resolve = nullptr,
               const UnpickleLimits& limits = UnpickleLimits());

// The allow-list, as one line for messages and documentation.
const char* pickle_allowed_globals();

}  // namespace lb
