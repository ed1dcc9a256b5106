#!/usr/bin/env bash
# Runs HERE (Debian 12): downloads the Debian packages the GPU machine lacks
# (gRPC, abseil, RE2, c-ares, nlohmann-json, cpp-httplib) into
# deploy/gpu/debs/ (git-ignored) so a `device` call can carry them:
#   carry: ["deploy/gpu/debs"]   command: bash deploy/gpu/run.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEST="$ROOT/deploy/gpu/debs"
PKGS=(libgrpc++-dev libgrpc++1.51 libgrpc29 libgrpc-dev protobuf-compiler-grpc libabsl-dev libabsl20220623
      libre2-9 libre2-dev libc-ares2 libc-ares-dev libprotoc32 nlohmann-json3-dev libcpp-httplib-dev
      libcpp-httplib0.11 libbrotli-dev libssl-dev zlib1g-dev)
mkdir -p "$DEST"
cd "$DEST"
missing=()
for p in "${PKGS[@]}"; do ls "${p}"_*.deb >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  apt-get download "${missing[@]}"
fi
du -sh "$DEST"

# The bundled model (98 MB) is over one call's 64 MB carry: split it in two
# parts that two consecutive calls carry while the machine stays warm
#   call 1: carry ["deploy/gpu/debs", "deploy/gpu/model/part.aa"]
#   call 2: carry ["deploy/gpu/model/part.ab"]
# run.sh's `model` stage keeps each part under /opt/deps and joins them.
source "$ROOT/scripts/versions.env"
MODEL_DIR="$ROOT/deploy/gpu/model"
if [ -f "$ROOT/models/$MODEL_FILE" ] && [ ! -f "$MODEL_DIR/part.ab" ]; then
  mkdir -p "$MODEL_DIR"
  split -b 40M "$ROOT/models/$MODEL_FILE" "$MODEL_DIR/part."
fi
ls -la "$MODEL_DIR" 2>/dev/null || true
