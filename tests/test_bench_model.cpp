// test_bench_model.cpp: the synthetic model builder (models/synthetic.h) makes valid models whose
// graph runs, for several presets, and `lowbit bench model` runs on one and refuses bad options
// with a clear error. No timing is asserted.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/error.h"
#include "models/llama.h"
#include "models/synthetic.h"
#include "tools/commands.h"

using namespace lb;

// runs `lowbit bench ARGS...` in-process (as main.cpp does, minus its catch)
static int bench(std::vector<std::string> args) {
    args.insert(args.begin(), "bench");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    return cmd_bench(int(args.size()), argv.data());
}

static std::string temp_path(const char* tag) {
    return (std::filesystem::temp_directory_path() / ("lb_test_bench_model_" + std::to_string(::getpid()) + "_" + tag))
        .string();
}

TEST_CASE("synthetic geometries: known names, valid hyper-parameters") {
    size_t n = 0;
    const SyntheticGeometry* g = synthetic_geometries(&n);
    REQUIRE(n >= 3);
    for (size_t i = 0; i < n; ++i) CHECK_NOTHROW(g[i].hp.validate());
    const SyntheticGeometry* tl = find_synthetic_geometry("tinyllama-1.1b");
    REQUIRE(tl);
    CHECK(tl->hp.n_embd == 2048);
    CHECK(tl->hp.n_ff == 5632);
    CHECK(tl->hp.n_layer == 22);
    CHECK(tl->hp.n_head == 32);
    CHECK(tl->hp.n_head_kv == 4);
    CHECK(tl->hp.n_vocab == 32000);
    const SyntheticGeometry* l7 = find_synthetic_geometry("llama2-7b");
    REQUIRE(l7);
    CHECK(l7->hp.n_embd == 4096);
    CHECK(l7->hp.n_ff == 11008);
    CHECK(l7->hp.n_layer == 32);
    CHECK(l7->hp.n_head_kv == 32);
    CHECK(find_synthetic_geometry("test-tiny"));
    CHECK(find_synthetic_geometry("gpt-5") == nullptr);
}

TEST_CASE("synthetic model: every projection of the preset, the graph runs, batch == decode") {
    const LlamaHParams hp = find_synthetic_geometry("test-tiny")->hp;
    for (const char* preset : {"q2_g8", "q2_g32", "q4_g32", "b1_sign", "q1_g8_a0"}) {
        CAPTURE(preset);
        for (const char* out : {"f16", "preset"}) {
            CAPTURE(out);
            SyntheticOptions so;
            so.preset = preset;
            so.output_type = out;
            so.threads = 2;
            LlamaCheckpoint ck = synthetic_llama(hp, so);
            CHECK(ck.tensors.size() == size_t(3 + 9 * hp.n_layer));
            const Type pt = find_preset(preset)->type;
            for (const auto& t : ck.tensors) {
                const bool proj = t.name.rfind("blk.", 0) == 0 && t.name.find("norm") == std::string::npos;
                if (proj) CHECK_MESSAGE(t.type == pt, t.name);
                if (t.name == "output.weight") CHECK(t.type == (std::string(out) == "f16" ? Type::f16 : pt));
                if (t.name == "token_embd.weight" || t.name.find("norm") != std::string::npos)
                    CHECK(t.type == Type::f32);
            }
            // same seed, same bytes: deterministic
            LlamaCheckpoint again = synthetic_llama(hp, so);
            CHECK(again.tensors[5].data == ck.tensors[5].data);

            auto m = LlamaModel::from_checkpoint(std::move(ck));
            CHECK(m->layers[1].ffn_down.w.type == pt);
            ThreadPool pool(2);
            KvCache cb(hp, 16), cd(hp, 16);
            const std::vector<int32_t> toks = {1, 200, 7, 99, 255, 0};
            LlamaGraphOptions go;
            go.n_tokens = int64_t(toks.size());
            go.max_threads = 2;
            LlamaGraph g(*m, cb, go);
            const float* lb = g.eval(toks.data(), 0, pool);
            std::vector<float> batch(lb, lb + toks.size() * size_t(hp.n_vocab));
            double mx = 0;
            for (float v : batch) {
                REQUIRE(std::isfinite(v));
                mx = std::max(mx, double(std::fabs(v)));
            }
            CHECK(mx > 0);
            LlamaDecoder dec(*m, cd, 2);
            double worst = 0;
            for (size_t i = 0; i < toks.size(); ++i) {
                const float* l = dec.eval(toks[i], int64_t(i), pool);
                for (int64_t j = 0; j < hp.n_vocab; ++j)
                    worst = std::max(worst, double(std::fabs(l[j] - batch[i * size_t(hp.n_vocab) + size_t(j)])));
            }
            CHECK(worst <= 1e-3 * mx);
        }
    }
}

TEST_CASE("synthetic model: written to .lbf and mapped back, it loads and runs") {
    const LlamaHParams hp = find_synthetic_geometry("test-tiny")->hp;
    SyntheticOptions so;
    so.preset = "q4_g64_hqq";
    const std::string path = temp_path("model.lbf");
    save_llama_lbf(synthetic_llama(hp, so), path);
    {
        auto m = LlamaModel::load_lbf(path);
        CHECK(m->layers[0].wq.w.type == Type::rg);
        KvCache c(hp, 8);
        LlamaDecoder dec(*m, c, 1);
        ThreadPool pool(1);
        const float* l = dec.eval(3, 0, pool);
        CHECK(std::isfinite(l[0]));
        CHECK(bench({"model", "-m", path, "-p", "8", "-n", "4", "-t", "1", "--reps", "1", "--bw", "10"}) == 0);
    }
    std::remove(path.c_str());
}

TEST_CASE("synthetic model: a preset that does not fit the geometry is refused, naming preset and tensor") {
    LlamaHParams hp = find_synthetic_geometry("test-tiny")->hp;
    hp.n_ff = 96;  // not a multiple of 64: ffn_down has K = 96
    SyntheticOptions so;
    so.preset = "q4_g64_hqq";
    CHECK_THROWS_WITH_AS(synthetic_llama(hp, so),
                         doctest::Contains("preset q4_g64_hqq does not fit tensor 'blk.0.ffn_down.weight' (K 96"),
                         Error);
    so.preset = "q1_g8_a0";  // groups of 8 rows: N = n_ff = 100 does not fit
    hp.n_ff = 100;
    CHECK_THROWS_WITH_AS(synthetic_llama(hp, so), doctest::Contains("preset q1_g8_a0 does not fit tensor"), Error);
    so.preset = "q7_g3";
    CHECK_THROWS_WITH_AS(synthetic_llama(hp, so), doctest::Contains("unknown preset 'q7_g3'"), Error);
    so.preset = "q2_g8";
    so.output_type = "q2";
    CHECK_THROWS_WITH_AS(synthetic_llama(hp, so), doctest::Contains("output type 'q2'"), Error);
}

TEST_CASE("bench model: runs on a synthetic model and writes JSON") {
    const std::string json = temp_path("bench.json");
    CHECK(bench({"model", "--synthetic", "test-tiny", "--type", "q2_g8", "-p", "16", "-n", "8", "-t", "2", "--reps",
                 "2", "--bw", "20", "--json", json}) == 0);
    std::ifstream f(json);
    const std::string s(std::istreambuf_iterator<char>(f), {});
    CHECK(s.find("\"model\": \"test-tiny q2_g8\"") != std::string::npos);
    CHECK(s.find("\"test\": \"pp16\"") != std::string::npos);
    CHECK(s.find("\"test\": \"tg8\"") != std::string::npos);
    CHECK(s.find("\"decode_ceiling_tps\"") != std::string::npos);
    CHECK(s.find("\"read_bw_gbs_per_tg_rep\": []") != std::string::npos);  // --bw given: no probe
    CHECK(s.find("\"core_round_trip_ns_per_tg_rep\": []") != std::string::npos);
    std::remove(json.c_str());
    // pp only, tg only, output matrix of the preset
    CHECK(bench({"model", "--synthetic", "test-tiny", "--type", "b1_sign", "-p", "4", "-n", "0", "--reps", "1", "--bw",
                 "20"}) == 0);
    CHECK(bench({"model", "--synthetic", "test-tiny", "--type", "q1_g8_a0", "--output-type", "preset", "-p", "0", "-n",
                 "4", "--reps", "1", "--bw", "20"}) == 0);
}

TEST_CASE("bench model: absurd or missing options give a clear lb::Error") {
    auto err = [](std::vector<std::string> args, const char* msg) {
        args.insert(args.begin(), "model");
        CHECK_THROWS_WITH_AS(bench(args), doctest::Contains(msg), Error);
    };
    const std::vector<std::string> syn = {"--synthetic", "test-tiny", "--type", "q2_g8"};
    auto with = [&](std::vector<std::string> extra) {
        std::vector<std::string> a = syn;
        a.insert(a.end(), extra.begin(), extra.end());
        return a;
    };
    err(with({"-p", "-5"}), "-p: '-5' is not an integer in 0..16384");
    err(with({"-p", "100000"}), "-p: '100000' is not an integer in 0..16384");
    err(with({"-n", "lots"}), "-n: 'lots' is not an integer in 0..16384");
    err(with({"-n", "99999999999999999999999"}), "-n: '99999999999999999999999' is not an integer");
    err(with({"-t", "0"}), "-t: '0' is not an integer in 1..1024");
    err(with({"--threads", "5000"}), "--threads: '5000' is not an integer in 1..1024");
    err(with({"--reps", "0"}), "--reps: '0' is not an integer in 1..1000");
    err(with({"-p", "0", "-n", "0"}), "nothing to run: -p 0 and -n 0");
    err(with({"--bw", "fast"}), "--bw: 'fast' is not a bandwidth in GB/s");
    err(with({"--output-type", "q3"}), "--output-type: 'q3', supported f16, f32, preset");
    err(with({"--turbo"}), "unknown option '--turbo'");
    err(with({"-p"}), "option -p needs a value");
    err({"--synthetic", "gpt-5", "--type", "q2_g8"}, "--synthetic: unknown geometry 'gpt-5' (available: test-tiny");
    err({"--synthetic", "test-tiny", "--type", "q9_g7"}, "--type: unknown preset 'q9_g7'");
    err({"--synthetic", "test-tiny"}, "--synthetic test-tiny needs --type PRESET");
    err({"-p", "8"}, "give either -m MODEL.lbf or --synthetic NAME");
    err({"-m", "x.lbf", "--synthetic", "test-tiny", "--type", "q2_g8"}, "give either -m MODEL.lbf or --synthetic NAME");
    err({"-m", "x.lbf", "--type", "q2_g8"}, "--type applies to --synthetic models only");
    err({"-m", "/nonexistent/model.lbf", "--bw", "10"}, "/nonexistent/model.lbf");
    // a preset that does not fit a geometry: HQQ group-128 meta needs N * K / 64 divisible by 128,
    // and SmolLM2's attn_q is 576 x 576 (5184 groups); refused before any weight is made
    err({"--synthetic", "smollm2-135m", "--type", "q4_g64_hqqm", "--bw", "10"},
        "preset q4_g64_hqqm does not fit tensor 'blk.0.attn_q.weight' (K 576 inputs x N 576 outputs)");
    CHECK(bench({"frobnicate"}) == 2);
}
