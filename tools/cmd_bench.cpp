// cmd_bench.cpp: the `lowbit bench` benchmarks.
//   kernels: per block type GEMV (n = 1) and GEMM (n = 512) timings on real model shapes,
//            L3-resident (one matrix, reused) and DRAM-resident (rotating over copies whose total
//            exceeds 1 GiB), reported against the read bandwidth measured in the same run.
//   model:   whole-model prompt processing (pp: one batch of p tokens) and text generation (tg: n
//            tokens decoded one at a time from an empty context), tokens/s, for a .lbf file or a
//            synthetic model of a real geometry with random weights of one preset; tg is reported
//            against the decode ceiling = measured read bandwidth / bytes read per decoded token.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "backends/cpu/dispatch.h"
#include "backends/cpu/matmul.h"
#include "backends/cpu/tiled.h"
#include "core/buffer.h"
#include "core/error.h"
#include "core/random_weights.h"
#include "core/threadpool.h"
#include "models/llama.h"
#include "models/synthetic.h"
#include "tools/args.h"
#include "tools/backend_opt.h"
#include "tools/commands.h"

namespace lb {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

uint64_t l3_bytes() {
    std::ifstream f("/sys/devices/system/cpu/cpu0/cache/index3/size");
    std::string s;
    if (!(f >> s) || s.empty()) return 0;
    uint64_t v = std::stoull(s);
    if (s.back() == 'K') v <<= 10;
    if (s.back() == 'M') v <<= 20;
    return v;
}

// Core-to-core round trip in ns: two threads pass a cache line back and forth (median of 3 runs
// of 2048 trips); -1 where there are fewer than 2 hardware threads or a run takes over 50 ms (the
// two threads then share one core). A decode step hands each operation's result from thread to
// thread, hundreds of times per token, so its speed depends on this latency as well as on the
// read bandwidth. On the 2-core virtual machine this project is measured on, the two cores either
// share an L3 (round trip about 90 ns, read bandwidth about 50 GB/s) or sit on two dies (about
// 350 ns, and about 75 GB/s through the two dies' memory links); the host moves them.
double core_round_trip_ns() {
    if (std::thread::hardware_concurrency() < 2) return -1;
    constexpr uint32_t kTrips = 2048, kGiveUp = ~0u;
    alignas(64) std::atomic<uint32_t> line{0};
    std::vector<double> t;
    for (int run = 0; run < 3; ++run) {
        line.store(0);
        std::thread other([&] {
            uint32_t zero = 0;  // running (unless the caller gave up): trip i is 2i -> 2i+1
            if (!line.compare_exchange_strong(zero, 1, std::memory_order_acq_rel)) return;
            for (uint32_t i = 1; i <= kTrips; ++i) {
                uint32_t v;
                while ((v = line.load(std::memory_order_acquire)) != 2 * i && v != kGiveUp) {
                }
                if (v == kGiveUp) return;
                line.store(2 * i + 1, std::memory_order_release);
            }
        });
        const auto t_start = Clock::now();
        bool late = false;
        while (line.load(std::memory_order_acquire) != 1 && !(late = seconds_since(t_start) > 0.05)) {
        }
        const auto t0 = Clock::now();
        for (uint32_t i = 1; i <= kTrips && !late; ++i) {
            line.store(2 * i, std::memory_order_release);
            for (uint32_t spins = 0; line.load(std::memory_order_acquire) != 2 * i + 1;)
                if (++spins % 4096 == 0 && seconds_since(t0) > 0.05) {
                    late = true;
                    break;
                }
        }
        if (late) line.store(kGiveUp, std::memory_order_release);
        t.push_back(late ? -1 : seconds_since(t0) / kTrips * 1e9);
        other.join();
        if (late) return -1;
    }
    return median(t);
}

std::string round_trip_str(double ns) { return ns < 0 ? "n/a" : strfmt("%.0f", ns); }

// Read bandwidth of this machine with `pool`: sum a 1 GiB buffer, median of 5 passes. The buffer
// is allocated as the tiled weights are (2 MiB pages where allowed) and read with software
// prefetch 4 KiB ahead, as the kernels do, so that it is the best streaming read this machine
// gives them (without either it reads a few GB/s slower, and kernels could beat "100%").
// The read-bandwidth probe: 2 threads (the pool) reading a 1 GiB buffer, prefetching 4 KiB
// ahead, median of 5 passes. The buffer is filled once, so a probe can be repeated between
// measurements (the machine's bandwidth changes over minutes: bench model measures it again
// before each decode repetition).
class ReadProbe {
 public:
    explicit ReadProbe(ThreadPool& pool) : mem_(make_buffer(kWords * 8)) {
        uint64_t* buf = words();
        pool.parallel_for(kWords, [&](uint64_t b, uint64_t e, int) {
            for (uint64_t i = b; i < e; ++i) buf[i] = i * 0x9e3779b97f4a7c15ull;
        });
    }
    double measure(ThreadPool& pool) {  // GB/s
        const uint64_t* buf = words();
        std::vector<uint64_t> sinks(64, 0);
        std::vector<double> t;
        for (int rep = 0; rep < 5; ++rep) {
            const auto t0 = Clock::now();
            pool.parallel_for(kWords, [&](uint64_t b, uint64_t e, int th) {
                uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                uint64_t i = b;
                for (; i + 4 <= e; i += 4) {
                    if (i % 8 == 0) __builtin_prefetch(buf + i + 512);
                    a0 += buf[i];
                    a1 += buf[i + 1];
                    a2 += buf[i + 2];
                    a3 += buf[i + 3];
                }
                for (; i < e; ++i) a0 += buf[i];
                sinks[th % 64] += a0 ^ a1 ^ a2 ^ a3;
            });
            t.push_back(seconds_since(t0));
        }
        volatile uint64_t keep = sinks[0];
        (void)keep;
        return double(kWords * 8) / median(t) / 1e9;
    }

 private:
    static constexpr uint64_t kWords = (uint64_t(1) << 30) / 8;
    uint64_t* words() const { return reinterpret_cast<uint64_t*>(mem_.data.get()); }
    Buffer mem_;
};

struct Result {
    std::string type, where, layout;
    uint64_t k, n, ncols;
    double bpw, us, gbs, gws, frac;
    double bw;  // the read bandwidth frac is taken against
};

// one measurement: `bytes` of weights of an n x k matrix times ncols columns in `seconds`; the
// bandwidth fraction is given for GEMV only (GEMM is compute-bound)
Result make_result(const char* type, const std::string& where, uint64_t k, uint64_t n, uint64_t ncols, uint64_t bytes,
                   double seconds, double bw) {
    Result r{type,
             where,
             "rows",
             k,
             n,
             ncols,
             8.0 * double(bytes) / double(n * k),
             seconds * 1e6,
             double(bytes) / seconds / 1e9,
             double(n * k) * double(ncols) / seconds / 1e9,
             0,
             bw};
    r.frac = ncols == 1 ? r.gbs / bw : 0;
    return r;
}

// --json: `head` is the run's own fields ("\"isa\": ..."), then the results
void write_results_json(const std::string& path, const std::string& head, const std::vector<Result>& results) {
    FILE* f = std::fopen(path.c_str(), "w");
    LB_CHECK(f, "--json: cannot write '%s'", path.c_str());
    std::fprintf(f, "{\n  %s,\n  \"results\": [\n", head.c_str());
    for (size_t i = 0; i < results.size(); ++i) {
        const Result& r = results[i];
        std::fprintf(
            f,
            "    {\"type\": \"%s\", \"k\": %llu, \"n\": %llu, \"ncols\": %llu, \"where\": \"%s\", \"bpw\": %.4f, "
            "\"layout\": \"%s\", \"us\": %.3f, \"gbs\": %.3f, \"gweights_s\": %.3f, \"bw_fraction\": %.4f, "
            "\"read_bw_gbs\": %.3f}%s\n",
            r.type.c_str(), (unsigned long long)r.k, (unsigned long long)r.n, (unsigned long long)r.ncols,
            r.where.c_str(), r.bpw, r.layout.c_str(), r.us, r.gbs, r.gws, r.frac, r.bw,
            i + 1 < results.size() ? "," : "");
    }
    std::fprintf(f, "  ]\n}\n");
    std::fclose(f);
}

// runs matmuls on the pool with scratch kept between calls
struct Runner {
    ThreadPool& pool;
    const CpuKernels& kern;
    std::vector<uint8_t> scratch;

    void run(const WeightView& w, const float* x, uint64_t ncols, float* y) {
        const uint64_t need = matmul_scratch_bytes(w, ncols, pool.size());
        if (scratch.size() < need) scratch.resize(need);
        matmul(w, kern, x, ncols, y, pool, scratch.data());
    }
};

// the presets, and the float weight types (the classifier of most models is f16)
const Preset* find_bench_type(const std::string& name) {
    static const Preset plain[] = {{"f32", Type::f32, "32-bit float weights"},
                                   {"f16", Type::f16, "16-bit float weights"},
                                   {"bf16", Type::bf16, "bfloat16 weights"}};
    for (const Preset& p : plain)
        if (name == p.name) return &p;
    return find_preset(name);
}

struct Options {
    std::vector<std::string> types = {"q2_g8", "q2_g32", "q4_g32", "q4_g32_f16", "q4_g64_hqq", "q1_g8_a0", "b1_sign"};
    std::vector<std::pair<uint64_t, uint64_t>> shapes = {{4096, 4096}, {4096, 14336}, {14336, 4096}};
    int threads = 2;
    int reps = 0;  // 0: automatic (about 0.3 s per case)
    uint64_t gemm_n = 512;
    bool gemv = true, gemm = true, l3 = true, dram = true, cuda = false, rows = false;
    std::string json_path, isa;
};

void usage() {
    std::printf(
        "usage: lowbit bench kernels [options]\n"
        "  --types A,B,...    presets to run (default: q2_g8,q2_g32,q4_g32,q4_g32_f16,q4_g64_hqq,q1_g8_a0,b1_sign;\n"
        "                     'all' for every preset)\n"
        "  --shapes KxN,...   K inputs x N outputs (default 4096x4096,4096x14336,14336x4096)\n"
        "  --threads T        threads (default 2)\n"
        "  --reps R           timed repetitions per case (default: automatic, median reported)\n"
        "  --gemm-n N         activation rows of the GEMM case (default 512)\n"
        "  --no-gemv --no-gemm --no-l3 --no-dram   skip cases\n"
        "  --rows             use the file layout only (default: the runtime copies lowbit run makes:\n"
        "                     rg and sign tiled where the kernels have tiled kernels ('tiles16'), a0\n"
        "                     meta decoded to f16 ('meta f16': 5 bits read per 1-bit weight, not 3);\n"
        "                     bpw and the bandwidth fraction always count the file's bytes)\n"
        "  --isa NAME         kernel table (ref, avx2, avx512, neon; default: best available)\n"
        "  --backend B        cpu (default) or cuda: the CUDA kernels, against the measured device copy\n"
        "                     bandwidth (--threads, --isa, --no-l3 and --no-dram do not apply)\n"
        "  --json FILE        also write the results as JSON\n"
        "  --list             list the presets (block types) and exit\n");
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    size_t b = 0;
    while (b <= s.size()) {
        size_t e = s.find(sep, b);
        if (e == std::string::npos) e = s.size();
        if (e > b) out.push_back(s.substr(b, e - b));
        b = e + 1;
    }
    return out;
}

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto val = [&]() -> std::string {
            LB_CHECK(i + 1 < argc, "option %s needs a value", a.c_str());
            return argv[++i];
        };
        if (a == "--types") {
            const std::string v = val();
            o.types.clear();
            if (v == "all") {
                size_t np = 0;
                const Preset* p = all_presets(&np);
                for (size_t j = 0; j < np; ++j) o.types.push_back(p[j].name);
            } else {
                for (auto& t : split(v, ',')) {
                    LB_CHECK(find_bench_type(t), "--types: unknown type '%s' (see `lowbit bench kernels --list`)",
                             t.c_str());
                    o.types.push_back(t);
                }
            }
        } else if (a == "--shapes") {
            o.shapes.clear();
            for (auto& s : split(val(), ',')) {
                const auto kn = split(s, 'x');
                LB_CHECK(kn.size() == 2, "--shapes: '%s' is not KxN", s.c_str());
                o.shapes.push_back({uint64_t(parse_int(kn[0], "--shapes K", 1, 1 << 20)),
                                    uint64_t(parse_int(kn[1], "--shapes N", 1, 1 << 20))});
            }
        } else if (a == "--threads") {
            o.threads = int(parse_int(val(), "--threads", 1, 1024));
        } else if (a == "--reps") {
            o.reps = int(parse_int(val(), "--reps", 1, 100000));
        } else if (a == "--gemm-n") {
            o.gemm_n = uint64_t(parse_int(val(), "--gemm-n", 2, 8192));
        } else if (a == "--no-gemv") {
            o.gemv = false;
        } else if (a == "--no-gemm") {
            o.gemm = false;
        } else if (a == "--no-l3") {
            o.l3 = false;
        } else if (a == "--no-dram") {
            o.dram = false;
        } else if (a == "--rows") {
            o.rows = true;
        } else if (a == "--isa") {
            o.isa = val();
        } else if (a == "--backend") {
            o.cuda = parse_backend(val());
        } else if (a == "--json") {
            o.json_path = val();
        } else if (a == "--list") {
            size_t np = 0;
            const Preset* p = all_presets(&np);
            for (size_t j = 0; j < np; ++j) std::printf("%-14s %s\n", p[j].name, p[j].source);
            for (const char* t : {"f32", "f16", "bf16"}) std::printf("%-14s %s\n", t, find_bench_type(t)->source);
            std::exit(0);
        } else if (a == "--help" || a == "-h") {
            usage();
            std::exit(0);
        } else {
            throw Error(strfmt("unknown option '%s' (see --help)", a.c_str()));
        }
    }
    LB_CHECK(o.gemv || o.gemm, "nothing to run: both --no-gemv and --no-gemm given");
    LB_CHECK(o.l3 || o.dram, "nothing to run: both --no-l3 and --no-dram given");
    return o;
}

// every (preset, shape) of the options whose parameters exist: fn(preset, k, n, params); the others
// get a "skipped" row
template <class Fn>
void for_each_case(const Options& o, Fn&& fn) {
    for (const auto& tname : o.types) {
        const Preset& pr = *find_bench_type(tname);
        for (auto [k, n] : o.shapes) {
            QParams p;
            try {
                if (traits(pr.type).kind == Kind::quant) p = preset_params(pr, n, k);
            } catch (const Error& e) {
                std::printf("| %s | %llux%llu | - | skipped: %s |\n", pr.name, (unsigned long long)k,
                            (unsigned long long)n, e.what());
                continue;
            }
            fn(pr, k, n, p);
        }
    }
}

#if defined(LB_HAVE_CUDA)
// `bench kernels --backend cuda`: GEMV (one column) and GEMM (--gemm-n columns) per preset and
// shape on device 0, through the backend's mul_mat entry; GB/s of weight bytes against the
// device-to-device copy bandwidth
int bench_kernels_cuda(const Options& o) {
    std::string why;
    LB_CHECK(cuda::device_count(&why) > 0, "--backend cuda: no CUDA device: %s", why.c_str());
    const double bw = cuda::measure_copy_bandwidth(0, uint64_t(1) << 30, 20);
    std::printf("# lowbit bench kernels (cuda)\n\n%s, measured copy bandwidth %.1f GB/s (1 GiB device-to-device)\n\n",
                cuda::device_description(0).c_str(), bw);
    std::printf(
        "| type | K x N | n | bpw | us/op | GB/s | G weights/s | of copy bw |\n|---|---|---|---|---|---|---|---|\n");
    std::fflush(stdout);
    std::vector<Result> results;
    for_each_case(o, [&](const Preset& pr, uint64_t k, uint64_t n, const QParams& p) {
        const std::vector<uint8_t> blob = random_weight(pr.type, p, n, k, 42, pr.int_zeros);
        for (int kind = 0; kind < 2; ++kind) {
            if ((kind == 0 && !o.gemv) || (kind == 1 && !o.gemm)) continue;
            const uint64_t ncols = kind == 0 ? 1 : o.gemm_n;
            const double ms = cuda::time_matmul(0, pr.type, p, n, k, blob.data(), ncols, o.reps ? o.reps : 50);
            const Result res = make_result(pr.name, "device", k, n, ncols, blob.size(), ms * 1e-3, bw);
            results.push_back(res);
            std::printf("| %s | %llux%llu | %llu | %.3f | %.1f | %.1f | %.1f | %s |\n", res.type.c_str(),
                        (unsigned long long)k, (unsigned long long)n, (unsigned long long)ncols, res.bpw, res.us,
                        res.gbs, res.gws, kind == 0 ? strfmt("%.0f%%", 100 * res.frac).c_str() : "-");
            std::fflush(stdout);
        }
    });
    if (!o.json_path.empty())
        write_results_json(o.json_path, strfmt("\"backend\": \"cuda\", \"copy_bw_gbs\": %.3f", bw), results);
    return 0;
}
#endif

int bench_kernels(int argc, char** argv) {
    const Options o = parse(argc, argv);
#if defined(LB_HAVE_CUDA)
    if (o.cuda) return bench_kernels_cuda(o);
#endif
    const CpuKernels& kern = o.isa.empty() ? kernels_best() : kernels_by_name(o.isa.c_str());
    ThreadPool pool(o.threads);
    ReadProbe probe(pool);  // measured at the start, and again before each DRAM GEMV case
    const double bw = probe.measure(pool);
    const uint64_t l3 = l3_bytes();
    std::printf(
        "# lowbit bench kernels\n\nisa %s, %d threads, measured read bandwidth %.1f GB/s (1 GiB buffer), L3 %.0f "
        "MiB, core-to-core round trip %s ns\n\n",
        kern.isa, o.threads, bw, double(l3) / (1 << 20), round_trip_str(core_round_trip_ns()).c_str());
    std::printf("| type | K x N | n | where | layout | bpw | us/op | GB/s | G weights/s | of read bw |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
    std::fflush(stdout);
    std::vector<Result> results;
    Runner runner{pool, kern, {}};
    for_each_case(o, [&](const Preset& pr, uint64_t k, uint64_t n, const QParams& p) {
        const std::vector<uint8_t> base = random_weight(pr.type, p, n, k, 42, pr.int_zeros);
        const uint64_t bytes = base.size();
        Rng rng{7};
        const uint64_t maxcols = std::max<uint64_t>(1, o.gemm ? o.gemm_n : 1);
        std::vector<float> x(maxcols * k), y(maxcols * n);
        for (auto& v : x) v = rng.normal();
        for (int where = 0; where < 2; ++where) {
            if ((where == 0 && !o.l3) || (where == 1 && !o.dram)) continue;
            // DRAM case: copies whose total exceeds 1 GiB, visited round-robin
            const uint64_t copies = where == 0 ? 1 : ((uint64_t(1) << 30) + bytes - 1) / bytes + 1;
            // runtime copies (backends/cpu/tiled.h), as lowbit run makes them. Tiled rg and sign
            // weights: copies of the tiles, all over the one row-layout blob (which the kernels
            // read for the tables and the untiled rows only); a0: a blob (its codes) and a
            // decoded meta copy per copy
            const WeightView base_view = make_view(pr.type, p, n, k, base.data());
            const bool copy = !o.rows && runtime_copy_used(base_view, kern);
            const bool tiled = copy && pr.type != Type::a0;
            std::vector<std::vector<uint8_t>> blobs(tiled ? 0 : copies);
            for (auto& b : blobs) b = base;
            std::vector<TiledWeight> tiles;
            std::vector<WeightView> views;
            if (copy) {
                tiles.push_back(make_tiled(base_view));
                for (uint64_t c = 1; c < copies; ++c) {
                    tiles.push_back(make_buffer(tiles[0].nbytes));
                    std::memcpy(tiles.back().data.get(), tiles[0].data.get(), tiles[0].nbytes);
                }
            }
            for (uint64_t c = 0; c < copies; ++c) {
                views.push_back(tiled ? base_view : make_view(pr.type, p, n, k, blobs[c].data()));
                if (copy) views.back().tiles = tiles[c].data.get();
            }
            for (int kind = 0; kind < 2; ++kind) {
                if ((kind == 0 && !o.gemv) || (kind == 1 && !o.gemm)) continue;
                if (kind == 1 && where == 1) continue;  // GEMM is compute-bound: DRAM case adds nothing
                const uint64_t ncols = kind == 0 ? 1 : o.gemm_n;
                uint64_t idx = 0;
                runner.run(views[idx], x.data(), ncols, y.data());  // warm-up
                // repetitions: fixed, or enough for about 0.3 s
                int reps = o.reps;
                if (!reps) {
                    const auto t0 = Clock::now();
                    runner.run(views[(++idx) % copies], x.data(), ncols, y.data());
                    reps = int(std::clamp(0.3 / std::max(seconds_since(t0), 1e-7), 3.0, 2000.0));
                }
                // a DRAM GEMV is taken against the bandwidth measured just before it: a shared
                // machine's moves within minutes
                const double case_bw = where == 1 && kind == 0 ? probe.measure(pool) : bw;
                std::vector<double> t(reps);
                for (int r = 0; r < reps; ++r) {
                    const WeightView& w = views[(++idx) % copies];
                    const auto t0 = Clock::now();
                    runner.run(w, x.data(), ncols, y.data());
                    t[r] = seconds_since(t0);
                }
                const double s = median(t);
                Result res = make_result(pr.name, where == 0 ? "L3" : "DRAM", k, n, ncols, bytes, s, case_bw);
                if (copy) res.layout = !tiled ? "meta f16" : matmul_uses_tiles(views[0], kern) ? "tiles16" : "rows";
                results.push_back(res);
                std::printf(
                    "| %s | %llux%llu | %llu | %s%s | %s | %.3f | %.1f | %.1f | %.1f | %s |\n", res.type.c_str(),
                    (unsigned long long)k, (unsigned long long)n, (unsigned long long)ncols, res.where.c_str(),
                    where == 0 && l3 && bytes > l3 ? " (exceeds L3)" : "", res.layout.c_str(), res.bpw, res.us, res.gbs,
                    res.gws,
                    kind == 0 ? strfmt(where == 1 ? "%.0f%% of %.1f" : "%.0f%%", 100 * res.frac, res.bw).c_str() : "-");
                std::fflush(stdout);
            }
        }
    });
    if (!o.json_path.empty())
        write_results_json(o.json_path,
                           strfmt("\"isa\": \"%s\", \"threads\": %d, \"read_bw_gbs\": %.3f, \"l3_bytes\": %llu",
                                  kern.isa, o.threads, bw, (unsigned long long)l3),
                           results);
    return 0;
}

// ---- bench model ------------------------------------------------------------------------------
struct ModelOptions {
    std::string model_path, synthetic, preset, output_type = "f16", json_path;
    uint64_t pp = 512, tg = 128;
    int threads = 2;
    int reps = 3;
    double bw = 0;  // 0: measure
    bool cuda = false;
};

void model_usage() {
    std::printf(
        "usage: lowbit bench model (-m MODEL.lbf | --synthetic NAME --type PRESET) [options]\n"
        "  -m, --model FILE     a .lbf model\n"
        "  --synthetic NAME     a model of a real geometry with random weights: %s\n"
        "  --type PRESET        block type of the 7 projections of a synthetic model (`bench kernels --list`);\n"
        "                       token_embd and the norms are f32\n"
        "  --output-type T      output.weight of a synthetic model: f16 (default), f32 or preset (the same preset)\n"
        "  -p N                 prompt processing: one batch of N tokens (default 512; 0 skips pp)\n"
        "  -n N                 text generation: N tokens decoded one at a time from an empty context\n"
        "                       (default 128; 0 skips tg)\n"
        "  -t, --threads T      threads (default 2)\n"
        "  --reps R             repetitions of each test, median reported (default 3)\n"
        "  --bw GBS             read bandwidth in GB/s to report against, instead of measuring it (measured:\n"
        "                       at the start, and again before each tg repetition, whose fraction of the\n"
        "                       ceiling is taken against the bandwidth measured just before it)\n"
        "  --backend B          cpu (default) or cuda (the model's tensors uploaded to CUDA device 0; the\n"
        "                       ceiling is then the device copy bandwidth)\n"
        "  --json FILE          also write the results as JSON\n",
        synthetic_geometry_names().c_str());
}

ModelOptions parse_model(int argc, char** argv) {
    ModelOptions o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto val = [&]() -> std::string {
            LB_CHECK(i + 1 < argc, "option %s needs a value", a.c_str());
            return argv[++i];
        };
        if (a == "-m" || a == "--model") {
            o.model_path = val();
        } else if (a == "--synthetic") {
            o.synthetic = val();
            LB_CHECK(find_synthetic_geometry(o.synthetic), "--synthetic: unknown geometry '%s' (available: %s)",
                     o.synthetic.c_str(), synthetic_geometry_names().c_str());
        } else if (a == "--type") {
            o.preset = val();
            LB_CHECK(find_preset(o.preset), "--type: unknown preset '%s' (see `lowbit bench kernels --list`)",
                     o.preset.c_str());
        } else if (a == "--output-type") {
            o.output_type = val();
            LB_CHECK(o.output_type == "f16" || o.output_type == "f32" || o.output_type == "preset",
                     "--output-type: '%s', supported f16, f32, preset", o.output_type.c_str());
        } else if (a == "-p") {
            o.pp = uint64_t(parse_int(val(), "-p", 0, 16384));
        } else if (a == "-n") {
            o.tg = uint64_t(parse_int(val(), "-n", 0, 16384));
        } else if (a == "-t" || a == "--threads") {
            o.threads = int(parse_int(val(), a.c_str(), 1, 1024));
        } else if (a == "--reps") {
            o.reps = int(parse_int(val(), "--reps", 1, 1000));
        } else if (a == "--bw") {
            const std::string v = val();
            char* end = nullptr;
            o.bw = std::strtod(v.c_str(), &end);
            LB_CHECK(!v.empty() && *end == 0 && o.bw > 0 && o.bw < 1e6, "--bw: '%s' is not a bandwidth in GB/s",
                     v.c_str());
        } else if (a == "--json") {
            o.json_path = val();
        } else if (a == "--backend") {
            o.cuda = parse_backend(val());
        } else if (a == "--help" || a == "-h") {
            model_usage();
            std::exit(0);
        } else {
            throw Error(strfmt("unknown option '%s' (see --help)", a.c_str()));
        }
    }
    LB_CHECK(o.model_path.empty() != o.synthetic.empty(), "give either -m MODEL.lbf or --synthetic NAME (see --help)");
    LB_CHECK(o.synthetic.empty() || !o.preset.empty(), "--synthetic %s needs --type PRESET", o.synthetic.c_str());
    LB_CHECK(!o.synthetic.empty() || o.preset.empty(), "--type applies to --synthetic models only");
    LB_CHECK(o.pp > 0 || o.tg > 0, "nothing to run: -p 0 and -n 0");
    return o;
}

struct ModelBytes {
    uint64_t weights = 0;    // every weight tensor of the model, once
    uint64_t per_token = 0;  // weights read per decoded token: all but token_embd, of which one row
};

ModelBytes model_bytes(const LlamaModel& m) {
    ModelBytes b;
    const uint64_t emb = m.tok_embd.nbytes();
    b.weights = emb + m.output_norm.nbytes() + (m.hp.tied_output ? 0 : m.output.w.nbytes());
    for (const LlamaLayer& L : m.layers) {
        b.weights += L.attn_norm.nbytes() + L.ffn_norm.nbytes();
        for (const LlamaLinear* l : {&L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_gate, &L.ffn_up, &L.ffn_down})
            b.weights += l->w.nbytes();
    }
    // the classifier reads the whole output matrix (token_embd itself when tied); get_rows one row
    b.per_token = b.weights - emb + emb / uint64_t(m.hp.n_vocab) + (m.hp.tied_output ? emb : 0);
    return b;
}

// KV cache bytes read and written per decoded token, averaged over positions 0..n-1: the decoder
// (models/llama.h) attends the smallest span 32, 64, ..., n_ctx holding pos + 1, and reads K and V
// over the whole span; it writes one K row and one V column per layer.
double kv_bytes_per_token(const KvCache& c, uint64_t n) {
    const double row = double(c.kv_dim) * double(type_size(c.type)) * double(c.n_layer);  // all layers
    double sum = 0;
    for (uint64_t pos = 0; pos < n; ++pos) {
        int64_t span = std::min<int64_t>(32, c.n_ctx);
        while (span <= int64_t(pos) && span < c.n_ctx) span = std::min(2 * span, c.n_ctx);
        sum += 2 * row * double(span) + 2 * row;
    }
    return n ? sum / double(n) : 0;
}

int bench_model(int argc, char** argv) {
    const ModelOptions o = parse_model(argc, argv);
    ThreadPool pool(o.threads);
    double bw = o.bw;
#if defined(LB_HAVE_CUDA)
    if (o.cuda && bw <= 0) {
        std::string why;
        LB_CHECK(cuda::device_count(&why) > 0, "--backend cuda: no CUDA device: %s", why.c_str());
        bw = cuda::measure_copy_bandwidth(0, uint64_t(1) << 30, 20);
    }
#endif
    std::unique_ptr<ReadProbe> probe;  // CPU, no --bw: measured at the start and before each tg repetition
    double trip = -1;                  // with the probe: core_round_trip_ns()
    if (bw <= 0) {
        probe = std::make_unique<ReadProbe>(pool);
        bw = probe->measure(pool);
        trip = core_round_trip_ns();
    }
    std::unique_ptr<LlamaModel> m;
    std::string name, desc;
    const auto t_load = Clock::now();
    if (!o.synthetic.empty()) {
        const SyntheticGeometry& g = *find_synthetic_geometry(o.synthetic);
        SyntheticOptions so;
        so.preset = o.preset;
        so.output_type = o.output_type;
        so.threads = o.threads;
        m = LlamaModel::from_checkpoint(synthetic_llama(g.hp, so));
        name = strfmt("%s %s", g.name, o.preset.c_str());
        desc = strfmt("synthetic %s (%s), random %s projections, token_embd and norms f32, output.weight %s", g.name,
                      g.note, o.preset.c_str(), o.output_type == "preset" ? o.preset.c_str() : o.output_type.c_str());
    } else {
        m = LlamaModel::load_lbf(o.model_path);
        name = o.model_path;
        const size_t slash = name.find_last_of('/');
        if (slash != std::string::npos) name = name.substr(slash + 1);
        auto ty = [](const Tensor& t) { return describe(t.type, t.qp); };
        desc = strfmt("%s: token_embd %s; blk.0.attn_q %s; blk.0.ffn_down %s; output %s", o.model_path.c_str(),
                      ty(m->tok_embd).c_str(), ty(m->layers[0].wq.w).c_str(), ty(m->layers[0].ffn_down.w).c_str(),
                      m->hp.tied_output ? "tied to token_embd" : ty(m->output.w).c_str());
    }
    const CliBackend be = make_cli_backend(o.cuda, *m);
    const double load_s = seconds_since(t_load);
    const LlamaHParams& hp = m->hp;
    const ModelBytes mb = model_bytes(*m);
    KvCache cache(hp, int64_t(std::max<uint64_t>({o.pp, o.tg, 1})));
    const double kv_tok = kv_bytes_per_token(cache, o.tg);
    const double bytes_tok = double(mb.per_token) + kv_tok;
    const double ceiling = bw * 1e9 / bytes_tok;
    const uint64_t l3 = l3_bytes();
    Rng rng{11};
    std::vector<int32_t> toks(std::max<uint64_t>(o.pp, o.tg));
    for (auto& t : toks) t = int32_t(rng.next() % uint64_t(hp.n_vocab));

    std::printf("# lowbit bench model\n\n%s\nbackend %s\n", desc.c_str(), be.description.c_str());
    std::printf(
        "n_embd %lld, n_ff %lld, %lld layers, %lld/%lld heads, vocab %lld; %d threads; ready in %.1f s\n"
        "weights %.1f MiB; read per decoded token %.1f MiB (weights %.1f + KV cache %.2f, f16, averaged over "
        "tg)\n"
        "measured read bandwidth %.1f GB/s%s, L3 %.0f MiB%s -> decode ceiling %.1f tokens/s%s\n\n",
        (long long)hp.n_embd, (long long)hp.n_ff, (long long)hp.n_layer, (long long)hp.n_head, (long long)hp.n_head_kv,
        (long long)hp.n_vocab, o.threads, load_s, double(mb.weights) / (1 << 20), bytes_tok / (1 << 20),
        double(mb.per_token) / (1 << 20), kv_tok / (1 << 20), bw,
        o.bw > 0 ? " (given)"
        : probe  ? " (1 GiB buffer; again before each tg repetition)"
                 : " (device copy)",
        double(l3) / (1 << 20),
        l3 && bytes_tok < double(l3) ? " (the model fits in L3: tg can exceed the DRAM ceiling)" : "", ceiling,
        probe
            ? strfmt("\ncore-to-core round trip %s ns (again before each tg repetition)", round_trip_str(trip).c_str())
                  .c_str()
            : "");
    std::printf("| model | test | tokens/s (median) | min..max | ms/token | of ceiling |\n|---|---|---|---|---|---|\n");
    std::fflush(stdout);

    struct Row {
        std::string test;
        double tps, frac, lo, hi;  // tokens/s: median, of the ceiling, slowest and fastest rep
    };
    std::vector<Row> rows;
    // rep_bw: tg only, the bandwidth measured before each repetition (empty: `bw` for all); the
    // fraction is the median of the repetitions' own fractions
    auto add_row = [&](const std::string& test, uint64_t ntok, std::vector<double> t, bool tg,
                       const std::vector<double>& rep_bw) {
        std::vector<double> fr;
        for (size_t r = 0; r < t.size(); ++r)
            fr.push_back(double(ntok) / t[r] * bytes_tok / ((rep_bw.empty() ? bw : rep_bw[r]) * 1e9));
        std::sort(t.begin(), t.end());
        const double s = median(t), tps = double(ntok) / s, frac = tg ? median(fr) : 0;
        rows.push_back({test, tps, frac, double(ntok) / t.back(), double(ntok) / t.front()});
        std::printf("| %s | %s | %.2f | %.2f..%.2f | %.2f | %s |\n", name.c_str(), test.c_str(), tps, rows.back().lo,
                    rows.back().hi, 1e3 * s / double(ntok), tg ? strfmt("%.0f%%", 100 * frac).c_str() : "-");
        std::fflush(stdout);
    };
    // warm-up: two decode steps touch every weight (mmap'd pages in, caches warm)
    {
        LlamaDecoder dec(*m, cache, o.threads, be.get());
        dec.eval(toks[0], 0, pool);
        if (cache.n_ctx > 1) dec.eval(toks[1 % toks.size()], 1, pool);
    }
    if (o.pp > 0) {
        LlamaGraphOptions go;
        go.n_tokens = int64_t(o.pp);
        go.n_kv = int64_t(o.pp);
        go.all_logits = false;
        go.max_threads = o.threads;
        go.backend = be.get();
        LlamaGraph g(*m, cache, go);
        std::vector<double> t;
        for (int r = 0; r < o.reps; ++r) {
            const auto t0 = Clock::now();
            g.eval(toks.data(), 0, pool);
            t.push_back(seconds_since(t0));
        }
        add_row(strfmt("pp%llu", (unsigned long long)o.pp), o.pp, t, false, {});
    }
    std::vector<double> rep_bw, rep_trip;
    if (o.tg > 0) {
        LlamaDecoder dec(*m, cache, o.threads, be.get());
        std::vector<double> t;
        for (int r = 0; r < o.reps; ++r) {
            cache.clear();
            if (probe) {
                rep_bw.push_back(probe->measure(pool));
                rep_trip.push_back(core_round_trip_ns());
            }
            const auto t0 = Clock::now();
            for (uint64_t i = 0; i < o.tg; ++i) dec.eval(toks[i], int64_t(i), pool);
            t.push_back(seconds_since(t0));
        }
        add_row(strfmt("tg%llu", (unsigned long long)o.tg), o.tg, t, true, rep_bw);
        if (!rep_bw.empty()) {
            std::string list, trips;
            for (double b : rep_bw) list += strfmt("%s%.1f", list.empty() ? "" : ", ", b);
            for (double r : rep_trip) trips += strfmt("%s%s", trips.empty() ? "" : ", ", round_trip_str(r).c_str());
            std::printf("\nread bandwidth before each tg repetition: %s GB/s (core-to-core round trip %s ns)\n",
                        list.c_str(), trips.c_str());
        }
    }
    if (!o.json_path.empty()) {
        FILE* f = std::fopen(o.json_path.c_str(), "w");
        LB_CHECK(f, "--json: cannot write '%s'", o.json_path.c_str());
        std::string esc;
        for (char c : name) {
            if (c == '"' || c == '\\') esc += '\\';
            if (uint8_t(c) >= 0x20) esc += c;
        }
        std::fprintf(f,
                     "{\n  \"model\": \"%s\", \"threads\": %d, \"reps\": %d, \"weight_bytes\": %llu,\n"
                     "  \"bytes_per_token\": %.0f, \"kv_bytes_per_token\": %.0f, \"read_bw_gbs\": %.3f, "
                     "\"decode_ceiling_tps\": %.3f,\n  \"read_bw_gbs_per_tg_rep\": [",
                     esc.c_str(), o.threads, o.reps, (unsigned long long)mb.weights, bytes_tok, kv_tok, bw, ceiling);
        for (size_t i = 0; i < rep_bw.size(); ++i) std::fprintf(f, "%s%.3f", i ? ", " : "", rep_bw[i]);
        std::fprintf(f, "],\n  \"core_round_trip_ns_per_tg_rep\": [");  // -1: not measurable
        for (size_t i = 0; i < rep_trip.size(); ++i) std::fprintf(f, "%s%.1f", i ? ", " : "", rep_trip[i]);
        std::fprintf(f, "],\n  \"results\": [\n");
        for (size_t i = 0; i < rows.size(); ++i)
            std::fprintf(f,
                         "    {\"test\": \"%s\", \"tokens_per_s\": %.4f, \"tokens_per_s_min\": %.4f, "
                         "\"tokens_per_s_max\": %.4f, \"ceiling_fraction\": %.4f}%s\n",
                         rows[i].test.c_str(), rows[i].tps, rows[i].lo, rows[i].hi, rows[i].frac,
                         i + 1 < rows.size() ? "," : "");
        std::fprintf(f, "  ]\n}\n");
        std::fclose(f);
    }
    return 0;
}

}  // namespace

int cmd_bench(int argc, char** argv) {
    if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
        std::printf(
            "usage: lowbit bench kernels [options]   (per block type GEMV/GEMM)\n"
            "       lowbit bench model [options]     (whole-model pp/tg tokens/s)\n"
            "`lowbit bench kernels --help`, `lowbit bench model --help` list the options\n");
        return argc < 2 ? 2 : 0;
    }
    if (!std::strcmp(argv[1], "kernels")) return bench_kernels(argc - 1, argv + 1);
    if (!std::strcmp(argv[1], "model")) return bench_model(argc - 1, argv + 1);
    std::fprintf(stderr, "lowbit bench: unknown benchmark '%s' (available: kernels, model)\n", argv[1]);
    return 2;
}

}  // namespace lb
