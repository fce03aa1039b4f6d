// matmul.cpp: the CPU matmul driver (see matmul.h). Layout math per type:
//   rg:   y = sum_i q[i] xq[i] xd[i/32] s[i/g] + sum_g m[g] * xsum[g]
//   a0:   per row class r: xs = s[r] * x (quantized), bias = sum_k m[r][k] x[k];
//         y[row] = sum_k q[row][k] * xs[k] + bias for the `group` rows of the class; the meta
//         (s, z) as f16 from the decoded copy of backends/cpu/tiled.h or decoded per class
//   sign: xg = g * x (quantized); y[row] = h[row] * (sum xg - 2 * sum_{bit=1} xg)
//   a0 with 1-bit codes: no quantization, y[row] = sum of xs over the set bits + bias (a0_bits1)
//   f32/f16/bf16: float dot products
#include "backends/cpu/matmul.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "backends/cpu/tiled.h"
#include "backends/cpu/unaligned.h"
#include "core/error.h"
#include "core/half.h"
#include "core/threadpool.h"

namespace lb {

static uint64_t align64(uint64_t x) { return (x + 63) & ~uint64_t(63); }

// GEMM tiling: rows whose meta (or f32 conversion) is kept, and activation columns per pass
// (32 columns of q8 activations at K = 4096 are 132 KiB: L2-resident)
constexpr uint64_t kRowTile = 8, kColTile = 32, kSignRowTile = 64;

// Requests [p, p + n) into the cache ahead of its use: with two threads the hardware prefetchers
// alone left DRAM-resident weights at about half the read bandwidth (rows and tiles alike).
static void prefetch_bytes(const uint8_t* p, uint64_t n) {
    for (uint64_t i = 0; i < n; i += 64) __builtin_prefetch(p + i);
}

// activation sums kept per column: rg: one per group; sign: one, the sum of the whole row
static uint64_t ngroups(const WeightView& w) { return w.type == Type::rg ? w.k / w.p.group : w.type == Type::sign; }

// A GEMV of an rg or sign weight quantizes its one column in each thread's scratch (below)
static bool private_act(const WeightView& w, uint64_t ncols) {
    return ncols == 1 && (w.type == Type::rg || w.type == Type::sign);
}

uint64_t Matmul::shared_bytes(const WeightView& w, uint64_t ncols) {
    if (traits(w.type).kind != Kind::quant || w.type == Type::a0 || private_act(w, ncols)) return 0;
    return ncols * align64(act_row_bytes(w.k)) + ncols * align64(4 * ngroups(w));
}

// Quantized activations: per column an activation row (act_row layout) and its sums (see
// ngroups). In the shared buffer: all rows, then all sums. A GEMV of an rg or sign weight keeps
// them in each thread's scratch instead: every thread quantizes the one column itself, the first
// time it runs a range of the call, so the call needs no pass over the pool before the rows.
struct ActRows {
    uint8_t* act;
    float* sums;
    uint64_t act_stride, sums_stride;  // bytes, floats
    uint8_t* row(uint64_t j) const { return act + j * act_stride; }
    float* sum(uint64_t j) const { return sums + j * sums_stride; }
};

// thread scratch of a private activation: a tag (the call that quantized it), the row, the sums
static uint64_t private_bytes(const WeightView& w) {
    return w.type == Type::rg || w.type == Type::sign ? 64 + align64(act_row_bytes(w.k)) + align64(4 * ngroups(w)) : 0;
}

static ActRows shared_rows(const Matmul& mm) {
    const uint64_t ab = align64(act_row_bytes(mm.w->k));
    return ActRows{mm.shared, reinterpret_cast<float*>(mm.shared + mm.ncols * ab), ab, align64(4 * ngroups(*mm.w)) / 4};
}

// rg and sign weights with a tiled copy: the kernel table runs tiles of 16 rows
// (backends/cpu/tiled.h), GEMV and GEMM; the rows after the last whole tile go through the row
// kernels. (The GEMM of groups of 8 or 16 inputs ran the row kernels while the tiles decoded
// their meta for every column; decoded once per tile, 4096x14336 x 512 columns, AVX-512 / AVX2:
// q2_g8 265-273 -> 126-133 / 492 -> 195 ms, q2_g16 245-256 -> 80-81 / 449 -> 164 ms.)
bool matmul_uses_tiles(const WeightView& w, const CpuKernels& kern) {
    return w.tiles && kern.tiles && (w.type == Type::sign || w.type == Type::rg);
}

uint64_t Matmul::thread_bytes(const WeightView& w) {
    const uint64_t kp = act_kp(w.k);
    switch (w.type) {
        case Type::rg:
            return private_bytes(w) + std::max(2 * kRowTile * 4 * (kp / 8), w.tiles ? 4 * tiled_scratch_floats(w) : 0);
        case Type::a0:  // s, m, xs, f16 s and z, the quantized xs or (1-bit) a class's interleaved codes
            return 2 * align64(4 * w.k) + align64(4 * kp) + 2 * align64(2 * w.k) +
                   align64(std::max(act_row_bytes(w.k), w.p.group * w.lay.code_row_bytes));
        case Type::sign:
            return private_bytes(w);
        default:
            return kRowTile * 4 * w.k;
    }
}

uint64_t Matmul::units() const {
    if (matmul_uses_tiles(*w, *kern)) return w->n / kTileRows + (w->n % kTileRows ? 1 : 0);  // the last: the rest
    return w->type == Type::a0 ? w->n / w->p.group : w->n;
}

void Matmul::prepare(uint64_t part, uint64_t nparts) const {
    if (traits(w->type).kind != Kind::quant || w->type == Type::a0) return;
    const ActRows av = shared_rows(*this);
    for (uint64_t j = part; j < ncols; j += nparts) quantize_column(j, av.row(j), av.sum(j));
}

void Matmul::quantize_column(uint64_t j, uint8_t* act, float* sums) const {
    const uint64_t k = w->k;
    const float* xj = x + j * k;
    QActRow a = act_row(act, k);
    if (w->type == Type::sign) {
        // xg = g * x, quantized; the g vector is f32 in the weight blob
        const float* g = reinterpret_cast<const float*>(w->data + w->lay.off_gvec);
        float tmp[256];
        // quantize block-wise through a small stack buffer: no allocation on the hot path
        for (uint64_t b = 0; b < k; b += 256) {
            const uint64_t len = k - b < 256 ? k - b : 256;
            for (uint64_t i = 0; i < len; ++i) tmp[i] = g[b + i] * xj[b + i];
            QActRow sub{a.q + b, a.d + b / 32, a.s8 + b / 8};
            kern->quantize_act(tmp, len, sub);
        }
        float total = 0;
        for (uint64_t u = 0; u < act_kp(k) / 8; ++u) total += a.s8[u];
        sums[0] = total;
        return;
    }
    kern->quantize_act(xj, k, a);
    // group sums of the quantized activations: sums[g] = sum of s8 over the group's units
    const uint64_t G = ngroups(*w), upg = w->p.group / 8;
    for (uint64_t gi = 0; gi < G; ++gi) {
        float s = 0;
        for (uint64_t u = gi * upg; u < (gi + 1) * upg; ++u) s += a.s8[u];
        sums[gi] = s;
    }
}

void Matmul::run(uint64_t ub, uint64_t ue, uint8_t* ts) const {
    const uint64_t k = w->k, n = w->n, kp = act_kp(k);
    const QParams& p = w->p;
    ActRows av = shared_rows(*this);
    if (private_act(*w, ncols)) {
        uint64_t* tag = reinterpret_cast<uint64_t*>(ts);
        av = ActRows{ts + 64, reinterpret_cast<float*>(ts + 64 + align64(act_row_bytes(k))), 0, 0};
        if (*tag != call_id) {
            quantize_column(0, av.act, av.sums);
            *tag = call_id;
        }
        ts += private_bytes(*w);
    }
    if (matmul_uses_tiles(*w, *kern)) {
        const uint64_t ntiles = n / kTileRows;
        const TiledArgs args{w, ncols, av.act, av.act_stride, av.sums, av.sums_stride, y};
        if (ub < ntiles) kern->tiles(args, ub, std::min(ue, ntiles), reinterpret_cast<float*>(ts));
        if (ue <= ntiles) return;
        ub = ntiles * kTileRows;  // the untiled rows, through the row kernels below
        ue = n;
    }
    switch (w->type) {
        case Type::rg: {
            // GEMM: tiles of kRowTile rows x kColTile columns, so that the tile's activations stay
            // in L2 and each row's meta is decoded once; GEMV: the same with one column
            const uint64_t G = ngroups(*w), sg = kp / 8;  // scale slots per row (>= ceil(kp / g))
            float* s = reinterpret_cast<float*>(ts);
            float* m = s + kRowTile * sg;
            auto dot = kern->dot[p.bits];
            for (uint64_t o0 = ub; o0 < ue; o0 += kRowTile) {
                const uint64_t o1 = std::min(ue, o0 + kRowTile);
                for (uint64_t o = o0; o < o1; ++o) {
                    float* so = s + (o - o0) * sg;
                    kern->decode_meta(*w, o, so, m + (o - o0) * sg);
                    // the dot kernel reads group scales up to kp: zero those past the real groups
                    for (uint64_t gi = G; gi < (kp + p.group - 1) / p.group; ++gi) so[gi] = 0;
                }
                for (uint64_t j0 = 0; j0 < ncols; j0 += kColTile) {
                    const uint64_t j1 = std::min(ncols, j0 + kColTile);
                    for (uint64_t o = o0; o < o1; ++o) {
                        const float* so = s + (o - o0) * sg;
                        const float* mo = m + (o - o0) * sg;
                        for (uint64_t j = j0; j < j1; ++j) {
                            QActRow a = act_row(av.row(j), k);
                            y[j * n + o] =
                                dot(w->codes(o), w->lay.kp, a.q, a.d, so, p.group) + kern->dot_f32(mo, av.sum(j), G);
                        }
                    }
                }
            }
            break;
        }
        case Type::a0: {
            // per class r: the decoded meta (the copy of tiled.h, or decoded here the same way),
            // then 1-bit codes: a0_bits1, the class's rows together in float; wider codes: the
            // scaled activation xs = s x, quantized, shared by the class's rows, plus the bias
            const uint64_t R = n / p.group;
            const bool code_zero = p.zmode == ZeroMode::code;
            float* s = reinterpret_cast<float*>(ts);
            float* m = reinterpret_cast<float*>(ts + align64(4 * k));
            float* xs = reinterpret_cast<float*>(ts + 2 * align64(4 * k));
            uint16_t* s16b = reinterpret_cast<uint16_t*>(ts + 2 * align64(4 * k) + align64(4 * kp));
            uint16_t* z16b = reinterpret_cast<uint16_t*>(ts + 2 * align64(4 * k) + align64(4 * kp) + align64(2 * k));
            uint8_t* act = ts + 2 * align64(4 * k) + align64(4 * kp) + 2 * align64(2 * k);
            auto dot = kern->dot[p.bits];
            const TiledLayout lay = w->tiles ? tiled_layout(*w) : TiledLayout{};
            for (uint64_t r = ub; r < ue; ++r) {
                const uint16_t *s16 = s16b, *z16 = z16b;
                const uint8_t* next = nullptr;
                // 1-bit: unit-interleaved; wider: row t of the class at codes + t * cstride
                const uint8_t* codes = w->codes(r);
                uint64_t cstride = R * w->lay.code_row_bytes;
                if (w->tiles) {
                    s16 = a0_scales(w->tiles, lay, r);
                    z16 = a0_zeros(w->tiles, lay, r);
                    codes = a0_codes(w->tiles, lay, r);
                    cstride = w->lay.code_row_bytes;
                    if (r + 1 < ue)  // the next class: a sequential stream, prefetched step by step
                        next = reinterpret_cast<const uint8_t*>(s16) + lay.tile_bytes;
                } else {
                    decode_a0_class(*w, *kern, r, s, m, s16b, z16b);
                    if (p.bits == 1) {
                        a0_interleave_bits1(*w, r, act);
                        codes = act;
                    }
                }
                // wider codes: the next class spread over this one's group + 2 steps (all of it at
                // the start of the class: 4096x14336 GEMV from DRAM, q2_g16_a0 1.35-1.42 -> 0.84-0.85
                // ms, q4_g64_a0 0.96 -> 0.53 ms)
                SlicePrefetch pf(p.bits == 1 ? nullptr : next, lay.tile_bytes, p.group + 2);
                for (uint64_t j = 0; j < ncols; ++j) {
                    const float* xj = x + j * k;
                    if (p.bits == 1) {
                        kern->a0_bits1(s16, z16, code_zero, xj, k, codes, p.group, y + j * n + r, R,
                                       j == 0 ? next : nullptr, lay.tile_bytes);
                        continue;
                    }
                    if (j == 0) pf.step();
                    const float bias = kern->a0_scale(s16, z16, code_zero, xj, k, xs);
                    QActRow a = act_row(act, k);
                    a.s8 = nullptr;  // (no zero terms: 4096x14336 q2_g16_a0 L3 0.76-0.79 -> 0.65-0.66 ms)
                    if (j == 0) pf.step();
                    kern->quantize_act(xs, k, a);
                    for (uint64_t t = 0; t < p.group; ++t) {
                        if (j == 0) pf.step();
                        y[j * n + r + t * R] = dot(codes + t * cstride, w->lay.kp, a.q, a.d, nullptr, 0) + bias;
                    }
                }
            }
            break;
        }
        case Type::sign: {
            const float* h = reinterpret_cast<const float*>(w->data + w->lay.off_hvec);
            // int8 activations: the 1-bit VNNI/maddubs dot reads 4x fewer activation bytes than
            // a float masked sum (measured 0.42 vs 0.76 ms on 4096x14336)
            auto dot = kern->dot[1];
            for (uint64_t o0 = ub; o0 < ue; o0 += kSignRowTile) {  // a tile of code rows stays in L1
                const uint64_t o1 = std::min(ue, o0 + kSignRowTile);
                for (uint64_t j = 0; j < ncols; ++j) {
                    QActRow a = act_row(av.row(j), k);
                    const float total = av.sum(j)[0];
                    for (uint64_t o = o0; o < o1; ++o) {
                        if (j == 0 && o + 8 < ue) prefetch_bytes(w->codes(o + 8), w->lay.code_row_bytes);
                        y[j * n + o] = h[o] * (total - 2.0f * dot(w->codes(o), w->lay.kp, a.q, a.d, nullptr, 0));
                    }
                }
            }
            break;
        }
        default: {
            if ((w->type == Type::f16 || w->type == Type::bf16) && ncols == 1) {  // GEMV: no converted copy
                // (bf16 4096x14336 from DRAM: a converted row per dot 3.7-4.6 ms, 35-67% of the
                // read bandwidth; dot_bf16 1.7-2.4 ms, 93-108%)
                auto dot = w->type == Type::f16 ? kern->dot_f16 : kern->dot_bf16;
                for (uint64_t o = ub; o < ue; ++o)
                    y[o] = dot(reinterpret_cast<const uint16_t*>(w->data + o * 2 * k), x, k);
                break;
            }
            // float weights: convert kRowTile rows to f32 once, then dot them with every column
            // (GEMV: one row at a time, so that the converted row is still in L1 for its dot)
            float* rows = reinterpret_cast<float*>(ts);
            const uint64_t rt = ncols == 1 ? 1 : kRowTile;
            for (uint64_t o0 = ub; o0 < ue; o0 += rt) {
                const uint64_t o1 = std::min(ue, o0 + rt);
                const float* wr[kRowTile];
                for (uint64_t o = o0; o < o1; ++o) {
                    const uint64_t esize = w->type == Type::f32 ? 4 : 2;
                    if (o + 4 < ue) prefetch_bytes(w->data + (o + 4) * esize * k, esize * k);
                    if (w->type == Type::f32) {
                        wr[o - o0] = reinterpret_cast<const float*>(w->data + o * 4 * k);
                        continue;
                    }
                    float* row = rows + (o - o0) * k;
                    const uint16_t* src = reinterpret_cast<const uint16_t*>(w->data + o * 2 * k);
                    if (w->type == Type::f16)
                        kern->cvt_f16(src, row, k);
                    else
                        for (uint64_t i = 0; i < k; ++i) row[i] = bf16_to_f32(src[i]);
                    wr[o - o0] = row;
                }
                for (uint64_t j0 = 0; j0 < ncols; j0 += kColTile) {
                    const uint64_t j1 = std::min(ncols, j0 + kColTile);
                    for (uint64_t o = o0; o < o1; ++o)
                        for (uint64_t j = j0; j < j1; ++j) y[j * n + o] = kern->dot_f32(wr[o - o0], x + j * k, k);
                }
            }
            break;
        }
    }
}

// A GEMV gives each thread one range (the pool's default is two per thread): every range start
// is a cold start of the weight stream, and a decode step's threads arrive together. In-process
// A/B, alternating per call or per token (2 threads, both core placements of the machine):
// 2048x2560 .. 2048x11264 GEMV 2-8% faster (4096x14336 equal), TinyLLaMA-1.1B decode 1.5%.
static uint64_t gemv_grain(uint64_t units, const ThreadPool& pool) {
    return (units + uint64_t(pool.size()) - 1) / uint64_t(pool.size());
}

// unique per call of matmul() or matmul_group(), never 0
static uint64_t next_call_id() {
    static std::atomic<uint64_t> calls{0};
    return calls.fetch_add(1, std::memory_order_relaxed) + 1;
}

uint64_t matmul_scratch_bytes(const WeightView& w, uint64_t ncols, int nthreads) {
    return 64 + align64(Matmul::shared_bytes(w, ncols)) + uint64_t(nthreads) * align64(Matmul::thread_bytes(w));
}

bool is_weight_type(Type t) {
    const Kind k = traits(t).kind;
    return k == Kind::quant || k == Kind::plain;
}

void matmul(const WeightView& w, const CpuKernels& kern, const float* x, uint64_t ncols, float* y, ThreadPool& pool,
            uint8_t* scratch) {
    LB_CHECK(is_weight_type(w.type), "matmul: %s is not a weight type", type_name(w.type));
    if (private_act(w, ncols)) {  // a GEMV that quantizes its column per thread: a group of one
        const WeightView* wp = &w;
        return matmul_group(&wp, &y, 1, kern, x, pool, scratch);
    }
    uint8_t* base = reinterpret_cast<uint8_t*>(align64(reinterpret_cast<uintptr_t>(scratch)));
    const uint64_t tb = align64(Matmul::thread_bytes(w));
    uint8_t* per_thread = base + align64(Matmul::shared_bytes(w, ncols));
    Matmul mm;
    mm.w = &w;
    mm.kern = &kern;
    mm.x = x;
    mm.ncols = ncols;
    mm.y = y;
    mm.shared = base;
    const uint64_t nt = uint64_t(pool.size());
    if (mm.shared_bytes(w, ncols)) {
        pool.parallel_for(nt, [&](uint64_t b, uint64_t e, int) {
            for (uint64_t part = b; part < e; ++part) mm.prepare(part, nt);
        });
    }
    pool.parallel_for(
        mm.units(), [&](uint64_t b, uint64_t e, int th) { mm.run(b, e, per_thread + uint64_t(th) * tb); },
        ncols == 1 ? gemv_grain(mm.units(), pool) : 1);
}

bool matmul_groupable(const WeightView& w, uint64_t ncols) { return private_act(w, ncols); }

// Members that quantize the column the same way share a thread scratch region (and so the
// quantized column, tagged with the group's call id).
static bool same_activation(const WeightView& a, const WeightView& b) {
    return a.type == Type::rg && b.type == Type::rg && a.k == b.k && a.p.group == b.p.group;
}

// Thread scratch layout of a group: off[i] = member i's region offset; returns the bytes per thread.
static uint64_t group_layout(const WeightView* const* ws, size_t count, uint64_t* off) {
    uint64_t end = 0, start = 0;
    for (size_t i = 0; i < count; ++i) {
        if (i > 0 && !same_activation(*ws[i - 1], *ws[i])) start = end;  // a new region
        off[i] = start;
        end = std::max(end, start + align64(Matmul::thread_bytes(*ws[i])));
    }
    return end;
}

static constexpr size_t kMaxGroup = 8;

uint64_t matmul_group_scratch_bytes(const WeightView* const* ws, size_t count, int nthreads) {
    LB_CHECK(count >= 1 && count <= kMaxGroup, "matmul_group: %zu weights (1..%zu)", count, kMaxGroup);
    uint64_t off[kMaxGroup];
    return 64 + uint64_t(nthreads) * group_layout(ws, count, off);
}

void matmul_group(const WeightView* const* ws, float* const* ys, size_t count, const CpuKernels& kern, const float* x,
                  ThreadPool& pool, uint8_t* scratch) {
    LB_CHECK(count >= 1 && count <= kMaxGroup, "matmul_group: %zu weights (1..%zu)", count, kMaxGroup);
    for (size_t i = 0; i < count; ++i)
        LB_CHECK(matmul_groupable(*ws[i], 1) && ws[i]->k == ws[0]->k,
                 "matmul_group: weight %zu is not an rg or sign weight of k = %llu", i, (unsigned long long)ws[0]->k);
    uint64_t off[kMaxGroup];
    const uint64_t tb = group_layout(ws, count, off);
    uint8_t* base = reinterpret_cast<uint8_t*>(align64(reinterpret_cast<uintptr_t>(scratch)));
    const uint64_t id = next_call_id();
    Matmul mm[kMaxGroup];
    uint64_t first[kMaxGroup + 1];  // member i has units [first[i], first[i + 1]) of the job
    first[0] = 0;
    for (size_t i = 0; i < count; ++i) {
        mm[i].w = ws[i];
        mm[i].kern = &kern;
        mm[i].x = x;
        mm[i].ncols = 1;
        mm[i].y = ys[i];
        mm[i].call_id = id;
        first[i + 1] = first[i] + mm[i].units();
    }
    // no thread has quantized this call's column yet (the scratch may hold anything)
    for (uint64_t th = 0; th < uint64_t(pool.size()); ++th)
        for (size_t i = 0; i < count; ++i) *reinterpret_cast<uint64_t*>(base + th * tb + off[i]) = 0;
    pool.parallel_for(
        first[count],
        [&](uint64_t b, uint64_t e, int th) {
            for (size_t i = 0; i < count && b < e; ++i) {
                if (b >= first[i + 1]) continue;
                const uint64_t u1 = std::min(e, first[i + 1]);
                mm[i].run(b - first[i], u1 - first[i], base + uint64_t(th) * tb + off[i]);
                b = u1;
            }
        },
        gemv_grain(first[count], pool));
}

void matmul_simple(const WeightView& w, const CpuKernels& kern, const float* x, uint64_t ncols, float* y) {
    ThreadPool pool(1);
    std::vector<uint8_t> scratch(matmul_scratch_bytes(w, ncols, 1));
    matmul(w, kern, x, ncols, y, pool, scratch.data());
}

}  // namespace lb
