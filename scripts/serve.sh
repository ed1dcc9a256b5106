#!/usr/bin/env bash
# Sets up (same script as the tests), builds, and starts kvstream-server on
# the bundled model: on the GPU if this build and machine have one, else on
# the CPU. Extra arguments go to the server (e.g. --port=50052 --metrics-port=9090).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
bash scripts/build.sh
source scripts/versions.env
exec build/kvstream-server --model="models/$MODEL_FILE" --device=auto "$@"
