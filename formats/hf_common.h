// hf_common.h: pieces shared by the importers of HuggingFace-style model directories
// (formats/hf_import.h): tensor names, checks and element reads on source tensors, float tensors
// into lowbit types, and a builder that fills the planes of a quantized lowbit tensor.
//
// Orientation: a torch Linear weight is [N, K] row-major (N outputs, K inputs), which is exactly
// lowbit's W[N][K] with dims {K, N}: float weights are copied byte for byte.
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "core/types.h"
#include "formats/source_tensor.h"
#include "models/llama.h"

namespace lb {

// One tensor of the canonical checkpoint and what it came from (for `lowbit convert`'s report).
struct ImportedTensor {
    CheckpointTensor t;
    std::string src_desc;    // e.g. "i32+u8+f16 (GreenBit qstatistic 2-bit g8)" or "f16"
    uint64_t src_bytes = 0;  // bytes of the source tensors it was made from (quantized: the codes and
                             // the meta the source's dequantization reads; g_idx/wf are not counted)
};

// HF module/tensor names <-> lowbit names. hf_to_lb("model.layers.3.self_attn.q_proj") gives
// "blk.3.attn_q"; "model.embed_tokens" -> "token_embd", "model.norm" -> "output_norm",
// "lm_head" -> "output", "model.layers.3.input_layernorm" -> "blk.3.attn_norm",
// "model.layers.3.post_attention_layernorm" -> "blk.3.ffn_norm". Empty if the name is not one of
// these (the caller decides whether that is an error).
std::string hf_to_lb(const std::string& hf_module);
// the 7 projections of layer `il` as HF module names, in order q, k, v, o, gate, up, down
std::vector<std::string> hf_layer_projections(int64_t il);

// "[2, 3]"
std::string shape_str(const std::vector<int64_t>& s);
// Throws naming `name` unless t has one of the dtypes and (if `shape` is not empty) that shape.
void expect_tensor(const SourceTensor& t, const std::string& name, std::initializer_list<DType> dtypes,
                   const std::vector<int64_t>& shape = {});
bool is_float_dtype(DType d);
// element i as float (f16, bf16, f32, f64) or integer (i8..i64, u8, bool); the caller has checked
// the dtype and i < numel()
float read_float(const SourceTensor& t, uint64_t i);
int64_t read_int(const SourceTensor& t, uint64_t i);
// f16 bits of element i of a float tensor: the value rounded to f16 as torch's .half() does;
// error naming `name` if a finite value overflows f16
uint16_t read_as_f16(const SourceTensor& t, uint64_t i, const std::string& name);

// A float source tensor ([N, K] or [K]) as a lowbit tensor named `lb_name` of the same element
// type (f16, bf16, f32; f64 -> f32 is refused unless exact), or f32 when `to_f32` (norm weights).
ImportedTensor import_float_tensor(const SourceTensor& t, const std::string& src_name, const std::string& lb_name,
                                   bool to_f32 = false);

// Fills the planes of one quantized lowbit tensor (layout per formats/blocktypes.md).
class QuantBuilder {
 public:
    QuantBuilder(Type type, const QParams& p, uint64_t n, uint64_t k);
    // codes of row `row`: q[0..k), each < 2^bits
    void set_codes(uint64_t row, const uint8_t* q);
    // a scale / zero field: a code (< 2^fbits) or raw f16 bits (fbits 16)
    void set_scale(uint64_t meta_row, uint64_t col, uint32_t v);
    void set_zero(uint64_t meta_row, uint64_t col, uint32_t v);
    // second-level table entries: (f16 scale, f16 zero) bits
    void set_stab(uint64_t i, uint16_t ts, uint16_t tz);
    void set_ztab(uint64_t i, uint16_t ts, uint16_t tz);
    // sign type: the f32 vectors
    float* gvec();
    float* hvec();
    uint8_t* code_row(uint64_t row);
    CheckpointTensor take(const std::string& lb_name);

 private:
    Type type_;
    QParams p_;
    uint64_t n_, k_;
    Layout lay_;
    std::vector<uint8_t> data_;
    std::vector<uint8_t> qbuf_;
};

}  // namespace lb

namespace lb {

// Source tensors by full name ("model.layers.0.self_attn.q_proj.qweight"); nullptr if absent.
using TensorLookup = std::function<const SourceTensor*(const std::string&)>;

// The quantized-linear importers of the families. Each converts the HF module `prefix` (K inputs
// from the config, N outputs from the tensors unless given) into lowbit tensor `lb_name`, or throws
// naming the tensor at fault.
// GreenBit low_bit_llama (formats/greenbit.md): asym (incl. v1 and fp16-stored qscales) and
// qstatistic; true if `prefix` has a qweight.
bool greenbit_present(const TensorLookup& find, const std::string& prefix);
ImportedTensor greenbit_linear(const TensorLookup& find, const std::string& prefix, int64_t k,
                               const std::string& lb_name);
// OneBit (formats/onebit.md): packed int8 sign bytes or a float latent matrix (training checkpoint,
// packed here: sign(w) < 0 -> -1, else +1, as OneBit's own packer does); true if `prefix` has an
// input_factor.
bool onebit_present(const TensorLookup& find, const std::string& prefix);
ImportedTensor onebit_linear(const TensorLookup& find, const std::string& prefix, int64_t k, int64_t n,
                             const std::string& lb_name);

}  // namespace lb

namespace lb {

class PyObj;

// One HQQ-quantized linear as its file stores it, normalized over the three layouts (hqq 0.1.x
// nested `meta`, hqq 0.2.x flat dict, transformers HqqConfig safetensors with encoded scalars).
// formats/hqq.md sections 1-3.
struct HqqMetaField {  // the layer's zero or scale: M = N*K/group values in grouped (flat) order
    bool quantized = false;
    SourceTensor values;         // plain: M floats (compute dtype)
    SourceTensor codes;          // quantized: M uint8 codes
    SourceTensor tscale, tzero;  // quantized: the sub-meta's scale/zero, 1 value (tgroup 0) or M/tgroup
    int64_t tgroup = 0;          // sub-meta group over the flat vector (axis-0 style); 0 = one scalar pair
};
struct HqqLayer {
    std::string name;  // HF module name
    SourceTensor wq;   // packed codes, raw bytes (view_as_float already undone: only the bytes count)
    int64_t n = 0, k = 0;
    int bits = 0;       // code bits as packed: 1, 2 (also 1.58-bit ternary), 3, 4, 8 (5/6/8-bit)
    int64_t group = 0;  // elements per group (group_size None: K for axis 1, N for axis 0)
    int axis = 1;
    int pack_fields = 1;  // codes per storage word (8/bits; 10 for 3-bit int32 words)
    DType compute = DType::f16;
    HqqMetaField zero, scale;
    const SourceTensor* bias = nullptr;
    std::string layout;  // "hqq 0.1.x nested", "hqq 0.2.x flat", "transformers HqqConfig"
};
// From a qmodel.pt entry (a dict with W_q and either `meta` (0.1.x) or the flat keys (0.2.x)).
HqqLayer hqq_layer_from_pickle(const PyObj& entry, const std::string& name);
// From a transformers HqqConfig safetensors file: tensors "<prefix>.W_q", ".scale", ".zero" and the
// encoded scalars ".nbits", ".shape", ...
HqqLayer hqq_layer_from_safetensors(const TensorLookup& find, const std::string& prefix);
// To lowbit: rg when the groups run along rows (axis 1, group | K), a0 for strided-row groups
// (axis 0, group | N); otherwise (or when a meta value is not exact in f16) the source's own
// dequantization, computed bit-exactly in its compute dtype, as a dense tensor of that dtype.
ImportedTensor hqq_linear(const HqqLayer& l, const std::string& lb_name);
// The source's dequantization W[N][K] (hqq.md 3.3: two roundings per weight in the compute dtype),
// as floats. Used for the dense fallback.
std::vector<float> hqq_dequant(const HqqLayer& l);

}  // namespace lb
