// gguf_import.cpp: GGUF llama models -> LlamaCheckpoint (see gguf_import.h for the mapping of
// every ggml block type and why each one is exact).
#include "formats/gguf_import.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "core/quant.h"
#include "core/types.h"
#include "formats/gguf.h"
#include "models/tokenizer.h"

namespace lb {

namespace {

uint16_t load_u16(const uint8_t* p) { return uint16_t(p[0] | p[1] << 8); }

// N x K view of a tensor's dims (N = product of dims[1..], 1 for a vector)
void rows_cols(const std::string& name, const std::vector<uint64_t>& dims, uint64_t* n, uint64_t* k) {
    LB_CHECK(!dims.empty() && dims.size() <= 4, "tensor '%s': %zu dims, supported 1..4", name.c_str(), dims.size());
    uint64_t rows = 1;
    for (size_t i = 1; i < dims.size(); ++i) {
        LB_CHECK(dims[i] > 0 && rows <= (uint64_t(1) << 48) / dims[i], "tensor '%s': dims[%zu] = %llu out of range",
                 name.c_str(), i, (unsigned long long)dims[i]);
        rows *= dims[i];
    }
    LB_CHECK(dims[0] > 0 && dims[0] <= (uint64_t(1) << 32), "tensor '%s': dims[0] = %llu out of range", name.c_str(),
             (unsigned long long)dims[0]);
    *n = rows;
    *k = dims[0];
}

// Q8_0 / Q4_0 / Q4_1 -> rg with a raw fp16 scale per group of 32. Q4_1 (preset q4_g32_f16) keeps
// an fp16 zero per group (value mode, z = -m); Q4_0 and Q8_0 (presets q4_g32_z8, q8_g32_z128) have
// the same zero 8 or 128 (in code units) everywhere: a 1-bit zero code 0 through a one-entry table
// (scale 1, zero -const) decodes to it exactly, so they stay at 4.53 / 8.53 bits per weight.
// `codes_of` unpacks one 32-element block into unsigned codes and returns the (s, z) f16 bits.
template <class BlockFn>
CheckpointTensor to_rg(const std::string& name, const std::vector<uint64_t>& dims, uint64_t n, uint64_t k,
                       const char* preset, uint32_t block_bytes, const uint8_t* src, float zero_const,
                       BlockFn codes_of) {
    CheckpointTensor t;
    t.name = name;
    t.type = Type::rg;
    t.dims = dims;
    t.params = preset_params(*find_preset(preset), n, k);
    const Layout lay = layout(t.type, t.params, n, k);
    t.data.assign(lay.nbytes, 0);
    if (zero_const != 0) {  // the zero table's one entry: (scale 1, zero -const); zero codes stay 0
        const uint16_t e[2] = {f32_to_f16(1.0f), f32_to_f16(-zero_const)};
        std::memcpy(t.data.data() + lay.off_ztab, e, sizeof e);
    }
    std::vector<uint8_t> q(lay.kp, 0);
    const uint64_t nb = k / 32;
    for (uint64_t r = 0; r < n; ++r) {
        uint8_t* srow = t.data.data() + lay.off_scales + r * lay.scale_row_bytes;
        uint8_t* zrow = t.data.data() + lay.off_zeros + r * lay.zero_row_bytes;
        for (uint64_t b = 0; b < nb; ++b) {
            uint16_t s = 0, z = 0;
            const char* bad = codes_of(src + (r * nb + b) * block_bytes, q.data() + b * 32, &s, &z);
            LB_CHECK(!bad, "tensor '%s', row %llu, block %llu: %s", name.c_str(), (unsigned long long)r,
                     (unsigned long long)b, bad);
            set_meta_code(srow, 16, b, s);
            if (zero_const == 0) set_meta_code(zrow, 16, b, z);
        }
        pack_codes_ref(q.data(), t.params.bits, lay.kp, t.data.data() + lay.off_codes + r * lay.code_row_bytes);
    }
    return t;
}

// an error text if the block scale d is not finite
const char* finite_scale(uint16_t d_bits) {
    return std::isfinite(f16_to_f32(d_bits)) ? nullptr : "scale d is not finite";
}

// one Q4_0/Q4_1 nibble block: element j < 16 = low nibble of byte j, j >= 16 = high nibble of byte j-16
void nibbles(const uint8_t* qs, uint8_t* q) {
    for (int j = 0; j < 16; ++j) {
        q[j] = qs[j] & 0x0f;
        q[j + 16] = qs[j] >> 4;
    }
}

// Q6_K super-block (210 bytes: ql[128], qh[64], int8 scales[16], fp16 d) -> 256 floats.
// In each half h (128 elements; ql += 64h, qh += 32h, scales += 8h) element e = 32t + l (t < 4,
// l < 32) has low 4 bits from ql[l + 32(t & 1)] (low nibble for t < 2, high nibble for t >= 2)
// and high 2 bits (qh[l] >> 2t) & 3; w = d * scales[e / 16] * (q - 32).
void q6_k_block(const uint8_t* b, float* y) {
    const uint8_t* ql = b;
    const uint8_t* qh = b + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
    const float d = f16_to_f32(load_u16(b + 208));
    for (int h = 0; h < 2; ++h) {
        for (int t = 0; t < 4; ++t) {
            for (int l = 0; l < 32; ++l) {
                const int lo = (t < 2 ? ql[64 * h + l + 32 * (t & 1)] & 0x0f : ql[64 * h + l + 32 * (t & 1)] >> 4);
                const int hi = (qh[32 * h + l] >> (2 * t)) & 3;
                const int e = 32 * t + l;
                y[128 * h + e] = d * float(sc[8 * h + e / 16]) * float((lo | hi << 4) - 32);
            }
        }
    }
}

}  // namespace

CheckpointTensor transcode_ggml_tensor(const std::string& name, uint32_t ggml_type, const std::vector<uint64_t>& dims,
                                       const void* data, uint64_t nbytes) {
    uint64_t n = 0, k = 0;
    rows_cols(name, dims, &n, &k);
    const uint8_t* src = static_cast<const uint8_t*>(data);
    uint32_t block = 1;
    switch (ggml_type) {
        case ggml_id::f32:
        case ggml_id::f16:
        case ggml_id::bf16:
            break;
        case ggml_id::q4_0:
        case ggml_id::q4_1:
        case ggml_id::q8_0:
            block = 32;
            break;
        case ggml_id::q6_K:
            block = 256;
            break;
        default:
            throw Error(
                strfmt("tensor '%s': ggml type %s (id %u) is not supported (supported: f32, f16, bf16, q8_0, "
                       "q4_0, q4_1, q6_K)",
                       name.c_str(), gguf::ggml_type_name(ggml_type), ggml_type));
    }
    LB_CHECK(k % block == 0, "tensor '%s': ggml type %s needs dims[0] divisible by %u, got %llu", name.c_str(),
             gguf::ggml_type_name(ggml_type), block, (unsigned long long)k);
    const uint64_t want = gguf::ggml_type_nbytes(ggml_type, n * k);
    LB_CHECK(want != 0 && nbytes == want && src, "tensor '%s': %llu bytes of ggml type %s data, expected %llu",
             name.c_str(), (unsigned long long)nbytes, gguf::ggml_type_name(ggml_type), (unsigned long long)want);

    switch (ggml_type) {
        case ggml_id::f32:
        case ggml_id::f16:
        case ggml_id::bf16: {
            CheckpointTensor t;
            t.name = name;
            t.type = ggml_type == ggml_id::f32 ? Type::f32 : ggml_type == ggml_id::f16 ? Type::f16 : Type::bf16;
            t.dims = dims;
            t.data.assign(src, src + nbytes);
            return t;
        }
        case ggml_id::q8_0:  // d, int8[32]
            return to_rg(name, dims, n, k, "q8_g32_z128", 34, src, 128.0f,
                         [](const uint8_t* b, uint8_t* q, uint16_t* s, uint16_t*) -> const char* {
                             *s = load_u16(b);
                             for (int j = 0; j < 32; ++j) q[j] = uint8_t(int(int8_t(b[2 + j])) + 128);
                             return finite_scale(*s);
                         });
        case ggml_id::q4_0:  // d, nibbles[16]
            return to_rg(name, dims, n, k, "q4_g32_z8", 18, src, 8.0f,
                         [](const uint8_t* b, uint8_t* q, uint16_t* s, uint16_t*) -> const char* {
                             *s = load_u16(b);
                             nibbles(b + 2, q);
                             return finite_scale(*s);
                         });
        case ggml_id::q4_1:  // d, m, nibbles[16]
            return to_rg(name, dims, n, k, "q4_g32_f16", 20, src, 0.0f,
                         [](const uint8_t* b, uint8_t* q, uint16_t* s, uint16_t* z) -> const char* {
                             *s = load_u16(b);
                             *z = uint16_t(load_u16(b + 2) ^ 0x8000u);  // z = -m, exact
                             nibbles(b + 4, q);
                             return nullptr;
                         });
        default: {  // q6_K -> f32
            CheckpointTensor t;
            t.name = name;
            t.type = Type::f32;
            t.dims = dims;
            t.data.resize(n * k * 4);
            float y[256];
            for (uint64_t i = 0; i < n * k / 256; ++i) {
                q6_k_block(src + i * 210, y);
                std::memcpy(t.data.data() + i * 1024, y, sizeof y);
            }
            return t;
        }
    }
}

namespace {

float get_float(const GgufFile& f, const std::string& key, float fallback) {
    const MetaValue* v = f.metadata().find(key);
    if (!v) return fallback;
    if (const float* x = v->get_if<float>()) return *x;
    if (const double* x = v->get_if<double>()) return float(*x);
    throw Error(f.origin() + ": metadata key '" + key + "': expected f32, found " + v->type_string());
}

}  // namespace

LlamaHParams gguf_llama_hparams(const GgufFile& f) {
    const Metadata& md = f.metadata();
    const std::string& arch = md.get_string("general.architecture");
    LB_CHECK(arch == "llama", "%s: general.architecture is '%s', supported: 'llama'", f.origin().c_str(), arch.c_str());
    LB_CHECK(f.get_int("llama.expert_count", 0) == 0,
             "%s: llama.expert_count = %lld: mixture-of-experts models are not supported", f.origin().c_str(),
             (long long)f.get_int("llama.expert_count", 0));
    LlamaHParams hp;
    hp.n_embd = f.get_int("llama.embedding_length");
    hp.n_ff = f.get_int("llama.feed_forward_length");
    hp.n_layer = f.get_int("llama.block_count");
    hp.n_head = f.get_int("llama.attention.head_count");
    hp.n_head_kv = f.get_int("llama.attention.head_count_kv", hp.n_head);
    hp.n_ctx_train = f.get_int("llama.context_length");
    int64_t vocab = -1;
    if (md.contains("llama.vocab_size")) {
        vocab = f.get_int("llama.vocab_size");
    } else if (const GgufTensorInfo* t = f.find_tensor("token_embd.weight")) {
        if (t->dims.size() == 2) vocab = int64_t(t->dims[1]);
    }
    LB_CHECK(vocab > 0, "%s: no llama.vocab_size key and no 2-D token_embd.weight to take it from", f.origin().c_str());
    hp.n_vocab = vocab;
    hp.rms_eps = get_float(f, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    hp.rope_theta = get_float(f, "llama.rope.freq_base", 10000.0f);
    hp.rope_mode = rope_interleaved;  // see gguf_import.h
    const std::string scaling =
        md.contains("llama.rope.scaling.type") ? md.get_string("llama.rope.scaling.type") : std::string("none");
    if (scaling == "linear") {
        const float factor = get_float(f, "llama.rope.scaling.factor", 1.0f);
        LB_CHECK(std::isfinite(factor) && factor > 0, "%s: llama.rope.scaling.factor = %g, must be > 0",
                 f.origin().c_str(), double(factor));
        hp.rope_freq_scale = 1.0f / factor;
    } else if (scaling == "none") {
        const float scale = get_float(f, "llama.rope.scale_linear", 1.0f);  // older key
        LB_CHECK(std::isfinite(scale) && scale > 0, "%s: llama.rope.scale_linear = %g, must be > 0", f.origin().c_str(),
                 double(scale));
        hp.rope_freq_scale = 1.0f / scale;
    } else {
        throw Error(f.origin() + ": llama.rope.scaling.type '" + scaling + "' is not supported (none, linear)");
    }
    try {
        hp.validate();
    } catch (const Error& e) {
        throw Error(f.origin() + ": " + e.what());
    }
    const int64_t rot = f.get_int("llama.rope.dimension_count", hp.head_dim());
    LB_CHECK(rot == hp.head_dim(), "%s: llama.rope.dimension_count = %lld, but lowbit ropes the whole head (%lld)",
             f.origin().c_str(), (long long)rot, (long long)hp.head_dim());
    hp.tied_output = f.find_tensor("output.weight") == nullptr;
    return hp;
}

void check_llama_tensors(const LlamaCheckpoint& ck, const std::string& origin) {
    const LlamaHParams& hp = ck.hp;
    const uint64_t E = uint64_t(hp.n_embd), F = uint64_t(hp.n_ff), V = uint64_t(hp.n_vocab);
    const uint64_t Q = uint64_t(hp.n_head * hp.head_dim()), KV = uint64_t(hp.kv_dim());
    std::vector<std::pair<std::string, std::vector<uint64_t>>> want = {{"token_embd.weight", {E, V}},
                                                                       {"output_norm.weight", {E}}};
    if (!hp.tied_output) want.push_back({"output.weight", {E, V}});
    for (int64_t l = 0; l < hp.n_layer; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        want.push_back({p + "attn_norm.weight", {E}});
        want.push_back({p + "ffn_norm.weight", {E}});
        want.push_back({p + "attn_q.weight", {E, Q}});
        want.push_back({p + "attn_k.weight", {E, KV}});
        want.push_back({p + "attn_v.weight", {E, KV}});
        want.push_back({p + "attn_output.weight", {Q, E}});
        want.push_back({p + "ffn_gate.weight", {E, F}});
        want.push_back({p + "ffn_up.weight", {E, F}});
        want.push_back({p + "ffn_down.weight", {F, E}});
    }
    auto dims_str = [](const std::vector<uint64_t>& d) {
        std::string s;
        for (size_t i = 0; i < d.size(); ++i) s += (i ? " x " : "") + std::to_string(d[i]);
        return s;
    };
    for (const auto& [name, dims] : want) {
        const CheckpointTensor* t = ck.find(name);
        LB_CHECK(t, "%s: tensor '%s' is missing", origin.c_str(), name.c_str());
        LB_CHECK(t->dims == dims, "%s: tensor '%s' has dims %s, expected %s (K first)", origin.c_str(), name.c_str(),
                 dims_str(t->dims).c_str(), dims_str(dims).c_str());
    }
    for (const auto& t : ck.tensors) {
        bool known = false;
        for (const auto& w : want) known = known || w.first == t.name;
        LB_CHECK(known, "%s: tensor '%s' is not part of the llama model lowbit builds", origin.c_str(), t.name.c_str());
    }
}

LlamaCheckpoint import_gguf_llama(const GgufFile& f) {
    LlamaCheckpoint ck;
    ck.hp = gguf_llama_hparams(f);
    const Metadata& md = f.metadata();
    std::string name = md.contains("general.name") ? md.get_string("general.name") : std::string();
    ck.source = "GGUF v" + std::to_string(f.version()) + " " + f.origin() + (name.empty() ? "" : " (" + name + ")");
    for (const GgufTensorInfo& t : f.tensors()) {
        try {
            ck.tensors.push_back(transcode_ggml_tensor(t.name, t.type, t.dims, t.data, t.nbytes));
        } catch (const Error& e) {
            throw Error(f.origin() + ": " + e.what());
        }
    }
    check_llama_tensors(ck, f.origin());
    ck.tokenizer = Tokenizer::from_gguf(f).data();
    LB_CHECK(int64_t(ck.tokenizer->tokens.size()) == ck.hp.n_vocab,
             "%s: the tokenizer has %zu tokens but the model's vocabulary is %lld", f.origin().c_str(),
             ck.tokenizer->tokens.size(), (long long)ck.hp.n_vocab);
    if (md.contains("tokenizer.chat_template")) ck.chat_template = md.get_string("tokenizer.chat_template");
    return ck;
}

}  // namespace lb
