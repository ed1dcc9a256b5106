#!/usr/bin/env python3
"""The best plain PyTorch decoder we know, as the end-to-end baseline: a
gpt-fast-style Llama (static KV cache per layer, SDPA with GQA, one decode
step compiled with torch.compile(mode="reduce-overhead"), i.e. CUDA graphs)
on seeded random bf16 weights of the same shape kvstream's
`--synthetic=llama3-8b` builds. Written here from the model's equations (no
code taken from gpt-fast).

The caches are filled with random values instead of running a prefill: a
decode step's time does not depend on what the cache holds, and it keeps the
run short. As in gpt-fast, the static cache is sized prompt + new tokens and
each step attends over all of it under a mask.

    python bench/e2e/gpt_fast_baseline.py --points 1x1024,1x32768,8x8192 --json out.json
"""
import argparse
import json
import math
import sys
import time

import torch
import torch.nn.functional as F

SHAPES = {
    # dim, layers, heads, kv heads, head dim, intermediate, vocab, rope theta
    "llama3-8b": dict(dim=4096, n_layers=32, n_heads=32, n_kv=8, head_dim=128, inter=14336, vocab=128256,
                      theta=500000.0),
    "smollm2-135m": dict(dim=576, n_layers=30, n_heads=9, n_kv=3, head_dim=64, inter=1536, vocab=49152,
                         theta=100000.0),
}


class Block(torch.nn.Module):
    def __init__(self, c, batch, max_len, dtype):
        super().__init__()
        self.c = c
        d, h, kv, hd = c["dim"], c["n_heads"], c["n_kv"], c["head_dim"]
        self.wqkv = torch.nn.Linear(d, (h + 2 * kv) * hd, bias=False, dtype=dtype)
        self.wo = torch.nn.Linear(h * hd, d, bias=False, dtype=dtype)
        self.w13 = torch.nn.Linear(d, 2 * c["inter"], bias=False, dtype=dtype)
        self.w2 = torch.nn.Linear(c["inter"], d, bias=False, dtype=dtype)
        self.norm1 = torch.nn.Parameter(torch.ones(d, dtype=dtype))
        self.norm2 = torch.nn.Parameter(torch.ones(d, dtype=dtype))
        self.register_buffer("k_cache", torch.randn(batch, kv, max_len, hd, dtype=dtype) * 0.1)
        self.register_buffer("v_cache", torch.randn(batch, kv, max_len, hd, dtype=dtype) * 0.1)

    @staticmethod
    def rms(x, w):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-5)).to(x.dtype) * w

    @staticmethod
    def rope(x, cos, sin):  # x [B, heads, 1, hd]; rotate-half convention
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)

    def forward(self, x, pos, cos, sin, mask):
        c = self.c
        B = x.shape[0]
        h, kv, hd = c["n_heads"], c["n_kv"], c["head_dim"]
        qkv = self.wqkv(self.rms(x, self.norm1))
        q, k, v = qkv.split([h * hd, kv * hd, kv * hd], dim=-1)
        q = self.rope(q.view(B, 1, h, hd).transpose(1, 2), cos, sin)
        k = self.rope(k.view(B, 1, kv, hd).transpose(1, 2), cos, sin)
        v = v.view(B, 1, kv, hd).transpose(1, 2)
        self.k_cache.index_copy_(2, pos, k)
        self.v_cache.index_copy_(2, pos, v)
        o = F.scaled_dot_product_attention(q, self.k_cache, self.v_cache, attn_mask=mask, enable_gqa=True)
        x = x + self.wo(o.transpose(1, 2).reshape(B, 1, h * hd))
        g, u = self.w13(self.rms(x, self.norm2)).chunk(2, dim=-1)
        return x + self.w2(F.silu(g) * u)


class Llama(torch.nn.Module):
    def __init__(self, c, batch, max_len, dtype):
        super().__init__()
        self.c, self.max_len = c, max_len
        self.embed = torch.nn.Embedding(c["vocab"], c["dim"], dtype=dtype)
        self.blocks = torch.nn.ModuleList(Block(c, batch, max_len, dtype) for _ in range(c["n_layers"]))
        self.norm = torch.nn.Parameter(torch.ones(c["dim"], dtype=dtype))
        self.out = torch.nn.Linear(c["dim"], c["vocab"], bias=False, dtype=dtype)
        inv = 1.0 / (c["theta"] ** (torch.arange(0, c["head_dim"], 2).float() / c["head_dim"]))
        self.register_buffer("inv_freq", inv)

    def forward(self, tok, pos):  # tok [B, 1], pos [1]
        x = self.embed(tok)
        ang = pos.float()[:, None] * self.inv_freq[None, :]  # [1, hd/2]
        cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
        mask = (torch.arange(self.max_len, device=tok.device) <= pos).view(1, 1, 1, -1)
        for b in self.blocks:
            x = b(x, pos, cos, sin, mask)
        return self.out(Block.rms(x, self.norm))


DEVICE = "cuda"


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def decode_step(model, tok, pos):
    logits = model(tok, pos)
    return logits[:, -1].argmax(-1, keepdim=True)


def copy_bandwidth():
    a = torch.ones(1 << 29, dtype=torch.bfloat16, device=DEVICE)
    b = torch.empty_like(a)
    best = 0.0
    for i in range(6):
        sync()
        t0 = time.perf_counter()
        b.copy_(a)
        sync()
        if i:
            best = max(best, 2 * a.numel() * 2 / (time.perf_counter() - t0))
    return best


def run_point(c, B, T, warmup, steps, compiled, bw):
    torch._dynamo.reset()  # a fresh model per point: start from no compiled code (recompile limit)
    max_len = T + warmup + steps + 1
    torch.manual_seed(0)
    with torch.device(DEVICE):
        model = Llama(c, B, max_len, torch.bfloat16)
    for p in model.parameters():
        if p.dim() > 1:
            torch.nn.init.normal_(p, std=0.02)
    model.eval()
    step = torch.compile(decode_step, mode="reduce-overhead", fullgraph=True) if compiled else decode_step
    tok = torch.randint(0, c["vocab"], (B, 1), device=DEVICE)
    t_compile = time.perf_counter()
    with torch.inference_mode():
        for i in range(warmup):
            tok = step(model, tok, torch.tensor([T + i], device=DEVICE)).clone()
        sync()
        t_compile = time.perf_counter() - t_compile
        t0 = time.perf_counter()
        for i in range(steps):
            tok = step(model, tok, torch.tensor([T + warmup + i], device=DEVICE)).clone()
        sync()
        dt = time.perf_counter() - t0
    weights = sum(p.numel() * p.element_size() for n, p in model.named_parameters() if not n.startswith("embed"))
    kv = 2 * c["n_layers"] * c["n_kv"] * c["head_dim"] * 2 * B * max_len  # the whole static cache is read
    kv_live = 2 * c["n_layers"] * c["n_kv"] * c["head_dim"] * 2 * B * (T + warmup + steps / 2)
    del model
    if DEVICE == "cuda":
        torch.cuda.empty_cache()
    step_ms = dt * 1e3 / steps
    roof_ms = (weights + kv_live) / bw * 1e3  # same roofline definition as kvstream's bench
    return {"batch": B, "context": T, "tok_s": B * steps / dt, "step_ms": step_ms, "roofline_ms": roof_ms,
            "roofline_fraction": roof_ms / step_ms, "bytes_read_per_step": weights + kv,
            "warmup_compile_s": t_compile}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="llama3-8b", choices=sorted(SHAPES))
    ap.add_argument("--points", default="1x1024,1x32768,8x8192")
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--eager", action="store_true", help="no torch.compile (for reference)")
    ap.add_argument("--json", default="")
    ap.add_argument("--device", default="cuda", help="cpu: a smoke test of this script only")
    a = ap.parse_args()
    global DEVICE
    DEVICE = a.device
    torch.backends.cuda.matmul.allow_tf32 = True
    c = SHAPES[a.shape]
    bw = copy_bandwidth()
    dev_name = torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu"
    print(f"[baseline] {a.shape} torch {torch.__version__} on {dev_name}, copy bandwidth "
          f"{bw / 1e9:.0f} GB/s", file=sys.stderr)
    results = []
    free = torch.cuda.mem_get_info()[0] if DEVICE == "cuda" else 1 << 40
    for spec in a.points.split(","):
        B, T = (int(x) for x in spec.split("x"))
        need = (2 * c["n_layers"] * c["n_kv"] * c["head_dim"] * 2 * B * (T + a.warmup + a.steps + 1) +
                2 * (c["dim"] * ((c["n_heads"] + 2 * c["n_kv"]) * c["head_dim"]) + c["n_heads"] * c["head_dim"] *
                     c["dim"] + 3 * c["dim"] * c["inter"]) * c["n_layers"] + 4 * c["vocab"] * c["dim"])
        if need > free * 0.95:
            print(f"[baseline] B={B} T={T}: needs {need / 1e9:.1f} GB, {free / 1e9:.1f} GB free: skipped",
                  file=sys.stderr)
            results.append({"batch": B, "context": T, "error": f"does not fit: {need / 1e9:.1f} GB needed"})
            continue
        print(f"[baseline] B={B} T={T} (compile + {a.warmup} warm-up steps, {a.steps} timed) ...", file=sys.stderr)
        r = run_point(c, B, T, a.warmup, a.steps, not a.eager, bw)
        print(f"[baseline]   {r['tok_s']:.1f} tok/s, {r['step_ms']:.3f} ms/step, "
              f"{100 * r['roofline_fraction']:.1f}% of roofline (compile {r['warmup_compile_s']:.0f} s)",
              file=sys.stderr)
        results.append(r)
        write(a, bw, dev_name, results)
    write(a, bw, dev_name, results)


def write(a, bw, dev_name, results):
    doc = {"bench": "decode_e2e", "engine": "pytorch-gpt-fast-style" + ("-eager" if a.eager else "-compiled"),
           "shape": a.shape, "torch": torch.__version__, "device": dev_name,
           "copy_bandwidth_bytes_s": bw, "decode_tokens": a.steps, "points": results}
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(doc, fh, indent=1)


if __name__ == "__main__":
    main()
