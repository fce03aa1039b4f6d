// cmd_bench.cpp: `lowbit bench kernels`: per block type GEMV (n = 1) and GEMM (n = 512) timings on
// real model shapes, L3-resident (one matrix, reused) and DRAM-resident (rotating over copies
// whose total exceeds 1 GiB), reported against the read bandwidth measured in the same run.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "backends/cpu/dispatch.h"
#include "backends/cpu/matmul.h"
#include "core/error.h"
#include "core/random_weights.h"
#include "core/threadpool.h"
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

// Read bandwidth of this machine with `pool`: sum a 1 GiB buffer, median of 5 passes.
double measure_read_bw(ThreadPool& pool) {
    const uint64_t words = (uint64_t(1) << 30) / 8;
    std::vector<uint64_t> buf(words);
    pool.parallel_for(words, [&](uint64_t b, uint64_t e, int) {
        for (uint64_t i = b; i < e; ++i) buf[i] = i * 0x9e3779b97f4a7c15ull;
    });
    std::vector<uint64_t> sinks(64, 0);
    std::vector<double> t;
    for (int rep = 0; rep < 5; ++rep) {
        const auto t0 = Clock::now();
        pool.parallel_for(words, [&](uint64_t b, uint64_t e, int th) {
            uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            uint64_t i = b;
            for (; i + 4 <= e; i += 4) {
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
    return double(words * 8) / median(t) / 1e9;
}

struct Result {
    std::string type, where;
    uint64_t k, n, ncols;
    double bpw, us, gbs, gws, frac;
};

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

struct Options {
    std::vector<std::string> types = {"q2_g8", "q2_g32", "q4_g32", "q4_g32_f16", "q4_g64_hqq", "q1_g8_a0", "b1_sign"};
    std::vector<std::pair<uint64_t, uint64_t>> shapes = {{4096, 4096}, {4096, 14336}, {14336, 4096}};
    int threads = 2;
    int reps = 0;  // 0: automatic (about 0.3 s per case)
    uint64_t gemm_n = 512;
    bool gemv = true, gemm = true, l3 = true, dram = true;
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
        "  --isa NAME         kernel table (ref, avx2, avx512, neon; default: best available)\n"
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

uint64_t parse_u64(const std::string& s, const char* what, uint64_t lo, uint64_t hi) {
    char* end = nullptr;
    errno = 0;
    const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
    LB_CHECK(!s.empty() && *end == 0 && errno == 0 && v >= lo && v <= hi && s[0] != '-',
             "%s: '%s' is not an integer in %llu..%llu", what, s.c_str(), (unsigned long long)lo,
             (unsigned long long)hi);
    return v;
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
                    LB_CHECK(find_preset(t), "--types: unknown type '%s' (see `lowbit bench kernels --list`)",
                             t.c_str());
                    o.types.push_back(t);
                }
            }
        } else if (a == "--shapes") {
            o.shapes.clear();
            for (auto& s : split(val(), ',')) {
                const auto kn = split(s, 'x');
                LB_CHECK(kn.size() == 2, "--shapes: '%s' is not KxN", s.c_str());
                o.shapes.push_back(
                    {parse_u64(kn[0], "--shapes K", 1, 1 << 20), parse_u64(kn[1], "--shapes N", 1, 1 << 20)});
            }
        } else if (a == "--threads") {
            o.threads = int(parse_u64(val(), "--threads", 1, 1024));
        } else if (a == "--reps") {
            o.reps = int(parse_u64(val(), "--reps", 1, 100000));
        } else if (a == "--gemm-n") {
            o.gemm_n = parse_u64(val(), "--gemm-n", 2, 8192);
        } else if (a == "--no-gemv") {
            o.gemv = false;
        } else if (a == "--no-gemm") {
            o.gemm = false;
        } else if (a == "--no-l3") {
            o.l3 = false;
        } else if (a == "--no-dram") {
            o.dram = false;
        } else if (a == "--isa") {
            o.isa = val();
        } else if (a == "--json") {
            o.json_path = val();
        } else if (a == "--list") {
            size_t np = 0;
            const Preset* p = all_presets(&np);
            for (size_t j = 0; j < np; ++j) std::printf("%-14s %s\n", p[j].name, p[j].source);
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

int bench_kernels(int argc, char** argv) {
    const Options o = parse(argc, argv);
    const CpuKernels& kern = o.isa.empty() ? kernels_best() : kernels_by_name(o.isa.c_str());
    ThreadPool pool(o.threads);
    const double bw = measure_read_bw(pool);
    const uint64_t l3 = l3_bytes();
    std::printf(
        "# lowbit bench kernels\n\nisa %s, %d threads, measured read bandwidth %.1f GB/s (1 GiB buffer), L3 %.0f "
        "MiB\n\n",
        kern.isa, o.threads, bw, double(l3) / (1 << 20));
    std::printf("| type | K x N | n | where | bpw | us/op | GB/s | G weights/s | of read bw |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|\n");
    std::fflush(stdout);
    std::vector<Result> results;
    Runner runner{pool, kern, {}};
    for (const auto& tname : o.types) {
        const Preset& pr = *find_preset(tname);
        for (auto [k, n] : o.shapes) {
            QParams p;
            try {
                p = preset_params(pr, n, k);
            } catch (const Error& e) {
                std::printf("| %s | %llux%llu | - | skipped: %s |\n", pr.name, (unsigned long long)k,
                            (unsigned long long)n, e.what());
                continue;
            }
            const std::vector<uint8_t> base = random_weight(pr.type, p, n, k, 42);
            const uint64_t bytes = base.size();
            Rng rng{7};
            const uint64_t maxcols = std::max<uint64_t>(1, o.gemm ? o.gemm_n : 1);
            std::vector<float> x(maxcols * k), y(maxcols * n);
            for (auto& v : x) v = rng.normal();
            for (int where = 0; where < 2; ++where) {
                if ((where == 0 && !o.l3) || (where == 1 && !o.dram)) continue;
                // DRAM case: copies whose total exceeds 1 GiB, visited round-robin
                const uint64_t copies = where == 0 ? 1 : ((uint64_t(1) << 30) + bytes - 1) / bytes + 1;
                std::vector<std::vector<uint8_t>> blobs(copies);
                for (auto& b : blobs) b = base;
                std::vector<WeightView> views;
                for (auto& b : blobs) views.push_back(make_view(pr.type, p, n, k, b.data()));
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
                    std::vector<double> t(reps);
                    for (int r = 0; r < reps; ++r) {
                        const WeightView& w = views[(++idx) % copies];
                        const auto t0 = Clock::now();
                        runner.run(w, x.data(), ncols, y.data());
                        t[r] = seconds_since(t0);
                    }
                    const double s = median(t);
                    Result res{pr.name,
                               where == 0 ? "L3" : "DRAM",
                               k,
                               n,
                               ncols,
                               8.0 * double(bytes) / double(n * k),
                               s * 1e6,
                               double(bytes) / s / 1e9,
                               double(n * k) * double(ncols) / s / 1e9,
                               0};
                    res.frac = kind == 0 ? res.gbs / bw : 0;
                    results.push_back(res);
                    std::printf("| %s | %llux%llu | %llu | %s%s | %.3f | %.1f | %.1f | %.1f | %s |\n", res.type.c_str(),
                                (unsigned long long)k, (unsigned long long)n, (unsigned long long)ncols,
                                res.where.c_str(), where == 0 && l3 && bytes > l3 ? " (exceeds L3)" : "", res.bpw,
                                res.us, res.gbs, res.gws, kind == 0 ? strfmt("%.0f%%", 100 * res.frac).c_str() : "-");
                    std::fflush(stdout);
                }
            }
        }
    }
    if (!o.json_path.empty()) {
        FILE* f = std::fopen(o.json_path.c_str(), "w");
        LB_CHECK(f, "--json: cannot write '%s'", o.json_path.c_str());
        std::fprintf(
            f, "{\n  \"isa\": \"%s\", \"threads\": %d, \"read_bw_gbs\": %.3f, \"l3_bytes\": %llu,\n  \"results\": [\n",
            kern.isa, o.threads, bw, (unsigned long long)l3);
        for (size_t i = 0; i < results.size(); ++i) {
            const Result& r = results[i];
            std::fprintf(
                f,
                "    {\"type\": \"%s\", \"k\": %llu, \"n\": %llu, \"ncols\": %llu, \"where\": \"%s\", \"bpw\": %.4f, "
                "\"us\": %.3f, \"gbs\": %.3f, \"gweights_s\": %.3f, \"bw_fraction\": %.4f}%s\n",
                r.type.c_str(), (unsigned long long)r.k, (unsigned long long)r.n, (unsigned long long)r.ncols,
                r.where.c_str(), r.bpw, r.us, r.gbs, r.gws, r.frac, i + 1 < results.size() ? "," : "");
        }
        std::fprintf(f, "  ]\n}\n");
        std::fclose(f);
    }
    return 0;
}

}  // namespace

int cmd_bench(int argc, char** argv) {
    if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
        std::printf("usage: lowbit bench kernels [options]   (per block type GEMV/GEMM; --help for options)\n");
        return argc < 2 ? 2 : 0;
    }
    if (!std::strcmp(argv[1], "kernels")) return bench_kernels(argc - 1, argv + 1);
    std::fprintf(stderr, "lowbit bench: unknown benchmark '%s' (available: kernels)\n", argv[1]);
    return 2;
}

}  // namespace lb
