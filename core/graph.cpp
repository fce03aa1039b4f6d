// graph.cpp: the graph builder (one method per op), the op shape checks (shape_<name>, one per
// row of LB_OPS), plan() (order, liveness, arena offsets) and compute().
#include "core/graph.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <unordered_map>

#include "backends/cpu/ops_cpu.h"
#include "core/error.h"

namespace lb {

// ---- the op table: names and kinds --------------------------------------------------------
static const char* const kOpNames[] = {
#define LB_X(name, nsrc, kind, work) #name,
    LB_OPS(LB_X)
#undef LB_X
};
static const OpKind kOpKinds[] = {
#define LB_X(name, nsrc, kind, work) OpKind::kind,
    LB_OPS(LB_X)
#undef LB_X
};
static const int kOpNSrc[] = {
#define LB_X(name, nsrc, kind, work) nsrc,
    LB_OPS(LB_X)
#undef LB_X
};
const char* op_name(Op op) { return op < Op::count ? kOpNames[size_t(op)] : "?"; }
OpKind op_kind(Op op) { return kOpKinds[size_t(op)]; }
int op_n_src(Op op) { return kOpNSrc[size_t(op)]; }

// ---- shape checks ---------------------------------------------------------------------------
// Each sets t's type, shape and strides (results are contiguous) or makes t a view; it throws
// lb::Error naming the op, the node and the offending source.
namespace {

struct Shapes {
    char a[96], b[96];
};

[[noreturn]] void bad(const Tensor& t, const char* what) {
    Shapes s;
    throw Error(strfmt("%s '%s': %s (src0 %s, src1 %s)", op_name(t.op), t.name, what,
                       t.src[0] ? shape_str(*t.src[0], s.a, sizeof s.a) : "-",
                       t.src[1] ? shape_str(*t.src[1], s.b, sizeof s.b) : "-"));
}
#define LB_SHAPE_CHECK(cond, what) \
    do {                           \
        if (!(cond)) bad(t, what); \
    } while (0)

void result(Tensor& t, Type type, int64_t n0, int64_t n1, int64_t n2, int64_t n3) {
    const int64_t ne[4] = {n0, n1, n2, n3};
    init_tensor(t, type, 4, ne, nullptr);
}
void result_like(Tensor& t, const Tensor& a) { result(t, Type::f32, a.ne[0], a.ne[1], a.ne[2], a.ne[3]); }

bool f32_rows(const Tensor& a) { return a.type == Type::f32 && a.rows_contiguous(); }
bool ids_ok(const Tensor& a) { return a.type == Type::i32 && a.is_contiguous(); }

void shape_none(Tensor&) {}

void shape_get_rows(Tensor& t) {
    const Tensor &a = *t.src[0], &ids = *t.src[1];
    LB_SHAPE_CHECK(a.ne[2] == 1 && a.ne[3] == 1, "the table must be 2-D");
    LB_SHAPE_CHECK(a.quantized() || (is_float_type(a.type) && a.rows_contiguous()),
                   "the table must be f32/f16/bf16 with contiguous rows, or quantized");
    LB_SHAPE_CHECK(ids_ok(ids) && ids.ne[3] == 1, "ids must be contiguous i32 of at most 3 dims");
    result(t, Type::f32, a.ne[0], ids.ne[0], ids.ne[1], ids.ne[2]);
}

void shape_norm(Tensor& t) {
    LB_SHAPE_CHECK(f32_rows(*t.src[0]), "needs f32 with contiguous rows");
    LB_SHAPE_CHECK(t.fp[0] >= 0, "eps must be >= 0");
    result_like(t, *t.src[0]);
}
void shape_rms_norm(Tensor& t) { shape_norm(t); }
void shape_layer_norm(Tensor& t) { shape_norm(t); }

void shape_binary(Tensor& t) {
    const Tensor &a = *t.src[0], &b = *t.src[1];
    LB_SHAPE_CHECK(f32_rows(a), "src0 must be f32 with contiguous rows");
    LB_SHAPE_CHECK(is_float_type(b.type) && b.rows_contiguous(), "src1 must be f32/f16/bf16 with contiguous rows");
    LB_SHAPE_CHECK(b.ne[0] == a.ne[0], "row lengths differ");
    for (int i = 1; i < kMaxDims; ++i) LB_SHAPE_CHECK(b.ne[i] == a.ne[i] || b.ne[i] == 1, "src1 does not broadcast");
    result_like(t, a);
}
void shape_add(Tensor& t) { shape_binary(t); }
void shape_mul(Tensor& t) { shape_binary(t); }

void shape_unary(Tensor& t) {
    LB_SHAPE_CHECK(f32_rows(*t.src[0]), "needs f32 with contiguous rows");
    result_like(t, *t.src[0]);
}
void shape_scale(Tensor& t) { shape_unary(t); }
void shape_silu(Tensor& t) { shape_unary(t); }
void shape_swiglu(Tensor& t) {
    const Tensor &a = *t.src[0], &b = *t.src[1];
    LB_SHAPE_CHECK(f32_rows(a) && f32_rows(b), "needs f32 with contiguous rows");
    for (int i = 0; i < kMaxDims; ++i) LB_SHAPE_CHECK(a.ne[i] == b.ne[i], "shapes differ");
    result_like(t, a);
}

void shape_mul_mat(Tensor& t) {
    const Tensor &w = *t.src[0], &x = *t.src[1];
    LB_SHAPE_CHECK(w.quantized() ? w.ne[2] == 1 && w.ne[3] == 1 : is_float_type(w.type) && w.rows_contiguous(),
                   "the weight must be a 2-D quantized tensor or f32/f16/bf16 with contiguous rows");
    LB_SHAPE_CHECK(f32_rows(x), "the activations must be f32 with contiguous rows");
    LB_SHAPE_CHECK(w.ne[0] == x.ne[0], "inner dimensions differ");
    LB_SHAPE_CHECK(x.ne[2] % w.ne[2] == 0 && x.ne[3] % w.ne[3] == 0, "batch dims do not broadcast");
    result(t, Type::f32, w.ne[1], x.ne[1], x.ne[2], x.ne[3]);
}

void shape_rope(Tensor& t) {
    const Tensor &a = *t.src[0], &pos = *t.src[1];
    LB_SHAPE_CHECK(a.type == Type::f32, "needs f32");
    LB_SHAPE_CHECK(ids_ok(pos) && pos.nelements() == a.ne[2], "positions must be contiguous i32 [ne2 of src0]");
    LB_SHAPE_CHECK(t.ip[0] >= 2 && t.ip[0] % 2 == 0 && t.ip[0] <= a.ne[0], "n_dims must be even, 2..ne0");
    LB_SHAPE_CHECK(t.ip[1] == rope_neox || t.ip[1] == rope_interleaved, "unknown rope mode");
    LB_SHAPE_CHECK(t.fp[0] > 0 && t.fp[1] > 0, "theta and freq_scale must be > 0");
    result_like(t, a);
}

void shape_softmax(Tensor& t) {
    const Tensor& a = *t.src[0];
    LB_SHAPE_CHECK(f32_rows(a), "needs f32 with contiguous rows");
    if (t.src[1])
        LB_SHAPE_CHECK(ids_ok(*t.src[1]) && t.src[1]->nelements() == a.ne[1],
                       "positions must be contiguous i32 [ne1 of src0]");
    result_like(t, a);
}

bool copyable(const Tensor& s, const Tensor& d) {
    return !s.quantized() && !d.quantized() && (s.type == d.type || (is_float_type(s.type) && is_float_type(d.type)));
}

void shape_cpy(Tensor& t) {
    Tensor &s = *t.src[0], &d = *t.src[1];
    LB_SHAPE_CHECK(copyable(s, d), "types cannot be copied (float to float, or the same type)");
    LB_SHAPE_CHECK(s.nelements() == d.nelements(), "element counts differ");
    init_view(t, d, kMaxDims, d.ne, d.nb, 0);  // the result is the destination
}

void shape_cont(Tensor& t) {
    const Tensor& a = *t.src[0];
    LB_SHAPE_CHECK(!a.quantized(), "needs a plain type");
    result(t, a.type, a.ne[0], a.ne[1], a.ne[2], a.ne[3]);
}

void shape_argmax(Tensor& t) {
    const Tensor& a = *t.src[0];
    LB_SHAPE_CHECK(f32_rows(a), "needs f32 with contiguous rows");
    result(t, Type::i32, a.ne[1], a.ne[2], a.ne[3], 1);
}

// views: the builder stored the requested shape in t.ne / t.nb / t.view_offs and nd in ip[0]
void shape_reshape(Tensor& t) {
    const int64_t ne[4] = {t.ne[0], t.ne[1], t.ne[2], t.ne[3]};
    init_reshape(t, *t.src[0], t.ip[0], ne);
}
void shape_view(Tensor& t) {
    const int64_t ne[4] = {t.ne[0], t.ne[1], t.ne[2], t.ne[3]};
    const uint64_t nb[4] = {t.nb[0], t.nb[1], t.nb[2], t.nb[3]};
    init_view(t, *t.src[0], t.ip[0], ne, nb, t.view_offs);
}
void shape_permute(Tensor& t) {
    const int axes[4] = {t.ip[0], t.ip[1], t.ip[2], t.ip[3]};
    init_permute(t, *t.src[0], axes);
}
void shape_transpose(Tensor& t) { init_transpose(t, *t.src[0]); }

#undef LB_SHAPE_CHECK

using ShapeFn = void (*)(Tensor&);
const ShapeFn kShapes[] = {
#define LB_X(name, nsrc, kind, work) &shape_##name,
    LB_OPS(LB_X)
#undef LB_X
};

}  // namespace

// ---- builder --------------------------------------------------------------------------------
Graph::Graph() = default;
Graph::~Graph() = default;

Tensor* Graph::new_tensor(Op op, Tensor* a, Tensor* b, const char* name) {
    LB_CHECK(op == Op::none || a, "%s: src0 is null", op_name(op));
    LB_CHECK(op_n_src(op) == 2 || !b, "%s: takes one source", op_name(op));
    tensors_.push_back(std::make_unique<Tensor>());
    Tensor* t = tensors_.back().get();
    t->op = op;
    t->src[0] = a;
    t->src[1] = b;
    set_name(*t, name);
    planned_ = false;
    return t;
}

Tensor* Graph::finish(Tensor* t) {
    try {
        kShapes[size_t(t->op)](*t);
    } catch (...) {
        tensors_.pop_back();
        throw;
    }
    if (!t->name[0]) std::snprintf(t->name, sizeof t->name, "%s#%zu", op_name(t->op), tensors_.size() - 1);
    return t;
}

static int init_dims(std::initializer_list<int64_t> ne, int64_t* out) {
    LB_CHECK(ne.size() >= 1 && ne.size() <= size_t(kMaxDims), "tensor: %zu dims (1..4 supported)", ne.size());
    int i = 0;
    for (int64_t v : ne) out[i++] = v;
    return i;
}

Tensor* Graph::input(Type type, std::initializer_list<int64_t> ne, const char* name) {
    int64_t d[4];
    const int nd = init_dims(ne, d);
    Tensor* t = new_tensor(Op::none, nullptr, nullptr, name);
    init_tensor(*t, type, nd, d, nullptr);
    t->flags |= tf_input;
    return t;
}

Tensor* Graph::external(Type type, std::initializer_list<int64_t> ne, void* data, const char* name) {
    LB_CHECK(data, "external tensor '%s': data is null", name);
    int64_t d[4];
    const int nd = init_dims(ne, d);
    Tensor* t = new_tensor(Op::none, nullptr, nullptr, name);
    init_tensor(*t, type, nd, d, data);
    t->flags |= tf_external;
    return t;
}

Tensor* Graph::weight(const char* name, Type type, const QParams& p, uint64_t n, uint64_t k, const void* data) {
    LB_CHECK(data, "weight '%s': data is null", name);
    Tensor* t = new_tensor(Op::none, nullptr, nullptr, name);
    try {
        init_weight(*t, type, p, n, k, data);
    } catch (...) {
        tensors_.pop_back();
        throw;
    }
    t->flags |= tf_external;
    return t;
}

void Graph::output(Tensor* t) {
    LB_CHECK(t, "output: null tensor");
    t->flags |= tf_output;
    outputs_.push_back(t);
    planned_ = false;
}

Tensor* Graph::get_rows(Tensor* a, Tensor* ids) { return finish(new_tensor(Op::get_rows, a, ids, "")); }
Tensor* Graph::rms_norm(Tensor* a, float eps) {
    Tensor* t = new_tensor(Op::rms_norm, a, nullptr, "");
    t->fp[0] = eps;
    return finish(t);
}
Tensor* Graph::layer_norm(Tensor* a, float eps) {
    Tensor* t = new_tensor(Op::layer_norm, a, nullptr, "");
    t->fp[0] = eps;
    return finish(t);
}
Tensor* Graph::add(Tensor* a, Tensor* b) { return finish(new_tensor(Op::add, a, b, "")); }
Tensor* Graph::mul(Tensor* a, Tensor* b) { return finish(new_tensor(Op::mul, a, b, "")); }
Tensor* Graph::scale(Tensor* a, float s) {
    Tensor* t = new_tensor(Op::scale, a, nullptr, "");
    t->fp[0] = s;
    return finish(t);
}
Tensor* Graph::mul_mat(Tensor* w, Tensor* x) { return finish(new_tensor(Op::mul_mat, w, x, "")); }
Tensor* Graph::rope(Tensor* a, Tensor* pos, int n_dims, RopeMode mode, float theta, float freq_scale) {
    Tensor* t = new_tensor(Op::rope, a, pos, "");
    t->ip[0] = n_dims;
    t->ip[1] = mode;
    t->fp[0] = theta;
    t->fp[1] = freq_scale;
    return finish(t);
}
Tensor* Graph::softmax(Tensor* a, Tensor* pos, float scale) {
    Tensor* t = new_tensor(Op::softmax, a, pos, "");
    t->fp[0] = scale;
    return finish(t);
}
Tensor* Graph::silu(Tensor* a) { return finish(new_tensor(Op::silu, a, nullptr, "")); }
Tensor* Graph::swiglu(Tensor* a, Tensor* b) { return finish(new_tensor(Op::swiglu, a, b, "")); }
Tensor* Graph::cpy(Tensor* src, Tensor* dst) {
    LB_CHECK(dst, "cpy: destination is null");
    return finish(new_tensor(Op::cpy, src, dst, ""));
}
Tensor* Graph::cont(Tensor* a) { return finish(new_tensor(Op::cont, a, nullptr, "")); }
Tensor* Graph::argmax(Tensor* a) { return finish(new_tensor(Op::argmax, a, nullptr, "")); }

Tensor* Graph::reshape(Tensor* a, std::initializer_list<int64_t> ne) {
    Tensor* t = new_tensor(Op::reshape, a, nullptr, "");
    t->ip[0] = init_dims(ne, t->ne);
    return finish(t);
}
Tensor* Graph::view(Tensor* a, std::initializer_list<int64_t> ne, std::initializer_list<uint64_t> nb, uint64_t offset) {
    LB_CHECK(a, "view: src0 is null");
    LB_CHECK(nb.size() + 1 == ne.size(), "view: %zu dims need %zu strides, got %zu", ne.size(), ne.size() - 1,
             nb.size());
    Tensor* t = new_tensor(Op::view, a, nullptr, "");
    t->ip[0] = init_dims(ne, t->ne);
    t->nb[0] = a->quantized() ? 0 : type_size(a->type);
    int i = 1;
    for (uint64_t v : nb) t->nb[i++] = v;
    t->view_offs = offset;
    return finish(t);
}
Tensor* Graph::permute(Tensor* a, int ax0, int ax1, int ax2, int ax3) {
    Tensor* t = new_tensor(Op::permute, a, nullptr, "");
    t->ip[0] = ax0;
    t->ip[1] = ax1;
    t->ip[2] = ax2;
    t->ip[3] = ax3;
    return finish(t);
}
Tensor* Graph::transpose(Tensor* a) { return finish(new_tensor(Op::transpose, a, nullptr, "")); }

// ---- plan -----------------------------------------------------------------------------------
static Tensor* storage_root(Tensor* t) {
    while (t->view_src) t = t->view_src;
    return t;
}

static uint64_t align64(uint64_t x) { return (x + 63) & ~uint64_t(63); }

namespace {
// first-fit-by-size (best fit) offset allocator over a growing arena, free blocks merged
struct OffsetAllocator {
    struct Block {
        uint64_t off, size;
    };
    std::vector<Block> free;  // sorted by offset
    uint64_t end = 0;

    uint64_t alloc(uint64_t size) {
        size_t best = free.size();
        for (size_t i = 0; i < free.size(); ++i)
            if (free[i].size >= size && (best == free.size() || free[i].size < free[best].size)) best = i;
        if (best < free.size()) {
            const uint64_t off = free[best].off;
            free[best].off += size;
            free[best].size -= size;
            if (free[best].size == 0) free.erase(free.begin() + long(best));
            return off;
        }
        if (!free.empty() && free.back().off + free.back().size == end) {  // grow the last hole
            const uint64_t off = free.back().off;
            free.pop_back();
            end = off + size;
            return off;
        }
        const uint64_t off = end;
        end += size;
        return off;
    }
    void release(uint64_t off, uint64_t size) {
        auto it = std::lower_bound(free.begin(), free.end(), off, [](const Block& b, uint64_t o) { return b.off < o; });
        it = free.insert(it, Block{off, size});
        if (it + 1 != free.end() && it->off + it->size == (it + 1)->off) {
            it->size += (it + 1)->size;
            free.erase(it + 1);
        }
        if (it != free.begin() && (it - 1)->off + (it - 1)->size == it->off) {
            (it - 1)->size += it->size;
            free.erase(it);
        }
    }
};
}  // namespace

// Decode projections that read the same input (q, k and v; gate and up) run as one job on the
// pool: cpu_compute_group. Each groupable mul_mat (backends/cpu/ops_cpu.h) whose weight is a
// plain leaf and that waits for no cpy moves, with its weight if that comes later, to just
// after the last member so far of its input's group (the first such node stays where it is):
// its sources are then still placed before it, and its readers after it.
void Graph::group_projections(const std::unordered_map<Tensor*, std::vector<Tensor*>>& extra) {
    std::unordered_map<Tensor*, size_t> pos;
    for (size_t i = 0; i < order_.size(); ++i) pos[order_[i]] = i;
    std::unordered_map<Tensor*, Tensor*> anchor_of;              // input -> its group's first node
    std::unordered_map<Tensor*, std::vector<Tensor*>> attached;  // first node -> moved nodes, in order
    std::unordered_map<Tensor*, size_t> members;
    std::unordered_map<Tensor*, bool> moved;
    for (Tensor* t : order_) {
        if (!cpu_groupable(*t)) continue;
        Tensor* w = t->src[0];
        const bool leaf_weight = w->op == Op::none && !w->view_src;
        auto it = anchor_of.find(t->src[1]);
        if (it == anchor_of.end() || !leaf_weight || extra.count(t) || members[it->second] >= kCpuGroupMax) {
            if (it == anchor_of.end()) {
                anchor_of[t->src[1]] = t;
                members[t] = 1;
            }
            continue;
        }
        Tensor* a = it->second;
        if (pos[w] > pos[a] && !moved[w]) {  // the weight comes along (once: a leaf may have many readers)
            attached[a].push_back(w);
            moved[w] = true;
        }
        attached[a].push_back(t);
        moved[t] = true;
        ++members[a];
    }
    std::vector<Tensor*> out;
    out.reserve(order_.size());
    span_.clear();
    for (Tensor* t : order_) {
        if (moved.count(t)) continue;
        out.push_back(t);
        span_.push_back(1);
        auto at = attached.find(t);
        if (at == attached.end()) continue;
        span_.back() = uint32_t(1 + at->second.size());
        for (Tensor* m : at->second) {
            out.push_back(m);
            span_.push_back(1);
        }
    }
    order_ = std::move(out);
}

size_t Graph::group_members(size_t i, Tensor** members) const {
    size_t count = 0;
    for (size_t j = i; j < i + span_[i]; ++j)
        if (op_kind(order_[j]->op) == OpKind::compute) members[count++] = order_[j];
    return count;
}

void Graph::plan(int max_threads) {
    LB_CHECK(max_threads >= 1, "plan: max_threads %d must be >= 1", max_threads);
    planned_ = false;
    order_.clear();

    // control edges: a node reading storage R waits for every cpy into R built before it
    std::unordered_map<Tensor*, std::vector<Tensor*>> cpys_into, extra;
    std::vector<Tensor*> roots;
    for (auto& up : tensors_) {
        Tensor* t = up.get();
        if (t->flags & tf_input) roots.push_back(t);
        for (Tensor* s : t->src) {
            if (!s) continue;
            auto it = cpys_into.find(storage_root(s));
            if (it != cpys_into.end())
                for (Tensor* c : it->second)
                    if (c != s) extra[t].push_back(c);
        }
        if (t->op == Op::cpy) {
            cpys_into[storage_root(t)].push_back(t);
            roots.push_back(t);
        }
    }
    roots.insert(roots.end(), outputs_.begin(), outputs_.end());

    // topological order: iterative depth-first post-order from the roots
    std::unordered_map<Tensor*, int> state;  // 1 on the stack, 2 placed
    std::vector<std::pair<Tensor*, size_t>> stack;
    auto dep = [&](Tensor* t, size_t i) -> Tensor* {  // i-th dependency of t, null after the last
        for (Tensor* s : t->src) {
            if (s && i == 0) return s;
            i -= s != nullptr;
        }
        auto it = extra.find(t);
        return it != extra.end() && i < it->second.size() ? it->second[i] : nullptr;
    };
    for (Tensor* r : roots) {
        if (state[r]) continue;
        stack.push_back({r, 0});
        state[r] = 1;
        while (!stack.empty()) {
            auto& [t, i] = stack.back();
            Tensor* d = dep(t, i++);
            if (!d) {
                state[t] = 2;
                order_.push_back(t);
                stack.pop_back();
                continue;
            }
            const int st = state[d];
            LB_CHECK(st != 1, "plan: the graph has a cycle through '%s'", d->name);
            if (st == 0) {
                state[d] = 1;
                stack.push_back({d, 0});
            }
        }
    }

    group_projections(extra);

    // liveness: the last position at which each storage root is read; pinned roots live forever
    std::unordered_map<Tensor*, size_t> last;
    auto in_arena = [](Tensor* t) { return !t->view_src && (t->op != Op::none || (t->flags & tf_input)); };
    for (size_t i = 0; i < order_.size(); ++i) {
        Tensor* t = order_[i];
        LB_CHECK(in_arena(storage_root(t)) || storage_root(t)->data, "plan: leaf '%s' has no data",
                 storage_root(t)->name);
        if (in_arena(t)) last[t] = i;  // a result nobody reads dies where it is made
        for (Tensor* s : t->src)
            if (s) last[storage_root(s)] = i;
    }
    for (Tensor* t : order_)
        if (t->flags & (tf_input | tf_output)) last[storage_root(t)] = SIZE_MAX;
    std::vector<std::vector<Tensor*>> frees(order_.size());
    for (auto& [t, l] : last)
        if (l != SIZE_MAX && in_arena(t)) frees[l].push_back(t);

    // offsets: allocate each result where it is made, release buffers after their last reader
    OffsetAllocator alloc;
    std::unordered_map<Tensor*, uint64_t> offset;
    buffer_sum_ = 0;
    work_bytes_ = 0;
    for (size_t i = 0; i < order_.size(); ++i) {
        Tensor* t = order_[i];
        if (in_arena(t)) {
            const uint64_t size = align64(t->nbytes());
            offset[t] = alloc.alloc(size);
            buffer_sum_ += size;
        }
        if (op_kind(t->op) == OpKind::compute) work_bytes_ = std::max(work_bytes_, cpu_work_bytes(*t, max_threads));
        if (span_[i] > 1) {
            Tensor* members[kCpuGroupMax];
            const size_t count = group_members(i, members);
            work_bytes_ = std::max(work_bytes_, cpu_group_work_bytes(members, count, max_threads));
        }
        for (Tensor* f : frees[i]) alloc.release(offset[f], align64(f->nbytes()));
    }
    arena_bytes_ = alloc.end;
    work_bytes_ = align64(work_bytes_);

    // one allocation for buffers and scratch; then every data pointer is known
    const uint64_t total = arena_bytes_ + work_bytes_ + 64;
    arena_store_.assign(size_t(total / 8 + 1), 0);
    arena_ = reinterpret_cast<uint8_t*>(align64(reinterpret_cast<uintptr_t>(arena_store_.data())));
    work_ = arena_ + arena_bytes_;
    for (Tensor* t : order_) {
        if (in_arena(t)) t->data = arena_ + offset[t];
        if (t->view_src) t->data = static_cast<uint8_t*>(t->view_src->data) + t->view_offs;
    }
    max_threads_ = max_threads;
    planned_ = true;
}

// ---- compute --------------------------------------------------------------------------------
void Graph::compute(ThreadPool& pool) {
    LB_CHECK(planned_, "compute: plan() the graph after building it");
    LB_CHECK(pool.size() <= max_threads_, "compute: the pool has %d threads, the plan was made for %d", pool.size(),
             max_threads_);
    CpuCtx ctx;
    ctx.pool = &pool;
    ctx.work = work_;
    for (size_t i = 0; i < order_.size(); ++i) {
        Tensor* t = order_[i];
        // views follow their source (user memory, e.g. a KV cache, may have been moved)
        if (t->view_src) t->data = static_cast<uint8_t*>(t->view_src->data) + t->view_offs;
        if (span_[i] > 1) {  // a group's members and the leaves between them: no views
            Tensor* members[kCpuGroupMax];
            const size_t count = group_members(i, members);
            cpu_compute_group(members, count, ctx);
            i += span_[i] - 1;
            continue;
        }
        if (op_kind(t->op) == OpKind::compute) cpu_compute(*t, ctx);
    }
}

}  // namespace lb
