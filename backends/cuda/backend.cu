// backend.cu: the CUDA backend of lb::Graph (backends/cuda/cuda_backend.h): device discovery,
// the upload of a model's tensors, device mirrors of other user memory (the KV cache), and the
// executor that walks a planned graph: one device arena laid out exactly as the host arena
// (the same offsets), one kernel launch per compute node on one stream, views resolved to
// device addresses at every compute (a KV-cache write view moves with the position), inputs
// copied in before and outputs copied out after. The node launches are captured into a CUDA
// graph at every compute and replayed through one instantiated graph (cudaGraphExecUpdate), so
// a decode step costs one graph launch; LB_CUDA_GRAPHS=0 launches node by node.
#include <cstdlib>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "backends/cuda/cublas_lazy.h"
#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/ops.cuh"
#include "models/llama.h"

namespace lb::cuda {

// ---- devices ----------------------------------------------------------------------------------------
int device_count(std::string* why) {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();  // clear the sticky-free error state of the runtime API
        if (why) *why = cudaGetErrorString(e);
        return 0;
    }
    if (n == 0 && why) *why = "the CUDA runtime reports 0 devices";
    return n;
}

std::string device_description(int device) {
    cudaDeviceProp p{};
    LB_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
    return strfmt("%s (sm_%d%d, %.1f GiB)", p.name, p.major, p.minor,
                  double(p.totalGlobalMem) / (1024.0 * 1024 * 1024));
}

static void require_device(int device) {
    std::string why;
    const int n = device_count(&why);
    if (n == 0) throw Error("no CUDA device: " + why);
    LB_CHECK(device >= 0 && device < n, "CUDA device %d does not exist (%d found)", device, n);
    LB_CUDA_CHECK(cudaSetDevice(device));
}

// ---- device memory ------------------------------------------------------------------------------------
namespace {
struct DeviceBuf {
    uint8_t* p = nullptr;
    uint64_t bytes = 0;
    explicit DeviceBuf(uint64_t n) : bytes(n) {
        void* v = nullptr;
        const cudaError_t e = cudaMalloc(&v, n ? n : 1);
        if (e != cudaSuccess)
            throw Error(strfmt("CUDA: cannot allocate %llu bytes of device memory: %s", (unsigned long long)n,
                               cudaGetErrorString(e)));
        p = static_cast<uint8_t*>(v);
    }
    ~DeviceBuf() { cudaFree(p); }
    DeviceBuf(const DeviceBuf&) = delete;
    DeviceBuf& operator=(const DeviceBuf&) = delete;
};

// host ranges mirrored on the device, by host start address
struct Mirrors {
    std::unordered_map<const void*, std::unique_ptr<DeviceBuf>> map;
    std::vector<std::unique_ptr<DeviceBuf>> replaced;  // smaller mirrors of a host range that grew
    uint64_t bytes = 0;
    uint8_t* find(const void* host, uint64_t need) const {
        auto it = map.find(host);
        return it != map.end() && it->second->bytes >= need ? it->second->p : nullptr;
    }
    uint8_t* add(const void* host, uint64_t n) {
        auto b = std::make_unique<DeviceBuf>(n);
        LB_CUDA_CHECK(cudaMemcpy(b->p, host, n, cudaMemcpyHostToDevice));
        uint8_t* p = b->p;
        bytes += n;
        auto& slot = map[host];
        if (slot) replaced.push_back(std::move(slot));  // executors prepared earlier may still use it
        slot = std::move(b);
        return p;
    }
};
}  // namespace

struct DeviceWeights {
    int device = 0;
    Mirrors m;
};

std::shared_ptr<DeviceWeights> upload_weights(const LlamaModel& model, int device) {
    require_device(device);
    auto w = std::make_shared<DeviceWeights>();
    w->device = device;
    auto up = [&](const Tensor& t) {
        if (t.data && !w->m.find(t.data, t.nbytes())) w->m.add(t.data, t.nbytes());
    };
    auto lin = [&](const LlamaLinear& l) {
        up(l.w);
        if (l.has_bias) up(l.bias);
        if (l.has_lora) {
            up(l.lora_a);
            up(l.lora_b);
        }
    };
    up(model.tok_embd);
    up(model.output_norm);
    lin(model.output);
    for (const LlamaLayer& L : model.layers) {
        up(L.attn_norm);
        up(L.ffn_norm);
        for (const LlamaLinear* l : {&L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_gate, &L.ffn_up, &L.ffn_down}) lin(*l);
    }
    return w;
}

uint64_t device_bytes(const DeviceWeights& w) { return w.m.bytes; }

// ---- the backend and its executors ----------------------------------------------------------------------
namespace {

Tensor* storage_root(Tensor* t) {
    while (t->view_src) t = t->view_src;
    return t;
}
bool in_arena(const Tensor* t) { return t->op != Op::none || (t->flags & tf_input); }

class CudaBackend;

class CudaExecutor final : public GraphExecutor {
 public:
    CudaExecutor(CudaBackend& be, Graph& g);
    ~CudaExecutor() override {
        if (gexec_) cudaGraphExecDestroy(gexec_);
    }
    void compute(Graph& g) override;

 private:
    uint8_t* dev(Tensor* t) const;
    void run(Tensor& t);
    void launch_all(Graph& g);  // every node's kernels, in order, on the backend's stream
    bool launch_as_graph(Graph& g);

    // CUDA graph of the node launches (LB_CUDA_GRAPHS=0 disables): captured at every compute,
    // because kernel arguments change (the KV-cache write position), and applied to the
    // instantiated graph with cudaGraphExecUpdate, which is much cheaper than one launch per node
    bool use_graphs_ = true;
    cudaGraphExec_t gexec_ = nullptr;

    CudaBackend& be_;
    const uint8_t* host_arena_;
    std::unique_ptr<DeviceBuf> arena_;
    std::unordered_map<const Tensor*, uint8_t*> ext_;  // external storage roots -> device
};

class CudaBackend final : public GraphBackend {
 public:
    CudaBackend(std::shared_ptr<DeviceWeights> w, int device) : w_(std::move(w)), device_(w_ ? w_->device : device) {
        require_device(device_);
        cublas();  // loads cuBLAS (throws when it cannot) before anything needs freeing
        LB_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
        if (cublas().create(&blas) != CUBLAS_STATUS_SUCCESS) {
            cudaStreamDestroy(stream);
            throw Error("cuBLAS: cublasCreate failed");
        }
        cublas().set_stream(blas, stream);
    }
    ~CudaBackend() override {
        cublas().destroy(blas);
        cudaStreamDestroy(stream);
    }
    const char* name() const override { return "cuda"; }
    std::unique_ptr<GraphExecutor> prepare(Graph& g) override { return std::make_unique<CudaExecutor>(*this, g); }

    // device address of external host memory: an uploaded weight, or a mirror made now
    uint8_t* external(const Tensor& root) {
        const uint64_t need = root.nbytes();
        if (w_)
            if (uint8_t* p = w_->m.find(root.data, need)) return p;
        if (uint8_t* p = mirrors_.find(root.data, need)) return p;
        return mirrors_.add(root.data, need);
    }

    // one scratch buffer for every executor of this backend (they run one at a time on `stream`
    // and each compute() ends with a synchronize): grown at prepare() to the largest need
    void reserve_scratch(uint64_t bytes) {
        if (scratch_ && scratch_->bytes >= bytes) return;
        scratch_.reset();
        scratch_ = std::make_unique<DeviceBuf>(bytes);
    }
    DeviceBuf& scratch() const { return *scratch_; }

    cudaStream_t stream{};
    cublasHandle_t blas{};
    int device() const { return device_; }

 private:
    std::shared_ptr<DeviceWeights> w_;
    int device_;
    Mirrors mirrors_;
    std::unique_ptr<DeviceBuf> scratch_;
};

CudaExecutor::CudaExecutor(CudaBackend& be, Graph& g) : be_(be), host_arena_(g.arena()) {
    LB_CHECK(g.planned(), "CUDA: plan() the graph before preparing it");
    const char* env = std::getenv("LB_CUDA_GRAPHS");
    use_graphs_ = !(env && std::strcmp(env, "0") == 0);
    LB_CUDA_CHECK(cudaSetDevice(be.device()));
    arena_ = std::make_unique<DeviceBuf>(g.arena_bytes() + 64);
    uint64_t scratch = 256;
    for (Tensor* t : g.order()) {
        Tensor* r = storage_root(t);
        if (!in_arena(r) && !ext_.count(r)) ext_[r] = be.external(*r);
        if (t->op == Op::mul_mat) scratch = std::max(scratch, matmul_scratch_bytes(*t));
    }
    be.reserve_scratch(scratch);
}

uint8_t* CudaExecutor::dev(Tensor* t) const {
    Tensor* r = storage_root(t);
    uint8_t* base;
    if (in_arena(r)) {
        base = arena_->p + (static_cast<const uint8_t*>(r->data) - host_arena_);
    } else {
        auto it = ext_.find(r);
        LB_CHECK(it != ext_.end(), "CUDA: tensor '%s' has no device copy", r->name);
        base = it->second;
    }
    return base + (static_cast<const uint8_t*>(t->data) - static_cast<const uint8_t*>(r->data));
}

// ---- per-op dispatch, generated from LB_OPS (a missing node_<op> is a compile error) ----
using NodeFn = void (*)(const Tensor&, const NodePtrs&, const MatmulCtx&);
#define LB_NODE(name) \
    void node_##name(const Tensor& t, const NodePtrs& p, const MatmulCtx& c) { run_##name(t, p, c.stream); }
LB_NODE(get_rows)
LB_NODE(rms_norm)
LB_NODE(layer_norm)
LB_NODE(add)
LB_NODE(mul)
LB_NODE(scale)
LB_NODE(rope)
LB_NODE(softmax)
LB_NODE(silu)
LB_NODE(swiglu)
LB_NODE(cpy)
LB_NODE(argmax)
#undef LB_NODE
void node_cont(const Tensor& t, const NodePtrs& p, const MatmulCtx& c) { run_cpy(t, p, c.stream); }
void node_mul_mat(const Tensor& t, const NodePtrs& p, const MatmulCtx& c) { run_mul_mat(t, p, c); }
#define LB_NODE_FN_leaf(name) nullptr
#define LB_NODE_FN_view(name) nullptr
#define LB_NODE_FN_compute(name) &node_##name
const NodeFn kNodeFns[] = {
#define LB_X(name, nsrc, kind, work) LB_NODE_FN_##kind(name),
    LB_OPS(LB_X)
#undef LB_X
};
static_assert(sizeof kNodeFns / sizeof kNodeFns[0] == size_t(Op::count), "one CUDA row per op");

void CudaExecutor::run(Tensor& t) {
    const NodeFn fn = kNodeFns[size_t(t.op)];
    if (!fn) return;
    NodePtrs p{dev(&t), {t.src[0] ? dev(t.src[0]) : nullptr, t.src[1] ? dev(t.src[1]) : nullptr}};
    const MatmulCtx c{be_.blas, be_.scratch().p, be_.scratch().bytes, be_.stream};
    fn(t, p, c);
}

void CudaExecutor::launch_all(Graph& g) {
    for (Tensor* t : g.order()) {
        if (t->view_src) t->data = static_cast<uint8_t*>(t->view_src->data) + t->view_offs;
        if (op_kind(t->op) == OpKind::compute) run(*t);
    }
}

bool CudaExecutor::launch_as_graph(Graph& g) {
    const cudaStream_t s = be_.stream;
    if (cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) != cudaSuccess) return false;
    cudaGraph_t graph = nullptr;
    try {
        launch_all(g);
    } catch (...) {
        cudaStreamEndCapture(s, &graph);
        if (graph) cudaGraphDestroy(graph);
        (void)cudaGetLastError();
        return false;
    }
    if (cudaStreamEndCapture(s, &graph) != cudaSuccess || !graph) {
        (void)cudaGetLastError();
        return false;
    }
    bool ok = true;
    if (gexec_) {
        cudaGraphExecUpdateResultInfo info{};
        if (cudaGraphExecUpdate(gexec_, graph, &info) != cudaSuccess) {
            (void)cudaGetLastError();
            cudaGraphExecDestroy(gexec_);
            gexec_ = nullptr;
        }
    }
    if (!gexec_ && cudaGraphInstantiate(&gexec_, graph, 0) != cudaSuccess) {
        (void)cudaGetLastError();
        gexec_ = nullptr;
        ok = false;
    }
    cudaGraphDestroy(graph);
    if (ok) LB_CUDA_CHECK(cudaGraphLaunch(gexec_, s));
    return ok;
}

void CudaExecutor::compute(Graph& g) {
    LB_CHECK(g.arena() == host_arena_, "CUDA: the graph was re-planned after prepare()");
    LB_CUDA_CHECK(cudaSetDevice(be_.device()));
    const cudaStream_t s = be_.stream;
    // inputs in (pageable host memory: outside any capture)
    for (Tensor* t : g.order())
        if (t->flags & tf_input)
            LB_CUDA_CHECK(cudaMemcpyAsync(dev(t), t->data, t->nbytes(), cudaMemcpyHostToDevice, s));
    if (use_graphs_ && !launch_as_graph(g)) {
        use_graphs_ = false;  // capture is not possible here: launch node by node from now on
        launch_all(g);
    } else if (!use_graphs_) {
        launch_all(g);
    }
    for (Tensor* t : g.order())
        if ((t->flags & tf_output) && in_arena(storage_root(t))) {
            LB_CHECK(t->is_contiguous(), "CUDA: output '%s' is not contiguous", t->name);
            LB_CUDA_CHECK(cudaMemcpyAsync(t->data, dev(t), t->nbytes(), cudaMemcpyDeviceToHost, s));
        }
    LB_CUDA_CHECK(cudaStreamSynchronize(s));
}

}  // namespace

std::unique_ptr<GraphBackend> make_backend(std::shared_ptr<DeviceWeights> w, int device) {
    return std::make_unique<CudaBackend>(std::move(w), device);
}

}  // namespace lb::cuda
