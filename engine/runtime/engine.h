// The engine on its own (no gRPC): loads a model, its tokenizer and the KV
// strategies, and runs batches of generation requests to completion with one
// forward per step over every active sequence. The server's scheduler builds
// on the same pieces; kvstream-run and the tests use this directly.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/kv/registry.h"
#include "engine/model/llama_model.h"
#include "engine/parallel/communicator.h"
#include "engine/parallel/tp_runner.h"
#include "engine/runtime/generation.h"
#include "engine/tokenizer/tokenizer.h"

namespace kvstream {

struct EngineOptions {
  std::string model_path;
  std::string synthetic;        // architecture name: seeded random weights instead of model_path
  uint64_t synthetic_seed = 0;
  std::string device = "auto";  // auto | cpu | cuda
  int threads = 0;              // CPU threads for ATen (0 = $KVSTREAM_THREADS, else all cores)
  int64_t prefill_chunk = 512;  // prompt tokens per sequence per step
  // CUDA: bytes of the paged KV pool (0 = 85% of the device memory free after
  // the weights, less 2 GiB for activations and graphs).
  int64_t kv_pool_bytes = 0;
  // CPU: serve dense through the paged pool + decode-kernel twin (as CUDA does).
  bool paged_dense = false;
  // Tensor parallelism: shards of the model (LlamaModel::Shard), one rank
  // each, threads of this process; 1 to the model's KV-head count (shares
  // may be uneven: LlamaModel::ShardOf). CUDA:
  // one GPU per rank (cuda:0..N-1), partial sums through NCCL
  // (UNIMPLEMENTED in a build without it); CPU: through memory.
  int tensor_parallel = 1;
};

class Engine {
 public:
  // Called with (request index, delta) as tokens are produced.
  using DeltaFn = std::function<void(size_t, const StreamDelta&)>;

  static absl::StatusOr<std::unique_ptr<Engine>> Load(const EngineOptions& options);

  // Checks a request against the model (ids in range, lengths, knobs) before
  // any work; the INVALID_ARGUMENT/UNIMPLEMENTED messages name the field.
  absl::Status Validate(const GenerateSpec& spec) const;

  // Runs `specs` together until all finish. One bad request fails the call
  // before any step runs.
  absl::StatusOr<std::vector<GenerateOutcome>> GenerateBatch(const std::vector<GenerateSpec>& specs,
                                                             const DeltaFn& on_delta = nullptr);

  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const ModelConfig& config() const { return config_; }  // the whole model's, whatever the sharding
  LlamaModel& model() { return *model_; }
  const StrategyRegistry& strategies() const { return *registry_; }
  StrategyRegistry& strategies() { return *registry_; }
  std::string device_name() const;
  std::string dtype_name() const;
  double load_ms() const { return load_ms_; }
  // Bytes the CUDA KV pool may take (0 on CPU, where caches allocate as they grow).
  int64_t kv_pool_bytes() const { return kv_pool_bytes_; }
  const EngineOptions& options() const { return options_; }
  int64_t NextStepId() { return step_++; }
  // Steps GenerateBatch launched ahead of the previous step's tokens (run-ahead).
  int64_t run_ahead_steps() const { return run_ahead_steps_; }

 private:
  void InstallTensorParallel(std::vector<std::unique_ptr<LlamaModel>> shards);

  EngineOptions options_;
  ModelConfig config_;
  // Tensor parallelism (declared first: destroyed after the models and
  // strategies that use them).
  std::vector<std::unique_ptr<Communicator>> tp_comms_;
  std::unique_ptr<TpRunner> tp_runner_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<LlamaModel> model_;               // rank 0's shard under tensor parallelism
  std::vector<std::unique_ptr<LlamaModel>> tp_peers_;  // ranks 1..N-1
  std::unique_ptr<StrategyRegistry> registry_;
  double load_ms_ = 0;
  int64_t kv_pool_bytes_ = 0;
  int64_t step_ = 0;
  int64_t run_ahead_steps_ = 0;
};

}  // namespace kvstream
