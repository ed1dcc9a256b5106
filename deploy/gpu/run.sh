#!/usr/bin/env bash
# Runs ON the GPU machine (Ubuntu 24.04, CUDA 13.0, torch 2.11.0+cu130 in
# /opt/torch/.venv): unpacks the carried .debs, builds kvstream with
# KVSTREAM_CUDA=ON for sm_90a (+PTX), runs the CUDA tests and the benchmarks,
# and writes logs and JSON under $OUT.
#   run.sh [stage ...]   stages: build test bench model e2e baseline engine (default: build test bench)
#   build:    configure + build (BUILD_TARGETS: cmake targets to build, default all)
#   model:    keeps the carried model parts under /opt/deps and joins them into models/ (see stage.sh)
#   e2e:      end-to-end decode bench, synthetic Llama-3-8B (bench/e2e/decode_e2e_bench.cc)
#   baseline: the compiled-PyTorch decoder on the same points (bench/e2e/gpt_fast_baseline.py)
#   engine:   GPU engine tests and the gRPC server tests with the real model on the GPU
#   akveval:  `kvstream eval` through the server on the GPU, real model: dense and AKV variants
#             (EVAL_STRATEGIES, EVAL_KV, EVAL_TASKS, EVAL_CONTEXTS, EVAL_SAMPLES, EVAL_NAME override)
#   e2e-strategies: decode tok/s of E2E_STRATEGIES (default dense,akv) side by side, synthetic llama3-8b
#             (E2E_POOL: paged pool bytes, 0 = what fits; strategies that hold their cache beside the
#             pool, e.g. LASER-KV's prefill scratch, need it below what fits at B = 8)
#   e2e-ab:   the e2e points (AB_POINTS) with the A/B switch AB_SWITCH on, off (=0), on again, same run;
#             switches: KVSTREAM_DENSE_FUSED (append + merge inside the dense decode kernel),
#             KVSTREAM_GEMV_EPILOGUE (RoPE/SwiGLU folded into the GEMV), KVSTREAM_GEMV (our GEMV vs cuBLAS)
#   e2e-epilogue, e2e-gemv: e2e-ab with AB_SWITCH=KVSTREAM_GEMV_EPILOGUE / KVSTREAM_GEMV
#   kbench:   kernel benches beside dense: gemv_bench, entmax_kv_decode_bench (+ SDPA on its points),
#             sq_attend_bench, akv_attention_bench (AKV decode attention, CUDA-core and tensor-core
#             paths, % of copy bandwidth), akv_attention_batch_bench (B sequences' AKV attention as the
#             engine serves them, in a graph: one batched launch and side-stream chains, AKV_LAUNCH; AKV_BATCH,
#             default 8,32; AKV_SPLITS: split counts to compare with the plan, 0 = plan) (those that were built)
#   kvariants: dense decode kernel geometry A/B (bench/attention/dense_decode_variants.sh; DD_VARIANTS)
#   eval:     alias of akveval (any strategies through EVAL_STRATEGIES / EVAL_KV)
#   admission: concurrent sequences the Scheduler admits under one KV budget, dense vs AKV, at 32K context
#             (bench/e2e/admission_bench.cc; ADM_MODEL, ADM_CONTEXT, ADM_REQUESTS, ADM_BUDGET, ADM_STRATEGIES,
#             ADM_KV, ADM_DEADLINE override); $OUT/admission.json
#   tp:       tensor parallelism over the machine's GPUs (issue 14): the TP tests (real model on the
#             GPUs at TP = min(GPUs, KV heads), the CPU ones too), NCCL all-reduce time eager and in a
#             CUDA graph (allreduce_bench), then decode tok/s of the synthetic llama3-8b at
#             TP=1 and TP=TP_SIZE (default 2) on TP_POINTS, and llama3-70b at TP=TP_SIZE
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${OUT:-$ROOT/out}"
mkdir -p "$OUT"
stages=" ${*:-build test bench} "
want() { [[ "$stages" == *" $1 "* ]]; }
cd "$ROOT"
# The commit results are recorded against. The device's copy of the tree may
# carry a stale .git: pass KVSTREAM_COMMIT=<sha> from the checkout that sent it.
COMMIT="${KVSTREAM_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
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

if want build; then
  log "configure"
  cmake -S . -B build-gpu -G Ninja -DKVSTREAM_CUDA=ON -DCMAKE_BUILD_TYPE=Release \
    -DKVSTREAM_TORCH_DIR="$TORCH_DIR" -DKVSTREAM_PYTHON="$PY" \
    -DCMAKE_PREFIX_PATH="$DEPS/usr;$DEPS/usr/lib/x86_64-linux-gnu/cmake" \
    -DCMAKE_CUDA_ARCHITECTURES="90a-real;90-virtual" -DKVSTREAM_PTXAS_VERBOSE=ON > "$OUT/configure.log" 2>&1 || { tail -40 "$OUT/configure.log"; exit 1; }
  log "build"
  SECONDS=0
  cmake --build build-gpu -j"$(nproc)" --target ${BUILD_TARGETS:-all} > "$OUT/build.log" 2>&1 || { grep -E "error|Error" "$OUT/build.log" | head -40; exit 1; }
  log "built in ${SECONDS}s"
fi
if want test; then
  log "CUDA tests"
  ctest --test-dir build-gpu -R '_cuda_test' --output-on-failure > "$OUT/ctest-cuda.log" 2>&1
  tail -5 "$OUT/ctest-cuda.log"
fi
if want bench; then
  if [ -x build-gpu/dense_decode_bench ]; then
    log "dense decode attention bench"
    build-gpu/dense_decode_bench --commit "$COMMIT" --out "$OUT/dense_decode_bench.json"
  fi
  if [ -f bench/attention/sdpa_decode_bench.py ]; then
    log "PyTorch SDPA decode bench"
    $PY bench/attention/sdpa_decode_bench.py --commit "$COMMIT" --out "$OUT/sdpa_decode_bench.json"
  fi
fi
E2E_POINTS="${E2E_POINTS:-1x1024,1x32768,8x8192,1x8192,32x8192,64x8192}"
if want model; then
  source scripts/versions.env
  mkdir -p "$DEPS/model" models
  for part in deploy/gpu/model/part.*; do [ -f "$part" ] && cp "$part" "$DEPS/model/"; done
  if [ -f "$DEPS/model/part.aa" ] && [ -f "$DEPS/model/part.ab" ]; then
    cat "$DEPS/model"/part.* > "models/$MODEL_FILE"
    echo "$MODEL_SHA256  models/$MODEL_FILE" | sha256sum -c - | tee -a "$OUT/run.log"
  else
    log "model: have $(ls "$DEPS/model" | tr '\n' ' ') (both parts needed)"
  fi
fi
if want e2e; then
  log "end-to-end decode bench (kvstream, synthetic llama3-8b): $E2E_POINTS"
  build-gpu/decode_e2e_bench --commit="$COMMIT" --synthetic=llama3-8b --points="$E2E_POINTS" --json="$OUT/e2e_kvstream.json" 2>&1 | tail -14
fi
if want e2e-strategies; then
  # Compressed strategies beside dense, same run, same points (ratios to dense).
  pts="${STRATEGY_POINTS:-1x8192,1x32768,8x8192}"
  log "end-to-end decode, dense vs ${E2E_STRATEGIES:-dense,akv} (synthetic llama3-8b): $pts"
  build-gpu/decode_e2e_bench --commit="$COMMIT" --synthetic=llama3-8b --points="$pts" --strategies="${E2E_STRATEGIES:-dense,akv}" \
    --kv="${E2E_KV:-}" --kv-pool-bytes="${E2E_POOL:-0}" --json="$OUT/e2e_strategies.json" 2>&1 | tail -12
fi
if want baseline; then
  log "end-to-end decode bench (compiled PyTorch baseline): $E2E_POINTS"
  $PY bench/e2e/gpt_fast_baseline.py --points="$E2E_POINTS" --json="$OUT/e2e_baseline.json" > "$OUT/baseline.log" 2>&1
  grep '^\[baseline\]' "$OUT/baseline.log" | tail -14
fi
if want engine; then
  log "GPU engine tests + gRPC server tests on the GPU (real model)"
  ctest --test-dir build-gpu -R 'engine_cuda_test|engine_model_.*_cuda_test|engine_kv_.*_cuda_test|side_streams|^server_' --output-on-failure \
    > "$OUT/ctest-engine.log" 2>&1
  grep -E "cuda-parity|akv-cuda|tests passed|Failed|\*\*\*" "$OUT/ctest-engine.log" | head -40
fi
if want kvariants; then
  log "dense decode kernel geometry variants (DD_VARIANTS or the script's defaults)"
  # shellcheck disable=SC2086  # DD_VARIANTS is a space-separated list of name=FLAGS
  bash bench/attention/dense_decode_variants.sh "$OUT" ${DD_VARIANTS:-} 2>&1 | grep -E "^==|^ +[0-9]|split sweep" | tee -a "$OUT/run.log"
fi
if want kbench; then
  if [ -x build-gpu/gemv_bench ]; then
    log "skinny GEMV vs cuBLAS (llama3-8b projections)"
    build-gpu/gemv_bench --commit "$COMMIT" --json "$OUT/gemv_bench.json" 2>&1 | tail -24
  fi
  if [ -x build-gpu/entmax_kv_decode_bench ]; then
    log "EntmaxKV decode step vs dense kernel"
    build-gpu/entmax_kv_decode_bench --commit "$COMMIT" --out "$OUT/entmax_kv_decode_bench.json" 2>&1 | tail -30
    $PY bench/attention/sdpa_decode_bench.py --points 1x32768,1x131072,1x524288,8x32768,8x131072 \
      --commit "$COMMIT" --out "$OUT/sdpa_decode_entmax_points.json" 2>&1 | tail -8
  fi
  if [ -x build-gpu/sq_attend_bench ]; then
    log "SpectralQuant sq_attend vs dense kernel"
    build-gpu/sq_attend_bench --commit "$COMMIT" --out "$OUT/sq_attend_bench.json" 2>&1 | tail -20
  fi
  if [ -x build-gpu/akv_attention_bench ]; then
    log "AKV mixed attention (CUDA-core / tensor-core) vs dense kernel"
    build-gpu/akv_attention_bench --commit "$COMMIT" --out "$OUT/akv_attention_bench.json" 2>&1 | tail -40
  fi
  if [ -x build-gpu/akv_attention_batch_bench ]; then
    log "AKV attention for a batch (one batched launch; a chain per sequence on side streams) vs dense kernel"
    build-gpu/akv_attention_batch_bench --commit "$COMMIT" --batch "${AKV_BATCH:-8,32}" --splits "${AKV_SPLITS:-0}" \
      --launch "${AKV_LAUNCH:-fanout,batched}" --out "$OUT/akv_attention_batch_bench.json" 2>&1 | tail -16
  fi
fi
# One A/B switch (on unless "0"): on, off, on again, so drift shows; e2e_ab_<switch>_<run>.json.
e2e_ab() {
  local switch=$1 pts="${AB_POINTS:-1x1024,1x32768,8x8192}" run
  log "end-to-end decode with $switch on, off, on again: $pts"
  for run in on off on2; do
    if [ "$run" = off ]; then export "$switch=0"; else unset "$switch"; fi
    build-gpu/decode_e2e_bench --commit="$COMMIT" --synthetic=llama3-8b --points="$pts" \
      --json="$OUT/e2e_ab_${switch}_$run.json" 2>&1 | tail -5
  done
  unset "$switch"
}
if want e2e-ab; then e2e_ab "${AB_SWITCH:-KVSTREAM_DENSE_FUSED}"; fi
if want e2e-epilogue; then e2e_ab KVSTREAM_GEMV_EPILOGUE; fi
if want e2e-gemv; then e2e_ab KVSTREAM_GEMV; fi
if want akveval || want eval; then
  # Same run, same prompts: dense, AKV defaults (4-bit warm), 2-bit, 8-bit,
  # FIFO, and a compact configuration (small hot tier, everything else warm).
  log "kvstream eval on the GPU: dense vs AKV"
  port=50190
  build-gpu/kvstream-server --device=cuda --port=$port > "$OUT/server-eval.log" 2>&1 &
  spid=$!
  for _ in $(seq 60); do build-gpu/kvstream health --target=127.0.0.1:$port > /dev/null 2>&1 && break; sleep 1; done
  compact="akv#5.hot_budget=32,akv#5.n_anchors=16,akv#5.eviction_batch_size=8,akv#5.prefill_chunk_tokens=32"
  compact="$compact,akv#5.warm_budget=8192,akv#5.enable_cold_tier=false"
  name="${EVAL_NAME:-eval_akv_h100}"
  build-gpu/kvstream eval --target=127.0.0.1:$port --strategies="${EVAL_STRATEGIES:-dense,akv,akv,akv,akv,akv}" \
    --kv="${EVAL_KV:-akv#2.warm_bits=2,akv#3.warm_bits=8,akv#4.scoring_strategy=fifo,$compact}" \
    --tasks="${EVAL_TASKS:-passkey,ppl,agreement}" --contexts="${EVAL_CONTEXTS:-2048,4096,8000}" --depths=0,25,50,75,100 \
    --samples="${EVAL_SAMPLES:-8}" --concurrency=4 --seed=7 --json-file="$OUT/$name.json" \
    > "$OUT/$name.txt" 2>&1
  grep -v "^eval \[\|^preparing" "$OUT/$name.txt" | tail -60
  kill $spid; wait $spid 2>/dev/null
  # The report names the server's target, not the machine: add the GPU and the commit.
  $PY -c 'import json,sys; p,g,c=sys.argv[1:]; d=json.load(open(p)); d["gpu"]=g; d["commit"]=c; json.dump(d,open(p,"w"),indent=2)' \
    "$OUT/$name.json" "$(cut -d, -f1 "$OUT/gpu.txt")" "$COMMIT" || true
fi
if want admission; then
  # SmolLM2 (models/) stops at 8K context: 32K runs on llama3-8b's shape (4.3 GB of dense KV per
  # sequence; the default budget holds 4). akv#2 is the eval's compact setting (small hot tier,
  # 8192 tokens of 4-bit warm, no cold tier). Peak running is reached at admission, so the
  # deadline (what is left then is cancelled) only bounds the call, not the measurement.
  compact="akv#2.hot_budget=32,akv#2.n_anchors=16,akv#2.eviction_batch_size=8,akv#2.prefill_chunk_tokens=32"
  compact="$compact,akv#2.warm_budget=8192,akv#2.enable_cold_tier=false"
  log "admission under one KV budget: ${ADM_STRATEGIES:-dense,akv,akv} at T=${ADM_CONTEXT:-32768}"
  # shellcheck disable=SC2086  # ADM_MODEL is one flag: --synthetic=NAME or --model=PATH
  build-gpu/admission_bench --commit="$COMMIT" ${ADM_MODEL:---synthetic=llama3-8b} \
    --context="${ADM_CONTEXT:-32768}" --max-new=4 --requests="${ADM_REQUESTS:-48}" \
    --kv-budget-bytes="${ADM_BUDGET:-18000000000}" --strategies="${ADM_STRATEGIES:-dense,akv,akv}" \
    --kv="${ADM_KV:-$compact}" --deadline-s="${ADM_DEADLINE:-120}" --json="$OUT/admission.json" \
    > "$OUT/admission.log" 2>&1
  echo "rc=$?" >> "$OUT/admission.log"
  grep -v "^\[adm\] .* t=" "$OUT/admission.log" | tail -20
fi
if want tp; then
  tps="${TP_SIZE:-2}"
  pts="${TP_POINTS:-1x1024,32x8192}"
  export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # device rules: no NVLink multicast
  log "tensor parallelism: CUDA TP test, then llama3-8b TP=1 vs TP=$tps on $pts, llama3-70b TP=$tps"
  ctest --test-dir build-gpu -R 'tensor_parallel|tp_runner' -V --timeout 240 > "$OUT/ctest-tp.log" 2>&1
  grep -E "\[tp-cuda\].*:|\[tp\]|\[tp-engine\]|tests passed|Failed|Skipped|\*\*\*" "$OUT/ctest-tp.log" | head -40
  [ -x build-gpu/allreduce_bench ] && build-gpu/allreduce_bench --gpus="$tps" --commit="$COMMIT" \
    --json="$OUT/allreduce_tp$tps.json" 2>&1 | tail -8
  # Each bounded (a rank stuck in a collective would hold the call), its log kept whole.
  tpbench() { local name=$1; shift; timeout "${TP_TIMEOUT:-300}" build-gpu/decode_e2e_bench \
    --commit="$COMMIT" --json="$OUT/$name.json" "$@" > "$OUT/$name.log" 2>&1
    echo "rc=$?" >> "$OUT/$name.log"; tail -5 "$OUT/$name.log"; }
  tpbench e2e_tp1 --synthetic=llama3-8b --points="$pts"
  tpbench "e2e_tp$tps" --synthetic=llama3-8b --points="$pts" --tensor-parallel="$tps"
  tpbench "e2e_70b_tp$tps" --synthetic=llama3-70b --points=1x1024,8x8192 --tensor-parallel="$tps"
fi
log "done"
