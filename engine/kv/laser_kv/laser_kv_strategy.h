// LASER-KV (design/strategies/laser_kv.md): compresses the cache during
// prefill, block by block, keeping one token subset shared by every layer and
// KV head: anchors, the block's local window, and G global tokens picked by
// the hybrid exact + LSH selector using the query (the last q prompt tokens)
// as a probe. Decode is never compressed.
//
// How a request runs (the runner hook is SequenceCache::NextPrefill, §6.2):
//   block i = 0..N-1: one prefill step of b_i block tokens (positions
//     s_i..s_i+b_i-1) plus the q query tokens as an ephemeral probe at
//     positions S..S+q-1. Forward keeps the block's K/V in staging, attends
//     over past (C ++ T, or C) + block + probe, and adds each layer's window
//     scores (K1). EndStep selects (laser_kv_select.h) and compacts (K8).
//   after the last block: C <- C ++ T, then one plain prefill step of the q
//     query tokens at S..S+q-1, which gives the first output token.
//   decode: one token per step appended to C, never recompressed.
// Decisions (README.md "LASER-KV" and this file):
//   * A ratio-derived budget with G <= 0, or P < 2, runs dense (plain chunks
//     of block_size appended to C); the report's stat dense_fallback = 1.
//   * boundary_smoothing = false (accumulate): the previous tail is dropped
//     (§5: "competes again (true) or is dropped (false)"); the window is the
//     block alone (§6.5). The last block's tail is still merged (§4.4).
//   * Peak bytes count the out-of-place compaction (old and new C alive) and
//     the transient block + probe K/V of one step (§3, README).
//   * R (§6.7) comes from the kernels' LaserMakeProjection(lsh_seed): splitmix64
//     stream -> Box-Muller, made on the host and uploaded once per cache.
//   * NOTE(kvstream): Anchors in the score window [kvstream choice, not
//     upstream]. In accumulate mode the K1 window of a block is
//     anchors ++ T ++ block, the anchors being C's entries at positions < A
//     (§4.3 step 4 has T ++ block). They are held already and never
//     candidates; they are there for the softmax. Block 0's window holds
//     the sequence's first tokens, where the probe puts most of the mass of
//     its "resting" heads (the attention sink); without them, every later
//     window spreads that mass over its own tokens, and the heads that
//     resolve the question are drowned out. A key in block 0's local
//     window, re-scored as T in block 1, then scored ~9-14 against a cut of
//     ~15.7 and was dropped (SmolLM2-135M, 2K passkey, b 512). With the
//     anchors, every block ranks under the same normalization as block 0,
//     and recursive mode (window C ++ block, anchors included) already does.
//     Σ scores = Ly*H*q still holds over the window; the anchors' own
//     scores are not used.
//   * Score pooling [kvstream choice, not upstream]: the exact selector ranks
//     each candidate by the mean K1 score of the window entries at most
//     kLaserScorePoolRadius positions from it (K1b, laser_score.h), not by
//     its own score alone. The query attends to where an answer starts (the
//     first digit of a pass key, the words the question repeats) but not to
//     the tokens that continue it, so per-token ranking kept "The pass key
//     is 4" and dropped "0548" (SmolLM2-135M, 2K passkey: the later digits
//     ranked 130th-900th of ~1000 candidates). Pooling keeps such spans
//     whole; the raw K1 sums (mass invariant, §9.6) are unchanged. The LSH
//     selector is not affected.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "engine/kv/dense/paged_dense.h"
#include "engine/kv/decode_graph_keys.h"
#include "engine/kv/kv_cache.h"
#include "engine/kv/laser_kv/laser_kv_config.h"
#include "engine/kv/side_streams.h"

namespace kvstream {

// K1b radius of the score pooling (header): 3 = a 7-token mean, as wide as
// the answers of the eval's passkey and needle tasks need.
inline constexpr int kLaserScorePoolRadius = 3;

class LaserKvStrategy final : public Strategy {
 public:
  explicit LaserKvStrategy(const KvGeometry& g) : geometry_(g) {}

  // ---- Strategy ----
  const char* name() const override { return "laser_kv"; }
  absl::Status Validate(const StrategyConfig& config) const override;
  absl::StatusOr<std::unique_ptr<SequenceCache>> Open(const StrategyConfig& config) override;
  // §6.11: accumulate (min(A,S) + N*G + W + q + max_new) tokens, recursive
  // (B + q + max_new), dense fallback (P + max_new); the larger of that and
  // the prefill peak (|C| + |T| + b + q, plus the new C during compaction).
  int64_t PredictBytes(const StrategyConfig& config, int64_t prompt_tokens,
                       int64_t max_new_tokens) const override;

  // Bytes one held token takes: K and V of every layer plus its int32 position (§3).
  int64_t BytesPerToken() const;

  // CUDA decode steps run from captured graphs (laser_kv_prepared.cc): the
  // decode is the dense kernel's fused append + attention over C, its length
  // in device memory, C grown up front for the request's remaining tokens.
  bool SupportsDecodePrepare() const override { return geometry_.device.is_cuda(); }
  // Decode rows of several sequences: each sequence's append + attention on
  // a side stream of its own (they touch only their own C), as AKV does.
  absl::Status ForwardGroup(int64_t layer, absl::Span<SequenceCache* const> seqs, absl::Span<const SeqStep> steps,
                            GroupTensors& t, const StepContext& ctx) override;
  bool CanPrepareDecode(absl::Span<SequenceCache* const> seqs) const override;
  absl::StatusOr<int64_t> PrepareDecode(absl::Span<SequenceCache* const> seqs, absl::Span<const SeqStep> steps,
                                        int64_t padded_rows, const StepContext& ctx) override;

 private:
  KvGeometry geometry_;
  DecodeGraphKeys keys_;  // per (sequence ids, C capacities, padded rows)
  SideStreams side_{8};
};

class LaserKvSequenceCache final : public SequenceCache {
 public:
  LaserKvSequenceCache(const KvGeometry& g, const LaserKvConfig& c, int64_t max_tokens);

  // ---- SequenceCache ----
  // Block steps (seq.n_probe > 0): stage the block, attend with the probe,
  // add the layer's window scores. Other steps: append to C and attend.
  absl::StatusOr<at::Tensor> Forward(int64_t layer, const at::Tensor& q, const at::Tensor& k,
                                     const at::Tensor& v, const SeqStep& seq,
                                     const StepContext& ctx) override;
  // After a block step: select and compact (§4.3 steps 3-6, §4.4). After a
  // prepared decode step: books the appended token (Forward did device work only).
  absl::Status EndStep(const SeqStep& seq, const StepContext& ctx) override;
  std::optional<int64_t> PrefillChunk() const override { return config_.block_size; }
  std::optional<PrefillPlan> NextPrefill(int64_t prompt_done, int64_t prompt_len) const override;
  int64_t BytesHeld() const override;
  CacheReport Report() const override;

  // ---- LASER-KV ----
  // Original positions C holds now (host mirror), and T (accumulate tail).
  const std::vector<int32_t>& held_positions() const { return c_pos_; }
  const std::vector<int32_t>& tail_positions() const { return t_pos_; }
  // [Hkv, |C|, D] keys / values of `layer` in C.
  at::Tensor layer_keys(int64_t layer) const;
  at::Tensor layer_values(int64_t layer) const;
  const LaserBudget* budget() const { return budget_ ? &*budget_ : nullptr; }
  int64_t kept_after_prefill() const { return kept_after_prefill_; }

  // Host work of a prepared (CUDA-graph) decode step: grows C for the rest
  // of the request (so no buffer moves under a captured graph) and puts the
  // step's length in device memory before the replay.
  absl::Status PrepareDecodeStep(const SeqStep& seq, const StepContext& ctx);
  // Unique for the life of the process, and C's capacity: graph key parts.
  uint64_t id() const { return id_; }
  int64_t capacity() const { return ck_.defined() ? ck_.size(2) : 0; }

 private:
  // Budget for a prompt of P tokens, computed on the first NextPrefill.
  const LaserBudget& BudgetFor(int64_t prompt_len) const;
  absl::StatusOr<at::Tensor> BlockForward(int64_t layer, const at::Tensor& q, const at::Tensor& k,
                                          const at::Tensor& v, const SeqStep& seq);
  absl::StatusOr<at::Tensor> AppendForward(int64_t layer, const at::Tensor& q, const at::Tensor& k,
                                           const at::Tensor& v, const SeqStep& seq);
  // Pinned host int32 {0, c_len + 1}: a decode step's block table and length.
  at::Tensor DecodeMetaHost() const;
  // Decode on the GPU: appends k/v at row meta[1] - 1 and attends over
  // meta[1] rows of C (meta: device int32 {block table 0, length}).
  absl::StatusOr<at::Tensor> DecodeOnDevice(int64_t layer, const at::Tensor& q, const at::Tensor& k,
                                            const at::Tensor& v, const at::Tensor& meta);
  // A prepared step's layer: DecodeOnDevice on prepared_meta_.
  absl::StatusOr<at::Tensor> PreparedDecode(int64_t layer, const at::Tensor& q, const at::Tensor& k,
                                            const at::Tensor& v, const SeqStep& seq, const StepContext& ctx);
  absl::Status CompactBlock(const SeqStep& seq);
  // Gathers `rows` (concatenated index over C, T, block) of every layer into a
  // fresh [Ly, Hkv, cap, D] pair (K8, out of place); `pos` gets their positions.
  absl::Status Gather(const std::vector<int32_t>& rows, int64_t cap, at::Tensor* k, at::Tensor* v,
                      std::vector<int32_t>* pos);
  void SetSegments(LaserSegment seg[3], bool with_values);
  void EnsureCapacity(int64_t tokens);
  int64_t Bytes(const at::Tensor& t) const { return t.defined() ? static_cast<int64_t>(t.nbytes()) : 0; }
  void NotePeak(int64_t extra);

  KvGeometry geometry_;
  LaserKvConfig config_;
  int64_t max_tokens_;                          // prompt + max_new (0 = unknown)
  mutable std::optional<LaserBudget> budget_;   // set by the first NextPrefill (needs P)

  // C: [Ly, Hkv, cap, D] K and V, first c_len_ rows used; positions on host.
  at::Tensor ck_, cv_;
  int64_t c_len_ = 0;
  at::Tensor decode_meta_;  // int32 [2] on the device: block table {0}, seq_lens {c_len + 1}
  at::Tensor prepared_meta_;  // the same for prepared steps: one buffer for the cache's life (graphs read it)
  int64_t prepared_step_ = -1;  // ctx.step PrepareDecodeStep ran for
  bool prepared_pending_ = false;  // a prepared step appended a token EndStep has not booked yet
  uint64_t id_ = 0;
  std::optional<DenseDecodeWave> wave_;  // the decode split planner's device facts, read once
  std::vector<int32_t> c_pos_;
  // T (accumulate): the previous block's local window, [Ly, Hkv, |T|, D].
  at::Tensor tk_, tv_;
  std::vector<int32_t> t_pos_;
  // The current block: [Ly, Hkv, b_i, D] K and V staged by Forward.
  at::Tensor bk_, bv_;
  int64_t b_len_ = 0, b_start_ = 0;
  at::Tensor probe_keys_;  // [Hkv, q, D] the probe's last-layer keys
  at::Tensor scores_;      // [Wn] fp32 K1 sums of the current block
  int64_t sink_len_ = 0;   // accumulate: anchors heading the score window (header)
  at::Tensor projection_;  // [D, L*K] fp32 R (§6.7), made on first use

  // Report.
  int64_t tokens_seen_ = 0;  // prompt tokens appended or staged + generated
  int64_t peak_bytes_ = 0;
  int64_t kept_after_prefill_ = 0;
  int64_t blocks_done_ = 0;
  int64_t picks_exact_ = 0, picks_lsh_ = 0, tail_candidates_ = 0, tail_reselected_ = 0;
  int64_t history_candidates_ = 0, lsh_survivors_ = 0, lsh_fallback_ = 0, window_tokens_ = 0;
  double scoring_ms_ = 0, lsh_ms_ = 0, compaction_ms_ = 0;
};

}  // namespace kvstream
