// graph.h: building, planning and running a graph of ops (core/ops.h) on the CPU.
//
//   Graph g;
//   Tensor* ids = g.input(Type::i32, {n});                   // arena memory, filled after plan()
//   Tensor* w = g.weight("wq", Type::rg, qp, N, K, blob);   // user memory, never copied
//   Tensor* y = g.mul_mat(w, g.get_rows(emb, ids));
//   g.output(y);
//   g.plan(threads);      // order, buffers, one arena: all allocation happens here
//   fill ids->data; g.compute(pool);  read y->data        // allocates nothing, every time
//
// plan(): the nodes reachable from the outputs (and every cpy, which has a side effect) are put
// in a topological order; each non-view result gets an arena offset, and a buffer returns to
// the free list once the last node reading it (directly or through any view of it) has run.
// Inputs and outputs are never reused. The arena (buffers + op scratch for max_threads) is
// allocated once. A cpy into some storage runs before every later-built node reading it.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <unordered_map>
#include <vector>

#include "core/tensor.h"
#include "core/threadpool.h"

namespace lb {

class Graph;

// Runs a planned graph on another device (backends/cuda): compute() reads the graph's inputs from
// their host data (the arena) and writes its outputs back there, so a caller sees the same
// tensors as after Graph::compute. A backend makes one executor per planned graph.
class GraphExecutor {
 public:
    virtual ~GraphExecutor() = default;
    virtual void compute(Graph& g) = 0;
};
class GraphBackend {
 public:
    virtual ~GraphBackend() = default;
    virtual const char* name() const = 0;
    // g must be planned; the executor is valid while g and the backend live and g is not re-planned
    virtual std::unique_ptr<GraphExecutor> prepare(Graph& g) = 0;
};

class Graph {
 public:
    Graph();
    ~Graph();
    Graph(const Graph&) = delete;
    Graph& operator=(const Graph&) = delete;

    // ---- leaves ----
    // graph input in the arena; its data pointer is valid after plan()
    Tensor* input(Type t, std::initializer_list<int64_t> ne, const char* name = "");
    // user memory (activations, a KV cache): never freed or moved by the graph
    Tensor* external(Type t, std::initializer_list<int64_t> ne, void* data, const char* name = "");
    // weight [K, N] of any type in user memory (quantized: the lb::layout blob)
    Tensor* weight(const char* name, Type t, const QParams& p, uint64_t n, uint64_t k, const void* data);
    // keeps t (and what it views) alive to the end and makes it a root of the graph
    void output(Tensor* t);

    // ---- ops (see core/ops.h for shapes) ----
    Tensor* get_rows(Tensor* a, Tensor* ids);
    Tensor* rms_norm(Tensor* a, float eps);
    Tensor* layer_norm(Tensor* a, float eps);
    Tensor* add(Tensor* a, Tensor* b);
    Tensor* mul(Tensor* a, Tensor* b);
    Tensor* scale(Tensor* a, float s);
    Tensor* mul_mat(Tensor* w, Tensor* x);
    Tensor* rope(Tensor* a, Tensor* pos, int n_dims, RopeMode mode, float theta, float freq_scale = 1.0f);
    Tensor* softmax(Tensor* a, Tensor* pos_or_null, float scale);
    Tensor* silu(Tensor* a);
    Tensor* swiglu(Tensor* a, Tensor* b);
    Tensor* cpy(Tensor* src, Tensor* dst);
    Tensor* cont(Tensor* a);
    Tensor* argmax(Tensor* a);
    Tensor* reshape(Tensor* a, std::initializer_list<int64_t> ne);
    // view of nd = ne.size() dims with byte strides nb (nd - 1 of them: nb[1..nd)), nb[0] is the
    // element size; offset in bytes
    Tensor* view(Tensor* a, std::initializer_list<int64_t> ne, std::initializer_list<uint64_t> nb, uint64_t offset);
    Tensor* permute(Tensor* a, int ax0, int ax1, int ax2, int ax3);
    Tensor* transpose(Tensor* a);

    // ---- planning and execution ----
    void plan(int max_threads);
    void compute(ThreadPool& pool);  // pool.size() <= max_threads of plan()

    // ---- introspection (tests, tools) ----
    const std::vector<Tensor*>& order() const { return order_; }  // execution order, leaves included
    uint64_t arena_bytes() const { return arena_bytes_; }         // buffers, after reuse
    const uint8_t* arena() const { return arena_; }               // host arena (after plan())
    bool planned() const { return planned_; }
    uint64_t buffer_bytes_sum() const { return buffer_sum_; }  // sum of every arena buffer
    uint64_t work_bytes() const { return work_bytes_; }        // op scratch (in the arena too)
    size_t n_tensors() const { return tensors_.size(); }

 private:
    Tensor* new_tensor(Op op, Tensor* a, Tensor* b, const char* name);
    Tensor* finish(Tensor* t);  // runs the op's shape check
    // plan(): moves decode projections of one input next to each other and sets span_
    void group_projections(const std::unordered_map<Tensor*, std::vector<Tensor*>>& extra);
    size_t group_members(size_t i, Tensor** members) const;  // the compute nodes of the group at i

    std::vector<std::unique_ptr<Tensor>> tensors_;  // creation order
    std::vector<Tensor*> outputs_;
    std::vector<Tensor*> order_;
    // per position of order_: the entries a group of mul_mat nodes run as one job spans
    // (cpu_compute_group), from its first member; 1 elsewhere
    std::vector<uint32_t> span_;
    std::vector<uint64_t> arena_store_;  // 64-byte aligned by construction (uint64_t + rounding)
    uint8_t* arena_ = nullptr;
    uint8_t* work_ = nullptr;
    uint64_t arena_bytes_ = 0, buffer_sum_ = 0, work_bytes_ = 0;
    int max_threads_ = 0;
    bool planned_ = false;
};

}  // namespace lb
