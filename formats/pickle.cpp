// pickle.cpp: the restricted unpickler (formats/pickle.h). A stack machine over the opcodes that
// torch.save emits, plus a few cheap protocol 2-4 basics; anything else is an error naming the
// opcode and its byte offset. Every read is checked against the end, every count against a limit,
// and a tensor view is checked against its storage before anything points into it.
#include "formats/pickle.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "core/error.h"

namespace lb {

const char* py_kind_name(PyKind k) {
    switch (k) {
        case PyKind::none:
            return "None";
        case PyKind::boolean:
            return "bool";
        case PyKind::integer:
            return "int";
        case PyKind::floating:
            return "float";
        case PyKind::str:
            return "str";
        case PyKind::bytes:
            return "bytes";
        case PyKind::tuple:
            return "tuple";
        case PyKind::list:
            return "list";
        case PyKind::dict:
            return "dict";
        case PyKind::dtype:
            return "torch dtype";
        case PyKind::global:
            return "global";
        case PyKind::storage:
            return "storage";
        case PyKind::tensor:
            return "tensor";
    }
    return "?";
}

const char* pickle_allowed_globals() {
    return "collections.OrderedDict, torch.Size, torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter, "
           "torch._utils._rebuild_parameter_with_state, torch.<dtype> for float16 bfloat16 float32 float64 int8 uint8 "
           "int16 int32 int64 bool (and the aliases half float double short int long), torch.<T>Storage for T in Half "
           "BFloat16 Float Double Char Byte Short Int Long Bool";
}

// ---------------------------------------------------------------------------------------------
// PyObj accessors

void PyObj::wrong_kind(const char* wanted) const {
    throw Error(std::string("expected ") + wanted + ", found " + py_kind_name(kind_) + " " + repr(80));
}
bool PyObj::as_bool() const {
    if (kind_ != PyKind::boolean) wrong_kind("bool");
    return b_;
}
int64_t PyObj::as_int() const {
    if (kind_ != PyKind::integer) wrong_kind("int");
    return i_;
}
double PyObj::as_number() const {
    if (kind_ == PyKind::integer) return double(i_);
    if (kind_ != PyKind::floating) wrong_kind("float or int");
    return f_;
}
const std::string& PyObj::as_str() const {
    if (kind_ != PyKind::str) wrong_kind("str");
    return s_;
}
const std::string& PyObj::as_bytes() const {
    if (kind_ != PyKind::bytes) wrong_kind("bytes");
    return s_;
}
const std::vector<PyRef>& PyObj::items() const {
    if (kind_ != PyKind::tuple && kind_ != PyKind::list) wrong_kind("tuple or list");
    return items_;
}
const PyDict& PyObj::as_dict() const {
    if (kind_ != PyKind::dict) wrong_kind("dict");
    return *dict_;
}
DType PyObj::as_dtype() const {
    if (kind_ != PyKind::dtype) wrong_kind("torch dtype");
    return dtype_;
}
const PyTensor& PyObj::as_tensor() const {
    if (kind_ != PyKind::tensor) wrong_kind("tensor");
    return *tensor_;
}
const PyStorage& PyObj::as_storage() const {
    if (kind_ != PyKind::storage) wrong_kind("storage");
    return *storage_;
}
PyGlobal PyObj::global_kind() const {
    if (kind_ != PyKind::global) wrong_kind("global");
    return global_;
}
const std::string& PyObj::global_name() const {
    if (kind_ != PyKind::global && kind_ != PyKind::dtype) wrong_kind("global");
    return s_;
}

const PyObj* PyObj::get(const std::string& key) const { return as_dict().find(key); }

const PyObj& PyObj::at(const std::string& key) const {
    const PyObj* v = get(key);
    if (!v) {
        std::string keys;
        for (const std::string& k : dict_->str_keys()) {
            if (keys.size() > 300) {
                keys += ", ...";
                break;
            }
            keys += (keys.empty() ? "'" : ", '") + k + "'";
        }
        throw Error("key '" + key + "' not found (keys: " + (keys.empty() ? "none" : keys) + ")");
    }
    return *v;
}

namespace {

void append_quoted(std::string& out, const std::string& s, char q) {
    out += q;
    for (unsigned char c : s) {
        if (c == '\\' || c == uint8_t(q)) {
            out += '\\';
            out += char(c);
        } else if (c < 0x20 || c == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        } else {
            out += char(c);
        }
    }
    out += q;
}

}  // namespace

void PyObj::repr_into(std::string& out, size_t max_chars) const {
    if (out.size() > max_chars) return;
    switch (kind_) {
        case PyKind::none:
            out += "None";
            return;
        case PyKind::boolean:
            out += b_ ? "True" : "False";
            return;
        case PyKind::integer:
            out += std::to_string(i_);
            return;
        case PyKind::floating: {
            char buf[32];
            std::snprintf(buf, sizeof buf, "%.17g", f_);
            out += buf;
            return;
        }
        case PyKind::str:
            append_quoted(out, s_.size() > max_chars ? s_.substr(0, max_chars) : s_, '\'');
            return;
        case PyKind::bytes:
            out += 'b';
            append_quoted(out, s_.size() > max_chars ? s_.substr(0, max_chars) : s_, '\'');
            return;
        case PyKind::tuple:
        case PyKind::list: {
            out += kind_ == PyKind::tuple ? '(' : '[';
            for (size_t i = 0; i < items_.size(); i++) {
                if (i) out += ", ";
                if (out.size() > max_chars) {
                    out += "...";
                    break;
                }
                items_[i]->repr_into(out, max_chars);
            }
            if (kind_ == PyKind::tuple && items_.size() == 1) out += ',';
            out += kind_ == PyKind::tuple ? ')' : ']';
            return;
        }
        case PyKind::dict: {
            out += '{';
            bool first = true;
            for (const auto& [k, v] : dict_->items()) {
                if (!first) out += ", ";
                first = false;
                if (out.size() > max_chars) {
                    out += "...";
                    break;
                }
                k->repr_into(out, max_chars);
                out += ": ";
                v->repr_into(out, max_chars);
            }
            out += '}';
            return;
        }
        case PyKind::dtype:
        case PyKind::global:
            out += s_;
            return;
        case PyKind::storage:
            out += "storage('" + storage_->key + "', " + dtype_name(storage_->dtype) + ", " +
                   std::to_string(storage_->numel) + ")";
            return;
        case PyKind::tensor: {
            out += std::string("tensor(") + dtype_name(tensor_->source.dtype) + ", [";
            for (size_t i = 0; i < tensor_->source.shape.size(); i++)
                out += (i ? ", " : "") + std::to_string(tensor_->source.shape[i]);
            out += "])";
            return;
        }
    }
}

std::string PyObj::repr(size_t max_chars) const {
    std::string out;
    repr_into(out, max_chars);
    if (out.size() > max_chars + 3) out = out.substr(0, max_chars) + "...";
    return out;
}

const PyObj* PyDict::find(const std::string& str_key) const {
    auto it = index_.find("s" + std::to_string(str_key.size()) + ":" + str_key);
    return it == index_.end() ? nullptr : items_[it->second].second.get();
}

std::vector<std::string> PyDict::str_keys() const {
    std::vector<std::string> keys;
    for (const auto& kv : items_)
        if (kv.first->is(PyKind::str)) keys.push_back(kv.first->as_str());
    return keys;
}

// ---------------------------------------------------------------------------------------------
// the machine

namespace {

struct OpInfo {
    uint8_t code;
    const char* name;
};
// Every opcode of pickle protocols 0-5, so that an unsupported one is named in the error.
// clang-format off
constexpr OpInfo kOpNames[] = {
    {'(', "MARK"}, {'.', "STOP"}, {'0', "POP"}, {'1', "POP_MARK"}, {'2', "DUP"},
    {'F', "FLOAT"}, {'I', "INT"}, {'J', "BININT"}, {'K', "BININT1"}, {'L', "LONG"},
    {'M', "BININT2"}, {'N', "NONE"}, {'P', "PERSID"}, {'Q', "BINPERSID"}, {'R', "REDUCE"},
    {'S', "STRING"}, {'T', "BINSTRING"}, {'U', "SHORT_BINSTRING"}, {'V', "UNICODE"}, {'X', "BINUNICODE"},
    {'a', "APPEND"}, {'b', "BUILD"}, {'c', "GLOBAL"}, {'d', "DICT"}, {'e', "APPENDS"},
    {'g', "GET"}, {'h', "BINGET"}, {'i', "INST"}, {'j', "LONG_BINGET"}, {'l', "LIST"},
    {']', "EMPTY_LIST"}, {'o', "OBJ"}, {'p', "PUT"}, {'q', "BINPUT"}, {'r', "LONG_BINPUT"},
    {'s', "SETITEM"}, {'t', "TUPLE"}, {')', "EMPTY_TUPLE"}, {'u', "SETITEMS"}, {'G', "BINFLOAT"},
    {0x80, "PROTO"}, {0x81, "NEWOBJ"}, {0x82, "EXT1"}, {0x83, "EXT2"}, {0x84, "EXT4"},
    {0x85, "TUPLE1"}, {0x86, "TUPLE2"}, {0x87, "TUPLE3"}, {0x88, "NEWTRUE"}, {0x89, "NEWFALSE"},
    {0x8a, "LONG1"}, {0x8b, "LONG4"}, {'B', "BINBYTES"}, {'C', "SHORT_BINBYTES"}, {0x8c, "SHORT_BINUNICODE"},
    {0x8d, "BINUNICODE8"}, {0x8e, "BINBYTES8"}, {0x8f, "EMPTY_SET"}, {0x90, "ADDITEMS"}, {0x91, "FROZENSET"},
    {0x92, "NEWOBJ_EX"}, {0x93, "STACK_GLOBAL"}, {0x94, "MEMOIZE"}, {0x95, "FRAME"}, {0x96, "BYTEARRAY8"},
    {0x97, "NEXT_BUFFER"}, {0x98, "READONLY_BUFFER"}, {'}', "EMPTY_DICT"},
};
// clang-format on
const char* op_name(uint8_t op) {
    for (const OpInfo& o : kOpNames)
        if (o.code == op) return o.name;
    return nullptr;
}

struct DTypeName {
    const char* name;
    DType dtype;
};
constexpr DTypeName kDTypeGlobals[] = {
    {"float16", DType::f16}, {"half", DType::f16},    {"bfloat16", DType::bf16}, {"float32", DType::f32},
    {"float", DType::f32},   {"float64", DType::f64}, {"double", DType::f64},    {"int8", DType::i8},
    {"uint8", DType::u8},    {"int16", DType::i16},   {"short", DType::i16},     {"int32", DType::i32},
    {"int", DType::i32},     {"int64", DType::i64},   {"long", DType::i64},      {"bool", DType::boolean},
};
constexpr DTypeName kStorageGlobals[] = {
    {"HalfStorage", DType::f16},     {"BFloat16Storage", DType::bf16}, {"FloatStorage", DType::f32},
    {"DoubleStorage", DType::f64},   {"CharStorage", DType::i8},       {"ByteStorage", DType::u8},
    {"ShortStorage", DType::i16},    {"IntStorage", DType::i32},       {"LongStorage", DType::i64},
    {"BoolStorage", DType::boolean},
};

// checked uint64 arithmetic
bool mul_ok(uint64_t a, uint64_t b, uint64_t& r) { return !__builtin_mul_overflow(a, b, &r); }
bool add_ok(uint64_t a, uint64_t b, uint64_t& r) { return !__builtin_add_overflow(a, b, &r); }

}  // namespace

class Unpickler {
 public:
    Unpickler(const uint8_t* data, size_t size, const std::string& origin, const StorageResolver& resolve,
              const UnpickleLimits& limits)
        : p_(data), size_(size), origin_(origin), resolve_(resolve), lim_(limits) {}

    PyRef run();

 private:
    [[noreturn]] void fail(const std::string& what) const {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", op_);
        const char* n = op_name(op_);
        const std::string op = std::string("opcode ") + (n ? n : hex);
        throw Error(origin_ + ": pickle byte " + std::to_string(op_pos_) + " (" + op + "): unpickler: " + what);
    }
    void need(uint64_t n) const {
        if (n > size_ - pos_)
            fail("needs " + std::to_string(n) + " bytes, only " + std::to_string(size_ - pos_) +
                 " left (truncated pickle?)");
    }
    uint64_t le(unsigned n) {
        need(n);
        uint64_t v = 0;
        for (unsigned i = 0; i < n; i++) v |= uint64_t(p_[pos_ + i]) << (8 * i);
        pos_ += n;
        return v;
    }
    std::string bytes(uint64_t n) {
        need(n);
        std::string s(reinterpret_cast<const char*>(p_ + pos_), size_t(n));
        pos_ += n;
        return s;
    }
    std::string line() {  // GLOBAL's module / name, ended by '\n'
        const uint64_t max_len = 256;
        for (uint64_t i = 0; pos_ + i < size_ && i <= max_len; i++) {
            if (p_[pos_ + i] == '\n') {
                std::string s(reinterpret_cast<const char*>(p_ + pos_), size_t(i));
                pos_ += i + 1;
                return s;
            }
        }
        fail("GLOBAL name is not ended by a newline within " + std::to_string(max_len) + " bytes");
    }

    PyRef make(PyKind k) { return PyRef(new PyObj(k)); }
    void push(PyRef v) {
        if (stack_.size() >= lim_.max_stack) fail("stack exceeds " + std::to_string(lim_.max_stack) + " entries");
        stack_.push_back(std::move(v));
    }
    size_t frame_base() const { return marks_.empty() ? 0 : marks_.back(); }
    PyRef pop() {
        if (stack_.size() <= frame_base()) fail("stack underflow");
        PyRef v = std::move(stack_.back());
        stack_.pop_back();
        return v;
    }
    PyObj& top() {
        if (stack_.size() <= frame_base()) fail("stack underflow");
        return *stack_.back();
    }
    std::vector<PyRef> pop_mark() {
        if (marks_.empty()) fail("no MARK on the stack");
        const size_t base = marks_.back();
        marks_.pop_back();
        std::vector<PyRef> items(std::make_move_iterator(stack_.begin() + long(base)),
                                 std::make_move_iterator(stack_.end()));
        stack_.resize(base);
        return items;
    }

    // `child` goes inside `parent`: it may no longer change, and parent's depth grows.
    void contain(PyObj& parent, PyObj& child) {
        if (&parent == &child) fail("a " + std::string(py_kind_name(parent.kind_)) + " cannot contain itself");
        child.contained_ = true;
        if (child.depth_ + 1 > parent.depth_) parent.depth_ = child.depth_ + 1;
        if (parent.depth_ > lim_.max_depth)
            fail("values nest deeper than " + std::to_string(lim_.max_depth) + " levels");
    }
    void check_mutable(const PyObj& c, const char* what) {
        if (c.contained_)
            fail(std::string("the ") + what +
                 " changes after it was put inside another value (self-referencing values are not supported)");
    }
    PyRef make_tuple(std::vector<PyRef> items) {
        PyRef t = make(PyKind::tuple);
        for (const PyRef& x : items) contain(*t, *x);
        t->items_ = std::move(items);
        return t;
    }

    bool key_text(const PyObj& k, std::string& out) const;
    void set_item(PyObj& d, PyRef k, PyRef v);
    void append(PyObj& l, PyRef v);
    void do_global(const std::string& module, const std::string& name);
    void do_reduce();
    void do_persid();
    PyRef rebuild_tensor(const std::vector<PyRef>& args);
    void memo_put(uint64_t idx);
    void memo_get(uint64_t idx);

    const uint8_t* p_;
    uint64_t size_;
    uint64_t pos_ = 0;
    uint64_t op_pos_ = 0;
    uint8_t op_ = 0;
    const std::string& origin_;
    const StorageResolver& resolve_;
    const UnpickleLimits& lim_;
    std::vector<PyRef> stack_;
    std::vector<size_t> marks_;
    std::unordered_map<uint64_t, PyRef> memo_;
    std::unordered_map<std::string, PyRef> storages_;  // by key: every persistent id of a key shares one
    uint64_t materialized_ = 0;
};

// Canonical text of a hashable key (None, bool, int, float, str, bytes, dtype, tuples of these),
// kind-prefixed so that 'a' and b'a' differ. False if the key cannot be a dict key.
bool Unpickler::key_text(const PyObj& k, std::string& out) const {
    if (out.size() > lim_.max_key_text)
        fail("a dict key is longer than " + std::to_string(lim_.max_key_text) + " bytes");
    switch (k.kind_) {
        case PyKind::none:
            out += "N";
            return true;
        case PyKind::boolean:
            out += k.b_ ? "T" : "F";
            return true;
        case PyKind::integer:
            out += "i" + std::to_string(k.i_) + ";";
            return true;
        case PyKind::floating: {
            char buf[40];
            std::snprintf(buf, sizeof buf, "f%a;", k.f_);
            out += buf;
            return true;
        }
        case PyKind::str:
        case PyKind::bytes:
            if (k.s_.size() > lim_.max_key_text)
                fail("a dict key is longer than " + std::to_string(lim_.max_key_text) + " bytes");
            out += (k.kind_ == PyKind::str ? "s" : "b") + std::to_string(k.s_.size()) + ":";
            out += k.s_;
            return true;
        case PyKind::dtype:
        case PyKind::global:
            out += "g" + k.s_ + ";";
            return true;
        case PyKind::tuple:
            out += "(" + std::to_string(k.items_.size()) + ":";
            for (const PyRef& x : k.items_)
                if (!key_text(*x, out)) return false;
            out += ")";
            return true;
        default:
            return false;
    }
}

void Unpickler::set_item(PyObj& d, PyRef k, PyRef v) {
    if (!d.is(PyKind::dict)) fail(std::string("SETITEM(S) on a ") + py_kind_name(d.kind_) + ", not a dict");
    check_mutable(d, "dict");
    std::string text;
    if (!key_text(*k, text)) fail(std::string("a ") + py_kind_name(k->kind_) + " cannot be a dict key");
    if (d.dict_->index_.count(text)) fail("dict key " + k->repr(80) + " is set twice");
    contain(d, *k);
    contain(d, *v);
    d.dict_->index_.emplace(std::move(text), d.dict_->items_.size());
    d.dict_->items_.emplace_back(std::move(k), std::move(v));
}

void Unpickler::append(PyObj& l, PyRef v) {
    if (!l.is(PyKind::list)) fail(std::string("APPEND(S) on a ") + py_kind_name(l.kind_) + ", not a list");
    check_mutable(l, "list");
    contain(l, *v);
    l.items_.push_back(std::move(v));
}

void Unpickler::memo_put(uint64_t idx) {
    if (memo_.size() >= lim_.max_memo && !memo_.count(idx))
        fail("memo exceeds " + std::to_string(lim_.max_memo) + " entries");
    if (stack_.size() <= frame_base()) fail("stack underflow");
    memo_[idx] = stack_.back();
}

void Unpickler::memo_get(uint64_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end()) fail("memo index " + std::to_string(idx) + " was never stored");
    push(it->second);
}

void Unpickler::do_global(const std::string& module, const std::string& name) {
    const std::string full = module + "." + name;
    PyRef g;
    if (module == "torch") {
        for (const DTypeName& d : kDTypeGlobals)
            if (name == d.name) {
                g = make(PyKind::dtype);
                g->dtype_ = d.dtype;
            }
        for (const DTypeName& d : kStorageGlobals)
            if (name == d.name) {
                g = make(PyKind::global);
                g->global_ = PyGlobal::storage_class;
                g->dtype_ = d.dtype;
            }
        if (name == "Size") {
            g = make(PyKind::global);
            g->global_ = PyGlobal::torch_size;
        }
    } else if (module == "torch._utils") {
        static const std::pair<const char*, PyGlobal> fns[] = {
            {"_rebuild_tensor_v2", PyGlobal::rebuild_tensor_v2},
            {"_rebuild_parameter", PyGlobal::rebuild_parameter},
            {"_rebuild_parameter_with_state", PyGlobal::rebuild_parameter_with_state},
        };
        for (const auto& [n, kind] : fns)
            if (name == n) {
                g = make(PyKind::global);
                g->global_ = kind;
            }
    } else if (module == "collections" && name == "OrderedDict") {
        g = make(PyKind::global);
        g->global_ = PyGlobal::ordered_dict;
    }
    if (!g) {
        std::string shown;
        append_quoted(shown, full, '\'');
        fail("global " + shown + " is not allowed (allowed: " + pickle_allowed_globals() + ")");
    }
    g->s_ = full;
    push(std::move(g));
}

void Unpickler::do_persid() {
    PyRef pid = pop();
    if (!pid->is(PyKind::tuple) || pid->items_.size() != 5)
        fail("persistent id must be a 5-tuple ('storage', storage class, key, location, numel), found " +
             pid->repr(120));
    const auto& it = pid->items_;
    if (!it[0]->is(PyKind::str) || it[0]->s_ != "storage")
        fail("persistent id kind must be 'storage', found " + it[0]->repr(80));
    if (!it[1]->is(PyKind::global) || it[1]->global_ != PyGlobal::storage_class)
        fail("persistent id: expected a torch.<T>Storage class, found " + it[1]->repr(80));
    if (!it[2]->is(PyKind::str) || it[2]->s_.empty() || it[2]->s_.size() > 256)
        fail("persistent id: storage key must be a non-empty str, found " + it[2]->repr(80));
    if (!it[3]->is(PyKind::str)) fail("persistent id: location must be a str, found " + it[3]->repr(80));
    if (!it[4]->is(PyKind::integer) || it[4]->i_ < 0)
        fail("persistent id: numel must be an int >= 0, found " + it[4]->repr(80));
    const std::string& key = it[2]->s_;
    const DType dt = it[1]->dtype_;
    const uint64_t numel = uint64_t(it[4]->i_);

    auto found = storages_.find(key);
    if (found != storages_.end()) {
        const PyStorage& s = *found->second->storage_;
        if (s.dtype != dt || s.numel != numel)
            fail("storage '" + key + "' is used as " + dtype_name(dt) + " x " + std::to_string(numel) +
                 " after being used as " + dtype_name(s.dtype) + " x " + std::to_string(s.numel));
        push(found->second);
        return;
    }
    uint64_t nbytes;
    if (!mul_ok(numel, dtype_size(dt), nbytes) || nbytes > (uint64_t(1) << 62))
        fail("storage '" + key + "': numel " + std::to_string(numel) + " is too large");
    PyRef s = make(PyKind::storage);
    s->storage_.reset(new PyStorage());
    s->storage_->key = key;
    s->storage_->location = it[3]->s_;
    s->storage_->dtype = dt;
    s->storage_->numel = numel;
    if (resolve_) {
        StorageBytes b = resolve_(key, nbytes);
        s->storage_->data = b.data;
        s->storage_->keepalive = std::move(b.keepalive);
    }
    storages_.emplace(key, s);
    push(std::move(s));
}

PyRef Unpickler::rebuild_tensor(const std::vector<PyRef>& a) {
    if (a.size() != 6 && a.size() != 7)
        fail(
            "_rebuild_tensor_v2 takes 6 or 7 arguments (storage, offset, size, stride, requires_grad, hooks"
            "[, metadata]), found " +
            std::to_string(a.size()));
    if (!a[0]->is(PyKind::storage)) fail("_rebuild_tensor_v2: argument 1 must be a storage, found " + a[0]->repr(80));
    if (!a[1]->is(PyKind::integer) || a[1]->i_ < 0)
        fail("_rebuild_tensor_v2: storage offset must be an int >= 0, found " + a[1]->repr(80));
    if (!a[2]->is(PyKind::tuple) || !a[3]->is(PyKind::tuple))
        fail("_rebuild_tensor_v2: size and stride must be tuples, found " + a[2]->repr(80) + " and " + a[3]->repr(80));
    if (!a[4]->is(PyKind::boolean)) fail("_rebuild_tensor_v2: requires_grad must be a bool, found " + a[4]->repr(80));
    if (!a[5]->is(PyKind::dict)) fail("_rebuild_tensor_v2: backward hooks must be a dict, found " + a[5]->repr(80));
    const PyStorage& st = *a[0]->storage_;
    const auto& size = a[2]->items_;
    const auto& stride = a[3]->items_;
    if (size.size() != stride.size())
        fail("_rebuild_tensor_v2: size " + a[2]->repr(80) + " and stride " + a[3]->repr(80) + " differ in length");
    if (size.size() > lim_.max_rank)
        fail("_rebuild_tensor_v2: " + std::to_string(size.size()) + " dimensions, at most " +
             std::to_string(lim_.max_rank) + " are supported");

    PyRef t = make(PyKind::tensor);
    t->tensor_.reset(new PyTensor());
    PyTensor& T = *t->tensor_;
    T.storage = a[0];
    T.storage_offset = uint64_t(a[1]->i_);
    T.requires_grad = a[4]->b_;
    T.source.dtype = st.dtype;
    const uint64_t item = dtype_size(st.dtype);
    uint64_t numel = 1;
    for (size_t d = 0; d < size.size(); d++) {
        if (!size[d]->is(PyKind::integer) || size[d]->i_ < 0 || !stride[d]->is(PyKind::integer) || stride[d]->i_ < 0)
            fail("_rebuild_tensor_v2: size " + a[2]->repr(80) + " and stride " + a[3]->repr(80) +
                 " must hold ints >= 0");
        T.source.shape.push_back(size[d]->i_);
        T.stride.push_back(stride[d]->i_);
        if (!mul_ok(numel, uint64_t(size[d]->i_), numel) || numel > (uint64_t(1) << 62) / 8)
            fail("_rebuild_tensor_v2: size " + a[2]->repr(80) + " has too many elements");
    }
    const std::string where = "tensor view (offset " + std::to_string(T.storage_offset) + ", size " + a[2]->repr(80) +
                              ", stride " + a[3]->repr(80) + ") of storage '" + st.key + "' (" +
                              std::to_string(st.numel) + " elements)";
    if (numel == 0) {
        if (T.storage_offset > st.numel) fail(where + ": the offset is beyond the storage");
        return t;
    }
    // strides are >= 0, so the element indices reachable run from offset to offset + sum (size-1)*stride
    uint64_t last = T.storage_offset;
    for (size_t d = 0; d < size.size(); d++) {
        uint64_t step;
        if (!mul_ok(uint64_t(T.source.shape[d] - 1), uint64_t(T.stride[d]), step) || !add_ok(last, step, last))
            fail(where + ": element indices overflow");
    }
    if (last >= st.numel) fail(where + ": reaches element " + std::to_string(last) + ", beyond the storage");

    // contiguous (row-major): every dimension of size > 1 has the stride of the dimensions after it
    uint64_t expect = 1;
    for (size_t d = size.size(); d-- > 0;) {
        if (T.source.shape[d] != 1 && uint64_t(T.stride[d]) != expect) T.contiguous = false;
        expect *= uint64_t(T.source.shape[d]);
    }
    T.source.nbytes = numel * item;
    if (!st.data) return t;  // no bytes were given (raw pickle): the view is checked, nothing to point at
    if (T.contiguous) {
        T.source.data = st.data + T.storage_offset * item;
        return t;
    }
    if (T.source.nbytes > lim_.max_materialized || materialized_ > lim_.max_materialized - T.source.nbytes)
        fail(where + ": copying non-contiguous views would take more than " + std::to_string(lim_.max_materialized) +
             " bytes");
    materialized_ += T.source.nbytes;
    T.owned.resize(size_t(T.source.nbytes));
    // walk the view in row-major order with an odometer over the dimensions
    const size_t rank = size.size();
    std::vector<uint64_t> idx(rank, 0);
    uint64_t src = T.storage_offset;
    uint8_t* out = T.owned.data();
    for (uint64_t e = 0; e < numel; e++) {
        std::memcpy(out, st.data + src * item, size_t(item));
        out += item;
        for (size_t d = rank; d-- > 0;) {
            if (++idx[d] < uint64_t(T.source.shape[d])) {
                src += uint64_t(T.stride[d]);
                break;
            }
            src -= uint64_t(T.stride[d]) * (idx[d] - 1);
            idx[d] = 0;
        }
    }
    T.source.data = T.owned.data();
    return t;
}

void Unpickler::do_reduce() {
    PyRef args = pop();
    PyRef fn = pop();
    if (!fn->is(PyKind::global) || fn->global_ == PyGlobal::storage_class)
        fail("REDUCE: " + fn->repr(80) + " cannot be called");
    if (!args->is(PyKind::tuple)) fail("REDUCE: arguments must be a tuple, found " + args->repr(80));
    const auto& a = args->items_;
    switch (fn->global_) {
        case PyGlobal::rebuild_tensor_v2:
            push(rebuild_tensor(a));
            return;
        case PyGlobal::rebuild_parameter:
        case PyGlobal::rebuild_parameter_with_state: {
            const size_t n = fn->global_ == PyGlobal::rebuild_parameter ? 3 : 4;
            if (a.size() != n || !a[0]->is(PyKind::tensor) || !a[1]->is(PyKind::boolean) || !a[2]->is(PyKind::dict))
                fail(fn->s_ + " takes (tensor, requires_grad, hooks" + (n == 4 ? ", state" : "") + "), found " +
                     args->repr(120));
            a[0]->tensor_->parameter = true;
            a[0]->tensor_->requires_grad = a[1]->b_;
            push(a[0]);
            return;
        }
        case PyGlobal::ordered_dict: {
            if (!a.empty()) fail("collections.OrderedDict takes no arguments here, found " + args->repr(80));
            PyRef d = make(PyKind::dict);
            d->dict_.reset(new PyDict());
            d->dict_->ordered_ = true;
            push(std::move(d));
            return;
        }
        case PyGlobal::torch_size: {
            if (a.size() != 1 || !a[0]->is(PyKind::tuple))
                fail("torch.Size takes one tuple of ints, found " + args->repr(80));
            for (const PyRef& x : a[0]->items_)
                if (!x->is(PyKind::integer)) fail("torch.Size takes one tuple of ints, found " + args->repr(80));
            push(make_tuple(a[0]->items_));
            return;
        }
        case PyGlobal::storage_class:
            break;
    }
    fail("REDUCE: " + fn->repr(80) + " cannot be called");
}

PyRef Unpickler::run() {
    while (true) {
        op_pos_ = pos_;
        if (pos_ >= size_) {
            op_ = 0;
            fail("the pickle ends without STOP (truncated?)");
        }
        op_ = p_[pos_++];
        switch (op_) {
            case 0x80: {  // PROTO
                const uint64_t v = le(1);
                if (v < 2 || v > 5) fail("protocol " + std::to_string(v) + " is not supported (2..5)");
                break;
            }
            case 0x95: {  // FRAME: framing is only an I/O hint; the bytes follow in line
                const uint64_t n = le(8);
                if (n > size_ - pos_) fail("frame of " + std::to_string(n) + " bytes runs past the end");
                break;
            }
            case '.': {  // STOP
                if (!marks_.empty()) fail("STOP with an open MARK");
                return pop();
            }
            case '(':  // MARK
                if (marks_.size() >= lim_.max_stack) fail("too many MARKs");
                marks_.push_back(stack_.size());
                break;
            case '}': {  // EMPTY_DICT
                PyRef d = make(PyKind::dict);
                d->dict_.reset(new PyDict());
                push(std::move(d));
                break;
            }
            case ']':  // EMPTY_LIST
                push(make(PyKind::list));
                break;
            case ')':  // EMPTY_TUPLE
                push(make(PyKind::tuple));
                break;
            case 'N':  // NONE
                push(make(PyKind::none));
                break;
            case 0x88:    // NEWTRUE
            case 0x89: {  // NEWFALSE
                PyRef b = make(PyKind::boolean);
                b->b_ = op_ == 0x88;
                push(std::move(b));
                break;
            }
            case 's': {  // SETITEM
                PyRef v = pop();
                PyRef k = pop();
                set_item(top(), std::move(k), std::move(v));
                break;
            }
            case 'u': {  // SETITEMS
                std::vector<PyRef> kv = pop_mark();
                if (kv.size() % 2) fail("SETITEMS with an odd number of items");
                PyObj& d = top();
                for (size_t i = 0; i < kv.size(); i += 2) set_item(d, kv[i], kv[i + 1]);
                break;
            }
            case 'a': {  // APPEND
                PyRef v = pop();
                append(top(), std::move(v));
                break;
            }
            case 'e': {  // APPENDS
                std::vector<PyRef> vs = pop_mark();
                PyObj& l = top();
                if (!l.is(PyKind::list)) fail(std::string("APPENDS on a ") + py_kind_name(l.kind_) + ", not a list");
                for (PyRef& v : vs) append(l, std::move(v));
                break;
            }
            case 't':  // TUPLE
                push(make_tuple(pop_mark()));
                break;
            case 0x85:    // TUPLE1
            case 0x86:    // TUPLE2
            case 0x87: {  // TUPLE3
                const size_t n = size_t(op_ - 0x84);
                if (stack_.size() < frame_base() + n) fail("stack underflow");
                std::vector<PyRef> items(std::make_move_iterator(stack_.end() - long(n)),
                                         std::make_move_iterator(stack_.end()));
                stack_.resize(stack_.size() - n);
                push(make_tuple(std::move(items)));
                break;
            }
            case 'X':     // BINUNICODE
            case 0x8c:    // SHORT_BINUNICODE
            case 0x8d:    // BINUNICODE8
            case 'B':     // BINBYTES
            case 'C':     // SHORT_BINBYTES
            case 0x8e: {  // BINBYTES8
                const bool is_str = op_ == 'X' || op_ == 0x8c || op_ == 0x8d;
                const unsigned w = (op_ == 0x8c || op_ == 'C') ? 1 : (op_ == 0x8d || op_ == 0x8e) ? 8 : 4;
                const uint64_t n = le(w);
                PyRef s = make(is_str ? PyKind::str : PyKind::bytes);
                s->s_ = bytes(n);
                push(std::move(s));
                break;
            }
            case 'K':    // BININT1
            case 'M':    // BININT2
            case 'J': {  // BININT
                PyRef v = make(PyKind::integer);
                if (op_ == 'J')
                    v->i_ = int32_t(uint32_t(le(4)));
                else
                    v->i_ = int64_t(le(op_ == 'K' ? 1 : 2));
                push(std::move(v));
                break;
            }
            case 0x8a: {  // LONG1: length byte + little-endian two's complement
                const uint64_t n = le(1);
                if (n > 8) fail("LONG1 of " + std::to_string(n) + " bytes does not fit in int64");
                uint64_t u = le(unsigned(n));
                if (n > 0 && n < 8 && (u >> (8 * n - 1)) & 1) u |= ~uint64_t(0) << (8 * n);  // sign-extend
                PyRef v = make(PyKind::integer);
                v->i_ = int64_t(u);
                push(std::move(v));
                break;
            }
            case 'G': {  // BINFLOAT: big-endian IEEE double
                need(8);
                uint64_t u = 0;
                for (int i = 0; i < 8; i++) u = (u << 8) | p_[pos_ + uint64_t(i)];
                pos_ += 8;
                PyRef v = make(PyKind::floating);
                std::memcpy(&v->f_, &u, 8);
                push(std::move(v));
                break;
            }
            case 'c': {  // GLOBAL
                const std::string module = line();
                const std::string name = line();
                do_global(module, name);
                break;
            }
            case 0x93: {  // STACK_GLOBAL
                PyRef name = pop();
                PyRef module = pop();
                if (!module->is(PyKind::str) || !name->is(PyKind::str)) fail("STACK_GLOBAL needs two strs");
                do_global(module->s_, name->s_);
                break;
            }
            case 'R':  // REDUCE
                do_reduce();
                break;
            case 'b': {  // BUILD: only instance attributes of a dict (state_dict()'s OrderedDict._metadata)
                PyRef state = pop();
                PyObj& obj = top();
                if (!obj.is(PyKind::dict) || !state->is(PyKind::dict))
                    fail(std::string("BUILD of a ") + py_kind_name(obj.kind_) + " with a " +
                         py_kind_name(state->kind_) +
                         " state: only dict attributes (e.g. a state dict's _metadata) "
                         "are supported");
                check_mutable(obj, "dict");
                if (obj.dict_->attrs_) fail("BUILD twice on one dict");
                for (const auto& kv : state->dict_->items_)
                    if (!kv.first->is(PyKind::str))
                        fail("BUILD: attribute names must be strs, found " + kv.first->repr(80));
                contain(obj, *state);
                obj.dict_->attrs_ = std::move(state);
                break;
            }
            case 'Q':  // BINPERSID
                do_persid();
                break;
            case 'q':  // BINPUT
                memo_put(le(1));
                break;
            case 'r':  // LONG_BINPUT
                memo_put(le(4));
                break;
            case 0x94:  // MEMOIZE
                memo_put(memo_.size());
                break;
            case 'h':  // BINGET
                memo_get(le(1));
                break;
            case 'j':  // LONG_BINGET
                memo_get(le(4));
                break;
            default: {
                char hex[8];
                std::snprintf(hex, sizeof hex, "0x%02x", op_);
                const char* n = op_name(op_);
                if (n)
                    fail(std::string("opcode ") + n + " (" + hex + ") is not supported by this restricted unpickler");
                fail(std::string("unknown opcode ") + hex);
            }
        }
    }
}

PyRef unpickle(const uint8_t* data, size_t size, const std::string& origin, const StorageResolver& resolve,
               const UnpickleLimits& limits) {
    Unpickler u(data, size, origin, resolve, limits);
    return u.run();
}

}  // namespace lb
