#!/usr/bin/env bash
# NCCL settings A/B for tensor-parallel decode (issue 14), on the GPU machine
# after `deploy/gpu/run.sh build`: for each variant (space-separated
# NAME=VALUE pairs, ';' between variants) the all-reduce bench and the TP
# decode bench run with those variables set, one process each, same call.
# The TP=1 decode bench runs once first as the reference. Writes
# $OUT/nccl_sweep_<i>.json per variant and prints one table.
#   NCCL_VARIANTS="default;NCCL_PROTO=LL;NCCL_GRAPH_MIXING_SUPPORT=1" bash bench/parallel/nccl_sweep.sh
# ("default" is what the engine sets: NCCL_GRAPH_MIXING_SUPPORT=0 since 7c7f0b6.)
set -uo pipefail
OUT="${OUT:-out}"; mkdir -p "$OUT"
TP="${TP_SIZE:-2}"; PTS="${TP_POINTS:-1x1024,32x8192}"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # device rules: no NVLink multicast
IFS=';' read -r -a variants <<< "${NCCL_VARIANTS:-default}"
timeout 200 build-gpu/decode_e2e_bench --synthetic=llama3-8b --points="$PTS" --json="$OUT/nccl_sweep_tp1.json" 2>&1 | grep -E "^dense" | sed 's/^/TP=1 /'
i=0
for v in "${variants[@]}"; do
  envs=(); [ "$v" = default ] || read -r -a envs <<< "$v"
  echo "== variant $i: $v"
  env "${envs[@]}" timeout 120 build-gpu/allreduce_bench --gpus="$TP" --shapes=1x4096,32x4096 --json="$OUT/nccl_sweep_ar_$i.json" | tail -2
  env "${envs[@]}" timeout 200 build-gpu/decode_e2e_bench --synthetic=llama3-8b --points="$PTS" --tensor-parallel="$TP" \
    --json="$OUT/nccl_sweep_$i.json" 2>&1 | grep -E "^dense" | sed "s/^/TP=$TP /"
  i=$((i + 1))
done
