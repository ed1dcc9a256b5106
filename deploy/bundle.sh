#!/usr/bin/env bash
# Gathers what the runtime image holds: the server, the CLI, every shared
# library they load, and the bundled model, under PREFIX/{bin,lib,models}.
# The Dockerfile's bundle stage runs it on the build stage's output; the
# deploy test (tests/deploy/deploy_test.py) runs it on a local build and
# serves from the result, so CI checks the set of libraries is complete.
#
#   deploy/bundle.sh [--symlink] BUILD_DIR PREFIX
#
# Left out on purpose: the C library set (the runtime base image has the
# same glibc as the build image) and the NVIDIA driver libraries (libcuda,
# libnvidia-*), which the NVIDIA container toolkit mounts from the host.
# --symlink links instead of copying (the test: libtorch alone is ~450 MB).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mode=copy
if [ "${1:-}" = "--symlink" ]; then mode=symlink; shift; fi
build="${1:?usage: bundle.sh [--symlink] BUILD_DIR PREFIX}"
prefix="${2:?usage: bundle.sh [--symlink] BUILD_DIR PREFIX}"
# shellcheck source=../scripts/versions.env
source "$ROOT/scripts/versions.env"
mkdir -p "$prefix/bin" "$prefix/lib" "$prefix/models"
put() {  # put SRC DIR: copy (dereferenced) or absolute symlink
  if [ "$mode" = copy ]; then cp -L "$1" "$2/"; else ln -sf "$(readlink -f "$1")" "$2/$(basename "$1")"; fi
}
for bin in kvstream-server kvstream; do
  [ -x "$build/$bin" ] || { echo "bundle: $build/$bin not built" >&2; exit 1; }
  put "$build/$bin" "$prefix/bin"
done
n=0
while read -r lib; do
  case "$(basename "$lib")" in
    ld-linux*|libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|libresolv.so.*|libcuda.so*|libnvidia-*) continue ;;
  esac
  put "$lib" "$prefix/lib"
  n=$((n + 1))
done < <(ldd "$build/kvstream-server" "$build/kvstream" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u)
# Unresolved here is an error, except the driver: a build machine without a
# GPU has no libcuda, and the container toolkit brings the host's.
missing=$(ldd "$build/kvstream-server" "$build/kvstream" | grep "not found" | grep -v -E "libcuda\.so|libnvidia-" || true)
if [ -n "$missing" ]; then
  echo "bundle: unresolved libraries:" >&2
  echo "$missing" >&2
  exit 1
fi
put "$ROOT/models/$MODEL_FILE" "$prefix/models"
# SpectralQuant's default profile beside the model, so the server does not
# calibrate at start (minutes on a CPU): the one scripts/build.sh made in the
# user cache (made there now if missing).
profile=""
if [ -x "$build/kvstream-calibrate" ]; then
  said=$("$build/kvstream-calibrate" --model "$ROOT/models/$MODEL_FILE" --out user-cache --skip-existing \
           --device cpu --quiet 2>&1 | tail -1)
  profile=$(printf '%s\n' "$said" | sed -n -e 's/^wrote \([^:]*\.sqcal\):.*/\1/p' -e 's/^\(.*\.sqcal\) is up to date$/\1/p')
fi
if [ -n "$profile" ] && [ -f "$profile" ]; then
  put "$profile" "$prefix/models"
  echo "bundle: SpectralQuant profile $profile -> models/default.sqcal"
else
  echo "bundle: no SpectralQuant profile (the server will calibrate at start): $said" >&2
fi
echo "bundle: 2 programs, $n libraries, models/$MODEL_FILE -> $prefix ($mode)"
