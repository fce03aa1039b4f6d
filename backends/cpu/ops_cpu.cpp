// ops_cpu.cpp: the CPU kernels of the graph ops (the reference backend). One function per
// compute row of LB_OPS (core/ops.h), cpu_<name>; ops with scratch also have work_<name>.
// Each kernel splits rows over the thread pool; each output element is computed by the same
// code whatever the thread count, so results do not depend on it. Shapes were checked when the
// node was built (core/graph.cpp); kernels only check data (ids).
#include "backends/cpu/ops_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "backends/cpu/dispatch.h"
#include "backends/cpu/matmul.h"
#include "core/error.h"
#include "core/half.h"

namespace lb {

static uint64_t align64(uint64_t x) { return (x + 63) & ~uint64_t(63); }

// Rows per range of a row-wise op: at least 8192 elements, so that an op on a few short rows (a
// decode step) runs on the calling thread instead of paying a pool round trip (about 1 us) for
// less work than that.
static uint64_t row_grain(int64_t K) { return std::max<uint64_t>(1, 8192 / uint64_t(std::max<int64_t>(K, 1))); }

static inline float load_f(Type t, const uint8_t* p) {
    uint16_t h;
    switch (t) {
        case Type::f32: {
            float f;
            std::memcpy(&f, p, 4);
            return f;
        }
        case Type::f16:
            std::memcpy(&h, p, 2);
            return f16_to_f32(h);
        default:
            std::memcpy(&h, p, 2);
            return bf16_to_f32(h);
    }
}

static inline void store_f(Type t, uint8_t* p, float v) {
    uint16_t h;
    switch (t) {
        case Type::f32:
            std::memcpy(p, &v, 4);
            return;
        case Type::f16:
            h = f32_to_f16(v);
            break;
        default:
            h = f32_to_bf16(v);
            break;
    }
    std::memcpy(p, &h, 2);
}

static inline float* out_row(const Tensor& t, int64_t r) { return static_cast<float*>(t.data) + r * t.ne[0]; }
static inline const float* in_row(const Tensor& t, int64_t r) { return reinterpret_cast<const float*>(t.row(r)); }
static inline const int32_t* ids_of(const Tensor& t) { return static_cast<const int32_t*>(t.data); }

// f(x, y, K, r) for every row r of the first source (f32 rows of K) and of the f32 result, on
// the pool
template <class F>
static void each_row(Tensor& t, const CpuCtx& c, F f) {
    const Tensor& a = *t.src[0];
    const int64_t K = a.ne[0];
    c.pool->parallel_for(
        uint64_t(a.nrows()),
        [&](uint64_t b, uint64_t e, int) {
            for (uint64_t r = b; r < e; ++r) f(in_row(a, int64_t(r)), out_row(t, int64_t(r)), K, int64_t(r));
        },
        row_grain(K));
}

// ---- get_rows -------------------------------------------------------------------------------
static void cpu_get_rows(Tensor& t, const CpuCtx& c) {
    const Tensor& a = *t.src[0];
    const int32_t* ids = ids_of(*t.src[1]);
    const int64_t n = t.nrows(), K = a.ne[0];
    for (int64_t i = 0; i < n; ++i)
        LB_CHECK(ids[i] >= 0 && ids[i] < a.ne[1], "get_rows '%s': id %d at %lld is outside 0..%lld", t.name, ids[i],
                 (long long)i, (long long)a.ne[1] - 1);
    if (a.quantized()) {
        const WeightView w = a.weight_view();
        c.pool->parallel_for(uint64_t(n), [&](uint64_t b, uint64_t e, int) {
            for (uint64_t i = b; i < e; ++i) dequant_row_ref(w, a.qrow0 + uint64_t(ids[i]), out_row(t, int64_t(i)));
        });
        return;
    }
    c.pool->parallel_for(uint64_t(n), [&](uint64_t b, uint64_t e, int) {
        for (uint64_t i = b; i < e; ++i) {
            const uint8_t* src = static_cast<const uint8_t*>(a.data) + uint64_t(ids[i]) * a.nb[1];
            float* y = out_row(t, int64_t(i));
            if (a.type == Type::f32) {
                std::memcpy(y, src, uint64_t(K) * 4);
            } else {
                for (int64_t j = 0; j < K; ++j) y[j] = load_f(a.type, src + j * 2);
            }
        }
    });
}

// ---- norms ----------------------------------------------------------------------------------
static void cpu_rms_norm(Tensor& t, const CpuCtx& c) {
    const double eps = t.fp[0];
    each_row(t, c, [&](const float* x, float* y, int64_t K, int64_t) {
        double ss = 0;
        for (int64_t i = 0; i < K; ++i) ss += double(x[i]) * x[i];
        const float inv = float(1.0 / std::sqrt(ss / double(K) + eps));
        for (int64_t i = 0; i < K; ++i) y[i] = x[i] * inv;
    });
}

static void cpu_layer_norm(Tensor& t, const CpuCtx& c) {
    const double eps = t.fp[0];
    each_row(t, c, [&](const float* x, float* y, int64_t K, int64_t) {
        double s = 0;
        for (int64_t i = 0; i < K; ++i) s += x[i];
        const double mean = s / double(K);
        double v = 0;
        for (int64_t i = 0; i < K; ++i) v += (x[i] - mean) * (x[i] - mean);
        const double inv = 1.0 / std::sqrt(v / double(K) + eps);
        for (int64_t i = 0; i < K; ++i) y[i] = float((x[i] - mean) * inv);
    });
}

// ---- elementwise ----------------------------------------------------------------------------
// a (f32) op b (f32/f16/bf16, broadcast over dims 1..3 where b has 1)
template <bool MUL>
static void binary(Tensor& t, const CpuCtx& c) {
    const Tensor& a = *t.src[0];
    const Tensor& bt = *t.src[1];
    each_row(t, c, [&](const float* x, float* y, int64_t K, int64_t r) {
        const int64_t i1 = r % a.ne[1], i2 = (r / a.ne[1]) % a.ne[2], i3 = r / (a.ne[1] * a.ne[2]);
        const uint8_t* br = static_cast<const uint8_t*>(bt.data) + (i1 % bt.ne[1]) * bt.nb[1] +
                            (i2 % bt.ne[2]) * bt.nb[2] + (i3 % bt.ne[3]) * bt.nb[3];
        if (bt.type == Type::f32) {
            const float* z = reinterpret_cast<const float*>(br);
            for (int64_t i = 0; i < K; ++i) y[i] = MUL ? x[i] * z[i] : x[i] + z[i];
        } else {
            for (int64_t i = 0; i < K; ++i) {
                const float z = load_f(bt.type, br + 2 * i);
                y[i] = MUL ? x[i] * z : x[i] + z;
            }
        }
    });
}
static void cpu_add(Tensor& t, const CpuCtx& c) { binary<false>(t, c); }
static void cpu_mul(Tensor& t, const CpuCtx& c) { binary<true>(t, c); }

static void cpu_scale(Tensor& t, const CpuCtx& c) {
    const float sc = t.fp[0];
    each_row(t, c, [&](const float* x, float* y, int64_t K, int64_t) {
        for (int64_t i = 0; i < K; ++i) y[i] = x[i] * sc;
    });
}
// silu and swiglu: the kernel table's swiglu (a vectorized e^-x) on whole rows
static void silu_rows(Tensor& t, const CpuCtx& c, const Tensor* g) {
    const CpuKernels& kern = kernels_best();
    each_row(t, c, [&](const float* x, float* y, int64_t K, int64_t r) {
        kern.swiglu(x, g ? in_row(*g, r) : nullptr, y, uint64_t(K));
    });
}
static void cpu_silu(Tensor& t, const CpuCtx& c) { silu_rows(t, c, nullptr); }
static void cpu_swiglu(Tensor& t, const CpuCtx& c) { silu_rows(t, c, t.src[1]); }

// ---- mul_mat --------------------------------------------------------------------------------
// 2-D weights with all rows (quantized, or dense f32/f16/bf16) by contiguous activations go
// through the matmul driver (backends/cpu/matmul.h: the best ISA; int8 activations for quantized
// weights), as `lowbit bench kernels` measures it; batched and strided products (attention over
// the KV cache) through the float dots below.
static bool mm_uses_driver(const Tensor& t) {
    const Tensor& w = *t.src[0];
    return w.ne[2] == 1 && w.ne[3] == 1 && w.is_contiguous() && t.src[1]->is_contiguous();
}

static uint64_t work_mul_mat(const Tensor& t, int nth) {
    const Tensor& w = *t.src[0];
    if (mm_uses_driver(t)) {
        return matmul_scratch_bytes(w.weight_view(), uint64_t(t.src[1]->nrows()), nth);
    }
    return uint64_t(nth) * align64(4 * uint64_t(w.ne[0]));
}

static void cpu_mul_mat(Tensor& t, const CpuCtx& c) {
    const Tensor& w = *t.src[0];
    const Tensor& x = *t.src[1];
    const CpuKernels& kern = kernels_best();
    if (mm_uses_driver(t)) {
        matmul(w.weight_view(), kern, static_cast<const float*>(x.data), uint64_t(x.nrows()),
               static_cast<float*>(t.data), *c.pool, c.work);
        return;
    }
    // float path: one item = one weight row (n, a2, a3); it is dotted with every column that uses
    // it (M columns times the r2 x r3 broadcast). f16 rows (KV caches, f16 weights) go through
    // dot_f16_cols: a decode step's attention dots each key or value row with the r2 query heads
    // that share it in one call. Other rows are converted (or read, f32) once.
    const int64_t K = w.ne[0], N = w.ne[1], M = x.ne[1];
    const int64_t r2 = x.ne[2] / w.ne[2], r3 = x.ne[3] / w.ne[3];
    const uint64_t items = uint64_t(N * w.ne[2] * w.ne[3]);
    const bool f16 = w.type == Type::f16;
    const bool batch_inner = w.ne[2] > 1 && w.nb[2] < w.nb[1];
    const WeightView qv = w.quantized() ? w.weight_view() : WeightView{};
    const uint64_t grain = std::max<uint64_t>(1, 8192 / uint64_t(std::max<int64_t>(K * M * r2 * r3, 1)));
    // rows of contiguous elements are prefetched about 1 KiB of rows ahead in item order: a KV
    // cache comes from DRAM (a decode step streams all weights through the caches between two
    // reads of it) in rows of a few hundred bytes, too short for the hardware prefetchers, and a
    // V view's rows are n_ctx apart (decode, interleaved runs at the same bandwidth: SmolLM2
    // 69-71% -> 68-77% of the ceiling, TinyLLaMA-1.1B q2_g32 75-76% -> 77-79%)
    const uint64_t row_bytes = w.nb[0] == type_size(w.type) ? uint64_t(K) * w.nb[0] : 0;
    const uint64_t ahead = row_bytes ? std::max<uint64_t>(1, 1024 / row_bytes) * (batch_inner ? w.nb[2] : w.nb[1]) : 0;
    c.pool->parallel_for(
        items,
        [&](uint64_t b, uint64_t e, int th) {
            float* scratch = reinterpret_cast<float*>(c.work + uint64_t(th) * align64(4 * uint64_t(K)));
            // items in memory order of the rows: (n, a2, a3), or (a2, n, a3) where the batch rows
            // are the nearer ones (a K cache view: the heads of one position are adjacent);
            // an odometer over (inner, outer, a3) walks them without divisions
            int64_t n, a2, a3 = int64_t(b) / (N * w.ne[2]);
            int64_t& inner = batch_inner ? a2 : n;
            int64_t& outer = batch_inner ? n : a2;
            const int64_t ni = batch_inner ? w.ne[2] : N, no = batch_inner ? N : w.ne[2];
            inner = int64_t(b) % ni;
            outer = (int64_t(b) / ni) % no;
            for (uint64_t it = b; it < e; ++it) {
                const uint8_t* src = static_cast<const uint8_t*>(w.data) + n * w.nb[1] + a2 * w.nb[2] + a3 * w.nb[3];
                for (uint64_t i = 0; i < row_bytes; i += 64) __builtin_prefetch(src + ahead + i);
                const float* wr = scratch;
                if (w.quantized())
                    dequant_row_ref(qv, w.qrow0 + uint64_t(n), scratch);
                else if (w.type == Type::f32)
                    wr = reinterpret_cast<const float*>(src);
                else if (!f16)
                    for (int64_t i = 0; i < K; ++i) scratch[i] = load_f(w.type, src + i * w.nb[0]);
                for (int64_t b3 = a3 * r3; b3 < (a3 + 1) * r3; ++b3) {
                    const uint8_t* xb = static_cast<const uint8_t*>(x.data) + b3 * x.nb[3];
                    float* yb = static_cast<float*>(t.data) + n + N * M * x.ne[2] * b3;
                    if (f16 && M == 1) {  // the r2 heads of this row: columns nb[2] apart
                        kern.dot_f16_cols(reinterpret_cast<const uint16_t*>(src), uint64_t(K),
                                          reinterpret_cast<const float*>(xb + a2 * r2 * x.nb[2]), x.nb[2] / 4,
                                          uint64_t(r2), yb + N * a2 * r2, uint64_t(N));
                        continue;
                    }
                    for (int64_t b2 = a2 * r2; b2 < (a2 + 1) * r2; ++b2) {
                        const float* xr = reinterpret_cast<const float*>(xb + b2 * x.nb[2]);
                        float* y = yb + N * M * b2;
                        if (f16) {
                            kern.dot_f16_cols(reinterpret_cast<const uint16_t*>(src), uint64_t(K), xr, x.nb[1] / 4,
                                              uint64_t(M), y, uint64_t(N));
                            continue;
                        }
                        for (int64_t m = 0; m < M; ++m)
                            y[N * m] = kern.dot_f32(wr, xr + m * int64_t(x.nb[1] / 4), uint64_t(K));
                    }
                }
                if (++inner == ni) {  // the next item
                    inner = 0;
                    if (++outer == no) {
                        outer = 0;
                        ++a3;
                    }
                }
            }
        },
        grain);
}

// ---- rope -----------------------------------------------------------------------------------
static uint64_t work_rope(const Tensor& t, int nth) { return uint64_t(nth) * align64(4 * uint64_t(t.ip[0])); }

static void cpu_rope(Tensor& t, const CpuCtx& c) {
    const Tensor& a = *t.src[0];
    const int32_t* pos = ids_of(*t.src[1]);
    const int64_t D = a.ne[0], H = a.ne[1], T = a.ne[2], half = t.ip[0] / 2;
    const bool neox = t.ip[1] == rope_neox;
    const float theta = t.fp[0], fscale = t.fp[1];
    c.pool->parallel_for(uint64_t(T * a.ne[3]), [&](uint64_t b, uint64_t e, int th) {
        float* cs = reinterpret_cast<float*>(c.work + uint64_t(th) * align64(4 * uint64_t(t.ip[0])));
        float* sn = cs + half;
        for (uint64_t it = b; it < e; ++it) {
            const int64_t tt = int64_t(it) % T, bb = int64_t(it) / T;
            // the frequencies as HF computes them, in float: inv_freq_i = 1 / theta^(2i / n_dims)
            const float p = float(pos[tt]) * fscale;
            for (int64_t i = 0; i < half; ++i) {
                const float inv_freq = 1.0f / std::pow(theta, float(2 * i) / float(t.ip[0]));
                const float ang = p * inv_freq;
                cs[i] = std::cos(ang);
                sn[i] = std::sin(ang);
            }
            for (int64_t h = 0; h < H; ++h) {
                const uint8_t* xr = static_cast<const uint8_t*>(a.data) + h * a.nb[1] + tt * a.nb[2] + bb * a.nb[3];
                auto X = [&](int64_t i) {
                    float f;
                    std::memcpy(&f, xr + uint64_t(i) * a.nb[0], 4);
                    return f;
                };
                float* y = static_cast<float*>(t.data) + D * (h + H * int64_t(it));
                for (int64_t i = 0; i < half; ++i) {
                    const int64_t i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
                    const float x0 = X(i0), x1 = X(i1);
                    y[i0] = x0 * cs[i] - x1 * sn[i];
                    y[i1] = x1 * cs[i] + x0 * sn[i];
                }
                for (int64_t i = 2 * half; i < D; ++i) y[i] = X(i);
            }
        }
    });
}

// ---- softmax --------------------------------------------------------------------------------
static void cpu_softmax(Tensor& t, const CpuCtx& c) {
    const Tensor& a = *t.src[0];
    const int32_t* pos = t.src[1] ? ids_of(*t.src[1]) : nullptr;
    const float scale = t.fp[0];
    const CpuKernels& kern = kernels_best();
    each_row(t, c, [&](const float* x, float* y, int64_t K, int64_t r) {
        int64_t vis = K;  // keys 0..vis-1 are visible
        if (pos) vis = std::max<int64_t>(0, std::min<int64_t>(K, int64_t(pos[r % a.ne[1]]) + 1));
        float mx = -INFINITY;
        for (int64_t j = 0; j < vis; ++j) mx = std::max(mx, scale * x[j]);
        const float inv = vis ? 1.0f / kern.exp_sum(x, scale, mx, y, uint64_t(vis)) : 0.0f;
        for (int64_t j = 0; j < vis; ++j) y[j] *= inv;
        for (int64_t j = vis; j < K; ++j) y[j] = 0.0f;
    });
}

// ---- copies ---------------------------------------------------------------------------------
// Walks the rows of a tensor in order without a division per row.
struct RowCursor {
    const Tensor& t;
    int64_t i1, i2, i3;
    RowCursor(const Tensor& t_, int64_t r)
        : t(t_), i1(r % t_.ne[1]), i2((r / t_.ne[1]) % t_.ne[2]), i3(r / (t_.ne[1] * t_.ne[2])) {}
    uint8_t* ptr() const { return static_cast<uint8_t*>(t.data) + i1 * t.nb[1] + i2 * t.nb[2] + i3 * t.nb[3]; }
    void next() {
        if (++i1 < t.ne[1]) return;
        i1 = 0;
        if (++i2 < t.ne[2]) return;
        i2 = 0;
        ++i3;
    }
};

// dst element i (in row-major order of dst) = src element i (in row-major order of src),
// converted; the element counts are equal. Same type: raw element bytes (i32 stays exact).
static void copy_elements(const Tensor& s, const Tensor& d, ThreadPool& pool) {
    const uint64_t es = type_size(s.type);
    const bool same_shape = s.ne[0] == d.ne[0] && s.ne[1] == d.ne[1] && s.ne[2] == d.ne[2] && s.ne[3] == d.ne[3];
    const bool dense_rows = same_shape && s.type == d.type && s.nb[0] == es && d.nb[0] == es;
    const int64_t K = s.ne[0];
    auto copy_one = [&](uint8_t* dp, const uint8_t* sp) {
        if (s.type != d.type)
            store_f(d.type, dp, load_f(s.type, sp));
        else if (es == 4)
            std::memcpy(dp, sp, 4);
        else if (es == 2)
            std::memcpy(dp, sp, 2);
        else
            std::memcpy(dp, sp, es);
    };
    pool.parallel_for(
        uint64_t(s.nrows()),
        [&](uint64_t b, uint64_t e, int) {
            RowCursor sc(s, int64_t(b)), dc(d, int64_t(b));
            for (uint64_t r = b; r < e; ++r, sc.next()) {
                const uint8_t* sr = sc.ptr();
                if (same_shape) {  // element i of row r goes to element i of dst's row r
                    uint8_t* dr = dc.ptr();
                    dc.next();
                    if (dense_rows) {
                        std::memcpy(dr, sr, uint64_t(K) * es);
                        continue;
                    }
                    for (int64_t i = 0; i < K; ++i) copy_one(dr + uint64_t(i) * d.nb[0], sr + uint64_t(i) * s.nb[0]);
                    continue;
                }
                for (int64_t i = 0; i < K; ++i) {
                    int64_t f = int64_t(r) * K + i, off = 0;
                    for (int k = 0; k < kMaxDims; ++k) {
                        off += (f % d.ne[k]) * int64_t(d.nb[k]);
                        f /= d.ne[k];
                    }
                    copy_one(static_cast<uint8_t*>(d.data) + off, sr + uint64_t(i) * s.nb[0]);
                }
            }
        },
        row_grain(K));
}

static void cpu_cpy(Tensor& t, const CpuCtx& c) { copy_elements(*t.src[0], t, *c.pool); }
static void cpu_cont(Tensor& t, const CpuCtx& c) { copy_elements(*t.src[0], t, *c.pool); }

// ---- argmax ---------------------------------------------------------------------------------
static void cpu_argmax(Tensor& t, const CpuCtx& c) {
    const Tensor& a = *t.src[0];
    const int64_t K = a.ne[0];
    int32_t* out = static_cast<int32_t*>(t.data);
    c.pool->parallel_for(
        uint64_t(a.nrows()),
        [&](uint64_t b, uint64_t e, int) {
            for (uint64_t r = b; r < e; ++r) {
                const float* x = in_row(a, int64_t(r));
                int64_t best = 0;
                for (int64_t i = 1; i < K; ++i)
                    if (x[i] > x[best] || (std::isnan(x[best]) && !std::isnan(x[i]))) best = i;
                out[r] = int32_t(best);
            }
        },
        row_grain(K));
}

// ---- dispatch table, generated from LB_OPS ----------------------------------------------------
using CpuFn = void (*)(Tensor&, const CpuCtx&);
using WorkFn = uint64_t (*)(const Tensor&, int);
struct CpuOp {
    CpuFn run;
    WorkFn work;
};
#define LB_CPU_FN_leaf(name) nullptr
#define LB_CPU_FN_view(name) nullptr
#define LB_CPU_FN_compute(name) &cpu_##name
#define LB_WORK_FN_0(name) nullptr
#define LB_WORK_FN_1(name) &work_##name
static const CpuOp kCpuOps[] = {
#define LB_X(name, nsrc, kind, work) {LB_CPU_FN_##kind(name), LB_WORK_FN_##work(name)},
    LB_OPS(LB_X)
#undef LB_X
};
static_assert(sizeof kCpuOps / sizeof kCpuOps[0] == size_t(Op::count), "one CPU row per op");

bool cpu_groupable(const Tensor& t) {
    return t.op == Op::mul_mat && mm_uses_driver(t) &&
           matmul_groupable(t.src[0]->weight_view(), uint64_t(t.src[1]->nrows()));
}

uint64_t cpu_group_work_bytes(Tensor* const* nodes, size_t count, int n_threads) {
    LB_CHECK(count >= 1 && count <= kCpuGroupMax, "mul_mat group of %zu nodes (1..%zu)", count, kCpuGroupMax);
    WeightView ws[kCpuGroupMax];
    const WeightView* wp[kCpuGroupMax];
    for (size_t i = 0; i < count; ++i) {
        ws[i] = nodes[i]->src[0]->weight_view();
        wp[i] = &ws[i];
    }
    return matmul_group_scratch_bytes(wp, count, n_threads);
}

void cpu_compute_group(Tensor* const* nodes, size_t count, const CpuCtx& ctx) {
    if (count == 1) return cpu_compute(*nodes[0], ctx);
    LB_CHECK(count <= kCpuGroupMax, "mul_mat group of %zu nodes (1..%zu)", count, kCpuGroupMax);
    WeightView ws[kCpuGroupMax];
    const WeightView* wp[kCpuGroupMax];
    float* ys[kCpuGroupMax];
    for (size_t i = 0; i < count; ++i) {
        LB_CHECK(cpu_groupable(*nodes[i]) && nodes[i]->src[1] == nodes[0]->src[1],
                 "mul_mat group: node %zu ('%s') does not belong", i, nodes[i]->name);
        ws[i] = nodes[i]->src[0]->weight_view();
        wp[i] = &ws[i];
        ys[i] = static_cast<float*>(nodes[i]->data);
    }
    matmul_group(wp, ys, count, kernels_best(), static_cast<const float*>(nodes[0]->src[1]->data), *ctx.pool, ctx.work);
}

void cpu_compute(Tensor& t, const CpuCtx& ctx) {
    const CpuOp& op = kCpuOps[size_t(t.op)];
    if (op.run) op.run(t, ctx);
}

uint64_t cpu_work_bytes(const Tensor& t, int n_threads) {
    const CpuOp& op = kCpuOps[size_t(t.op)];
    return op.work ? op.work(t, n_threads) : 0;
}

}  // namespace lb
