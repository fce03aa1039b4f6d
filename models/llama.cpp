// llama.cpp: LLaMA hyper-parameter checks, binding weights to a model (from a checkpoint in memory;
// the .lbf path is in llama_io.cpp), the KV cache and the graph builder of one batch shape.
#include "models/llama.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <exception>
#include <thread>

#include "backends/cpu/dispatch.h"
#include "core/error.h"
#include "core/quant.h"
#include "formats/lbf.h"

namespace lb {

// ---- hyper-parameters -----------------------------------------------------------------------
void LlamaHParams::validate() const {
    auto range = [](const char* field, int64_t v, int64_t lo, int64_t hi) {
        LB_CHECK(v >= lo && v <= hi, "llama hyper-parameters: %s = %lld, supported %lld..%lld", field, (long long)v,
                 (long long)lo, (long long)hi);
    };
    range("n_vocab", n_vocab, 1, int64_t(1) << 24);
    range("n_embd", n_embd, 1, int64_t(1) << 16);
    range("n_ff", n_ff, 1, int64_t(1) << 20);
    range("n_layer", n_layer, 1, 4096);
    range("n_head", n_head, 1, n_embd);
    range("n_head_kv", n_head_kv, 1, n_head);
    range("n_ctx_train", n_ctx_train, 1, int64_t(1) << 24);
    LB_CHECK(n_embd % n_head == 0, "llama hyper-parameters: n_embd %lld is not a multiple of n_head %lld",
             (long long)n_embd, (long long)n_head);
    LB_CHECK(n_head % n_head_kv == 0, "llama hyper-parameters: n_head %lld is not a multiple of n_head_kv %lld",
             (long long)n_head, (long long)n_head_kv);
    LB_CHECK(head_dim() % 2 == 0, "llama hyper-parameters: head_dim %lld (n_embd / n_head) must be even for rope",
             (long long)head_dim());
    LB_CHECK(std::isfinite(rms_eps) && rms_eps >= 0, "llama hyper-parameters: rms_eps %g must be finite and >= 0",
             double(rms_eps));
    LB_CHECK(std::isfinite(proj_norm_eps) && proj_norm_eps >= 0,
             "llama hyper-parameters: proj_norm_eps %g must be finite and >= 0", double(proj_norm_eps));
    LB_CHECK(std::isfinite(rope_theta) && rope_theta > 0, "llama hyper-parameters: rope_theta %g must be > 0",
             double(rope_theta));
    LB_CHECK(std::isfinite(rope_freq_scale) && rope_freq_scale > 0,
             "llama hyper-parameters: rope_freq_scale %g must be > 0", double(rope_freq_scale));
    LB_CHECK(rope_mode == rope_neox || rope_mode == rope_interleaved, "llama hyper-parameters: rope_mode %d unknown",
             int(rope_mode));
}

const CheckpointTensor* LlamaCheckpoint::find(const std::string& name) const {
    for (const auto& t : tensors)
        if (t.name == name) return &t;
    return nullptr;
}

// ---- binding weights --------------------------------------------------------------------------
LlamaModel::LlamaModel() = default;
LlamaModel::~LlamaModel() = default;

void LlamaModel::prepare_cpu_tiles() const {
    std::call_once(tiles_once_, [this] {
        std::vector<const Tensor*> todo;  // each projection weight once (tied output: token_embd)
        auto add = [&](const LlamaLinear& l) {
            if (!l.w.quantized() || !runtime_copy_used(l.w.weight_view(), kernels_best())) return;
            for (const Tensor* t : todo)
                if (t->data == l.w.data) return;
            todo.push_back(&l.w);
        };
        for (const LlamaLayer& L : layers)
            for (const LlamaLinear* l : {&L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_gate, &L.ffn_up, &L.ffn_down}) add(*l);
        add(output);
        // weights are tiled on all cores: a 7B model is ~6.5 G codes, 1-2 ns each on one core
        std::vector<TiledWeight> done(todo.size());
        std::atomic<size_t> next{0};
        std::exception_ptr error;
        std::mutex error_mu;
        auto work = [&] {
            try {
                for (size_t i; (i = next.fetch_add(1)) < todo.size();) {
                    done[i] = make_tiled(todo[i]->weight_view());
                    // every product of a copied weight reads the copy: its file pages leave the
                    // resident memory as soon as the copy is made (they stay in the page cache;
                    // what still reads them, e.g. the embedding rows of a tied classifier or the
                    // rows after the last tile, brings its pages back). SmolLM2-135M `lowbit run`
                    // peak resident 311 -> 241 MB (context 4096; 219 -> 155 MB at 256).
                    if (file_ && done[i].nbytes) file_->release(todo[i]->data, todo[i]->nbytes());
                }
            } catch (...) {
                std::lock_guard<std::mutex> lk(error_mu);
                error = std::current_exception();
                next.store(todo.size());
            }
        };
        std::vector<std::thread> threads;
        const unsigned nt = std::max(1u, std::min(std::thread::hardware_concurrency(), 16u));
        for (unsigned i = 1; i < nt; ++i) threads.emplace_back(work);
        work();
        for (auto& t : threads) t.join();
        if (error) std::rethrow_exception(error);
        for (size_t i = 0; i < todo.size(); ++i)
            if (done[i].nbytes) tiles_.emplace_back(todo[i]->data, std::move(done[i]));
    });
}

const uint8_t* LlamaModel::cpu_tiles(const Tensor& w) const {
    for (const auto& [data, t] : tiles_)
        if (data == w.data) return t.data.get();
    return nullptr;
}

static std::string dims_str(const std::vector<uint64_t>& d) {
    std::string s = "[";
    for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
    return s + "]";
}

void LlamaModel::bind(const std::function<WeightRef(const std::string&)>& lookup, const std::string& origin) {
    hp.validate();
    auto get = [&](const std::string& name, std::vector<uint64_t> dims) {
        WeightRef r = lookup(name);
        LB_CHECK(r.found, "%s: tensor '%s' not found", origin.c_str(), name.c_str());
        LB_CHECK(r.dims == dims, "%s: tensor '%s' has dims %s, the hyper-parameters need %s", origin.c_str(),
                 name.c_str(), dims_str(r.dims).c_str(), dims_str(dims).c_str());
        LB_CHECK(r.data, "%s: tensor '%s' has no data", origin.c_str(), name.c_str());
        return r;
    };
    auto norm = [&](Tensor& t, const std::string& name) {
        WeightRef r = get(name, {uint64_t(hp.n_embd)});
        LB_CHECK(is_float_type(r.type), "%s: tensor '%s' is %s, a norm weight must be f32/f16/bf16", origin.c_str(),
                 name.c_str(), type_name(r.type));
        const int64_t ne[1] = {hp.n_embd};
        init_tensor(t, r.type, 1, ne, const_cast<void*>(r.data));
        set_name(t, name.c_str());
    };
    auto matrix = [&](Tensor& t, const std::string& name, int64_t k, int64_t n) {
        WeightRef r = get(name, {uint64_t(k), uint64_t(n)});
        LB_CHECK(r.type != Type::i32 && r.type != Type::q8a, "%s: tensor '%s' is %s, not a weight type", origin.c_str(),
                 name.c_str(), type_name(r.type));
        init_weight(t, r.type, r.params, uint64_t(n), uint64_t(k), r.data);
        set_name(t, name.c_str());
    };
    auto vec = [&](Tensor& t, const std::string& name, int64_t n) {
        WeightRef r = get(name, {uint64_t(n)});
        LB_CHECK(is_float_type(r.type), "%s: tensor '%s' is %s, a vector must be f32/f16/bf16", origin.c_str(),
                 name.c_str(), type_name(r.type));
        const int64_t ne[1] = {n};
        init_tensor(t, r.type, 1, ne, const_cast<void*>(r.data));
        set_name(t, name.c_str());
    };
    // a layer projection "blk.L.P" [k -> n] with its optional bias and low-rank adapter
    auto linear = [&](LlamaLinear& l, const std::string& pre, int64_t k, int64_t n) {
        matrix(l.w, pre + ".weight", k, n);
        l.has_bias = lookup(pre + ".bias").found;
        if (l.has_bias) vec(l.bias, pre + ".bias", n);
        const WeightRef a = lookup(pre + ".lora_a"), b = lookup(pre + ".lora_b");
        l.has_lora = a.found || b.found;
        if (!l.has_lora) return;
        LB_CHECK(a.found && b.found && a.dims.size() == 2,
                 "%s: '%s' needs both lora_a [%lld, r] and lora_b [r, %lld] (2-D)", origin.c_str(), pre.c_str(),
                 (long long)k, (long long)n);
        const int64_t r = int64_t(a.dims[1]);
        LB_CHECK(r >= 1 && r <= std::min(k, n) && is_float_type(a.type) && is_float_type(b.type),
                 "%s: '%s.lora_a' rank %lld (types %s, %s): needs 1..%lld and float types", origin.c_str(), pre.c_str(),
                 (long long)r, type_name(a.type), type_name(b.type), (long long)std::min(k, n));
        matrix(l.lora_a, pre + ".lora_a", k, r);
        matrix(l.lora_b, pre + ".lora_b", r, n);
        const WeightRef s = get(pre + ".lora_scale", {1});
        LB_CHECK(s.type == Type::f32, "%s: '%s.lora_scale' is %s, expected f32", origin.c_str(), pre.c_str(),
                 type_name(s.type));
        std::memcpy(&l.lora_scale, s.data, 4);
        LB_CHECK(std::isfinite(l.lora_scale), "%s: '%s.lora_scale' is not finite", origin.c_str(), pre.c_str());
    };
    const int64_t D = hp.n_embd, F = hp.n_ff, Q = hp.n_head * hp.head_dim(), KV = hp.kv_dim();
    matrix(tok_embd, "token_embd.weight", D, hp.n_vocab);
    norm(output_norm, "output_norm.weight");
    if (hp.tied_output) {
        LB_CHECK(!lookup("output.weight").found,
                 "%s: tensor 'output.weight' is present but the hyper-parameters say the classifier is tied",
                 origin.c_str());
        output.w = tok_embd;
    } else {
        matrix(output.w, "output.weight", D, hp.n_vocab);
    }
    layers.assign(size_t(hp.n_layer), LlamaLayer{});
    for (int64_t il = 0; il < hp.n_layer; ++il) {
        LlamaLayer& L = layers[size_t(il)];
        const std::string p = "blk." + std::to_string(il) + ".";
        norm(L.attn_norm, p + "attn_norm.weight");
        norm(L.ffn_norm, p + "ffn_norm.weight");
        linear(L.wq, p + "attn_q", D, Q);
        linear(L.wk, p + "attn_k", D, KV);
        linear(L.wv, p + "attn_v", D, KV);
        linear(L.wo, p + "attn_output", Q, D);
        linear(L.ffn_gate, p + "ffn_gate", D, F);
        linear(L.ffn_up, p + "ffn_up", D, F);
        linear(L.ffn_down, p + "ffn_down", F, D);
    }
}

std::unique_ptr<LlamaModel> LlamaModel::from_checkpoint(LlamaCheckpoint&& ck) {
    std::unique_ptr<LlamaModel> m(new LlamaModel());
    m->hp = ck.hp;
    m->owned_ = std::move(ck.tensors);
    for (const auto& t : m->owned_) {
        LB_CHECK(!t.dims.empty() && t.dims.size() <= 4, "checkpoint: tensor '%s' has %zu dims", t.name.c_str(),
                 t.dims.size());
        uint64_t n = 1;
        for (size_t i = 1; i < t.dims.size(); ++i) n *= t.dims[i];
        LB_CHECK(t.data.size() == tensor_nbytes(t.type, t.params, n, t.dims[0]),
                 "checkpoint: tensor '%s' has %zu bytes, its type and dims need %llu", t.name.c_str(), t.data.size(),
                 (unsigned long long)tensor_nbytes(t.type, t.params, n, t.dims[0]));
    }
    const auto& owned = m->owned_;
    m->bind(
        [&owned](const std::string& name) {
            WeightRef r;
            for (const auto& t : owned)
                if (t.name == name) {
                    r.found = true;
                    r.type = t.type;
                    r.params = t.params;
                    r.dims = t.dims;
                    r.data = t.data.data();
                    break;
                }
            return r;
        },
        ck.source.empty() ? std::string("checkpoint") : ck.source);
    return m;
}

LlamaCheckpoint dequantize_checkpoint(const LlamaCheckpoint& ck) {
    LlamaCheckpoint d;
    d.hp = ck.hp;
    for (const CheckpointTensor& t : ck.tensors) {
        if (traits(t.type).kind != Kind::quant) {
            d.tensors.push_back(t);
            continue;
        }
        CheckpointTensor f;
        f.name = t.name;
        f.dims = t.dims;
        const uint64_t k = t.dims[0], n = t.dims[1];
        f.data.resize(size_t(n * k * 4));
        const WeightView v = make_view(t.type, t.params, n, k, t.data.data());
        for (uint64_t r = 0; r < n; ++r) dequant_row_ref(v, r, reinterpret_cast<float*>(f.data.data()) + r * k);
        d.tensors.push_back(std::move(f));
    }
    return d;
}

// ---- KV cache ---------------------------------------------------------------------------------
KvCache::KvCache(const LlamaHParams& hp, int64_t n_ctx_, Type type_)
    : type(type_), n_ctx(n_ctx_), n_layer(hp.n_layer), kv_dim(hp.kv_dim()) {
    hp.validate();
    LB_CHECK(is_float_type(type), "kv cache: type %s, supported f16, f32, bf16", type_name(type));
    LB_CHECK(n_ctx >= 1 && n_ctx <= (int64_t(1) << 24), "kv cache: n_ctx %lld, supported 1..%lld", (long long)n_ctx,
             (long long)(int64_t(1) << 24));
    const uint64_t bytes = layer_bytes() * uint64_t(n_layer);
    LB_CHECK(bytes <= (uint64_t(1) << 40), "kv cache: %llu bytes per cache is too large", (unsigned long long)bytes);
    k.assign(size_t(bytes), 0);
    v.assign(size_t(bytes), 0);
}

void KvCache::clear() {
    std::memset(k.data(), 0, k.size());
    std::memset(v.data(), 0, v.size());
}

// ---- graph ------------------------------------------------------------------------------------
Tensor* LlamaGraph::leaf(const Tensor& w, const char* name) {
    if (w.ne[1] == 1 && w.ne[2] == 1 && w.ne[3] == 1 && !w.quantized())
        return g_.external(w.type, {w.ne[0]}, w.data, name);
    LB_CHECK(w.qrow0 == 0 && w.ne[2] == 1 && w.ne[3] == 1, "llama graph: weight '%s' is not a whole 2-D tensor", name);
    Tensor* t = g_.weight(name, w.type, w.qp, uint64_t(w.ne[1]), uint64_t(w.ne[0]), w.data);
    if (!opt_.backend) t->tiles = m_.cpu_tiles(w);
    return t;
}

// Every projection of the model goes through here (the variants: see LlamaLinear in llama.h).
// `name` is the projection's prefix ("blk.0.attn_q"); the classifier has no variants.
Tensor* LlamaGraph::project(const LlamaLinear& l, Tensor* x, const std::string& name, bool layer) {
    Tensor* y = g_.mul_mat(leaf(l.w, (name + ".weight").c_str()), x);
    if (!layer) return y;
    if (m_.hp.proj_norm_eps > 0) y = g_.layer_norm(y, m_.hp.proj_norm_eps);
    if (l.has_lora) {
        Tensor* t = g_.mul_mat(leaf(l.lora_a, (name + ".lora_a").c_str()), x);  // [r, n]
        Tensor* u = g_.mul_mat(leaf(l.lora_b, (name + ".lora_b").c_str()), t);  // [N, n]
        y = g_.add(y, g_.scale(u, l.lora_scale));
    }
    if (l.has_bias) y = g_.add(y, leaf(l.bias, (name + ".bias").c_str()));
    return y;
}

Tensor* LlamaGraph::attention(int64_t il, Tensor* h) {
    const LlamaHParams& hp = m_.hp;
    const LlamaLayer& L = m_.layers[size_t(il)];
    const int64_t n = opt_.n_tokens, H = hp.n_head, Hkv = hp.n_head_kv, hd = hp.head_dim(), KV = hp.kv_dim();
    const int64_t S = cache_.n_ctx, nkv = opt_.n_kv;
    const uint64_t es = type_size(cache_.type), base = uint64_t(il) * cache_.layer_bytes();
    const std::string p = "blk." + std::to_string(il) + ".";

    Tensor* q = project(L.wq, h, p + "attn_q");  // [H*hd, n]
    Tensor* k = project(L.wk, h, p + "attn_k");  // [KV, n]
    Tensor* v = project(L.wv, h, p + "attn_v");  // [KV, n]
    q = g_.rope(g_.reshape(q, {hd, H, n}), pos_, int(hd), hp.rope_mode, hp.rope_theta, hp.rope_freq_scale);
    k = g_.rope(g_.reshape(k, {hd, Hkv, n}), pos_, int(hd), hp.rope_mode, hp.rope_theta, hp.rope_freq_scale);

    // cache writes at positions pos0..pos0+n-1 (the view offsets are set by eval)
    Tensor* kdst = g_.view(kc_, {hd, Hkv, n}, {hd * es, KV * es}, base);
    g_.cpy(k, kdst);
    writes_.push_back({kdst, base, KV * es});
    Tensor* vt = g_.permute(g_.reshape(v, {hd, Hkv, n}), 1, 2, 0, 3);  // [n, hd, Hkv]
    Tensor* vdst = g_.view(vc_, {n, hd, Hkv}, {S * es, hd * S * es}, base);
    g_.cpy(vt, vdst);
    writes_.push_back({vdst, base, es});

    // attention over cache positions 0..nkv-1, masked by position (built after the writes, so it
    // runs after them)
    Tensor* K = g_.view(kc_, {hd, nkv, Hkv}, {KV * es, hd * es}, base);     // [hd, nkv, Hkv]
    Tensor* V = g_.view(vc_, {nkv, hd, Hkv}, {S * es, hd * S * es}, base);  // [nkv, hd, Hkv]
    Tensor* kq = g_.mul_mat(K, g_.permute(q, 0, 2, 1, 3));                  // [nkv, n, H]
    Tensor* pr = g_.softmax(kq, pos_, 1.0f / std::sqrt(float(hd)));
    Tensor* o = g_.mul_mat(V, pr);                                    // [hd, n, H]
    o = g_.reshape(g_.cont(g_.permute(o, 0, 2, 1, 3)), {hd * H, n});  // [H*hd, n]
    return project(L.wo, o, p + "attn_output");
}

LlamaGraph::LlamaGraph(const LlamaModel& m, KvCache& cache, const LlamaGraphOptions& opt)
    : m_(m), cache_(cache), opt_(opt) {
    if (!opt_.backend) m.prepare_cpu_tiles();
    const LlamaHParams& hp = m.hp;
    LB_CHECK(cache.n_layer == hp.n_layer && cache.kv_dim == hp.kv_dim(),
             "llama graph: the kv cache (n_layer %lld, kv_dim %lld) does not fit the model (%lld, %lld)",
             (long long)cache.n_layer, (long long)cache.kv_dim, (long long)hp.n_layer, (long long)hp.kv_dim());
    if (opt_.n_kv == 0) opt_.n_kv = cache.n_ctx;
    LB_CHECK(opt_.n_kv >= 1 && opt_.n_kv <= cache.n_ctx, "llama graph: n_kv %lld, supported 1..%lld (the cache)",
             (long long)opt_.n_kv, (long long)cache.n_ctx);
    LB_CHECK(opt_.n_tokens >= 1 && opt_.n_tokens <= opt_.n_kv, "llama graph: n_tokens %lld, supported 1..%lld (n_kv)",
             (long long)opt_.n_tokens, (long long)opt_.n_kv);
    LB_CHECK(opt_.max_threads >= 1, "llama graph: max_threads %d must be >= 1", opt_.max_threads);
    const int64_t n = opt_.n_tokens, D = hp.n_embd;
    const float eps = hp.rms_eps;

    tok_ = g_.input(Type::i32, {n}, "tokens");
    pos_ = g_.input(Type::i32, {n}, "positions");
    kc_ = g_.external(cache.type, {hp.kv_dim(), cache.n_ctx, hp.n_layer}, cache.k.data(), "cache_k");
    vc_ = g_.external(cache.type, {cache.n_ctx, hp.kv_dim(), hp.n_layer}, cache.v.data(), "cache_v");

    Tensor* x = g_.get_rows(leaf(m.tok_embd, "token_embd.weight"), tok_);  // [D, n]
    for (int64_t il = 0; il < hp.n_layer; ++il) {
        const LlamaLayer& L = m.layers[size_t(il)];
        const std::string p = "blk." + std::to_string(il) + ".";
        Tensor* h = g_.mul(g_.rms_norm(x, eps), leaf(L.attn_norm, (p + "attn_norm.weight").c_str()));
        x = g_.add(x, attention(il, h));
        h = g_.mul(g_.rms_norm(x, eps), leaf(L.ffn_norm, (p + "ffn_norm.weight").c_str()));
        Tensor* gate = project(L.ffn_gate, h, p + "ffn_gate");
        Tensor* up = project(L.ffn_up, h, p + "ffn_up");
        x = g_.add(x, project(L.ffn_down, g_.swiglu(gate, up), p + "ffn_down"));
    }
    if (!opt_.all_logits && n > 1) x = g_.view(x, {D, 1}, {uint64_t(D) * 4}, uint64_t((n - 1) * D) * 4);
    x = g_.mul(g_.rms_norm(x, eps), leaf(m.output_norm, "output_norm.weight"));
    logits_ = project(m.output, x, hp.tied_output ? "output(tied)" : "output", false);  // [n_vocab, n]
    g_.output(logits_);
    g_.plan(opt_.max_threads);
    if (opt_.backend) exec_ = opt_.backend->prepare(g_);
}

const float* LlamaGraph::eval(const int32_t* tokens, int64_t pos0, ThreadPool& pool) {
    const int64_t n = opt_.n_tokens;
    LB_CHECK(pos0 >= 0 && pos0 + n <= opt_.n_kv, "llama eval: positions %lld..%lld do not fit n_kv %lld",
             (long long)pos0, (long long)(pos0 + n - 1), (long long)opt_.n_kv);
    int32_t* ids = static_cast<int32_t*>(tok_->data);
    int32_t* pos = static_cast<int32_t*>(pos_->data);
    for (int64_t i = 0; i < n; ++i) {
        LB_CHECK(tokens[i] >= 0 && tokens[i] < m_.hp.n_vocab, "llama eval: token %d at %lld is outside 0..%lld",
                 tokens[i], (long long)i, (long long)(m_.hp.n_vocab - 1));
        ids[i] = tokens[i];
        pos[i] = int32_t(pos0 + i);
    }
    // point the cache writes at pos0 (in bounds: pos0 + n <= n_kv <= n_ctx, as at build time)
    for (const KvWrite& w : writes_) w.view->view_offs = w.base + uint64_t(pos0) * w.stride;
    if (exec_)
        exec_->compute(g_);
    else
        g_.compute(pool);
    return static_cast<const float*>(logits_->data);
}

LlamaDecoder::LlamaDecoder(const LlamaModel& m, KvCache& cache, int max_threads, GraphBackend* backend) {
    for (int64_t span = std::min<int64_t>(32, cache.n_ctx);; span = std::min(2 * span, cache.n_ctx)) {
        LlamaGraphOptions o;
        o.n_tokens = 1;
        o.n_kv = span;
        o.max_threads = max_threads;
        o.backend = backend;
        graphs_.push_back(std::make_unique<LlamaGraph>(m, cache, o));
        spans_.push_back(span);
        if (span == cache.n_ctx) break;
    }
}

const float* LlamaDecoder::eval(int32_t token, int64_t pos, ThreadPool& pool) {
    size_t i = 0;
    while (i + 1 < spans_.size() && spans_[i] <= pos) ++i;
    return graphs_[i]->eval(&token, pos, pool);  // checks pos < n_ctx
}

double token_nll(const float* logits, int64_t n_vocab, int32_t target) {
    LB_CHECK(target >= 0 && target < n_vocab, "token_nll: target %d outside 0..%lld", target, (long long)(n_vocab - 1));
    double mx = logits[0];
    for (int64_t i = 1; i < n_vocab; ++i) mx = std::max(mx, double(logits[i]));
    double sum = 0;
    for (int64_t i = 0; i < n_vocab; ++i) sum += std::exp(double(logits[i]) - mx);
    return std::log(sum) + mx - double(logits[target]);
}

}  // namespace lb
