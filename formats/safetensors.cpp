// safetensors.cpp: the safetensors parser (formats/safetensors.h). The JSON header is parsed with
// nlohmann-json after a cheap pre-scan that bounds its nesting depth; keys keep their file order,
// and a name that appears twice in the header is an error.
#include "formats/safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"

namespace lb {

namespace {

using json = nlohmann::ordered_json;

struct DTypeCode {
    const char* code;
    DType dtype;
};
constexpr DTypeCode kCodes[] = {
    {"F16", DType::f16}, {"BF16", DType::bf16}, {"F32", DType::f32}, {"F64", DType::f64}, {"I8", DType::i8},
    {"U8", DType::u8},   {"I16", DType::i16},   {"I32", DType::i32}, {"I64", DType::i64}, {"BOOL", DType::boolean},
};

// Deepest nesting of [ and { outside strings; JSON that nests deeper than any real header is
// refused before the parser (whose recursion would follow it) sees it.
size_t json_depth(const char* s, size_t n) {
    size_t depth = 0, max_depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        const char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            max_depth = std::max(max_depth, ++depth);
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return max_depth;
}

[[noreturn]] void fail_at(const std::string& origin, const std::string& what) {
    throw Error(origin + ": safetensors: " + what);
}

}  // namespace

bool SafetensorsFile::looks_like_safetensors(const uint8_t* head, size_t head_size) {
    if (head_size < 9) return false;
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= uint64_t(head[i]) << (8 * i);
    return n >= 2 && head[8] == '{';
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
    std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
    f->attach(path);
    f->parse();
    return f;
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::from_memory(const void* data, size_t size,
                                                              const std::string& origin) {
    std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
    f->attach(data, size, origin);
    f->parse();
    return f;
}

const SourceTensor* SafetensorsFile::find(const std::string& name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : &tensors_[it->second].second;
}

void SafetensorsFile::parse() {
    auto fail = [&](const std::string& what) { fail_at(origin_, what); };
    if (size_ < 8) fail("file of " + std::to_string(size_) + " bytes is too short for the 8-byte header length");
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= uint64_t(base_[i]) << (8 * i);
    if (n > size_ - 8)
        fail("header length " + std::to_string(n) + " runs past the end of the file (" + std::to_string(size_) +
             " bytes; truncated?)");
    if (n > kMaxHeaderBytes)
        fail("header length " + std::to_string(n) + " exceeds the limit of " + std::to_string(kMaxHeaderBytes));
    header_size_ = n;
    const char* h = reinterpret_cast<const char*>(base_ + 8);
    if (json_depth(h, size_t(n)) > 8) fail("header JSON nests deeper than 8 levels");

    // parse, refusing a tensor name that appears twice (the parser would keep only the last one)
    std::set<std::string> seen;
    std::string dup;
    const json::parser_callback_t cb = [&](int depth, json::parse_event_t ev, json& parsed) {
        if (depth == 1 && ev == json::parse_event_t::key && dup.empty() &&
            !seen.insert(parsed.get<std::string>()).second)
            dup = parsed.get<std::string>();
        return true;
    };
    json hdr;
    try {
        hdr = json::parse(h, h + n, cb);
    } catch (const json::exception& e) {
        fail(std::string("header is not valid JSON: ") + e.what());
    }
    if (!dup.empty()) fail("header names '" + dup + "' twice");
    if (!hdr.is_object()) fail("header is not a JSON object");

    const uint64_t data_start = 8 + n;
    const uint64_t data_size = size_ - data_start;
    struct Range {
        uint64_t begin, end;
        size_t index;
    };
    std::vector<Range> ranges;
    for (auto it = hdr.begin(); it != hdr.end(); ++it) {
        const std::string& name = it.key();
        const json& v = it.value();
        if (name == "__metadata__") {
            if (!v.is_object()) fail("__metadata__ is not an object");
            for (auto m = v.begin(); m != v.end(); ++m) {
                if (!m.value().is_string()) fail("__metadata__ '" + m.key() + "' is not a string");
                metadata_[m.key()] = m.value().get<std::string>();
            }
            continue;
        }
        const std::string tf = "tensor '" + name + "'";
        if (!v.is_object()) fail(tf + ": entry is not an object");
        const auto dt = v.find("dtype"), sh = v.find("shape"), off = v.find("data_offsets");
        if (dt == v.end() || sh == v.end() || off == v.end())
            fail(tf + ": needs \"dtype\", \"shape\" and \"data_offsets\"");
        if (!dt->is_string()) fail(tf + ": dtype is not a string");
        const std::string code = dt->get<std::string>();
        SourceTensor t;
        bool known = false;
        for (const DTypeCode& c : kCodes)
            if (code == c.code) {
                t.dtype = c.dtype;
                known = true;
            }
        if (!known)
            fail(tf + ": dtype '" + code + "' is not supported (supported: F16 BF16 F32 F64 I8 U8 I16 I32 I64 BOOL)");
        if (!sh->is_array() || sh->size() > kMaxRank)
            fail(tf + ": shape must be an array of at most " + std::to_string(kMaxRank) + " sizes");
        uint64_t numel = 1;
        for (const json& d : *sh) {
            if (!d.is_number_unsigned() || d.get<uint64_t>() > (uint64_t(1) << 62))
                fail(tf + ": shape " + sh->dump() + " must hold integers >= 0");
            const uint64_t dim = d.get<uint64_t>();
            if (dim != 0 && numel > (uint64_t(1) << 60) / dim) fail(tf + ": shape " + sh->dump() + " is too large");
            numel *= dim;
            t.shape.push_back(int64_t(dim));
        }
        if (!off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() || !(*off)[1].is_number_unsigned())
            fail(tf + ": data_offsets must be [begin, end] with integers >= 0");
        const uint64_t begin = (*off)[0].get<uint64_t>(), end = (*off)[1].get<uint64_t>();
        if (begin > end || end > data_size)
            fail(tf + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                 "] are not inside the " + std::to_string(data_size) + " data bytes");
        t.nbytes = numel * dtype_size(t.dtype);  // < 2^63: numel <= 2^60
        if (end - begin != t.nbytes)
            fail(tf + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "] hold " +
                 std::to_string(end - begin) + " bytes, shape " + sh->dump() + " of " + code + " needs " +
                 std::to_string(t.nbytes));
        t.data = t.nbytes ? base_ + data_start + begin : nullptr;
        if (t.nbytes) ranges.push_back({begin, end, tensors_.size()});
        by_name_.emplace(name, tensors_.size());
        tensors_.emplace_back(name, std::move(t));
    }
    std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.begin < b.begin; });
    for (size_t i = 1; i < ranges.size(); i++)
        if (ranges[i].begin < ranges[i - 1].end)
            fail("tensors '" + tensors_[ranges[i - 1].index].first + "' and '" + tensors_[ranges[i].index].first +
                 "' overlap (data_offsets [" + std::to_string(ranges[i - 1].begin) + ", " +
                 std::to_string(ranges[i - 1].end) + "] and [" + std::to_string(ranges[i].begin) + ", " +
                 std::to_string(ranges[i].end) + "])");
}

}  // namespace lb
