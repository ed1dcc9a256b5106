// The SpectralQuant strategy (design/strategies/spectral_quant.md): each K and
// V vector is rotated into its (layer, KV head) eigenbasis from a per-model
// calibration profile and stored as a packed record of per-dimension
// Lloyd-Max codes (K1 sq_quantize_pack); attention reads the records directly
// (K2 sq_attend) with q' = V_K^T q and O = A_eig V_V^T + A_dense as at::matmul.
// CPU twins on CPU, launchers on CUDA.
//
// Decisions (spec §6 and strategies/README.md, written here as the README asks):
// - Profiles: every *.sqcal beside KvGeometry.model_path whose model hash
//   matches is loaded at construction (stem = profile name; "" selects
//   "default"); files for another model are skipped with a warning, a corrupt
//   file for this model is an error. Also searched: the user cache
//   ($XDG_CACHE_HOME or ~/.cache)/kvstream/sqcal/<hash>/. If no "default"
//   exists, the strategy calibrates at start on the shipped corpus
//   (data/calibration/corpus.txt, found via $KVSTREAM_CALIBRATION_CORPUS or
//   beside the executable's ancestors) with a second copy of the model
//   (NOTE(sq): the registry gives strategies no model; see sq_profiles.cc),
//   and caches it beside the model, or in the user cache if that is read-only.
// - Synthetic models (model_path ""): no file can exist, so each sequence
//   calibrates a "default" profile from its own first prompt chunk per layer
//   (the model's own K/V), builds that layer's plan, and then proceeds as
//   usual. Its plan arrays and bases are then the sequence's own and are
//   counted in its bytes.
// - Prefill (§6.6): exact attention over the chunk's own K/V (K2's dense
//   segment) plus the compressed earlier chunks, then the chunk is compressed.
//   Decode: compress_decode_tokens=true compresses the new token first and
//   attends over records only (mode a); false appends it to a dense tail
//   (bf16 on CUDA, fp32 on CPU) that K2 reads as its dense segment (mode b).
// - [kvstream choices, issue 11; sq_config.h] The first num_sink_tokens
//   (default 1) positions are kept exact in a sink buffer [S, Hkv, D] of K2's
//   dense dtype and prepended to K2's dense segment (one softmax with the
//   records); records start at position S. center_values (default on) /
//   center_keys (off) code x - mu in the centred eigenbasis; the dense
//   segment (sinks, chunk, tail) is centred the same way, so the logits move
//   by one constant per query and mu_v is added to the output. No kernel
//   changes: both are engine-side tensors around K1/K2, identical on CPU and
//   CUDA. Legacy b_low is set per layer (SqLayerBitsDeff, sq_plan.h).
// - [kvstream choices, issue 11; sq_config.h] rd_allocation (default on):
//   legacy-mode widths from one rate-distortion fill over all D dims (K
//   total_bits * D bits, V + D/2). num_recent_tokens R (default
//   max(32, max_tokens / 48), mode a):
//   the last R positions stay exact in a bf16 window (the k_tail/v_tail
//   buffers, K2's dense segment after the records) and are coded as they
//   leave it, oldest first; positions are sinks, records, window. The
//   window is a ring of R slots (no shifting), and on CUDA a decode step
//   with the window full is device work only, replayed from decode graphs
//   (sq_prepared.cc).
// - Bytes: records u32 [cap, Hkv, W] with W padded to the layer's widest head
//   (README); with QJL r_norm fp16 [cap, Hkv] and signs u32 [cap, Hkv, SW];
//   the dense tail; the sink buffer. With the request's max_tokens known, records are
//   allocated once at that capacity and the tail at first decode for the
//   rest, so kv_bytes_device == PredictBytes; else they grow x1.5 by 16.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/kv/decode_graph_keys.h"
#include "engine/kv/kv_cache.h"
#include "engine/kv/side_streams.h"
#include "engine/kv/spectral_quant/sq_config.h"
#include "engine/kv/spectral_quant/sq_device_plan.h"

namespace kvstream {

struct SqDenseSegment {
  at::Tensor k, v;  // [Td, Hkv, D] SqDenseDtype, contiguous (undefined = none)
  at::Tensor pos;   // int32 [Td] absolute positions
};

class SpectralQuantSequenceCache final : public SequenceCache {
 public:
  // `dplan` null = synthetic self-calibration (see the header comment).
  SpectralQuantSequenceCache(const SpectralQuantConfig& c, const KvGeometry& g,
                             std::shared_ptr<const SqDevicePlan> dplan, std::shared_ptr<const SqProfile> profile,
                             bool plan_cache_hit, int64_t max_tokens);

  // ---- SequenceCache ----
  absl::StatusOr<at::Tensor> Forward(int64_t layer, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                     const SeqStep& seq, const StepContext& ctx) override;
  absl::Status EndStep(const SeqStep& seq, const StepContext& ctx) override;
  int64_t BytesHeld() const override;
  CacheReport Report() const override;

  // ---- decode as device work only (sq_prepared.cc; CUDA graphs) ----
  // True when the next decode step can run without host work between
  // layers: CUDA, the prompt done, mode a with its recent window full and
  // every sink held.
  // Then the step's token takes the window slot of the oldest one, which K1
  // codes into the next record; the counts live in device memory.
  bool CanDecodeOnDevice() const;
  // Host part of such a step, before a graph replays it or before the step
  // runs eagerly (a batch before it forks onto side streams): records
  // reserved for the rest of the request, the counts uploaded, on the
  // caller's stream.
  absl::Status PrepareDecodeStep(const SeqStep& seq, const StepContext& ctx);
  uint64_t id() const { return id_; }
  int64_t records_capacity() const;

  // ---- tests ----
  // Reconstructions X^ = Z^ V_t^T (+ mu_t when centred) of the compressed
  // tokens (records; not the sinks) of `layer` (K3 on
  // the host): [Hkv, n_compressed, D] fp32 on the CPU.
  absl::StatusOr<at::Tensor> Reconstruct(int64_t layer, int type) const;
  int64_t compressed(int64_t layer) const { return layers_[layer].n_comp; }
  int64_t sinks(int64_t layer) const { return layers_[layer].n_sink; }
  int64_t dense_tail(int64_t layer) const { return layers_[layer].n_dense; }
  // Steps whose decode ran as device work only (eager or replayed).
  int64_t device_decode_steps() const { return device_decode_steps_; }

 private:
  struct Layer {
    const SqLayerDevice* dev = nullptr;  // plan of this layer (shared or own_)
    at::Tensor k_rec, v_rec;             // int32 holding u32 [cap, Hkv, Wk|Wv]
    at::Tensor r_norm;                   // int16 holding fp16 [cap, Hkv] (QJL)
    at::Tensor signs;                    // int32 holding u32 [cap, Hkv, SW] (QJL)
    at::Tensor k_tail, v_tail;           // [cap_t, Hkv, D] mode b: dense tail (model dtype); mode a: recent window (bf16)
    at::Tensor k_sink, v_sink;           // [S, Hkv, D] SqDenseDtype, centred like the records: sinks
    int64_t n_sink = 0, n_comp = 0, n_dense = 0;  // positions: sinks, then records, then the tail
  };

  absl::Status EnsureLayerPlan(int64_t layer, const at::Tensor& k, const at::Tensor& v);
  // Recent window (mode a) as a ring of R slots: the window's i-th oldest
  // position sits in slot (n_comp + i) % R, so a token that leaves it frees
  // the slot the next one takes and nothing is shifted.
  // Entries [first, first + n) of the held window in position order, [n, Hkv, D].
  void WindowRows(int64_t layer, int64_t first, int64_t n, at::Tensor* k, at::Tensor* v) const;
  // k/v [n, Hkv, D] become window entries [first, first + n).
  void WriteWindow(int64_t layer, int64_t first, const at::Tensor& k, const at::Tensor& v);
  absl::Status ReserveRecords(int64_t layer, int64_t tokens);
  absl::Status ReserveTail(int64_t layer, int64_t tokens);
  // Compresses k/v [Hkv, n, D] into records [n_comp, n_comp + n) and counts
  // them; with `first_token` (int32 [1] on the device) into the rows it
  // names, counted by EndStep.
  absl::Status Compress(int64_t layer, const at::Tensor& k, const at::Tensor& v,
                        const at::Tensor* first_token = nullptr);
  // K2's dense segment: the held sinks, then k/v [Td, Hkv, D] (any float
  // dtype; may be undefined) at positions pos0 .., centred like the records
  // and in SqDenseDtype. Undefined tensors if both are empty.
  // `positions` false leaves d.pos undefined (a decode step masks nothing).
  SqDenseSegment DenseSegment(int64_t layer, const at::Tensor& k, const at::Tensor& v, int64_t pos0,
                              bool positions = true) const;
  // k/v [Hkv, m, D], the next m positions after the held ones: they join the
  // recent window (mode a, sq_config.h num_recent_tokens) and whatever leaves
  // it, oldest first, is compressed; with no window all m are compressed.
  absl::Status PushRecent(int64_t layer, const at::Tensor& k, const at::Tensor& v);
  // Keeps k/v [Hkv, n, D] (the next n <= S - n_sink positions) as sinks.
  void AppendSinks(int64_t layer, const at::Tensor& k, const at::Tensor& v);
  // K2 over the records plus the dense segment `d`; q [H, n, D] at
  // positions q_pos0 ..; returns [H, n, D] in q's dtype. With `live_keys`
  // (int32 [1] on the device; a decode step) K2 reads the record count
  // there, plans on the capacity and masks nothing.
  absl::StatusOr<at::Tensor> Attend(int64_t layer, const at::Tensor& q, int64_t q_pos0, const SqDenseSegment& d,
                                    const at::Tensor* live_keys = nullptr);
  // One decode step of `layer` as device work (CanDecodeOnDevice): the
  // oldest window token is coded into record meta_[0], the new one takes its
  // slot, K2 reads meta_[1] records + sinks + the window.
  absl::StatusOr<at::Tensor> DecodeOnDevice(int64_t layer, const at::Tensor& q, const at::Tensor& k,
                                            const at::Tensor& v);
  int64_t OwnPlanBytes() const;

  SpectralQuantConfig config_;
  KvGeometry geometry_;
  std::shared_ptr<const SqDevicePlan> dplan_;
  std::shared_ptr<const SqProfile> profile_;
  // Synthetic self-calibration: this sequence's profile and plan.
  std::unique_ptr<SqProfile> own_profile_;
  std::unique_ptr<SqPlan> own_plan_;
  std::vector<std::unique_ptr<SqLayerDevice>> own_layers_;
  at::Tensor tables_;
  bool plan_cache_hit_ = false;
  int64_t max_tokens_ = 0;
  int64_t recent_ = 0;  // the recent window R of this request (SpectralQuantConfig::RecentTokens)
  std::vector<Layer> layers_;
  int64_t tokens_seen_ = 0;
  int64_t peak_bytes_ = 0;
  double compression_ms_ = 0.0;
  // Device decode (sq_prepared.cc): meta_ int32 {records before the step,
  // after it}, slot_ int64 {the window slot the step's token takes}.
  at::Tensor meta_, slot_;
  int64_t meta_pos_ = -1;          // the decode position meta_ was uploaded for
  bool prompt_done_ = false;        // the last prompt chunk is in: what follows is decode
  bool device_step_pending_ = false;  // a device step ran; EndStep books it
  int64_t device_decode_steps_ = 0;
  uint64_t id_ = 0;
};

class SpectralQuantStrategy final : public Strategy {
 public:
  // Loads (or calibrates) the profiles for `g` (see the header comment).
  static absl::StatusOr<std::unique_ptr<SpectralQuantStrategy>> Create(const KvGeometry& g);
  // With given profiles (tests; none with model_path "" = synthetic self-calibration).
  SpectralQuantStrategy(const KvGeometry& g, std::vector<std::shared_ptr<const SqProfile>> profiles);

  // ---- Strategy ----
  const char* name() const override { return kSqName; }
  absl::Status Validate(const StrategyConfig& config) const override;
  absl::StatusOr<std::unique_ptr<SequenceCache>> Open(const StrategyConfig& config) override;
  int64_t PredictBytes(const StrategyConfig& config, int64_t prompt_tokens, int64_t max_new_tokens) const override;
  // A decode step's sequences on side streams (each launches a chain of
  // small kernels per layer on its own buffers; in a graph they become
  // parallel branches); prefill in order on the caller's stream.
  absl::Status ForwardGroup(int64_t layer, absl::Span<SequenceCache* const> seqs, absl::Span<const SeqStep> steps,
                            GroupTensors& t, const StepContext& ctx) override;
  // Decode steps from CUDA graphs (sq_prepared.cc): each sequence's layers
  // run as device work only.
  bool SupportsDecodePrepare() const override { return geometry_.device.is_cuda(); }
  bool CanPrepareDecode(absl::Span<SequenceCache* const> seqs) const override;
  absl::StatusOr<int64_t> PrepareDecode(absl::Span<SequenceCache* const> seqs, absl::Span<const SeqStep> steps,
                                        int64_t padded_rows, const StepContext& ctx) override;

  std::vector<std::string> ProfileNames() const;
  const SqProfile* profile(const std::string& name) const;

 private:
  absl::StatusOr<SpectralQuantConfig> Parse(const StrategyConfig& config) const;
  // Device plan of `c` from the LRU (§6.4); *hit says whether it was cached.
  std::shared_ptr<const SqDevicePlan> DevicePlan(const SpectralQuantConfig& c, bool* hit);
  // Self-calibration only for synthetic weights; a real model without a
  // profile serves no spectral_quant request (Validate names the profiles).
  bool synthetic() const { return profiles_.empty() && geometry_.model_path.empty(); }

  KvGeometry geometry_;
  // The whole model's profiles (plans are built on every head, so a
  // tensor-parallel rank keeps one GPU's layer-wide choices), and where the
  // geometry holds a slice of the KV heads, each profile's slice (what the
  // rank's caches and device plans use).
  std::map<std::string, std::shared_ptr<const SqProfile>> profiles_, rank_profiles_;
  mutable SqPlanCache plans_;  // mutable: PredictBytes (const) reads plans through the LRU
  std::mutex mu_;
  std::list<std::pair<std::shared_ptr<const SqPlan>, std::shared_ptr<const SqDevicePlan>>> device_plans_;
  DecodeGraphKeys keys_;  // per (sequence ids, records capacities, padded rows)
  SideStreams side_{8};
};

// Bytes of one token's records in one layer for plan layer `lp` (K + V words,
// + r_norm and signs with QJL), over all KV heads.
int64_t SqRecordBytesPerToken(const SqLayerPlan& lp, int64_t n_kv_heads, int qjl_words);

// Profiles for a model (see the header comment); `calibrate` false = load only.
absl::StatusOr<std::vector<std::shared_ptr<const SqProfile>>> SqLoadProfiles(const KvGeometry& g, bool calibrate);
// Where profiles of the model with this hash are cached outside the model's
// folder: $XDG_CACHE_HOME (else ~/.cache)/kvstream/sqcal/<hash as 16 hex>.
std::string SqUserCacheDir(uint64_t model_hash);

}  // namespace kvstream
