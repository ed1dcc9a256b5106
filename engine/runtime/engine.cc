#include "engine/runtime/engine.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/model/loader/weights.h"
#include "engine/model/synthetic.h"
#include "engine/parallel/local_group.h"
#include "engine/parallel/nccl_group.h"
#include "engine/runtime/active_sequence.h"
#include "engine/runtime/step_error.h"
#include "engine/status_macros.h"

#ifdef KVSTREAM_HAVE_CUDA_TORCH
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <cuda_runtime_api.h>
#endif

namespace kvstream {
namespace {

using Clock = std::chrono::steady_clock;
double MsSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

int64_t DefaultCudaPoolBytes() {
#ifdef KVSTREAM_HAVE_CUDA_TORCH
  c10::cuda::CUDACachingAllocator::emptyCache();  // staging of the weight upload
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) return 1ll << 30;
  return std::max<int64_t>(static_cast<int64_t>(0.85 * static_cast<double>(free_b)) - (2ll << 30), 256ll << 20);
#else
  return 1ll << 30;
#endif
}

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> Engine::Load(const EngineOptions& options) {
  const auto t0 = Clock::now();
  auto e = std::unique_ptr<Engine>(new Engine());
  e->options_ = options;
  if (options.device != "auto" && options.device != "cpu" && options.device != "cuda") {
    return absl::InvalidArgumentError(
        absl::StrCat("--device must be auto, cpu or cuda (got '", options.device, "')"));
  }
  const bool cuda_available = at::hasCUDA();
  if (options.device == "cuda" && !cuda_available) {
    return absl::FailedPreconditionError("--device=cuda but this build or machine has no CUDA device");
  }
  const bool use_cuda = options.device == "cuda" || (options.device == "auto" && cuda_available);
  if (options.tensor_parallel < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tensor-parallel must be >= 1 (got ", options.tensor_parallel, ")"));
  }
  const int tp = options.tensor_parallel;
  const bool tp_cuda = tp > 1 && use_cuda;  // one GPU per rank, NCCL between them
  if (tp_cuda) {
#ifdef KVSTREAM_HAVE_CUDA_TORCH
    const int gpus = static_cast<int>(c10::cuda::device_count());
#else
    const int gpus = 0;
#endif
    if (gpus < tp) {
      return absl::FailedPreconditionError(
          absl::StrCat("--tensor-parallel=", tp, " needs ", tp, " GPUs (one per rank); this machine has ", gpus));
    }
    std::vector<int> devices;
    for (int r = 0; r < tp; ++r) devices.push_back(r);
    KV_ASSIGN_OR_RETURN(e->tp_comms_, MakeNcclGroup(devices));
  } else if (tp > 1) {
    e->tp_comms_ = MakeLocalGroup(tp);
  }
  // threads: the option, else $KVSTREAM_THREADS, else every core. Tests run
  // several engines at once with KVSTREAM_THREADS=1: OpenMP teams that share
  // cores with another busy process stall at every barrier.
  int threads = options.threads;
  if (threads <= 0) {
    const char* env = std::getenv("KVSTREAM_THREADS");
    threads = env != nullptr ? std::atoi(env) : 0;
  }
  at::set_num_threads(threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency()));

  const c10::Device device = use_cuda ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  const c10::ScalarType dtype = use_cuda ? at::kBFloat16 : at::kFloat;
  // Tensor parallelism on CUDA: the whole model never sits on one GPU. A
  // file is loaded on the host in fp32 and each rank's shard goes to its
  // GPU; synthetic weights are made per shard on each GPU.
  std::vector<std::unique_ptr<LlamaModel>> shards;
  try {
    if (!options.synthetic.empty()) {
      KV_ASSIGN_OR_RETURN(ModelConfig config, SyntheticConfig(options.synthetic));
      KV_ASSIGN_OR_RETURN(e->tokenizer_, Tokenizer::Create(SyntheticTokenizer(config.vocab_size)));
      e->config_ = config;
      if (tp_cuda) {
        for (int r = 0; r < tp; ++r) {
          KV_ASSIGN_OR_RETURN(ModelConfig shard_config, LlamaModel::ShardConfig(config, r, tp));
          KV_ASSIGN_OR_RETURN(std::unique_ptr<LlamaModel> m,
                              LlamaModel::CreateSynthetic(shard_config, c10::Device(c10::kCUDA, r), dtype,
                                                          options.synthetic_seed + static_cast<uint64_t>(r)));
          m->AttachTensorParallel(r, tp, e->tp_comms_[r].get());
          shards.push_back(std::move(m));
        }
      } else {
        KV_ASSIGN_OR_RETURN(e->model_, LlamaModel::CreateSynthetic(config, device, dtype, options.synthetic_seed));
      }
    } else {
      KV_ASSIGN_OR_RETURN(LoadedWeights w, LoadWeights(options.model_path));
      KV_ASSIGN_OR_RETURN(e->tokenizer_, Tokenizer::Create(std::move(w.tokenizer)));
      e->config_ = w.config;
      KV_ASSIGN_OR_RETURN(e->model_, LlamaModel::Create(std::move(w), tp_cuda ? c10::Device(c10::kCPU) : device,
                                                        tp_cuda ? at::kFloat : dtype));
    }
    if (tp > 1 && shards.empty()) {
      for (int r = 0; r < tp; ++r) {
        const c10::Device d = tp_cuda ? c10::Device(c10::kCUDA, r) : device;
        KV_ASSIGN_OR_RETURN(std::unique_ptr<LlamaModel> m, e->model_->Shard(r, tp, e->tp_comms_[r].get(), d, dtype));
        shards.push_back(std::move(m));
      }
    }
  } catch (const c10::Error& err) {
    return absl::InternalError(absl::StrCat("moving weights to ", device.str(), ": ", err.what_without_backtrace()));
  }
  if (tp > 1) e->InstallTensorParallel(std::move(shards));
  KvGeometry geometry = e->model_->geometry();
  geometry.paged_dense = options.paged_dense;  // CUDA pages dense regardless (registry)
  geometry.kv_pool_bytes = options.kv_pool_bytes;
  geometry.model_path = options.synthetic.empty() ? options.model_path : std::string();
  geometry.tp_size = tp;
  if (use_cuda) {
    if (geometry.kv_pool_bytes <= 0) geometry.kv_pool_bytes = DefaultCudaPoolBytes();
    e->kv_pool_bytes_ = geometry.kv_pool_bytes;
  }
  if (tp > 1) {
    // One registry per rank (its own pools and strategy state on its KV
    // heads), served through TpStrategy wrappers.
    std::vector<std::unique_ptr<StrategyRegistry>> ranks;
    std::vector<c10::Device> devices;
    for (int r = 0; r < tp; ++r) {
      geometry.tp_rank = r;
      const LlamaModel& shard = r == 0 ? *e->model_ : *e->tp_peers_[static_cast<size_t>(r - 1)];
      geometry.n_heads = shard.config().n_heads;  // an uneven split gives ranks different head counts
      geometry.n_kv_heads = shard.config().n_kv_heads;
      geometry.tp_kv_head_begin = LlamaModel::ShardOf(e->config_.n_kv_heads, r, tp).begin;
      geometry.model_n_kv_heads = e->config_.n_kv_heads;
      geometry.device = shard.device();
      devices.push_back(shard.device());
      KV_ASSIGN_OR_RETURN(std::unique_ptr<StrategyRegistry> reg, StrategyRegistry::Create(geometry));
      ranks.push_back(std::move(reg));
    }
    KV_ASSIGN_OR_RETURN(e->registry_, StrategyRegistry::CreateTensorParallel(std::move(ranks), std::move(devices)));
  } else {
    KV_ASSIGN_OR_RETURN(e->registry_, StrategyRegistry::Create(geometry));
  }
  e->load_ms_ = MsSince(t0);
  return e;
}

void Engine::InstallTensorParallel(std::vector<std::unique_ptr<LlamaModel>> shards) {
  // Rank 0's shard becomes the engine's model; its Forward runs every rank.
  std::vector<Communicator*> comms;
  for (auto& c : tp_comms_) comms.push_back(c.get());
  tp_runner_ = std::make_unique<TpRunner>(std::move(comms), /*spin=*/shards[0]->device().is_cuda());
  model_ = std::move(shards[0]);
  std::vector<LlamaModel*> peers;
  for (size_t r = 1; r < shards.size(); ++r) {
    peers.push_back(shards[r].get());
    tp_peers_.push_back(std::move(shards[r]));
  }
  model_->SetTensorParallelPeers(std::move(peers), tp_runner_.get());
}

std::string Engine::device_name() const { return model_->device().str(); }
std::string Engine::dtype_name() const { return c10::toString(model_->dtype()); }

absl::Status Engine::Validate(const GenerateSpec& spec) const {
  const ModelConfig& c = config_;
  if (spec.prompt_ids.empty()) return absl::InvalidArgumentError("input is empty: give prompt, prompt_token_ids or chat");
  for (size_t i = 0; i < spec.prompt_ids.size(); ++i) {
    if (spec.prompt_ids[i] < 0 || spec.prompt_ids[i] >= c.vocab_size) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "prompt_token_ids[%d] must be in [0, %d) (got %d)", i, c.vocab_size, spec.prompt_ids[i]));
    }
  }
  for (size_t i = 0; i < spec.teacher_forced.size(); ++i) {
    if (spec.teacher_forced[i] < 0 || spec.teacher_forced[i] >= c.vocab_size) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "teacher_forced.ids[%d] must be in [0, %d) (got %d)", i, c.vocab_size, spec.teacher_forced[i]));
    }
  }
  const SamplingParams& s = spec.sampling;
  const int64_t new_tokens = spec.teacher_forced.empty() ? s.max_new_tokens
                                                         : static_cast<int64_t>(spec.teacher_forced.size());
  if (spec.teacher_forced.empty() && (s.max_new_tokens < 1 || s.max_new_tokens > c.context_length)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "sampling.max_new_tokens must be in [1, %d] (got %d)", c.context_length, s.max_new_tokens));
  }
  if (!(s.temperature >= 0.0f) || !std::isfinite(s.temperature)) {
    return absl::InvalidArgumentError(absl::StrFormat("sampling.temperature must be >= 0 (got %g)", s.temperature));
  }
  if (!(s.top_p > 0.0f && s.top_p <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrFormat("sampling.top_p must be in (0, 1] (got %g)", s.top_p));
  }
  if (s.top_k < 0) return absl::InvalidArgumentError(absl::StrFormat("sampling.top_k must be >= 0 (got %d)", s.top_k));
  if (!(s.repetition_penalty > 0.0f) || !std::isfinite(s.repetition_penalty)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "sampling.repetition_penalty must be > 0 (got %g)", s.repetition_penalty));
  }
  if (spec.top_logprobs < 0 || spec.top_logprobs > 20) {
    return absl::InvalidArgumentError(absl::StrFormat("top_logprobs must be in [0, 20] (got %d)", spec.top_logprobs));
  }
  KV_ASSIGN_OR_RETURN(Strategy * strategy, registry_->Get(spec.kv.strategy));
  KV_RETURN_IF_ERROR(strategy->Validate(spec.kv));
  const int64_t total = static_cast<int64_t>(spec.prompt_ids.size()) + new_tokens;
  if (total > c.context_length) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "prompt tokens (%d) + max_new_tokens (%d) = %d exceeds the model context length %d",
        spec.prompt_ids.size(), new_tokens, total, c.context_length));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<GenerateOutcome>> Engine::GenerateBatch(const std::vector<GenerateSpec>& specs,
                                                                   const DeltaFn& on_delta) {
  std::vector<ActiveSequence> act(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    KV_RETURN_IF_ERROR(Validate(specs[i]));
    act[i].gen = std::make_unique<Generation>(specs[i], *tokenizer_);
    KV_ASSIGN_OR_RETURN(act[i].strategy, registry_->Get(specs[i].kv.strategy));
    StrategyConfig kv = specs[i].kv;
    kv.max_tokens = TotalTokens(specs[i]);
    KV_ASSIGN_OR_RETURN(act[i].cache, act[i].strategy->Open(kv));
  }
  std::vector<GenerateOutcome> out(specs.size());
  auto launch = [&](std::vector<SeqInput> inputs, std::vector<uint64_t> rows) -> absl::StatusOr<LaunchedStep> {
    LaunchedStep l;
    l.inputs = std::move(inputs);
    l.rows = std::move(rows);
    KV_ASSIGN_OR_RETURN(l.result, model_->Step(l.inputs, StepContext{step_++}));
    for (uint64_t w : l.rows) l.full = l.full || act[w].gen->NeedsFullLogits();
    return l;
  };
  try {
    at::InferenceMode guard;
    std::optional<LaunchedStep> pending;
    Clock::time_point last_read = Clock::now();
    while (true) {
      if (!pending.has_value()) {
        std::vector<SeqInput> inputs;
        std::vector<uint64_t> rows;
        for (size_t i = 0; i < act.size(); ++i) {
          if (act[i].gen->finished()) continue;
          inputs.push_back(act[i].NextInput(options_.prefill_chunk));
          rows.push_back(i);
        }
        if (inputs.empty()) break;
        KV_ASSIGN_OR_RETURN(pending, launch(std::move(inputs), std::move(rows)));
      }
      // Run ahead: the rows' next decode step goes to the GPU before this
      // one's tokens come back, so the host's work between steps (sampling,
      // detokenizing, the next step's uploads) overlaps the GPU's.
      std::optional<LaunchedStep> ahead;
      std::vector<const ActiveSequence*> seqs;
      for (uint64_t w : pending->rows) seqs.push_back(&act[w]);
      if (CanRunAhead(pending->result, pending->inputs, seqs)) {
        KV_ASSIGN_OR_RETURN(ahead, launch(RunAheadInputs(*pending), pending->rows));
        ++run_ahead_steps_;
      }
      KV_ASSIGN_OR_RETURN(const HostLogits host, ToHost(pending->result, pending->full));
      const double step_ms = StepReadMs(*pending, &last_read);
      for (size_t r = 0; r < pending->inputs.size(); ++r) {
        ActiveSequence& a = act[pending->rows[r]];
        if (a.gen->finished()) continue;  // stopped on the step before: this row ran ahead
        StreamDelta d;
        if (!a.Consume(pending->inputs[r], host.Row(r), step_ms, &d)) continue;
        if (on_delta) on_delta(pending->rows[r], d);
        if (a.gen->finished()) out[pending->rows[r]] = a.Finish();
      }
      pending = std::move(ahead);
    }
  } catch (const c10::Error& err) {
    return StepErrorStatus(err, "forward failed");
  }
  return out;
}

}  // namespace kvstream
