#include "engine/sampling/sampler.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>

namespace kvstream {
namespace {

double LogSumExp(absl::Span<const float> x) {
  float mx = -std::numeric_limits<float>::infinity();
  for (float v : x) mx = std::max(mx, v);
  if (!std::isfinite(mx)) return mx;
  double s = 0.0;
  for (float v : x) s += std::exp(static_cast<double>(v) - mx);
  return mx + std::log(s);
}

}  // namespace

float LogSoftmaxAt(absl::Span<const float> logits, int32_t id, double* log_z_out) {
  const double log_z = LogSumExp(logits);
  if (log_z_out) *log_z_out = log_z;
  return static_cast<float>(logits[id] - log_z);
}

Sampler::Sampler(const SamplingParams& params, absl::Span<const int32_t> history)
    : params_(params),
      seed_(params.seed ? *params.seed
                        : static_cast<uint64_t>(
                              std::chrono::steady_clock::now().time_since_epoch().count())),
      rng_(seed_),
      seen_(history.begin(), history.end()) {}

SampleResult Sampler::Next(absl::Span<const float> logits, int32_t top_logprobs, int32_t forced, double log_z) {
  const int32_t V = static_cast<int32_t>(logits.size());
  SampleResult r;
  if (std::isnan(log_z)) LogSoftmaxAt(logits, 0, &log_z);
  if (top_logprobs > 0) {
    std::vector<int32_t> idx(V);
    std::iota(idx.begin(), idx.end(), 0);
    const int32_t k = std::min(top_logprobs, V);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                      [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
    for (int32_t i = 0; i < k; ++i) r.top.push_back({idx[i], static_cast<float>(logits[idx[i]] - log_z)});
  }

  int32_t chosen = forced;
  if (chosen < 0 && params_.temperature <= 0.0f && params_.repetition_penalty == 1.0f) {
    // Greedy on the raw logits (no copy): the first maximum, as torch.argmax.
    chosen = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  if (chosen < 0) {
    std::vector<float> x(logits.begin(), logits.end());
    if (params_.repetition_penalty != 1.0f) {
      for (int32_t t : seen_) {
        if (t < 0 || t >= V) continue;
        x[t] = x[t] > 0 ? x[t] / params_.repetition_penalty : x[t] * params_.repetition_penalty;
      }
    }
    if (params_.temperature <= 0.0f) {
      // Greedy: the first maximum, as torch.argmax picks.
      chosen = static_cast<int32_t>(std::max_element(x.begin(), x.end()) - x.begin());
    } else {
      for (float& v : x) v /= params_.temperature;
      std::vector<int32_t> idx(V);
      std::iota(idx.begin(), idx.end(), 0);
      int32_t keep = V;
      if (params_.top_k > 0 && params_.top_k < V) keep = params_.top_k;
      // Candidates sorted by logit, best first (ties by id for determinism).
      auto better = [&](int32_t a, int32_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); };
      if (keep < V) {
        std::partial_sort(idx.begin(), idx.begin() + keep, idx.end(), better);
        idx.resize(keep);
      } else {
        std::sort(idx.begin(), idx.end(), better);
      }
      const float mx = x[idx[0]];
      std::vector<double> p(idx.size());
      double total = 0.0;
      for (size_t i = 0; i < idx.size(); ++i) total += (p[i] = std::exp(static_cast<double>(x[idx[i]]) - mx));
      size_t n = idx.size();
      if (params_.top_p < 1.0f) {
        // Smallest prefix whose mass reaches top_p (always at least one token).
        double acc = 0.0;
        for (size_t i = 0; i < idx.size(); ++i) {
          acc += p[i] / total;
          if (acc >= params_.top_p) { n = i + 1; break; }
        }
      }
      double mass = std::accumulate(p.begin(), p.begin() + n, 0.0);
      std::uniform_real_distribution<double> u(0.0, mass);
      double target = u(rng_), acc = 0.0;
      chosen = idx[n - 1];
      for (size_t i = 0; i < n; ++i) {
        acc += p[i];
        if (target < acc) { chosen = idx[i]; break; }
      }
    }
  }
  r.token_id = chosen;
  r.logprob = static_cast<float>(logits[chosen] - log_z);
  seen_.insert(chosen);
  return r;
}

SampleResult Sampler::Greedy(int32_t argmax, float max_logit, double log_z) {
  SampleResult r;
  r.token_id = argmax;
  r.logprob = static_cast<float>(max_logit - log_z);
  seen_.insert(argmax);
  return r;
}

}  // namespace kvstream
