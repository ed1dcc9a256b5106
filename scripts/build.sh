#!/usr/bin/env bash
# Configures and builds kvstream into build/ (and, with --asan, the torch-free
# readers and tokenizer into build-asan/ with AddressSanitizer). Compiles go
# through ccache kept outside the clone, so a fresh clone rebuilds from cache.
#
#   scripts/build.sh [--asan] [extra cmake -D args]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${KVSTREAM_CACHE:-$HOME/.cache/kvstream}"
cd "$ROOT"
asan=0
args=()
for a in "$@"; do
  case "$a" in
    --asan) asan=1 ;;
    *) args+=("$a") ;;
  esac
done
launcher=()
if command -v ccache >/dev/null; then
  export CCACHE_DIR="$CACHE/ccache" CCACHE_BASEDIR="$ROOT" CCACHE_NOHASHDIR=1 CCACHE_MAXSIZE=5G
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi
jobs="${KVSTREAM_JOBS:-$(nproc)}"
if [ ! -f build/build.ninja ]; then
  cmake -S . -B build -G Ninja -DKVSTREAM_CUDA="${KVSTREAM_CUDA:-AUTO}" "${launcher[@]}" "${args[@]}"
fi
cmake --build build -j"$jobs"
# SpectralQuant's default profile for the bundled model (spectral_quant.md
# §6.2), computed once and kept in the user cache outside the clone, where
# the server finds it; a fresh clone does not calibrate again.
# shellcheck source=versions.env
source "$ROOT/scripts/versions.env"
if [ -x build/kvstream-calibrate ] && [ -f "models/$MODEL_FILE" ]; then
  build/kvstream-calibrate --model "models/$MODEL_FILE" --out user-cache --skip-existing --device cpu --quiet
fi
if ((asan)); then
  if [ ! -f build-asan/build.ninja ]; then
    cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVSTREAM_WITH_TORCH=OFF \
      -DKVSTREAM_CUDA=OFF -DKVSTREAM_SANITIZE=address "${launcher[@]}"
  fi
  cmake --build build-asan -j"$jobs"
fi
