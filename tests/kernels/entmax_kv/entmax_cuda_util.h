// Device helpers of the EntmaxKV CUDA-vs-twin tests: an arena that frees on
// scope exit, uploads/downloads, and a device copy of an EntmaxProblem.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <vector>

#include "tests/kernels/cuda_test_util.h"
#include "tests/kernels/entmax_kv/entmax_problem.h"

namespace kvstream::testing {

using DevArena = DeviceArena;  // tests/kernels/cuda_test_util.h

// Device pointers of a problem's pool, tables, q and stats (uploaded as they are).
struct DevProblem {
  EntmaxPagedKv kv;
  EntmaxQuery query;
  EntmaxStatsPools stats;
};

inline DevProblem Upload(const EntmaxProblem& pr, EntmaxPagedKv host_kv, DevArena* a) {
  DevProblem d;
  d.kv = host_kv;
  d.kv.k_pool = a->Up(pr.k_pool);
  d.kv.v_pool = a->Up(pr.v_pool);
  d.kv.block_table = a->Up(pr.block_table);
  d.kv.seq_lens = a->Up(pr.seq_lens);
  d.query.q = a->Up(pr.q);
  d.query.num_heads = pr.shape.heads;
  d.stats.kmin = a->Up(pr.kmin);
  d.stats.kmax = a->Up(pr.kmax);
  d.stats.kmean = a->Up(pr.kmean);
  d.stats.kstd = a->Up(pr.kstd);
  return d;
}

}  // namespace kvstream::testing
