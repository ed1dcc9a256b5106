#!/usr/bin/env bash
# A/B of the dense decode kernel's compile-time geometry, same call: builds
# dense_decode_bench once per variant straight with nvcc (no cmake; the six
# instantiation units compile in parallel, under a minute on the GPU machine)
# and runs each in turn, so every variant meets the same device state.
#   dense_decode_variants.sh OUT_DIR [name=FLAGS ...]
#   default variants: w4s3 (the shipped geometry), w4s4, w8s3
#   FLAGS: -DKVSTREAM_DENSE_DECODE_WARPS=N, -DKVSTREAM_DENSE_DECODE_STAGES=N
# Writes OUT_DIR/dense_decode_<name>.json (dense_decode_bench's format).
set -euo pipefail
out=${1:?usage: dense_decode_variants.sh OUT_DIR [name=FLAGS ...]}
shift
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=("w4s3=" "w4s4=-DKVSTREAM_DENSE_DECODE_STAGES=4" "w8s3=-DKVSTREAM_DENSE_DECODE_WARPS=8")
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
arch=${DD_ARCH:-sm_90a}
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
srcs=(kernels/dense/dense_decode.cu kernels/dense/inst/*.cu bench/attention/dense_decode_bench.cu)
pids=()
g++ -std=c++20 -O2 -I. -c kernels/dense/dense_decode_plan.cpp -o "$work/plan.o" & pids+=($!)
for v in "${variants[@]}"; do
  name=${v%%=*}; flags=${v#*=}
  mkdir -p "$work/$name"
  for s in "${srcs[@]}"; do
    # shellcheck disable=SC2086  # flags is a list of -D options
    nvcc -std=c++20 -O3 -arch="$arch" -I. $flags -c "$s" -o "$work/$name/$(basename "$s").o" & pids+=($!)
  done
done
for pid in "${pids[@]}"; do  # a failed compile stops here, not at link time
  wait "$pid" || { echo "dense_decode_variants: a compile failed" >&2; exit 1; }
done
for v in "${variants[@]}"; do
  name=${v%%=*}
  nvcc -arch="$arch" "$work/$name"/*.o "$work/plan.o" -o "$work/$name/bench"
  echo "== variant $name: ${v#*=}"
  "$work/$name/bench" --commit "$commit" --out "$out/dense_decode_$name.json"
done
