// llama2c.cpp: llama2.c legacy checkpoint -> canonical LLaMA checkpoint (see llama2c.h).
//
// Layout after the 28-byte header, f32, no padding, each kind stacked over all layers:
//   token_embedding_table [vocab][dim]           -> token_embd.weight   {dim, vocab}
//   rms_att_weight  [L][dim]                     -> blk.l.attn_norm.weight
//   wq [L][dim][dim], wk/wv [L][kv_dim][dim]     -> blk.l.attn_q/k/v.weight
//   wo [L][dim][dim]                             -> blk.l.attn_output.weight
//   rms_ffn_weight  [L][dim]                     -> blk.l.ffn_norm.weight
//   w1 [L][hidden][dim], w2 [L][dim][hidden], w3 [L][hidden][dim]
//                                                -> blk.l.ffn_gate / ffn_down / ffn_up.weight
//   rms_final_weight [dim]                       -> output_norm.weight
//   freq_cis_real, freq_cis_imag [seq_len][head_size/2] (legacy RoPE tables, skipped)
//   wcls [vocab][dim], only when vocab_size < 0  -> output.weight
#include "formats/llama2c.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace lb {

namespace {

// header limits: generous for real models, small enough that every size below fits in 64 bits
struct Field {
    const char* name;
    int64_t value, lo, hi;
};

void check_field(const std::string& origin, const Field& f) {
    LB_CHECK(f.value >= f.lo && f.value <= f.hi, "%s: llama2.c header field %s = %lld, supported %lld..%lld",
             origin.c_str(), f.name, (long long)f.value, (long long)f.lo, (long long)f.hi);
}

}  // namespace

LlamaCheckpoint parse_llama2c(const void* data, size_t size, const std::string& origin) {
    const uint8_t* base = static_cast<const uint8_t*>(data);
    constexpr size_t kHeader = 7 * 4;
    LB_CHECK(size >= kHeader, "%s: truncated llama2.c header: %zu bytes, need %zu", origin.c_str(), size, kHeader);
    LB_CHECK(std::memcmp(base, "ak42", 4) != 0,
             "%s: llama2.c 'version 1/2' export (magic \"ak42\"); only the legacy version 0 format is supported",
             origin.c_str());
    Llama2cHeader h;
    int32_t v[7];
    std::memcpy(v, base, kHeader);  // little-endian host (x86-64, aarch64)
    h.dim = v[0];
    h.hidden_dim = v[1];
    h.n_layers = v[2];
    h.n_heads = v[3];
    h.n_kv_heads = v[4];
    h.vocab_size = v[5];
    h.seq_len = v[6];

    check_field(origin, {"dim", h.dim, 1, 1 << 16});
    check_field(origin, {"hidden_dim", h.hidden_dim, 1, 1 << 20});
    check_field(origin, {"n_layers", h.n_layers, 1, 4096});
    check_field(origin, {"n_heads", h.n_heads, 1, h.dim});
    check_field(origin, {"n_kv_heads", h.n_kv_heads, 1, h.n_heads});
    LB_CHECK(h.vocab_size != 0, "%s: llama2.c header field vocab_size = 0", origin.c_str());
    const bool shared = h.vocab_size > 0;
    const int64_t vocab = shared ? int64_t(h.vocab_size) : -int64_t(h.vocab_size);
    check_field(origin, {"vocab_size (absolute value)", vocab, 1, 1 << 24});
    check_field(origin, {"seq_len", h.seq_len, 1, 1 << 24});
    LB_CHECK(h.dim % h.n_heads == 0, "%s: llama2.c header: dim %d is not a multiple of n_heads %d", origin.c_str(),
             h.dim, h.n_heads);
    LB_CHECK(h.n_heads % h.n_kv_heads == 0, "%s: llama2.c header: n_heads %d is not a multiple of n_kv_heads %d",
             origin.c_str(), h.n_heads, h.n_kv_heads);
    const uint64_t D = uint64_t(h.dim), F = uint64_t(h.hidden_dim), L = uint64_t(h.n_layers), V = uint64_t(vocab);
    const uint64_t hs = D / uint64_t(h.n_heads), KV = hs * uint64_t(h.n_kv_heads), T = uint64_t(h.seq_len);
    LB_CHECK(hs % 2 == 0, "%s: llama2.c header: head size %llu (dim / n_heads) must be even", origin.c_str(),
             (unsigned long long)hs);

    // elements of each array (all < 2^50 by the limits above)
    const uint64_t floats = V * D + L * D + L * D * D + 2 * L * KV * D + L * D * D + L * D + 3 * L * F * D + D +
                            T * hs + (shared ? 0 : V * D);
    const uint64_t expect = kHeader + 4 * floats;
    LB_CHECK(size == expect,
             "%s: llama2.c file is %zu bytes, but its header (dim %d, hidden_dim %d, n_layers %d, n_heads %d, "
             "n_kv_heads %d, vocab_size %d, seq_len %d) needs %llu bytes (%s)",
             origin.c_str(), size, h.dim, h.hidden_dim, h.n_layers, h.n_heads, h.n_kv_heads, h.vocab_size, h.seq_len,
             (unsigned long long)expect, size < expect ? "truncated" : "unexpected trailing bytes");

    LlamaCheckpoint ck;
    LlamaHParams& hp = ck.hp;
    hp.n_vocab = int64_t(V);
    hp.n_embd = int64_t(D);
    hp.n_ff = int64_t(F);
    hp.n_layer = int64_t(L);
    hp.n_head = h.n_heads;
    hp.n_head_kv = h.n_kv_heads;
    hp.n_ctx_train = h.seq_len;
    hp.rms_eps = 1e-5f;
    hp.rope_theta = 10000.0f;
    hp.rope_freq_scale = 1.0f;
    hp.rope_mode = rope_interleaved;
    hp.tied_output = shared;
    hp.validate();
    ck.source = "llama2.c legacy checkpoint " + origin;

    size_t off = kHeader;
    // takes the next k*n floats as tensor `name` {k, n} (n == 0: a 1-D tensor of k)
    auto take = [&](const std::string& name, uint64_t k, uint64_t n) {
        CheckpointTensor t;
        t.name = name;
        t.type = Type::f32;
        t.dims = n ? std::vector<uint64_t>{k, n} : std::vector<uint64_t>{k};
        const uint64_t bytes = 4 * k * (n ? n : 1);
        t.data.assign(base + off, base + off + bytes);
        off += size_t(bytes);
        ck.tensors.push_back(std::move(t));
    };
    auto per_layer = [&](const char* what, uint64_t k, uint64_t n) {
        for (uint64_t l = 0; l < L; ++l) take("blk." + std::to_string(l) + "." + what, k, n);
    };
    take("token_embd.weight", D, V);
    per_layer("attn_norm.weight", D, 0);
    per_layer("attn_q.weight", D, D);
    per_layer("attn_k.weight", D, KV);
    per_layer("attn_v.weight", D, KV);
    per_layer("attn_output.weight", D, D);
    per_layer("ffn_norm.weight", D, 0);
    per_layer("ffn_gate.weight", D, F);
    per_layer("ffn_down.weight", F, D);
    per_layer("ffn_up.weight", D, F);
    take("output_norm.weight", D, 0);
    off += size_t(4 * T * hs);  // freq_cis_real, freq_cis_imag: run.c recomputes them
    if (!shared) take("output.weight", D, V);
    LB_CHECK(off == size, "%s: internal: parsed %zu of %zu bytes", origin.c_str(), off, size);
    return ck;
}

LlamaCheckpoint read_llama2c(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    LB_CHECK(fd >= 0, "%s: cannot open: %s", path.c_str(), std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        throw Error(path + ": not a regular file");
    }
    const size_t size = size_t(st.st_size);
    if (size == 0) {
        ::close(fd);
        return parse_llama2c("", 0, path);  // reports the truncated header
    }
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    LB_CHECK(p != MAP_FAILED, "%s: cannot map %zu bytes: %s", path.c_str(), size, std::strerror(errno));
    struct Unmap {
        void* p;
        size_t n;
        ~Unmap() { ::munmap(p, n); }
    } unmap{p, size};
    return parse_llama2c(p, size, path);
}

}  // namespace lb
