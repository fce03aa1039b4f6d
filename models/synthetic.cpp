// synthetic.cpp: LLaMA checkpoints of real geometries with random weights (models/synthetic.h).
#include "models/synthetic.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "core/random_weights.h"

namespace lb {
namespace {

LlamaHParams geometry(int64_t vocab, int64_t embd, int64_t ff, int64_t layers, int64_t heads, int64_t kv_heads,
                      int64_t ctx, float theta) {
    LlamaHParams hp;
    hp.n_vocab = vocab;
    hp.n_embd = embd;
    hp.n_ff = ff;
    hp.n_layer = layers;
    hp.n_head = heads;
    hp.n_head_kv = kv_heads;
    hp.n_ctx_train = ctx;
    hp.rope_theta = theta;
    hp.rope_mode = rope_neox;
    hp.tied_output = false;
    return hp;
}

const SyntheticGeometry kGeometries[] = {
    {"test-tiny", geometry(256, 128, 384, 2, 4, 2, 256, 10000.0f), "tiny, for tests"},
    {"smollm2-135m", geometry(49152, 576, 1536, 30, 9, 3, 8192, 100000.0f), "SmolLM2-135M (untied here)"},
    {"tinyllama-1.1b", geometry(32000, 2048, 5632, 22, 32, 4, 2048, 10000.0f), "TinyLlama-1.1B"},
    {"llama2-7b", geometry(32000, 4096, 11008, 32, 32, 32, 4096, 10000.0f), "LLaMA-2-7B"},
    {"llama2-13b", geometry(32000, 5120, 13824, 40, 40, 40, 4096, 10000.0f), "LLaMA-2-13B"},
    {"llama3-8b", geometry(128256, 4096, 14336, 32, 32, 8, 8192, 500000.0f), "Llama-3-8B"},
};

}  // namespace

const SyntheticGeometry* synthetic_geometries(size_t* count) {
    *count = sizeof kGeometries / sizeof kGeometries[0];
    return kGeometries;
}

const SyntheticGeometry* find_synthetic_geometry(const std::string& name) {
    for (const auto& g : kGeometries)
        if (name == g.name) return &g;
    return nullptr;
}

std::string synthetic_geometry_names() {
    std::string s;
    for (const auto& g : kGeometries) s += (s.empty() ? "" : ", ") + std::string(g.name);
    return s;
}

LlamaCheckpoint synthetic_llama(const LlamaHParams& hp, const SyntheticOptions& o) {
    hp.validate();
    const Preset* pr = find_preset(o.preset);
    LB_CHECK(pr, "synthetic model: unknown preset '%s' (see `lowbit bench kernels --list`)", o.preset.c_str());
    LB_CHECK(o.output_type == "f16" || o.output_type == "f32" || o.output_type == "preset",
             "synthetic model: output type '%s', supported f16, f32, preset", o.output_type.c_str());
    LB_CHECK(o.threads >= 1 && o.threads <= 1024, "synthetic model: threads %d, supported 1..1024", o.threads);

    LlamaCheckpoint ck;
    ck.hp = hp;
    ck.source = strfmt("synthetic: random %s weights", pr->name);
    // every tensor's name, type and shape first: a preset that does not fit fails before any work
    auto add = [&](const std::string& name, Type t, const Preset* preset, uint64_t k, uint64_t n) {
        CheckpointTensor ct;
        ct.name = name;
        ct.type = t;
        ct.dims = n > 1 ? std::vector<uint64_t>{k, n} : std::vector<uint64_t>{k};
        if (preset) {
            try {
                ct.params = preset_params(*preset, n, k);
                validate(t, ct.params, n, k);
            } catch (const Error& e) {
                throw Error(
                    strfmt("synthetic model: preset %s does not fit tensor '%s' (K %llu inputs x N %llu "
                           "outputs): %s",
                           preset->name, name.c_str(), (unsigned long long)k, (unsigned long long)n, e.what()));
            }
        }
        ck.tensors.push_back(std::move(ct));
    };
    const uint64_t D = uint64_t(hp.n_embd), F = uint64_t(hp.n_ff), Q = uint64_t(hp.n_head * hp.head_dim()),
                   KV = uint64_t(hp.kv_dim()), V = uint64_t(hp.n_vocab);
    add("token_embd.weight", Type::f32, nullptr, D, V);
    add("output_norm.weight", Type::f32, nullptr, D, 1);
    if (o.output_type == "preset")
        add("output.weight", pr->type, pr, D, V);
    else
        add("output.weight", o.output_type == "f32" ? Type::f32 : Type::f16, nullptr, D, V);
    for (int64_t l = 0; l < hp.n_layer; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        add(p + "attn_norm.weight", Type::f32, nullptr, D, 1);
        add(p + "ffn_norm.weight", Type::f32, nullptr, D, 1);
        add(p + "attn_q.weight", pr->type, pr, D, Q);
        add(p + "attn_k.weight", pr->type, pr, D, KV);
        add(p + "attn_v.weight", pr->type, pr, D, KV);
        add(p + "attn_output.weight", pr->type, pr, Q, D);
        add(p + "ffn_gate.weight", pr->type, pr, D, F);
        add(p + "ffn_up.weight", pr->type, pr, D, F);
        add(p + "ffn_down.weight", pr->type, pr, F, D);
    }

    // the bytes: each tensor made once, in place, by `threads` threads taking tensors in turn
    std::atomic<size_t> next{0};
    std::exception_ptr err;
    std::mutex mu;
    auto work = [&]() {
        for (size_t i; (i = next.fetch_add(1)) < ck.tensors.size();) {
            CheckpointTensor& t = ck.tensors[i];
            const uint64_t k = t.dims[0], n = t.dims.size() > 1 ? t.dims[1] : 1;
            const uint64_t seed = o.seed * 1000003u + i;
            try {
                if (n == 1) {  // a norm weight: about 1
                    Rng rng{seed};
                    t.data.resize(k * 4);
                    for (uint64_t j = 0; j < k; ++j) {
                        const float v = 1.0f + 0.1f * rng.normal();
                        std::memcpy(t.data.data() + 4 * j, &v, 4);
                    }
                } else {
                    t.data = random_weight(t.type, t.params, n, k, seed, pr->int_zeros);
                }
            } catch (...) {
                std::lock_guard<std::mutex> lock(mu);
                if (!err) err = std::current_exception();
            }
        }
    };
    std::vector<std::thread> pool;
    for (int i = 1; i < o.threads; ++i) pool.emplace_back(work);
    work();
    for (auto& th : pool) th.join();
    if (err) std::rethrow_exception(err);
    return ck;
}

}  // namespace lb
