// The SAM-Gate strategy (design/strategies/sam_gate.md): exact prefill over a
// dense staging buffer (C1), then per layer a fixed-capacity ring of the
// most recent tokens at the layer's regime (§4 steps 4-6), decode through
// sam_kv_write + sam_decode_attn (CPU twins on CPU, launchers on CUDA).
//
// The curvature probe (§4 step 2) runs once per layer at the end of the
// prompt through the sam_probe_* kernels (twins on CPU), then the host
// forms the harmonic set, f (double), the regime and the group ranking.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/kv/kv_cache.h"
#include "engine/kv/sam_gate/sam_gate_config.h"
#include "engine/kv/sam_gate/sam_gate_profile.h"

namespace kvstream {

// Host policy of one layer (§4 steps 3-5): regime, storage and kept groups.
struct SamLayerPlan {
  SamRegime regime = SamRegime::kObstructed;
  int bits = 16;              // storage bits of the ring
  int fake_quant_bits = 0;    // compat mode prefill fake quantization
  int window = 0;             // W
  int sinks = 0;              // S
  std::vector<int32_t> kept;  // kept KV groups, ascending
  int Capacity() const { return window + sinks; }
};

// Kept groups for a heads fraction and group scores S_g (§4 step 4, C6):
// the n_keep largest, ties to the lower g, returned ascending.
std::vector<int32_t> SamSelectGroups(double heads_fraction, const std::vector<double>& group_scores);

// The plan of a layer whose f was computed as `f` (NaN = not probed) with
// group scores `scores` ([Hk]).
SamLayerPlan SamPlanLayer(const SamGateConfig& c, double f, const std::vector<double>& scores);

// Bytes of one layer's ring as this engine allocates it: K and V rings (§3
// kv_bytes_l), slot_pos and kept_groups (§3 meta_bytes_l), plus the [H]
// int32 head -> ring-group map the attention kernel reads (4*H bytes, not
// in the §3 formula).
int64_t SamLayerRingBytes(const SamLayerPlan& p, int64_t head_dim, int64_t n_heads, int group_size);

class SamGateSequenceCache final : public SequenceCache {
 public:
  // `profile`: the model's calibrated thresholds in force (nullptr: none),
  // named in the report.
  SamGateSequenceCache(const SamGateConfig& c, const KvGeometry& g, const SamGateProfile* profile = nullptr);

  absl::StatusOr<at::Tensor> Forward(int64_t layer, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                     const SeqStep& seq, const StepContext& ctx) override;
  int64_t BytesHeld() const override;
  CacheReport Report() const override;

  // Tests: the ring of a layer (empty before the end of the prompt).
  const SamLayerPlan& plan(int64_t layer) const { return layers_[layer].plan; }
  bool ring_built(int64_t layer) const { return layers_[layer].built; }
  int64_t n_valid(int64_t layer) const { return layers_[layer].n_valid; }
  // slot_pos of a layer's ring, copied to the host.
  std::vector<int32_t> SlotPositions(int64_t layer) const;

  // ---- prepared decode (SamGateStrategy::PrepareDecode) ----
  uint64_t id() const { return id_; }
  // The ring descriptor of a layer (host copy; its pointers are on the device).
  const SamRingDesc& desc(int64_t layer) const { return layers_[layer].desc; }
  // Largest ring capacity over the layers (plans the split count).
  int MaxCapacity() const;
  // Host side of one prepared decode step: checks that every layer's ring
  // is built and has seen start_pos tokens, then advances every layer to
  // start_pos + 1, so the device work of the step touches no host state.
  absl::Status AdvanceDecode(const SeqStep& seq);

 private:
  struct Layer {
    SamLayerPlan plan;
    bool built = false;
    bool probe_skipped = false;
    double f = std::numeric_limits<double>::quiet_NaN();  // NaN until probed
    double tr_delta = std::numeric_limits<double>::quiet_NaN();
    std::vector<float> e;        // [H] per-head Laplacian energy (empty if skipped)
    int harmonic_heads = 0;
    int probe_p = 0;
    SamRegime proposed = SamRegime::kObstructed;  // the rule's regime (calibrate reports it)
    at::Tensor q_tail;           // [H, <=P, D] the last prompt queries (C3)
    int64_t n_valid = 0;
    int64_t seen = 0;            // tokens of the sequence this layer has seen
    at::Tensor stage_k, stage_v; // [Hkv, cap, D] prompt staging (C1), freed at ring init
    at::Tensor k_ring, v_ring;   // uint8 [n_l * C * RB]
    at::Tensor slot_pos;         // int32 [C]
    at::Tensor kept_groups;      // int32 [n_l]
    at::Tensor head_ring_group;  // int32 [H]
    at::Tensor desc_dev;         // CUDA: uint8 bytes of the SamRingDesc
    SamRingDesc desc;
  };

  absl::StatusOr<at::Tensor> Prefill(int64_t layer, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                     const SeqStep& seq);
  absl::Status InitRing(int64_t layer);
  // §4 step 2 on the staged window: fills f, e, tr_delta, harmonic_heads.
  absl::Status RunProbe(int64_t layer, int64_t P);
  absl::StatusOr<at::Tensor> Decode(int64_t layer, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    const SeqStep& seq);
  int64_t StagingBytes() const;
  int64_t RingBytes() const;

  SamGateConfig config_;
  KvGeometry geometry_;
  uint64_t id_ = 0;
  std::string profile_name_;  // file name of the profile in force ("" = none)
  std::vector<Layer> layers_;
  int64_t peak_bytes_ = 0;
  double compression_ms_ = 0.0;
};

class SamGateStrategy final : public Strategy {
 public:
  // Loads the model's threshold profile (C14) from SamGateProfileDirs, or
  // from `profile_dirs` when given (tests). A malformed profile does not
  // throw: every Validate/Open then answers FAILED_PRECONDITION naming the
  // file and the field, so a bad file is seen, never silently ignored.
  explicit SamGateStrategy(const KvGeometry& g, std::optional<std::vector<std::string>> profile_dirs = std::nullopt);

  const char* name() const override { return "sam_gate"; }
  absl::Status Validate(const StrategyConfig& config) const override;
  absl::StatusOr<std::unique_ptr<SequenceCache>> Open(const StrategyConfig& config) override;
  // Dense staging of the prompt + for each layer the largest ring any regime
  // could give it (rings are allocated before the staging is freed, §3).
  int64_t PredictBytes(const StrategyConfig& config, int64_t prompt_tokens, int64_t max_new_tokens) const override;

  // Decode rows of the group go through one sam_kv_write and one
  // sam_decode_attn launch per layer for all sequences (C15); prompt rows
  // one sequence at a time through Forward.
  absl::Status ForwardGroup(int64_t layer, absl::Span<SequenceCache* const> seqs, absl::Span<const SeqStep> steps,
                            GroupTensors& t, const StepContext& ctx) override;
  // CUDA: decode steps are captured in graphs (engine/model/decode_graphs.h).
  bool SupportsDecodePrepare() const override { return geometry_.device.is_cuda(); }
  // Host work of a decode step: positions and lengths into a fixed device
  // buffer, the sequences' ring descriptors into a fixed per-layer table
  // (rewritten only when the set of sequences changes), padded rows get a
  // ring whose heads all output 0 and whose writes are skipped (pos -1).
  // Also runs on CPU (the twins) when called directly (tests). Key: the
  // split count and the workspace generation.
  absl::StatusOr<int64_t> PrepareDecode(absl::Span<SequenceCache* const> seqs, absl::Span<const SeqStep> steps,
                                        int64_t padded_rows, const StepContext& ctx) override;

  static constexpr int64_t kMaxPreparedRows = 256;  // DecodeGraphs::kMaxRows

  // The profile in force (nullopt: seed defaults) and the load status.
  const std::optional<SamGateProfile>& profile() const { return profile_; }
  const absl::Status& profile_status() const { return profile_status_; }
  const SamThresholdDefaults& thresholds() const { return thresholds_; }

 private:
  absl::Status EnsureDecodeBuffers();
  // One layer of a prepared step over rows [0, prepared_rows_) of q/k/v/out.
  absl::Status DecodePrepared(int64_t layer, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              at::Tensor& out);

  KvGeometry geometry_;
  // Prepared decode state (fixed buffers: captured graphs read them).
  at::Tensor meta_;        // int32 [kMaxPreparedRows]: pos of each row
  at::Tensor desc_table_;  // uint8 [L * kMaxPreparedRows * sizeof(SamRingDesc)]
  at::Tensor pad_k_, pad_v_, pad_slot_pos_, pad_kept_, pad_hrg_;  // the padding rows' ring
  at::Tensor workspace_;   // fp32 split-K partials
  int64_t workspace_generation_ = 0;
  std::vector<uint64_t> table_ids_;  // sequences (then padded rows) desc_table_ holds
  int64_t prepared_step_ = -1;
  int64_t prepared_rows_ = 0;
  int prepared_splits_ = 1;
  int num_sms_ = 0;
  std::optional<SamGateProfile> profile_;
  absl::Status profile_status_;
  SamThresholdDefaults thresholds_;
};

}  // namespace kvstream
