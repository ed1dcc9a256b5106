// Exact probe reference for the engine tests (sam_gate.md §4 step 2, exact
// mode): A_h from at:: ops, e_h = ||A_h - I||^2 / P, f = sum_{i<j} ||[A_i,A_j]||^2
// (tau = 0: no harmonic heads), tr(Delta) = P * sum e_h.
#pragma once

#include <ATen/ATen.h>

#include <cmath>

namespace kvstream {

struct ProbeRef {
  double f = 0.0;
  double tr_delta = 0.0;
};

// q [H, P, D], k [Hk, P, D] (fp32).
inline ProbeRef ExactProbeRef(const at::Tensor& q, const at::Tensor& k) {
  const int64_t H = q.size(0), P = q.size(1), D = q.size(2), G = H / k.size(0);
  at::Tensor qd = q.to(at::kDouble), kd = k.to(at::kDouble).repeat_interleave(G, 0);
  at::Tensor s = at::matmul(qd, kd.transpose(1, 2)) / std::sqrt(static_cast<double>(D));
  at::Tensor mask = at::ones({P, P}, at::kBool).tril();
  s = s.masked_fill(mask.logical_not(), -INFINITY);
  at::Tensor a = at::softmax(s, -1);
  at::Tensor eye = at::eye(P, at::kDouble);
  ProbeRef r;
  for (int64_t h = 0; h < H; ++h) r.tr_delta += (a[h] - eye).pow(2).sum().item<double>();
  for (int64_t i = 0; i < H; ++i)
    for (int64_t j = i + 1; j < H; ++j)
      r.f += (at::matmul(a[i], a[j]) - at::matmul(a[j], a[i])).pow(2).sum().item<double>();
  return r;
}

}  // namespace kvstream
