#!/usr/bin/env bash
# The test command (README, .ci/run): set-up, build, all tests.
#   1. scripts/setup.sh   Debian packages, venv, bundled model (idempotent)
#   2. scripts/build.sh   build/ (everything) and build-asan/ (readers, tokenizer under ASan)
#   3. ctest              every test in build/, then the loader/tokenizer tests under ASan
# GPU-only tests skip themselves with a reason on a machine without CUDA.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
bash scripts/build.sh --asan
jobs="${KVSTREAM_JOBS:-$(nproc)}"
# One engine thread per test process; ctest runs $jobs of them side by side.
export KVSTREAM_THREADS="${KVSTREAM_THREADS:-1}"
echo "[test] ctest build/"
ctest --test-dir build --output-on-failure -j"$jobs" --timeout 1500
echo "[test] ctest build-asan/ (AddressSanitizer: readers, tokenizer, fuzzed model files)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 ctest --test-dir build-asan --output-on-failure -j"$jobs" --timeout 1500
