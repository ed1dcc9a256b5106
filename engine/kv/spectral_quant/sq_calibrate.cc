#include "engine/kv/spectral_quant/sq_calibrate.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "engine/kv/dense/dense_cache.h"
#include "engine/model/llama_model.h"
#include "engine/status_macros.h"
#include "engine/tokenizer/tokenizer.h"

namespace kvstream {

SqCovariance::SqCovariance(int64_t n_layers, int64_t n_kv_heads, int64_t head_dim, int64_t max_tokens_per_layer)
    : L_(n_layers),
      H_(n_kv_heads),
      D_(head_dim),
      cap_(max_tokens_per_layer),
      xtx_(n_layers),
      sum_(n_layers),
      count_(n_layers, 0) {}

int64_t SqCovariance::Add(int64_t layer, const at::Tensor& k, const at::Tensor& v) {
  const int64_t n = std::min<int64_t>(k.size(1), cap_ - count_[layer]);
  if (n <= 0) return 0;
  // fp64 on the tensors' device: [2, Hkv, n, D] -> X^T X [2, Hkv, D, D].
  at::Tensor x = at::stack({k.narrow(1, 0, n), v.narrow(1, 0, n)}).to(at::kDouble);
  at::Tensor g = at::matmul(x.transpose(-1, -2), x);
  at::Tensor s = x.sum(2);  // [2, Hkv, D]
  if (!xtx_[layer].defined()) {
    xtx_[layer] = g;
    sum_[layer] = s;
  } else {
    xtx_[layer].add_(g);
    sum_[layer].add_(s);
  }
  count_[layer] += n;
  return n;
}

bool SqCovariance::Full() const {
  return std::all_of(count_.begin(), count_.end(), [&](int64_t c) { return c >= cap_; });
}

SqSpectrum SqEigen(const at::Tensor& c, uint64_t n_samples) {
  const int64_t D = c.size(0);
  at::Tensor sym = (c + c.t()) * 0.5;  // exact symmetry for eigh
  auto [evals, evecs] = at::linalg_eigh(sym.cpu().to(at::kDouble));  // ascending
  evals = evals.flip(0).clamp_min(0.0);
  evecs = evecs.flip(1);  // column c pairs with evals[c]
  // §6.3: the largest-|.| entry of each eigenvector is positive.
  at::Tensor arg = evecs.abs().argmax(0);                   // [D]
  at::Tensor piv = evecs.gather(0, arg.unsqueeze(0)).squeeze(0);
  evecs = evecs * at::where(piv < 0, -1.0, 1.0).unsqueeze(0);
  SqSpectrum s;
  at::Tensor lam = evals.to(at::kFloat).contiguous();
  at::Tensor colmajor = evecs.t().to(at::kFloat).contiguous();  // row c of V^T = column c of V
  s.lambda.assign(lam.const_data_ptr<float>(), lam.const_data_ptr<float>() + D);
  // fp32 rounding can break the order of near-equal values: keep it descending.
  for (int64_t i = 1; i < D; ++i) s.lambda[i] = std::min(s.lambda[i], s.lambda[i - 1]);
  s.vecs.assign(colmajor.const_data_ptr<float>(), colmajor.const_data_ptr<float>() + D * D);
  s.n_samples = n_samples;
  SqFillDiagnostics(s);
  return s;
}

absl::StatusOr<SqProfile> SqCovariance::Finish(const std::string& name, uint64_t model_hash) const {
  SqProfile p;
  p.name = name;
  p.model_hash = model_hash;
  p.n_layers = static_cast<int32_t>(L_);
  p.n_kv_heads = static_cast<int32_t>(H_);
  p.head_dim = static_cast<int32_t>(D_);
  p.n_tokens = static_cast<uint64_t>(count_.empty() ? 0 : *std::min_element(count_.begin(), count_.end()));
  p.spectra.resize(L_ * H_ * 2);
  p.centered.resize(L_ * H_ * 2);
  try {
    for (int64_t l = 0; l < L_; ++l) {
      if (count_[l] < 2) {
        return absl::FailedPreconditionError(
            absl::StrCat("spectral_quant calibration: layer ", l, " saw ", count_[l], " tokens (needs >= 2)"));
      }
      const double n = static_cast<double>(count_[l]);
      at::Tensor c = (xtx_[l] / n).cpu();
      at::Tensor mu = (sum_[l] / n).cpu();  // [2, Hkv, D]
      // Centred covariance C - mu mu^T (the same tokens, fp64).
      at::Tensor cc = c - mu.unsqueeze(-1) * mu.unsqueeze(-2);
      at::Tensor mu32 = mu.to(at::kFloat).contiguous();
      for (int64_t h = 0; h < H_; ++h) {
        for (int t = 0; t < 2; ++t) {
          p.at(l, h, t) = SqEigen(c[t][h], static_cast<uint64_t>(count_[l]));
          SqSpectrum& ce = p.at(l, h, t, /*centred=*/true);
          ce = SqEigen(cc[t][h], static_cast<uint64_t>(count_[l]));
          const float* m = mu32[t][h].const_data_ptr<float>();
          ce.mean.assign(m, m + D_);
        }
      }
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("spectral_quant calibration eigh: ", e.what_without_backtrace()));
  }
  return p;
}

namespace {

// Dense attention plus a tap on every layer's K/V (before GQA repetition).
class RecordingCache final : public SequenceCache {
 public:
  RecordingCache(const KvGeometry& g, int64_t max_tokens, SqCovariance* cov) : dense_(g, max_tokens), cov_(cov) {}
  absl::StatusOr<at::Tensor> Forward(int64_t layer, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                     const SeqStep& seq, const StepContext& ctx) override {
    cov_->Add(layer, k, v);
    return dense_.Forward(layer, q, k, v, seq, ctx);
  }
  int64_t BytesHeld() const override { return dense_.BytesHeld(); }
  CacheReport Report() const override { return dense_.Report(); }

 private:
  DenseSequenceCache dense_;
  SqCovariance* cov_;
};

// Groups calls by strategy only; the default ForwardGroup loops Forward.
class RecordingStrategy final : public Strategy {
 public:
  const char* name() const override { return "spectral_quant_calibration"; }
  absl::Status Validate(const StrategyConfig&) const override { return absl::OkStatus(); }
  absl::StatusOr<std::unique_ptr<SequenceCache>> Open(const StrategyConfig&) override {
    return absl::UnimplementedError("calibration caches are made directly");
  }
  int64_t PredictBytes(const StrategyConfig&, int64_t, int64_t) const override { return 0; }
};

}  // namespace

absl::StatusOr<SqProfile> SqCalibrateModel(LlamaModel& model, const Tokenizer& tokenizer,
                                           const std::vector<std::string>& texts, const std::string& name,
                                           uint64_t model_hash, const SqProgressFn& progress) {
  const KvGeometry g = model.geometry();
  SqCovariance cov(g.n_layers, g.n_kv_heads, g.head_dim);
  RecordingStrategy strategy;
  const int64_t n_texts = std::min<int64_t>(static_cast<int64_t>(texts.size()), kSqCalibMaxTexts);
  StepContext ctx;
  const int64_t limit = std::min<int64_t>(kSqCalibMaxSequenceTokens, g.context_length);
  std::vector<int32_t> seq;  // texts packed back to back (see the header)
  auto run = [&]() -> absl::Status {
    if (seq.size() >= 2) {
      RecordingCache cache(g, static_cast<int64_t>(seq.size()), &cov);
      SeqInput in;
      in.strategy = &strategy;
      in.cache = &cache;
      in.tokens = std::move(seq);
      in.is_prompt = true;
      in.last_prompt_chunk = true;
      ctx.step++;
      KV_ASSIGN_OR_RETURN(at::Tensor logits, model.Forward({&in, 1}, ctx));
      (void)logits;
    }
    seq.clear();
    return absl::OkStatus();
  };
  try {
    for (int64_t i = 0; i < n_texts && !cov.Full(); ++i) {
      std::vector<int32_t> ids = tokenizer.Encode(seq.empty() ? texts[i] : "\n\n" + texts[i], seq.empty());
      if (static_cast<int64_t>(ids.size()) > limit) ids.resize(limit);
      if (static_cast<int64_t>(seq.size() + ids.size()) > limit) {
        KV_RETURN_IF_ERROR(run());
        ids = tokenizer.Encode(texts[i], true);
        if (static_cast<int64_t>(ids.size()) > limit) ids.resize(limit);
      }
      seq.insert(seq.end(), ids.begin(), ids.end());
      if (static_cast<int64_t>(seq.size()) == limit || i + 1 == n_texts) KV_RETURN_IF_ERROR(run());
      if (progress) progress(i + 1, n_texts, cov.tokens(0));
    }
    KV_RETURN_IF_ERROR(run());
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("spectral_quant calibration forward: ", e.what_without_backtrace()));
  }
  return cov.Finish(name, model_hash);
}

absl::StatusOr<std::vector<std::string>> SqReadCorpus(const std::string& path) {
  std::ifstream f(path);
  if (!f) return absl::NotFoundError(absl::StrCat("calibration corpus ", path, " cannot be opened"));
  std::vector<std::string> texts;
  std::string line, cur;
  auto flush = [&] {
    while (!cur.empty() && cur.back() == '\n') cur.pop_back();
    if (!cur.empty() && static_cast<int64_t>(texts.size()) < kSqCalibMaxTexts) texts.push_back(cur);
    cur.clear();
  };
  while (std::getline(f, line)) {
    const absl::string_view s = absl::StripAsciiWhitespace(line);
    if (s == "---") {
      flush();
      continue;
    }
    if (!s.empty() && s[0] == '#') continue;
    if (s.empty()) {
      if (!cur.empty() && cur.back() != '\n') cur += "\n\n";
      continue;
    }
    if (!cur.empty() && cur.back() != '\n') cur += ' ';
    cur.append(s.data(), s.size());
  }
  flush();
  if (texts.empty()) return absl::InvalidArgumentError(absl::StrCat("calibration corpus ", path, " has no text"));
  return texts;
}

}  // namespace kvstream
