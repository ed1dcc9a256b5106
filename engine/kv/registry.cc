#include "engine/kv/registry.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/kv/akv/akv_strategy.h"
#include "engine/kv/dense/dense_cache.h"
#include "engine/kv/dense/paged_dense.h"
#include "engine/kv/entmax_kv/entmax_kv_strategy.h"
#include "engine/kv/laser_kv/laser_kv_strategy.h"
#include "engine/kv/sam_gate/sam_gate_strategy.h"
#include "engine/kv/spectral_quant/sq_strategy.h"
#include "engine/parallel/tp_strategy.h"
#include "engine/status_macros.h"

namespace kvstream {

const std::vector<std::string>& KnownStrategyNames() {
  static const std::vector<std::string> names = {"dense",  "sam_gate", "spectral_quant",
                                                 "entmax_kv", "akv",   "laser_kv"};
  return names;
}

absl::StatusOr<std::unique_ptr<StrategyRegistry>> StrategyRegistry::Create(
    const KvGeometry& geometry) {
  auto reg = std::make_unique<StrategyRegistry>();
  // One line per strategy built into this binary.
  // Dense: paged pool + our decode kernel on CUDA; contiguous fp32 + SDPA on CPU.
  if (geometry.device.is_cuda() || geometry.paged_dense) {
    reg->strategies_["dense"] = std::make_unique<PagedDenseStrategy>(geometry, geometry.kv_pool_bytes);
  } else {
    reg->strategies_["dense"] = std::make_unique<DenseStrategy>(geometry);
  }
  reg->strategies_["akv"] = std::make_unique<AkvStrategy>(geometry);
  // EntmaxKV keeps dense pages: dense's pool where dense is paged (one KV budget), else its own.
  if (auto* paged = dynamic_cast<PagedDenseStrategy*>(reg->strategies_["dense"].get())) {
    reg->strategies_["entmax_kv"] = std::make_unique<EntmaxKvStrategy>(geometry, paged->shared_pool());
  } else {
    reg->strategies_["entmax_kv"] = std::make_unique<EntmaxKvStrategy>(geometry, geometry.kv_pool_bytes);
  }
  reg->strategies_["sam_gate"] = std::make_unique<SamGateStrategy>(geometry);
  reg->strategies_["laser_kv"] = std::make_unique<LaserKvStrategy>(geometry);
  // SpectralQuant loads the model's calibration profiles (calibrating once if
  // none); a tensor-parallel rank slices them to its KV heads.
  KV_ASSIGN_OR_RETURN(reg->strategies_["spectral_quant"], SpectralQuantStrategy::Create(geometry));
  return reg;
}

absl::StatusOr<std::unique_ptr<StrategyRegistry>> StrategyRegistry::CreateTensorParallel(
    std::vector<std::unique_ptr<StrategyRegistry>> ranks, std::vector<c10::Device> devices) {
  if (ranks.empty() || ranks.size() != devices.size()) {
    return absl::InternalError("tensor-parallel registry needs one device per rank, and a rank");
  }
  auto reg = std::make_unique<StrategyRegistry>();
  reg->unavailable_ = ranks[0]->unavailable_;
  for (const auto& [name, _] : ranks[0]->strategies_) {
    std::vector<Strategy*> per_rank;
    for (const auto& r : ranks) {
      KV_ASSIGN_OR_RETURN(Strategy * s, r->Get(name));
      per_rank.push_back(s);
    }
    reg->strategies_[name] = std::make_unique<TpStrategy>(std::move(per_rank), devices);
  }
  reg->tp_ranks_ = std::move(ranks);
  return reg;
}

absl::StatusOr<Strategy*> StrategyRegistry::Get(const std::string& name) const {
  auto it = strategies_.find(name);
  if (it != strategies_.end()) return it->second.get();
  if (auto u = unavailable_.find(name); u != unavailable_.end()) return absl::UnimplementedError(u->second);
  const auto& known = KnownStrategyNames();
  if (std::find(known.begin(), known.end(), name) != known.end()) {
    return absl::UnimplementedError(
        absl::StrCat("kv_compression strategy '", name, "' is not implemented in this server"));
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown kv_compression strategy '", name, "'"));
}

std::vector<std::string> StrategyRegistry::Names() const {
  std::vector<std::string> out;
  for (const auto& [name, _] : strategies_) out.push_back(name);
  return out;
}

}  // namespace kvstream
