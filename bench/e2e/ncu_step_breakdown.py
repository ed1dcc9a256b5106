#!/usr/bin/env python3
"""Kernel-by-kernel breakdown of one decode step from an Nsight Compute CSV.

ncu serialises kernels, so each duration is the kernel alone (no overlap, no
launch gap); the sum over one step against the step's measured time (CUDA
graph, PDL) says how much of the step is gaps and tails between kernels
rather than kernel time. Run on the GPU machine, e.g.

  ncu --clock-control none --graph-profiling node --metrics gpu__time_duration.sum,\
dram__bytes.sum --csv --page raw build-gpu/decode_e2e_bench --points=1x1024 \
--decode_tokens=2 --warmup_tokens=2 > ncu.csv
  python3 bench/e2e/ncu_step_breakdown.py ncu.csv --last 300 --layers 32 --json out.json

--last N keeps the last N kernel launches (one decode step of the model: the
per-layer kernel count x layers + the head); --layers divides the per-name
totals into a per-layer figure.
"""
import argparse
import csv
import json
import re
import sys


def short_name(name):
    # "void kvstream::foo_detail::(anonymous namespace)::FooKernel<...>(Args)" -> "FooKernel<...>"
    name = re.sub(r"\(anonymous namespace\)::", "", name)
    name = re.sub(r"^void ", "", name)
    base = name.split("(")[0]
    base = base.split("::")[-1] if "<" not in base else base[base.rfind("::", 0, base.find("<")) + 2:]
    return base[:90]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv_file")
    ap.add_argument("--last", type=int, default=0, help="keep the last N launches (0 = all)")
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--json", default="")
    a = ap.parse_args()

    rows = []
    with open(a.csv_file, newline="") as f:
        lines = [l for l in f if l.startswith('"')]  # ncu prints its own log lines first
    reader = csv.reader(lines)
    header = next(reader)
    units = next(reader)  # second row: units
    col = {h: i for i, h in enumerate(header)}
    need = ["Kernel Name", "gpu__time_duration.sum"]
    for n in need:
        if n not in col:
            sys.exit(f"column {n!r} not in the CSV (have {header[:12]}...)")
    t_unit = units[col["gpu__time_duration.sum"]]
    scale_us = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3}.get(t_unit, 1e-3)
    has_bytes = "dram__bytes.sum" in col
    b_unit = units[col["dram__bytes.sum"]] if has_bytes else ""
    scale_b = {"byte": 1, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9}.get(b_unit, 1)
    for r in reader:
        if len(r) < len(header):
            continue
        try:
            t = float(r[col["gpu__time_duration.sum"]].replace(",", "")) * scale_us
        except ValueError:
            continue
        b = float(r[col["dram__bytes.sum"]].replace(",", "")) * scale_b if has_bytes else 0.0
        rows.append((short_name(r[col["Kernel Name"]]), t, b))
    if a.last:
        rows = rows[-a.last:]
    total = sum(t for _, t, _ in rows)
    by = {}
    for n, t, b in rows:
        c = by.setdefault(n, [0, 0.0, 0.0])
        c[0] += 1
        c[1] += t
        c[2] += b
    print(f"{len(rows)} launches, kernel time {total:.1f} us ({total / a.layers:.2f} us per layer over {a.layers})")
    print(f"{'kernel':90s} {'n':>5s} {'total us':>10s} {'mean us':>9s} {'per layer':>9s} {'GB/s':>8s}")
    out = []
    for n, (cnt, t, b) in sorted(by.items(), key=lambda kv: -kv[1][1]):
        gbs = b / (t * 1e-6) / 1e9 if t > 0 else 0.0
        print(f"{n:90s} {cnt:5d} {t:10.1f} {t / cnt:9.2f} {t / a.layers:9.2f} {gbs:8.0f}")
        out.append({"kernel": n, "launches": cnt, "total_us": t, "mean_us": t / cnt, "dram_bytes": b})
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"launches": len(rows), "kernel_time_us": total, "layers": a.layers, "kernels": out}, f, indent=1)


if __name__ == "__main__":
    main()
