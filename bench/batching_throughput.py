#!/usr/bin/env python3
"""Continuous batching vs the sequential server, in one run (issue 5).

Starts two kvstream-server processes on loopback from the same build and
model: one with --max-batch=1 (one request at a time, the service issue's
server) and one with the default scheduler (--max-batch=64). Runs the same
`kvstream bench` closed-loop load at each concurrency against each, one server
at a time (they share the CPU), and prints aggregate output tok/s side by side
with the ratio. Writes JSON (both bench reports embedded) and a text table.

    ~/.cache/kvstream/venv/bin/python bench/batching_throughput.py [--concurrency 1,4,16] [--build-dir build]
"""
import argparse
import datetime
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(a, max_batch, log):
    port = free_port()
    cmd = [os.path.join(a.build_dir, "kvstream-server"), f"--model={a.model}", "--host=127.0.0.1",
           f"--port={port}", f"--max-batch={max_batch}", "--device=cpu", f"--threads={a.threads}"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    target = f"127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        r = subprocess.run([os.path.join(a.build_dir, "kvstream"), "health", f"--target={target}"],
                           capture_output=True, text=True)
        if r.returncode == 0 and "SERVING" in r.stdout and "NOT_SERVING" not in r.stdout:
            return proc, target
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}; see {log.name}")
        time.sleep(0.5)
    proc.kill()
    sys.exit("server did not become healthy in 120 s")


def run_bench(a, target, json_path):
    cmd = [os.path.join(a.build_dir, "kvstream"), "bench", f"--target={target}", "--strategies=dense",
           f"--concurrency={a.concurrency}", f"--requests={a.requests}", f"--prompt-len={a.prompt_len}",
           f"--gen-len={a.gen_len}", f"--seed={a.seed}", f"--json-file={json_path}"]
    subprocess.run(cmd, check=True, stdout=sys.stderr)  # its table and progress go to the terminal
    with open(json_path) as fh:
        return json.load(fh)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--prompt-len", default="uniform:64:192")
    ap.add_argument("--gen-len", default="64")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"),
                    help="holds kvstream-server and kvstream (both servers run from it)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results/batching_throughput_smollm2_cpu.json"))
    a = ap.parse_args()
    a.build_dir = os.path.abspath(a.build_dir)

    load_start = os.getloadavg()  # the machine is shared: say how busy it was
    reports = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, max_batch in (("sequential", 1), ("batched", 64)):
            print(f"[bench] {label} server (--max-batch={max_batch}) ...", file=sys.stderr)
            with open(os.path.join(tmp, f"{label}.log"), "w") as log:
                proc, target = start_server(a, max_batch, log)
                try:
                    reports[label] = run_bench(a, target, os.path.join(tmp, f"{label}.json"))
                finally:
                    proc.terminate()
                    proc.wait(timeout=60)

    def by_conc(rep):
        return {r["concurrency"]: r for r in rep["runs"]}

    seq, bat = by_conc(reports["sequential"]), by_conc(reports["batched"])
    rows = []
    header = (f"{'concurrency':>11} | {'sequential tok/s':>16} | {'batched tok/s':>13} | {'ratio':>6} | "
              f"{'batched ITL p50 ms':>18} | {'batched TTFT p50 ms':>19} | errors")
    lines = [header, "-" * len(header)]
    for c in sorted(seq):
        s, b = seq[c], bat[c]
        ratio = b["output_tok_s"] / s["output_tok_s"]
        errors = sum(s["errors"].values()) + sum(b["errors"].values())
        rows.append({"concurrency": c, "sequential_tok_s": s["output_tok_s"], "batched_tok_s": b["output_tok_s"],
                     "ratio": ratio, "batched_itl_p50_ms": b["itl_ms"]["p50"],
                     "batched_ttft_p50_ms": b["ttft_ms"]["p50"], "sequential_ok": s["ok"], "batched_ok": b["ok"],
                     "errors": errors})
        lines.append(f"{c:>11} | {s['output_tok_s']:>16.1f} | {b['output_tok_s']:>13.1f} | {ratio:>5.2f}x | "
                     f"{b['itl_ms']['p50']:>18.1f} | {b['ttft_ms']['p50']:>19.1f} | {errors}")
    top = rows[-1]
    lines.append(f"\nbatched / sequential at concurrency {top['concurrency']}: {top['ratio']:.2f}x (goal >= 3x)")
    table = "\n".join(lines)
    print(table)

    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    doc = {"bench": "batching_throughput", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
           "commit": commit, "machine": {"cpus": os.cpu_count(), "loadavg_start": load_start, "loadavg_end": os.getloadavg()}, "model": os.path.basename(a.model),
           "threads": a.threads, "requests": a.requests, "prompt_len": a.prompt_len, "gen_len": a.gen_len,
           "rows": rows, "reports": reports, "command": "python bench/batching_throughput.py " + " ".join(sys.argv[1:])}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as fh:
        json.dump(doc, fh, indent=1)
    with open(os.path.splitext(a.out)[0] + ".txt", "w") as fh:
        fh.write(f"# {doc['command']} (commit {commit})\n{table}\n")
    print(f"[bench] wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
