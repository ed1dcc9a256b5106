#!/usr/bin/env python3
"""PyTorch SDPA decode attention (the baseline our dense kernel must beat):
one query token per sequence, GQA 32/8, head dim 128, bf16, at the issue's
(B, T) points. Inputs rotate through enough copies to defeat L2. Prints a
table and writes JSON with the same fields as dense_decode_bench.

    python bench/attention/sdpa_decode_bench.py --out sdpa.json [--commit abc]
        [--points 1x32768,1x131072,1x524288,8x32768]   (BxT list; default POINTS)
"""
import argparse
import json
import statistics

import torch
import torch.nn.functional as F

POINTS = [(1, 4096), (1, 32768), (1, 131072), (8, 32768), (32, 8192)]
H, HKV, D = 32, 8, 128


def copy_bandwidth(nbytes=1 << 30, reps=20):
    a = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    b.copy_(a)
    times = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        b.copy_(a)
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e) / 1e3)
    return 2 * nbytes / statistics.median(times)  # read + write


def bench_point(b, t, copy_bw, iters=50):
    kv_bytes = 2 * b * HKV * t * D * 2
    copies = max(2, int((400 << 20) // kv_bytes) + 1)  # > L2 many times over
    ks = [torch.randn(b, HKV, t, D, device="cuda", dtype=torch.bfloat16) for _ in range(copies)]
    vs = [torch.randn(b, HKV, t, D, device="cuda", dtype=torch.bfloat16) for _ in range(copies)]
    q = torch.randn(b, H, 1, D, device="cuda", dtype=torch.bfloat16)
    for i in range(3):
        F.scaled_dot_product_attention(q, ks[i % copies], vs[i % copies], enable_gqa=True)
    times = []
    for i in range(iters):
        k, v = ks[i % copies], vs[i % copies]
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e) / 1e3)
    sec = statistics.median(times)
    nbytes = kv_bytes + 2 * b * H * D * 2
    del ks, vs
    torch.cuda.empty_cache()
    return {"B": b, "T": t, "H": H, "Hkv": HKV, "D": D, "dtype": "bf16", "time_us": sec * 1e6, "bytes": nbytes,
            "gbps": nbytes / sec / 1e9, "pct_of_copy": 100 * nbytes / sec / copy_bw}


def parse_points(text):
    """'1x32768,8x131072' -> [(1, 32768), (8, 131072)]."""
    points = []
    for item in text.split(","):
        try:
            b, t = (int(x) for x in item.strip().lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad point {item!r}: expected BxT, e.g. 1x32768")
        if b < 1 or t < 1:
            raise argparse.ArgumentTypeError(f"bad point {item!r}: B and T must be >= 1")
        points.append((b, t))
    return points


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--commit", default="unknown")
    ap.add_argument("--points", type=parse_points, default=POINTS,
                    help="comma-separated BxT points (default: %(default)s)")
    a = ap.parse_args()
    copy_bw = copy_bandwidth()
    rows = [bench_point(b, t, copy_bw) for b, t in a.points]
    print(f"copy bandwidth {copy_bw / 1e9:.0f} GB/s (read+write)")
    print(f"{'B':>4}{'T':>8}{'us':>10}{'GB/s':>9}{'% copy':>8}")
    for r in rows:
        print(f"{r['B']:>4}{r['T']:>8}{r['time_us']:>10.1f}{r['gbps']:>9.0f}{r['pct_of_copy']:>8.1f}")
    doc = {"bench": "sdpa_decode", "device": torch.cuda.get_device_name(), "commit": a.commit,
           "torch": torch.__version__, "copy_gbps": copy_bw / 1e9, "points": rows}
    with open(a.out, "w") as fh:
        json.dump(doc, fh, indent=1)


if __name__ == "__main__":
    main()
