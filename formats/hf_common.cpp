// hf_common.cpp: names, source-tensor checks and reads, float tensors, and the quantized-tensor
// builder shared by the HuggingFace-directory importers (see hf_common.h).
#include "formats/hf_common.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "core/quant.h"

namespace lb {

namespace {

// "model.layers.12.rest" -> (12, "rest"); false otherwise
bool split_layer(const std::string& s, int64_t* il, std::string* rest) {
    static const std::string pre = "model.layers.";
    if (s.compare(0, pre.size(), pre) != 0) return false;
    size_t i = pre.size();
    int64_t v = 0;
    const size_t d0 = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9' && i - d0 < 7) v = v * 10 + (s[i++] - '0');
    if (i == d0 || i >= s.size() || s[i] != '.' || (s[d0] == '0' && i - d0 > 1)) return false;
    *il = v;
    *rest = s.substr(i + 1);
    return true;
}

}  // namespace

std::string hf_to_lb(const std::string& m) {
    if (m == "model.embed_tokens") return "token_embd";
    if (m == "model.norm") return "output_norm";
    if (m == "lm_head") return "output";
    int64_t il = 0;
    std::string rest;
    if (!split_layer(m, &il, &rest)) return "";
    static const char* const kMap[][2] = {{"self_attn.q_proj", "attn_q"},          {"self_attn.k_proj", "attn_k"},
                                          {"self_attn.v_proj", "attn_v"},          {"self_attn.o_proj", "attn_output"},
                                          {"mlp.gate_proj", "ffn_gate"},           {"mlp.up_proj", "ffn_up"},
                                          {"mlp.down_proj", "ffn_down"},           {"input_layernorm", "attn_norm"},
                                          {"post_attention_layernorm", "ffn_norm"}};
    for (const auto& e : kMap)
        if (rest == e[0]) return "blk." + std::to_string(il) + "." + e[1];
    return "";
}

std::vector<std::string> hf_layer_projections(int64_t il) {
    const std::string p = "model.layers." + std::to_string(il) + ".";
    return {p + "self_attn.q_proj", p + "self_attn.k_proj", p + "self_attn.v_proj", p + "self_attn.o_proj",
            p + "mlp.gate_proj",    p + "mlp.up_proj",      p + "mlp.down_proj"};
}

std::string shape_str(const std::vector<int64_t>& s) {
    std::string r = "[";
    for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + "]";
}

bool is_float_dtype(DType d) { return d == DType::f16 || d == DType::bf16 || d == DType::f32 || d == DType::f64; }

void expect_tensor(const SourceTensor& t, const std::string& name, std::initializer_list<DType> dtypes,
                   const std::vector<int64_t>& shape) {
    bool ok = false;
    std::string names;
    for (DType d : dtypes) {
        ok = ok || d == t.dtype;
        names += std::string(names.empty() ? "" : "/") + dtype_name(d);
    }
    LB_CHECK(ok, "tensor '%s': dtype %s, expected %s", name.c_str(), dtype_name(t.dtype), names.c_str());
    LB_CHECK(shape.empty() || t.shape == shape, "tensor '%s': shape %s, expected %s", name.c_str(),
             shape_str(t.shape).c_str(), shape_str(shape).c_str());
    LB_CHECK(t.nbytes == t.numel() * dtype_size(t.dtype) && (t.data || t.nbytes == 0),
             "tensor '%s': %llu bytes for shape %s of %s", name.c_str(), (unsigned long long)t.nbytes,
             shape_str(t.shape).c_str(), dtype_name(t.dtype));
}

// element i of a tensor's little-endian data as T
template <class T>
static T element(const SourceTensor& t, uint64_t i) {
    T v;
    std::memcpy(&v, t.data + i * sizeof(T), sizeof(T));
    return v;
}

float read_float(const SourceTensor& t, uint64_t i) {
    switch (t.dtype) {
        case DType::f16:
            return f16_to_f32(element<uint16_t>(t, i));
        case DType::bf16:
            return bf16_to_f32(element<uint16_t>(t, i));
        case DType::f32:
            return element<float>(t, i);
        case DType::f64:
            return float(element<double>(t, i));
        default:
            return float(read_int(t, i));
    }
}

int64_t read_int(const SourceTensor& t, uint64_t i) {
    switch (t.dtype) {
        case DType::i8:
            return element<int8_t>(t, i);
        case DType::u8:
        case DType::boolean:
            return element<uint8_t>(t, i);
        case DType::i16:
            return element<int16_t>(t, i);
        case DType::i32:
            return element<int32_t>(t, i);
        case DType::i64:
            return element<int64_t>(t, i);
        default:
            return int64_t(read_float(t, i));
    }
}

uint16_t read_as_f16(const SourceTensor& t, uint64_t i, const std::string& name) {
    if (t.dtype == DType::f16) return element<uint16_t>(t, i);
    const float v = read_float(t, i);  // bf16 and f32 exactly; f64 rounded to f32 first
    const uint16_t h = f32_to_f16(v);
    LB_CHECK(std::isfinite(f16_to_f32(h)) || !std::isfinite(v), "tensor '%s': element %llu = %g overflows f16",
             name.c_str(), (unsigned long long)i, double(v));
    return h;
}

ImportedTensor import_float_tensor(const SourceTensor& t, const std::string& src_name, const std::string& lb_name,
                                   bool to_f32) {
    expect_tensor(t, src_name, {DType::f16, DType::bf16, DType::f32, DType::f64});
    LB_CHECK(t.shape.size() == 1 || t.shape.size() == 2, "tensor '%s': shape %s, expected a vector or a matrix",
             src_name.c_str(), shape_str(t.shape).c_str());
    ImportedTensor r;
    r.src_desc = dtype_name(t.dtype);
    r.src_bytes = t.nbytes;
    CheckpointTensor& c = r.t;
    c.name = lb_name;
    for (size_t d = t.shape.size(); d-- > 0;) c.dims.push_back(uint64_t(t.shape[d]));
    const uint64_t n = t.numel();
    if (!to_f32 && (t.dtype == DType::f16 || t.dtype == DType::bf16 || t.dtype == DType::f32)) {
        c.type = t.dtype == DType::f16 ? Type::f16 : t.dtype == DType::bf16 ? Type::bf16 : Type::f32;
        c.data.assign(t.data, t.data + t.nbytes);
        return r;
    }
    c.type = Type::f32;
    c.data.resize(size_t(n * 4));
    for (uint64_t i = 0; i < n; ++i) {
        float f = read_float(t, i);
        if (t.dtype == DType::f64) {
            double d;
            std::memcpy(&d, t.data + 8 * i, 8);
            LB_CHECK(double(f) == d || std::isnan(d), "tensor '%s': f64 element %llu = %.17g is not exact in f32",
                     src_name.c_str(), (unsigned long long)i, d);
        }
        std::memcpy(c.data.data() + 4 * i, &f, 4);
    }
    return r;
}

// ---- QuantBuilder -----------------------------------------------------------------------------
QuantBuilder::QuantBuilder(Type type, const QParams& p, uint64_t n, uint64_t k)
    : type_(type), p_(p), n_(n), k_(k), lay_(lb::layout(type, p, n, k)) {
    data_.assign(size_t(lay_.nbytes), 0);
    qbuf_.assign(size_t(lay_.kp), 0);
}

void QuantBuilder::set_codes(uint64_t row, const uint8_t* q) {
    std::memcpy(qbuf_.data(), q, size_t(k_));
    pack_codes_ref(qbuf_.data(), p_.bits, lay_.kp, code_row(row));
}

uint8_t* QuantBuilder::code_row(uint64_t row) { return data_.data() + lay_.off_codes + row * lay_.code_row_bytes; }

static void set_field(uint8_t* row, uint32_t fbits, uint64_t col, uint32_t v) {
    if (fbits == 16) {
        const uint16_t h = uint16_t(v);
        std::memcpy(row + 2 * col, &h, 2);
    } else {
        set_meta_code(row, fbits, col, v);
    }
}

void QuantBuilder::set_scale(uint64_t meta_row, uint64_t col, uint32_t v) {
    set_field(data_.data() + lay_.off_scales + meta_row * lay_.scale_row_bytes, p_.sbits, col, v);
}

void QuantBuilder::set_zero(uint64_t meta_row, uint64_t col, uint32_t v) {
    set_field(data_.data() + lay_.off_zeros + meta_row * lay_.zero_row_bytes, p_.zbits, col, v);
}

void QuantBuilder::set_stab(uint64_t i, uint16_t ts, uint16_t tz) {
    const uint16_t e[2] = {ts, tz};
    std::memcpy(data_.data() + lay_.off_stab + 4 * i, e, 4);
}

void QuantBuilder::set_ztab(uint64_t i, uint16_t ts, uint16_t tz) {
    const uint16_t e[2] = {ts, tz};
    std::memcpy(data_.data() + lay_.off_ztab + 4 * i, e, 4);
}

float* QuantBuilder::gvec() { return reinterpret_cast<float*>(data_.data() + lay_.off_gvec); }
float* QuantBuilder::hvec() { return reinterpret_cast<float*>(data_.data() + lay_.off_hvec); }

CheckpointTensor QuantBuilder::take(const std::string& lb_name) {
    CheckpointTensor t;
    t.name = lb_name;
    t.type = type_;
    t.params = p_;
    t.dims = {k_, n_};
    t.data = std::move(data_);
    return t;
}

}  // namespace lb
