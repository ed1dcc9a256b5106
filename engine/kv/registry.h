// Maps a strategy name (the proto oneof case) to its Strategy for the loaded
// model. Adding a strategy is one folder under engine/kv/ plus one line in
// registry.cc.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/kv/kv_cache.h"

namespace kvstream {

class StrategyRegistry {
 public:
  // Builds every strategy compiled into this binary for `geometry`.
  static absl::StatusOr<std::unique_ptr<StrategyRegistry>> Create(const KvGeometry& geometry);
  // Tensor parallelism: ranks[r] was built for rank r's geometry, on
  // devices[r]; the result serves each strategy as a TpStrategy over the
  // ranks' instances (engine/parallel/tp_strategy.h) and owns the rank
  // registries.
  static absl::StatusOr<std::unique_ptr<StrategyRegistry>> CreateTensorParallel(
      std::vector<std::unique_ptr<StrategyRegistry>> ranks, std::vector<c10::Device> devices);

  // UNIMPLEMENTED naming the strategy if it is known to the API but not built.
  absl::StatusOr<Strategy*> Get(const std::string& name) const;
  std::vector<std::string> Names() const;

 private:
  std::map<std::string, std::unique_ptr<Strategy>> strategies_;
  std::map<std::string, std::string> unavailable_;  // name -> why (UNIMPLEMENTED)
  std::vector<std::unique_ptr<StrategyRegistry>> tp_ranks_;
};

// Every strategy name the public API knows, built or not.
const std::vector<std::string>& KnownStrategyNames();

}  // namespace kvstream
