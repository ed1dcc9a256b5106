// y = x · wᵀ through cublasLt with the algorithm timed fastest on this
// device for this (M, N, K), for the decode row counts our skinny GEMV does
// not take (3 ≤ M ≤ 64). At these sizes a projection is a read of its
// weights, and cuBLAS's default choice (what at::linear runs) leaves
// bandwidth unused: bench/results/gpu/gemv_lt_search_h100.json, Llama-3-8B
// at M = 8, the o projection 16.2 vs 19.3 us and the lm head 352.8 vs
// 379.9 us with the best of the heuristic's candidates.
//
// The first call of a shape times every candidate the cublasLt heuristic
// offers, and at::linear itself, each from a cold L2 as in a real step (a
// 128 MiB write between runs), and keeps the fastest (a cublasLt algorithm
// only where it beat at::linear by 2% in that one timing). That first call must run eagerly; the decode
// graphs run each new shape eagerly before capturing it, and a call under
// capture with no plan yet returns nullopt (the caller's at::linear is
// captured instead). Each stream gets its own workspace, so a graph
// replaying on one stream never shares scratch with an eager step on another.
// KVSTREAM_LT_LINEAR=0 turns it off (A/B runs).
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

namespace kvstream {

// x [M, K] (rows strided, columns contiguous), w [N, K] contiguous, both
// CUDA bf16 or fp16 with 256-byte aligned storage, no bias, 3 ≤ M ≤ 64.
// Returns y [M, N], or nullopt where this does not apply (the caller then
// runs at::linear).
std::optional<at::Tensor> TunedLinear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b);

// The same into a caller's y [M, N] (contiguous, aligned like x). False
// where it does not apply; y is then untouched.
bool TunedLinearInto(const at::Tensor& x, const at::Tensor& w, at::Tensor& y);

// Tests: keep the fastest cublasLt candidate even where at::linear is faster,
// so the cublasLt path runs on every shape (plans made before this call stay).
void TunedLinearPreferCublasLtForTesting(bool prefer);

}  // namespace kvstream
