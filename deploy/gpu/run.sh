#!/usr/bin/env bash
# Runs ON the GPU machine (Ubuntu 24.04, CUDA 13.0, torch 2.11.0+cu130 in
# /opt/torch/.venv): unpacks the carried .debs, builds kvstream with
# KVSTREAM_CUDA=ON for sm_90a (+PTX), runs the CUDA tests and the benchmarks,
# and writes logs and JSON under $OUT.
#   run.sh [build|test|bench|all]   (default all)
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${OUT:-$ROOT/out}"
mkdir -p "$OUT"
what="${1:-all}"
cd "$ROOT"
log() { printf '[gpu] %s\n' "$*" | tee -a "$OUT/run.log"; }

DEPS=/opt/deps
mkdir -p "$DEPS/.unpacked"
for f in deploy/gpu/debs/*.deb; do  # a warm machine keeps /opt/deps: unpack only new .debs
  stamp="$DEPS/.unpacked/$(basename "$f")"
  [ -f "$stamp" ] || { dpkg -x "$f" "$DEPS" && touch "$stamp"; }
done
export LIBRARY_PATH="$DEPS/usr/lib/x86_64-linux-gnu${LIBRARY_PATH:+:$LIBRARY_PATH}"
export LD_LIBRARY_PATH="$DEPS/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$DEPS/usr/bin:$PATH"
PY=/opt/torch/.venv/bin/python
[ -x "$PY" ] || PY=python3
TORCH_DIR=$($PY -c 'import os,torch;print(os.path.dirname(torch.__file__))')
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

if [ "$what" = all ] || [ "$what" = build ]; then
  log "configure"
  cmake -S . -B build-gpu -G Ninja -DKVSTREAM_CUDA=ON -DCMAKE_BUILD_TYPE=Release \
    -DKVSTREAM_TORCH_DIR="$TORCH_DIR" -DKVSTREAM_PYTHON="$PY" \
    -DCMAKE_PREFIX_PATH="$DEPS/usr;$DEPS/usr/lib/x86_64-linux-gnu/cmake" \
    -DCMAKE_CUDA_ARCHITECTURES="90a-real;90-virtual" -DKVSTREAM_PTXAS_VERBOSE=ON > "$OUT/configure.log" 2>&1 || { tail -40 "$OUT/configure.log"; exit 1; }
  log "build"
  SECONDS=0
  cmake --build build-gpu -j"$(nproc)" > "$OUT/build.log" 2>&1 || { grep -E "error|Error" "$OUT/build.log" | head -40; exit 1; }
  log "built in ${SECONDS}s"
fi
if [ "$what" = all ] || [ "$what" = test ]; then
  log "CUDA tests"
  ctest --test-dir build-gpu -R '_cuda_test' --output-on-failure > "$OUT/ctest-cuda.log" 2>&1
  tail -5 "$OUT/ctest-cuda.log"
fi
if [ "$what" = all ] || [ "$what" = bench ]; then
  commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  if [ -x build-gpu/dense_decode_bench ]; then
    log "dense decode attention bench"
    build-gpu/dense_decode_bench --commit "$commit" --out "$OUT/dense_decode_bench.json"
  fi
  if [ -f bench/attention/sdpa_decode_bench.py ]; then
    log "PyTorch SDPA decode bench"
    $PY bench/attention/sdpa_decode_bench.py --commit "$commit" --out "$OUT/sdpa_decode_bench.json"
  fi
fi
log "done"
