#!/usr/bin/env python3
"""Puts the end-to-end decode results of kvstream and the compiled-PyTorch
baseline (same machine, same session) side by side: a table on the terminal
and one JSON with the ratios.

    python bench/e2e/combine.py KVSTREAM.json BASELINE.json --out bench/results/gpu/e2e_decode_h100.json
"""
import argparse
import json


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kvstream")
    ap.add_argument("baseline")
    ap.add_argument("--out", required=True)
    ap.add_argument("--commit", default="")
    a = ap.parse_args()
    ours, base = json.load(open(a.kvstream)), json.load(open(a.baseline))
    bkey = {(p["batch"], p["context"]): p for p in base["points"]}
    rows = []
    print(f"{'B':>4} {'T':>7} | {'kvstream tok/s':>14} {'% roof':>7} | {'PyTorch tok/s':>13} {'% roof':>7} | ratio")
    for p in ours["points"]:
        b = bkey.get((p["batch"], p["context"]), {})
        row = {"batch": p["batch"], "context": p["context"], "kvstream": p, "baseline": b}
        if "tok_s" in p and "tok_s" in b:
            row["speedup"] = p["tok_s"] / b["tok_s"]
        rows.append(row)
        fmt = lambda r: (f"{r['tok_s']:>14.1f} {100 * r['roofline_fraction']:>6.1f}%" if "tok_s" in r
                         else f"{r.get('error', 'n/a')[:22]:>22}")
        print(f"{p['batch']:>4} {p['context']:>7} | {fmt(p)} | {fmt(b)} | "
              f"{row['speedup']:.2f}x" if "speedup" in row else f"{p['batch']:>4} {p['context']:>7} | {fmt(p)} | {fmt(b)} |")
    doc = {"bench": "decode_e2e_side_by_side", "commit": a.commit, "device": ours.get("device"),
           "gpu": base.get("device"), "model_shape": base.get("shape"), "torch": base.get("torch"),
           "copy_bandwidth_bytes_s": {"kvstream_run": ours.get("copy_bandwidth_bytes_s"),
                                      "baseline_run": base.get("copy_bandwidth_bytes_s")},
           "rows": rows}
    with open(a.out, "w") as fh:
        json.dump(doc, fh, indent=1)


if __name__ == "__main__":
    main()
