// Split-K decode attention (kernels/dense, kernels/akv): each split of a
// row's keys writes a partial output and its log-sum-exp; a merge combines
// them. The workspace those partials need, shared by every family using it.
#pragma once

#include <cstddef>

namespace kvstream {

// Workspace bytes for S splits of `rows` query rows (0 when S <= 1).
struct SplitKWorkspaceBytes {
  size_t partial_out = 0;  // rows*H*S*D*4
  size_t partial_lse = 0;  // rows*H*S*4
};

inline SplitKWorkspaceBytes SplitKWorkspace(int rows, int num_heads, int num_splits, int head_dim) {
  SplitKWorkspaceBytes w;
  if (num_splits <= 1 || rows <= 0 || num_heads <= 0 || head_dim <= 0) return w;
  const size_t n = static_cast<size_t>(rows) * num_heads * num_splits;
  w.partial_out = n * head_dim * sizeof(float);
  w.partial_lse = n * sizeof(float);
  return w;
}

}  // namespace kvstream
