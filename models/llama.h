// llama.h: the LLaMA model family of lowbit: hyper-parameters, a checkpoint in canonical form
// (what importers produce and the .lbf writer stores), a loaded model (weights as lb::Tensor over
// mmap'd .lbf data or owned buffers), the KV cache, and the graph of one batch shape.
//
// Orientation and names (HF/ggml): a projection W[N][K] (N outputs, K inputs) is stored with
// dims {K, N}; y = W x. Tensor names (GGUF style):
//   token_embd.weight        [n_embd, n_vocab]      output_norm.weight [n_embd]
//   output.weight            [n_embd, n_vocab]      absent when the classifier is tied to token_embd
//   blk.L.attn_norm.weight   [n_embd]               blk.L.ffn_norm.weight  [n_embd]
//   blk.L.attn_q.weight      [n_embd, n_head*hd]    blk.L.ffn_gate.weight  [n_embd, n_ff]  (w1)
//   blk.L.attn_k.weight      [n_embd, n_head_kv*hd] blk.L.ffn_up.weight    [n_embd, n_ff]  (w3)
//   blk.L.attn_v.weight      [n_embd, n_head_kv*hd] blk.L.ffn_down.weight  [n_ff, n_embd]  (w2)
//   blk.L.attn_output.weight [n_head*hd, n_embd]
// q/k rows are in the order the rope mode of the hyper-parameters expects: Meta / llama2.c
// checkpoints rotate adjacent pairs (rope_interleaved) and are kept as they are; HF checkpoints
// rotate halves (rope_neox).
//
// The forward pass (run.c / HF semantics): x = embd[tok]; per layer
//   h = rmsnorm(x) * attn_norm; q, k, v = Wq h, Wk h, Wv h; rope(q), rope(k) at the positions;
//   k, v -> cache; att = softmax(q k^T / sqrt(hd), causal) v (query head h reads kv head
//   h / (n_head / n_head_kv)); x += Wo att; h = rmsnorm(x) * ffn_norm;
//   x += Wdown (silu(Wgate h) * Wup h); logits = Wout (rmsnorm(x) * output_norm).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "backends/cpu/tiled.h"
#include "core/graph.h"
#include "core/tensor.h"
#include "core/threadpool.h"
#include "models/tokenizer.h"

namespace lb {

class LbfFile;

// ---- hyper-parameters -----------------------------------------------------------------------
struct LlamaHParams {
    int64_t n_vocab = 0;
    int64_t n_embd = 0;  // model width (llama2.c dim)
    int64_t n_ff = 0;    // MLP hidden width (llama2.c hidden_dim)
    int64_t n_layer = 0;
    int64_t n_head = 0;
    int64_t n_head_kv = 0;    // grouped-query attention: n_head % n_head_kv == 0
    int64_t n_ctx_train = 0;  // context length the model was trained with (llama2.c seq_len)
    float rms_eps = 1e-5f;
    float rope_theta = 10000.0f;
    float rope_freq_scale = 1.0f;  // linear position scaling
    RopeMode rope_mode = rope_interleaved;
    bool tied_output = true;  // lm_head = token_embd
    // OneBit: a parameter-free LayerNorm (biased variance, this eps) over the outputs of every
    // projection of every layer (q, k, v, o, gate, up, down), before its bias; 0 = none
    float proj_norm_eps = 0.0f;

    int64_t head_dim() const { return n_embd / n_head; }
    int64_t kv_dim() const { return head_dim() * n_head_kv; }
    // throws lb::Error naming the first bad field
    void validate() const;
};

// ---- a checkpoint in canonical form (importers -> .lbf writer, or straight into a model) ------
struct CheckpointTensor {
    std::string name;
    Type type = Type::f32;
    QParams params;
    std::vector<uint64_t> dims;  // dims[0] = K (innermost)
    std::vector<uint8_t> data;   // tensor_nbytes(type, params, N, K) bytes
};

struct LlamaCheckpoint {
    LlamaHParams hp;
    std::vector<CheckpointTensor> tensors;
    std::string source;  // provenance ("llama2.c legacy checkpoint stories260K.bin")
    // more provenance, written as "general.<key>" strings (source.family, source.layout,
    // source.dtype, converter.version, ...)
    std::vector<std::pair<std::string, std::string>> provenance;
    std::optional<TokenizerData> tokenizer;  // written as tokenizer.* metadata when present
    std::string chat_template;               // tokenizer.chat_template when not empty
    const CheckpointTensor* find(const std::string& name) const;
};

// ---- a loaded model ----------------------------------------------------------------------------
// A projection of a layer (LlamaGraph::project):
//   y = W x                                   W: weight [K, N] of any type (OneBit: the sign type,
//                                             whose input/output value vectors are part of it)
//   y = layer_norm(y)                         when hp.proj_norm_eps > 0 (OneBit)
//   y = y + lora_scale * (B (A x))            when the HQQ+ adapter covers it: A [K, r], B [r, N]
//   y = y + bias                              when there is a bias [N]
// Optional tensors of projection "blk.L.P": blk.L.P.bias (f32/f16/bf16 [N]), blk.L.P.lora_a
// ([K, r] float), blk.L.P.lora_b ([r, N] float), blk.L.P.lora_scale (f32 [1]); a and b come together.
struct LlamaLinear {
    Tensor w;  // [K, N] of any lowbit type
    bool has_bias = false, has_lora = false;
    Tensor bias;            // [N]
    Tensor lora_a, lora_b;  // [K, r], [r, N]
    float lora_scale = 0.0f;
};

struct LlamaLayer {
    Tensor attn_norm, ffn_norm;  // f32 [n_embd]
    LlamaLinear wq, wk, wv, wo, ffn_gate, ffn_up, ffn_down;
};

class LlamaModel {
 public:
    LlamaHParams hp;
    Tensor tok_embd;  // [n_embd, n_vocab], any type (get_rows dequantizes)
    Tensor output_norm;
    LlamaLinear output;  // == tok_embd when hp.tied_output
    std::vector<LlamaLayer> layers;

    // Takes the checkpoint's buffers (no copy); validates every tensor against the hyper-parameters.
    static std::unique_ptr<LlamaModel> from_checkpoint(LlamaCheckpoint&& ck);
    // Maps a .lbf file (formats/lbf.h) and uses its tensors in place.
    static std::unique_ptr<LlamaModel> load_lbf(const std::string& path);
    // Uses the tensors of an open .lbf file in place and keeps the file (a mapping, or a
    // from_memory view whose memory the caller keeps alive longer than the model).
    static std::unique_ptr<LlamaModel> from_lbf(std::unique_ptr<LbfFile> file);
    const LbfFile* file() const { return file_.get(); }  // nullptr for a model from a checkpoint

    // Thread safety: after construction a LlamaModel is never written (weights are read through
    // const pointers; graphs, caches, thread pools and scratch belong to their users), so any
    // number of threads may build LlamaGraph / LlamaDecoder objects over one model and run them.

    LlamaModel(const LlamaModel&) = delete;
    LlamaModel& operator=(const LlamaModel&) = delete;
    ~LlamaModel();

    // The CPU runtime copy of a projection weight (backends/cpu/tiled.h), or nullptr. The copies
    // are made once, by the first graph that runs on the CPU (prepare_cpu_tiles, thread safe):
    // the tiled layout of rg and sign projections when the best kernel table has tiled kernels
    // (the row layout stays in use for embedding lookups and the rows after the last tile), and
    // the class-major decoded copy of a0 projections. A copied weight's pages of the mapped file
    // are released (LbfFile::release): every product reads the copy.
    void prepare_cpu_tiles() const;
    const uint8_t* cpu_tiles(const Tensor& w) const;

 private:
    LlamaModel();
    // where a named weight's bytes are: found == false if the source has no such tensor
    struct WeightRef {
        bool found = false;
        Type type = Type::f32;
        QParams params;
        std::vector<uint64_t> dims;
        const void* data = nullptr;
    };
    // binds every weight to lookup(name) and checks it against hp (which must be set)
    void bind(const std::function<WeightRef(const std::string&)>& lookup, const std::string& origin);
    std::vector<CheckpointTensor> owned_;
    std::unique_ptr<LbfFile> file_;
    mutable std::once_flag tiles_once_;
    mutable std::vector<std::pair<const void*, TiledWeight>> tiles_;  // weight data -> its tiles
};

// The checkpoint with every quantized tensor dequantized to f32 by the scalar reference
// (dequant_row_ref): the same model without the int8 activations of the quantized kernels, for
// checking conversions against float references.
LlamaCheckpoint dequantize_checkpoint(const LlamaCheckpoint& ck);

// Writes the checkpoint to `path` as .lbf (models/llama_io.cpp documents the metadata keys).
void save_llama_lbf(const LlamaCheckpoint& ck, const std::string& path);
// The hyper-parameters stored in a .lbf file's metadata.
LlamaHParams llama_hparams_from_lbf(const LbfFile& f);

// ---- the KV cache -------------------------------------------------------------------------------
// Per layer, f16 (or f32) storage for n_ctx positions:
//   K: [n_layer][n_ctx][n_head_kv * head_dim]   (a row of all kv heads per position)
//   V: [n_layer][n_head_kv * head_dim][n_ctx]   (transposed: a row of positions per channel, so that
//                                                att @ V reads contiguous rows)
// Zero-filled at construction and by clear(), so masked-out entries are finite.
struct KvCache {
    KvCache(const LlamaHParams& hp, int64_t n_ctx, Type type = Type::f16);
    void clear();
    Type type;
    int64_t n_ctx, n_layer, kv_dim;
    std::vector<uint8_t> k, v;
    uint64_t layer_bytes() const { return uint64_t(n_ctx * kv_dim) * type_size(type); }
};

// ---- the graph of one batch shape ----------------------------------------------------------------
struct LlamaGraphOptions {
    int64_t n_tokens = 1;    // batch: tokens evaluated per call
    int64_t n_kv = 0;        // cache positions attended (0: the whole cache); pos0 + n_tokens <= n_kv
    bool all_logits = true;  // logits of every token, or only of the last one
    int max_threads = 1;     // pool.size() of the calls to eval() is at most this
    // run the graph there (e.g. the CUDA backend) instead of on the CPU; it must outlive the graph
    GraphBackend* backend = nullptr;
};

// Built once per batch shape (n_tokens, n_kv) and reused: eval() fills the inputs, points the
// cache writes at the positions, and runs the planned graph. It allocates nothing.
// Graph per layer: q, k, v projections; rope on q and k (the model's rope mode, n_dims = head_dim);
// cpy of k into K rows pos0.. and of v (transposed) into V columns pos0..; scores = K[0..n_kv) q
// with GQA broadcast, causal softmax by position (scale 1/sqrt(head_dim)); att = V p.
// The cache writes are views of the cache whose offset eval() sets (view_offs; the graph
// recomputes view data pointers at every compute), so one graph serves every position.
// The model and the cache must outlive the graph; the logits stay valid until the next eval().
class LlamaGraph {
 public:
    LlamaGraph(const LlamaModel& m, KvCache& cache, const LlamaGraphOptions& opt);
    LlamaGraph(const LlamaGraph&) = delete;
    LlamaGraph& operator=(const LlamaGraph&) = delete;

    // Evaluates tokens[0..n_tokens) at positions pos0..pos0+n_tokens-1 (their k, v go into the cache;
    // earlier positions must already be there). Returns the logits, n_logits() rows of n_vocab.
    const float* eval(const int32_t* tokens, int64_t pos0, ThreadPool& pool);
    int64_t n_tokens() const { return opt_.n_tokens; }
    int64_t n_logits() const { return opt_.all_logits ? opt_.n_tokens : 1; }
    int64_t n_vocab() const { return m_.hp.n_vocab; }
    const Graph& graph() const { return g_; }

 private:
    Tensor* leaf(const Tensor& w, const char* name);
    // the per-projection hook; `layer`: a layer projection (variants apply), else the classifier
    Tensor* project(const LlamaLinear& l, Tensor* x, const std::string& name, bool layer = true);
    Tensor* attention(int64_t il, Tensor* h);

    const LlamaModel& m_;
    KvCache& cache_;
    LlamaGraphOptions opt_;
    Graph g_;
    std::unique_ptr<GraphExecutor> exec_;  // opt_.backend's executor of g_, or null (CPU)
    Tensor *tok_ = nullptr, *pos_ = nullptr, *logits_ = nullptr;
    Tensor *kc_ = nullptr, *vc_ = nullptr;  // the whole caches
    struct KvWrite {
        Tensor* view;     // cpy destination: its view_offs is set per eval
        uint64_t base;    // byte offset of the layer
        uint64_t stride;  // bytes per position
    };
    std::vector<KvWrite> writes_;
};

// Batch-1 decoding with one graph per attention span n_kv = 32, 64, 128, ..., n_ctx: each step
// uses the smallest span that holds pos + 1, so attention costs O(pos) rather than O(n_ctx).
// The graphs are built up front; eval() allocates nothing.
class LlamaDecoder {
 public:
    // backend: see LlamaGraphOptions (null: the CPU)
    LlamaDecoder(const LlamaModel& m, KvCache& cache, int max_threads, GraphBackend* backend = nullptr);
    // logits [n_vocab] of `token` at `pos` (positions 0..pos-1 must be in the cache)
    const float* eval(int32_t token, int64_t pos, ThreadPool& pool);
    size_t n_graphs() const { return graphs_.size(); }

 private:
    std::vector<std::unique_ptr<LlamaGraph>> graphs_;  // n_kv ascending
    std::vector<int64_t> spans_;
};

// log-softmax helper for tests and tools: -log p(target) from one row of logits
double token_nll(const float* logits, int64_t n_vocab, int32_t target);

}  // namespace lb
