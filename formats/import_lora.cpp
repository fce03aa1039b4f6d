// import_lora.cpp: an HQQ+ LoRA adapter file (formats/hqq.md section 5) into the checkpoint.
//
// File: torch.save of {"peft_config": {tag: config or None}, "parameters": {module: {lora_A (K, r),
// lora_B (r, N), scaling, bias}}} (V0.2), or of the "parameters" dict alone (older files).
// Forward (hqq.md 5.2): y = x W^T + ((x A) B) * scaling + bias. In lowbit orientation (y = W x,
// weights [K, N] with row o of N holding the K inputs): lora_a = A^T as [K, r], lora_b = B^T as
// [r, N]; the graph computes y += scaling * (lora_b (lora_a x)) (models/llama.h LlamaLinear).
// hqq casts A, B and the bias to the base layer's compute dtype when it loads an adapter
// (hqq.md 5.3); lowbit stores them in that dtype, so it computes with the same values.
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "formats/hf_import.h"
#include "formats/pickle.h"
#include "formats/torch_zip.h"

namespace lb {

namespace {

// a [rows, cols] float source matrix transposed into a lowbit tensor of dims {rows, cols}
// (lowbit row c of `cols` holds the `rows` values m[0..rows)[c]), in `dtype`
CheckpointTensor transposed(const SourceTensor& m, const std::string& src, const std::string& name, Type dtype) {
    const uint64_t rows = uint64_t(m.shape[0]), cols = uint64_t(m.shape[1]);
    CheckpointTensor t;
    t.name = name;
    t.type = dtype;
    t.dims = {rows, cols};
    const size_t es = dtype == Type::f32 ? 4 : 2;
    t.data.resize(size_t(rows * cols) * es);
    for (uint64_t c = 0; c < cols; ++c)
        for (uint64_t r = 0; r < rows; ++r) {
            const float v = read_float(m, r * cols + c);
            LB_CHECK(std::isfinite(v), "tensor '%s': element [%llu, %llu] is not finite", src.c_str(),
                     (unsigned long long)r, (unsigned long long)c);
            uint8_t* dst = t.data.data() + (c * rows + r) * es;
            if (dtype == Type::f32) {
                std::memcpy(dst, &v, 4);
            } else {
                const uint16_t h = dtype == Type::f16 ? f32_to_f16(v) : f32_to_bf16(v);
                std::memcpy(dst, &h, 2);
            }
        }
    return t;
}

}  // namespace

void apply_lora_adapter(HfImportResult& r, const std::string& path, Type dtype) {
    LlamaCheckpoint& ck = r.ck;
    const std::unique_ptr<TorchFile> f = TorchFile::open(path);
    const PyObj& root = f->root();
    LB_CHECK(root.is(PyKind::dict), "adapter %s: the pickled object is a %s, expected a dict", path.c_str(),
             py_kind_name(root.kind()));
    const PyObj* params = &root;
    const PyObj* peft = nullptr;
    if (root.get("parameters") && root.get("peft_config")) {
        params = &root.at("parameters");
        peft = &root.at("peft_config");
        LB_CHECK(params->is(PyKind::dict) && peft->is(PyKind::dict),
                 "adapter %s: 'parameters' and 'peft_config' must be dicts", path.c_str());
    }
    const LlamaHParams& hp = ck.hp;
    int covered = 0;
    for (const auto& [key, entry] : params->as_dict().items()) {
        LB_CHECK(key->is(PyKind::str) && entry->is(PyKind::dict),
                 "adapter %s: entry %s is not 'module name': dict of LoRA tensors", path.c_str(),
                 key->repr(80).c_str());
        const std::string& mod = key->as_str();
        const std::string lb = hf_to_lb(mod);
        const std::string where = "adapter " + path + ": '" + mod + "'";
        LB_CHECK(!lb.empty() && lb.rfind("blk.", 0) == 0 && lb.find("_norm") == std::string::npos,
                 "%s is not a projection of a LLaMA layer (an adapter for another model?)", where.c_str());
        const CheckpointTensor* base = ck.find(lb + ".weight");
        LB_CHECK(base, "%s: the model has no '%s.weight' (it has %lld layers: an adapter for another model?)",
                 where.c_str(), lb.c_str(), (long long)hp.n_layer);
        const int64_t k = int64_t(base->dims[0]), n = int64_t(base->dims[1]);
        if (peft) {  // the tag's config must be the plain LoRA (hqq.md 5.3)
            const std::string tag = mod.substr(mod.find('.', std::string("model.layers.").size()) + 1);
            const PyObj* c = peft->get(tag);
            if (c && c->is(PyKind::dict)) {
                const PyObj* lt = c->get("lora_type");
                LB_CHECK(!lt || lt->as_str() == "default", "%s: lora_type '%s' is not supported (default)",
                         where.c_str(), lt->as_str().c_str());
            }
        }
        const SourceTensor& a = entry->at("lora_A").as_source();
        const SourceTensor& b = entry->at("lora_B").as_source();
        LB_CHECK(a.shape.size() == 2 && b.shape.size() == 2 && is_float_dtype(a.dtype) && is_float_dtype(b.dtype),
                 "%s: lora_A %s %s and lora_B %s %s must be float matrices", where.c_str(), dtype_name(a.dtype),
                 shape_str(a.shape).c_str(), dtype_name(b.dtype), shape_str(b.shape).c_str());
        const int64_t rank = a.shape[1];
        LB_CHECK(a.shape[0] == k && b.shape[0] == rank && b.shape[1] == n && rank >= 1 && rank <= std::min(k, n),
                 "%s: lora_A %s and lora_B %s do not fit the layer [%lld outputs, %lld inputs] (expected [%lld, r] "
                 "and [r, %lld]: an adapter for another model?)",
                 where.c_str(), shape_str(a.shape).c_str(), shape_str(b.shape).c_str(), (long long)n, (long long)k,
                 (long long)k, (long long)n);
        const PyObj& sc = entry->at("scaling");
        const float scaling = sc.is(PyKind::tensor) ? read_float(sc.as_source(), 0) : float(sc.as_number());
        LB_CHECK(std::isfinite(scaling) && (!sc.is(PyKind::tensor) || sc.as_source().numel() == 1),
                 "%s: scaling %s is not a finite scalar", where.c_str(), sc.repr(60).c_str());
        LB_CHECK(!ck.find(lb + ".lora_a"), "%s: covered twice", where.c_str());
        auto push = [&](CheckpointTensor&& t, const std::string& desc, uint64_t bytes) {
            r.src_desc.push_back(desc);
            r.src_bytes.push_back(bytes);
            ck.tensors.push_back(std::move(t));
        };
        push(transposed(a, mod + ".lora_A", lb + ".lora_a", dtype), std::string("LoRA A ") + dtype_name(a.dtype),
             a.nbytes);
        push(transposed(b, mod + ".lora_B", lb + ".lora_b", dtype), std::string("LoRA B ") + dtype_name(b.dtype),
             b.nbytes);
        CheckpointTensor s;
        s.name = lb + ".lora_scale";
        s.dims = {1};
        s.data.resize(4);
        std::memcpy(s.data.data(), &scaling, 4);
        push(std::move(s), "LoRA scaling", 0);
        const PyObj* bias = entry->get("bias");
        if (bias && !bias->is_none()) {
            const SourceTensor& bt = bias->as_source();
            expect_tensor(bt, mod + ".bias (adapter)", {DType::f16, DType::bf16, DType::f32}, {n});
            for (auto it = ck.tensors.begin(); it != ck.tensors.end(); ++it)
                if (it->name == lb + ".bias") {  // hqq moves the base bias into the adapter
                    const size_t i = size_t(it - ck.tensors.begin());
                    ck.tensors.erase(it);
                    r.src_desc.erase(r.src_desc.begin() + long(i));
                    r.src_bytes.erase(r.src_bytes.begin() + long(i));
                    break;
                }
            // in the compute dtype as hqq casts it, widened (exactly) to f32 for the add op
            CheckpointTensor t;
            t.name = lb + ".bias";
            t.dims = {uint64_t(n)};
            t.data.resize(size_t(n) * 4);
            for (uint64_t i = 0; i < uint64_t(n); ++i) {
                float v = read_float(bt, i);
                v = dtype == Type::f16 ? round_f16(v) : dtype == Type::bf16 ? bf16_to_f32(f32_to_bf16(v)) : v;
                std::memcpy(t.data.data() + 4 * i, &v, 4);
            }
            push(std::move(t), "LoRA bias", bt.nbytes);
        }
        ++covered;
    }
    LB_CHECK(covered > 0, "adapter %s: no LoRA layers found", path.c_str());
    r.notes.push_back("adapter " + path + ": " + std::to_string(covered) + " projections with LoRA");
}

}  // namespace lb
