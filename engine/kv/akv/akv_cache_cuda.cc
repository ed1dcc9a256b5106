// The CUDA side of AkvSequenceCache: kernels of kernels/akv on the current
// stream, and the cold path (re-quantize on the compute stream, D2H on a copy
// stream, file on the host a step later) so no step waits for host memory.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "engine/env_switch.h"
#include "engine/kv/akv/akv_cache.h"
#include "engine/status_macros.h"

#ifdef KVSTREAM_HAVE_CUDA_TORCH
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#endif

namespace kvstream {

#ifdef KVSTREAM_HAVE_CUDA_TORCH

namespace {

// Cold rows of every managed layer, [Lm, S, ...] per array (akv_cold.h order).
struct ColdViews {
  uint8_t *k, *v;
  uint16_t *k_scale, *k_zero, *v_scale, *v_zero;
  int32_t* pos;
};

ColdViews ColdAt(uint8_t* base, const AkvPlan& p) {
  const AkvLayout& l = p.managed;
  const int64_t rows = int64_t(p.managed_layers) * p.stage_rows;
  const int64_t codes = rows * l.num_kv_heads * (l.head_dim * p.cold_bits / 8);
  const int64_t groups = rows * l.num_kv_heads * l.Groups();
  ColdViews v;
  v.k = base;
  v.v = base + codes;
  auto* g = reinterpret_cast<uint16_t*>(base + 2 * codes);
  v.k_scale = g;
  v.k_zero = g + groups;
  v.v_scale = g + 2 * groups;
  v.v_zero = g + 3 * groups;
  v.pos = reinterpret_cast<int32_t*>(g + 4 * groups);
  return v;
}

int64_t ColdBytes(const AkvPlan& p) {
  const AkvLayout& l = p.managed;
  const int64_t rows = int64_t(p.managed_layers) * p.stage_rows;
  return rows * (2 * int64_t(l.num_kv_heads) * (l.head_dim * p.cold_bits / 8) +
                 4 * int64_t(l.num_kv_heads) * l.Groups() * 2 + 4);
}

absl::Status Cuda(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("akv ", what, ": ", cudaGetErrorString(e)));
}

}  // namespace

struct AkvCudaState {
  cudaStream_t copy = nullptr;
  cudaEvent_t counts_ready = nullptr;  // counts copied to counts_host
  cudaEvent_t cold_ready = nullptr;    // cold staging re-quantized (compute stream)
  cudaEvent_t cold_copied = nullptr;   // cold_host filled (copy stream)
  cudaEvent_t t0 = nullptr, t1 = nullptr;  // EndStep kernels, for compression_ms
  // Decode score updates run aside (AttendCuda): nothing in the step reads
  // the scores until EndStep, so layer l's update overlaps layers l+1...
  cudaStream_t score = nullptr;
  cudaEvent_t score_fork = nullptr, score_join = nullptr;
  bool score_pending = false;  // launched on `score`, not joined back yet
  at::Tensor decode_lse;       // [Lm, H] fp32: each managed layer's decode lse, read by its update aside
  at::Tensor attn_rows;        // [n_layers] AkvAttnSeq (bytes): batched-decode row descriptor per model layer
  // EndStep's kernels (cold drain, select, migrate, counters) also run on
  // `score`, so the sequences of a batch do theirs at once; the next step
  // waits for them (JoinAside) before it touches the tiers.
  cudaEvent_t end_fork = nullptr, end_join = nullptr;
  bool end_pending = false;
  int num_sms = 1;
  at::Tensor cold_dev;      // [ColdBytes] u8, device
  at::Tensor temp;          // [S, Hkv, D] fp32, device: dequantized stage rows
  at::Tensor hybrid_ws;     // HYBRID score workspace
  uint8_t* cold_host = nullptr;   // pinned mirror of cold_dev
  int32_t* counts_host = nullptr; // pinned [Lm, 16]
  int64_t cold_bytes = 0, counts_bytes = 0;
  bool counts_pending = false, timing_pending = false;
  std::vector<int> cold_pending;  // rows per layer waiting in cold_host (empty = none)

  ~AkvCudaState() {
    if (copy) cudaStreamSynchronize(copy);
    if (score) cudaStreamSynchronize(score);
    for (cudaEvent_t e : {counts_ready, cold_ready, cold_copied, t0, t1, score_fork, score_join, end_fork, end_join}) {
      if (e) cudaEventDestroy(e);
    }
    if (copy) cudaStreamDestroy(copy);
    if (score) cudaStreamDestroy(score);
    if (cold_host) cudaFreeHost(cold_host);
    if (counts_host) cudaFreeHost(counts_host);
  }
};

namespace {

// `stream` waits for the score updates launched aside, if any.
absl::Status JoinScores(AkvCudaState& c, cudaStream_t stream) {
  if (!c.score_pending) return absl::OkStatus();
  KV_RETURN_IF_ERROR(Cuda(cudaEventRecord(c.score_join, c.score), "score join"));
  KV_RETURN_IF_ERROR(Cuda(cudaStreamWaitEvent(stream, c.score_join, 0), "score join wait"));
  c.score_pending = false;
  return absl::OkStatus();
}

}  // namespace

int64_t AkvCudaStateBytes(const AkvCudaState* s) {
  if (s == nullptr) return 0;
  int64_t b = s->cold_dev.defined() ? s->cold_dev.nbytes() : 0;
  if (s->temp.defined()) b += s->temp.nbytes();
  if (s->hybrid_ws.defined()) b += s->hybrid_ws.nbytes();
  if (s->decode_lse.defined()) b += s->decode_lse.nbytes();
  if (s->attn_rows.defined()) b += s->attn_rows.nbytes();
  return b;
}

int64_t AkvCudaStateHostBytes(const AkvCudaState* s) { return s ? s->cold_bytes + s->counts_bytes : 0; }

AkvSequenceCache::~AkvSequenceCache() = default;
void AkvCudaStateDeleter::operator()(AkvCudaState* s) const { delete s; }

absl::Status AkvSequenceCache::InitCuda() {
  cuda_.reset(new AkvCudaState());
  AkvCudaState& c = *cuda_;
  c.num_sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  KV_RETURN_IF_ERROR(Cuda(cudaStreamCreateWithFlags(&c.copy, cudaStreamNonBlocking), "copy stream"));
  KV_RETURN_IF_ERROR(Cuda(cudaStreamCreateWithFlags(&c.score, cudaStreamNonBlocking), "score stream"));
  for (cudaEvent_t* e :
       {&c.counts_ready, &c.cold_ready, &c.cold_copied, &c.score_fork, &c.score_join, &c.end_fork, &c.end_join}) {
    KV_RETURN_IF_ERROR(Cuda(cudaEventCreateWithFlags(e, cudaEventDisableTiming), "event"));
  }
  KV_RETURN_IF_ERROR(Cuda(cudaEventCreate(&c.t0), "event"));
  KV_RETURN_IF_ERROR(Cuda(cudaEventCreate(&c.t1), "event"));
  c.counts_bytes = int64_t(std::max(plan_.managed_layers, 1)) * kAkvCountSlots * 4;
  KV_RETURN_IF_ERROR(Cuda(cudaHostAlloc(reinterpret_cast<void**>(&c.counts_host), c.counts_bytes, 0), "pinned"));
  std::fill(c.counts_host, c.counts_host + c.counts_bytes / 4, 0);
  auto dev = at::TensorOptions().device(geometry_.device);
  if (plan_.stage_rows > 0) {
    c.cold_bytes = ColdBytes(plan_);
    c.cold_dev = at::empty({c.cold_bytes}, dev.dtype(at::kByte));
    c.temp = at::empty({plan_.stage_rows, plan_.managed.num_kv_heads, plan_.managed.head_dim}, dev.dtype(at::kFloat));
    KV_RETURN_IF_ERROR(Cuda(cudaHostAlloc(reinterpret_cast<void**>(&c.cold_host), c.cold_bytes, 0), "pinned"));
  }
  c.decode_lse = at::empty({std::max<int64_t>(plan_.managed_layers, 1), geometry_.n_heads}, dev.dtype(at::kFloat));
  if (config_.scoring == AkvScoring::kHybrid) {
    c.hybrid_ws = at::empty({static_cast<int64_t>(AkvScoreWorkspaceWords(static_cast<int>(plan_.max_tokens)))},
                            dev.dtype(at::kInt));
  }
  // Batched-decode descriptors: fixed for the cache's life (tiers and the
  // position buffer are allocated once), so captured graphs may keep them.
  std::vector<AkvAttnSeq> rows(static_cast<size_t>(geometry_.n_layers));
  for (int64_t l = 0; l < geometry_.n_layers; ++l) {
    AkvTierSet& set = plan_.IsManaged(l) ? managed_ : dense_;
    rows[l] = AkvAttnSeq{AkvTiersAtLayer(set.Tiers(), set.layout, plan_.Index(l)), pos_buf_.const_data_ptr<int32_t>(),
                         set.layout.hot_capacity, set.layout.warm_capacity};
  }
  const auto bytes = static_cast<int64_t>(rows.size() * sizeof(AkvAttnSeq));
  c.attn_rows = at::empty({bytes}, dev.dtype(at::kByte));
  c.attn_rows.copy_(at::from_blob(rows.data(), {bytes}, at::TensorOptions().dtype(at::kByte)));
  if (plan_.scan_rows > 0) return InitColdScanCuda();
  return absl::OkStatus();
}

namespace {

// Decode rows update their scores on the sequence's own stream (nothing in
// the step reads them before EndStep); KVSTREAM_AKV_SCORE_ASIDE=0: inline.
bool ScoreAside(const AkvScoreParams* sp) {
  static const bool aside = EnvSwitchOn("KVSTREAM_AKV_SCORE_ASIDE");
  return sp != nullptr && sp->num_rows == 1 && aside;
}

}  // namespace

absl::Status AkvSequenceCache::AttendCuda(int64_t layer, AkvTierSet& set, int idx, const AkvAppendParams& ap,
                                          const AkvScoreParams* sp, const at::Tensor& q, at::Tensor& out, int n) {
  AkvCudaState& c = *cuda_;
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  // Eager steps; a prepared decode step joined in PrepareDecodeStep.
  KV_RETURN_IF_ERROR(JoinAside(/*step_start=*/layer == 0));
  KV_RETURN_IF_ERROR(Cuda(LaunchAkvAppend(ap, stream), "append"));

  const int64_t H = geometry_.n_heads, D = geometry_.head_dim;
  // A decode row's update runs aside: its lse gets a slot of its own, which
  // the next layer's attention does not overwrite.
  at::Tensor o = out.is_contiguous() ? out : at::empty({n, H, D}, out.options());
  AkvAttentionParams p;
  p.layout = set.layout;
  p.tiers = ap.tiers;
  p.layer = idx;
  p.q = q.const_data_ptr();
  p.q_pos = ap.pos;
  p.out = o.data_ptr();
  p.lse = ScoreAside(sp) ? c.decode_lse.data_ptr<float>() + int64_t(idx) * H : lse_.data_ptr<float>();
  p.q_stride_m = q.stride(0);
  p.q_stride_h = q.stride(1);
  p.num_rows = n;
  p.num_heads = static_cast<int>(H);
  p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
  p.num_splits = PlanAkvAttentionSplits(n, static_cast<int>(H), set.layout.num_kv_heads,
                                        set.layout.hot_capacity + set.layout.warm_capacity, c.num_sms,
                                        static_cast<int>(side_by_side_));
  at::Tensor ws;
  if (p.num_splits > 1) {
    const auto w = AkvAttentionWorkspace(n, static_cast<int>(H), p.num_splits, static_cast<int>(D));
    ws = at::empty({static_cast<int64_t>((w.partial_out + w.partial_lse) / 4)}, lse_.options());
    p.partial_out = ws.data_ptr<float>();
    p.partial_lse = p.partial_out + w.partial_out / 4;
  }
  KV_RETURN_IF_ERROR(Cuda(LaunchAkvMixedAttention(p, stream), "mixed attention"));
  if (!o.is_same(out)) out.copy_(o);
  return ScoreCuda(layer, sp, p.lse, q, at::Tensor());
}

absl::Status AkvSequenceCache::ScoreCuda(int64_t layer, const AkvScoreParams* sp, const float* lse,
                                         const at::Tensor& q, const at::Tensor& lse_owner) {
  AkvCudaState& c = *cuda_;
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  if (sp != nullptr) {
    AkvScoreParams score = *sp;
    score.lse = lse;
    if (c.hybrid_ws.defined()) {
      score.workspace = reinterpret_cast<uint32_t*>(c.hybrid_ws.data_ptr<int32_t>());
    } else {
      score.max_positions = 0;  // only HYBRID reads it, through its workspace
    }
    if (ScoreAside(sp)) {
      KV_RETURN_IF_ERROR(Cuda(cudaEventRecord(c.score_fork, stream), "score fork"));
      KV_RETURN_IF_ERROR(Cuda(cudaStreamWaitEvent(c.score, c.score_fork, 0), "score fork wait"));
      // q (and a batch's lse) are the layer's activations: the allocator must
      // not hand their memory to the next layer before the update aside has read them.
      const c10::cuda::CUDAStream aside = c10::cuda::getStreamFromExternal(c.score, q.device().index());
      q.record_stream(aside);
      if (lse_owner.defined()) lse_owner.record_stream(aside);
      KV_RETURN_IF_ERROR(Cuda(LaunchAkvScoreUpdate(score, c.score), "score update"));
      c.score_pending = true;
    } else {
      KV_RETURN_IF_ERROR(Cuda(LaunchAkvScoreUpdate(score, stream), "score update"));
    }
  }
  // The step ends here for this sequence: EndStep's select reads the scores
  // (and a graph capture must see every stream it forked rejoin).
  if (layer == geometry_.n_layers - 1) return JoinScores(c, stream);
  return absl::OkStatus();
}

absl::StatusOr<const AkvAttnSeq*> AkvSequenceCache::BeginBatchedRow(int64_t layer, const SeqStep& seq,
                                                                   const StepContext& ctx) {
  KV_RETURN_IF_ERROR(CheckStart(layer, seq));
  if (seq.n_new != 1) return absl::InternalError("akv: a batched decode row appends one token");
  KV_RETURN_IF_ERROR(StepPositions(1, ctx));
  KV_RETURN_IF_ERROR(JoinAside(/*step_start=*/layer == 0));
  return reinterpret_cast<const AkvAttnSeq*>(cuda_->attn_rows.const_data_ptr<uint8_t>()) + layer;
}

absl::Status AkvSequenceCache::EndBatchedRow(int64_t layer, const at::Tensor& q_row, float* lse_row,
                                             const at::Tensor& lse_owner) {
  const std::optional<AkvScoreParams> sp = ScoreParams(layer, q_row, 1);
  return ScoreCuda(layer, sp ? &*sp : nullptr, lse_row, q_row, lse_owner);
}

absl::Status AkvSequenceCache::EndStepCuda() {
  static const bool aside = EnvSwitchOn("KVSTREAM_AKV_END_STEP_ASIDE");
  if (!aside || step_peers_ < 2) return EndStepKernels();
  AkvCudaState& c = *cuda_;
  const c10::cuda::CUDAStream caller = at::cuda::getCurrentCUDAStream();
  KV_RETURN_IF_ERROR(Cuda(cudaEventRecord(c.end_fork, caller.stream()), "end-step fork"));
  KV_RETURN_IF_ERROR(Cuda(cudaStreamWaitEvent(c.score, c.end_fork, 0), "end-step fork wait"));
  absl::Status s;
  {
    const c10::cuda::CUDAStreamGuard guard(c10::cuda::getStreamFromExternal(c.score, caller.device_index()));
    s = EndStepKernels();
  }
  KV_RETURN_IF_ERROR(Cuda(cudaEventRecord(c.end_join, c.score), "end-step join"));
  c.end_pending = true;
  return s;
}

absl::Status AkvSequenceCache::JoinAside(bool step_start) {
  if (!cuda_) return absl::OkStatus();
  AkvCudaState& c = *cuda_;
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  // Score updates of a step that failed before its last layer joined them.
  if (step_start) KV_RETURN_IF_ERROR(JoinScores(c, stream));
  if (!c.end_pending) return absl::OkStatus();
  c.end_pending = false;
  return Cuda(cudaStreamWaitEvent(stream, c.end_join, 0), "end-step join wait");
}

absl::Status AkvSequenceCache::EndStepKernels() {
  AkvCudaState& c = *cuda_;
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  if (c.timing_pending) {  // the previous step's kernels are done by now (every rank's step ends in a host sync)
    float ms = 0.0f;
    if (cudaEventSynchronize(c.t1) == cudaSuccess && cudaEventElapsedTime(&ms, c.t0, c.t1) == cudaSuccess) {
      compression_ms_ += ms;
    }
    c.timing_pending = false;
  }
  KV_RETURN_IF_ERROR(Cuda(cudaEventRecord(c.t0, stream), "event"));

  // 1. Rows the previous migrate staged: re-quantize to cold_bits, copy to host.
  KV_RETURN_IF_ERROR(DrainCounts());

  // 2. Select and migrate over every managed layer.
  KV_RETURN_IF_ERROR(Cuda(LaunchAkvSelect(SelectParams(), stream), "select"));
  KV_RETURN_IF_ERROR(Cuda(LaunchAkvMigrate(MigrateParams(), stream), "migrate"));
  // Cold scan (opt-in): the next stage of the scan in flight (akv_cold_scan_cuda.cc).
  if (scan_cuda_) KV_RETURN_IF_ERROR(ColdScanCudaStage());

  // 3. Counters to the host, read at the next EndStep.
  KV_RETURN_IF_ERROR(Cuda(cudaMemcpyAsync(c.counts_host, managed_.counts.const_data_ptr(),
                                          host_counts_.size() * sizeof(int32_t), cudaMemcpyDeviceToHost, stream),
                          "counts D2H"));
  KV_RETURN_IF_ERROR(Cuda(cudaEventRecord(c.counts_ready, stream), "event"));
  c.counts_pending = true;
  KV_RETURN_IF_ERROR(Cuda(cudaEventRecord(c.t1, stream), "event"));
  c.timing_pending = true;
  return absl::OkStatus();
}

absl::Status AkvSequenceCache::FileColdMirror() {
  AkvCudaState& c = *cuda_;
  if (c.cold_pending.empty()) return absl::OkStatus();
  KV_RETURN_IF_ERROR(Cuda(cudaEventSynchronize(c.cold_copied), "cold copy"));
  ColdViews h = ColdAt(c.cold_host, plan_);
  const AkvLayout& l = plan_.managed;
  const int64_t cc = l.head_dim * plan_.cold_bits / 8, gn = l.Groups(), hk = l.num_kv_heads;
  for (int li = 0; li < plan_.managed_layers; ++li) {
    if (c.cold_pending[li] == 0) continue;
    const int64_t r0 = int64_t(li) * plan_.stage_rows;
    AkvColdRows rows;
    rows.k = h.k + r0 * hk * cc;
    rows.v = h.v + r0 * hk * cc;
    rows.k_scale = h.k_scale + r0 * hk * gn;
    rows.k_zero = h.k_zero + r0 * hk * gn;
    rows.v_scale = h.v_scale + r0 * hk * gn;
    rows.v_zero = h.v_zero + r0 * hk * gn;
    rows.pos = h.pos + r0;
    rows.rows = c.cold_pending[li];
    cold_->Append(li, rows);
  }
  c.cold_pending.clear();
  return absl::OkStatus();
}

absl::Status AkvSequenceCache::DrainCounts() {
  AkvCudaState& c = *cuda_;
  if (!c.counts_pending) return absl::OkStatus();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  KV_RETURN_IF_ERROR(Cuda(cudaEventSynchronize(c.counts_ready), "counts"));
  c.counts_pending = false;
  host_counts_.assign(c.counts_host, c.counts_host + host_counts_.size());
  DropColdTaken();  // a cold scan's append is in these counters: its rows leave cold
  if (plan_.stage_rows == 0) return absl::OkStatus();
  std::vector<int> staged(static_cast<size_t>(plan_.managed_layers), 0);
  bool any = false;
  for (int l = 0; l < plan_.managed_layers; ++l) {
    staged[l] = std::min(host_counts_[l * kAkvCountSlots + kAkvNCold], plan_.stage_rows);
    any = any || staged[l] > 0;
  }
  if (!any) return absl::OkStatus();
  KV_RETURN_IF_ERROR(FileColdMirror());  // the mirror is about to be reused
  const AkvLayout& l = plan_.managed;
  const AkvColdStage st = managed_.Stage();
  ColdViews d = ColdAt(c.cold_dev.data_ptr<uint8_t>(), plan_);
  const int64_t hk = l.num_kv_heads, cb = l.CodeBytes(), cc = l.head_dim * plan_.cold_bits / 8, gn = l.Groups();
  for (int li = 0; li < plan_.managed_layers; ++li) {
    if (staged[li] == 0) continue;
    const int64_t r0 = int64_t(li) * plan_.stage_rows;
    for (int kv = 0; kv < 2; ++kv) {
      // Warm codes -> fp32 -> cold codes: the twins' exact math (akv_cold.cc).
      AkvDequantParams dq;
      dq.codes = (kv ? st.v : st.k) + r0 * hk * cb;
      dq.scale = (kv ? st.v_scale : st.k_scale) + r0 * hk * gn;
      dq.zero = (kv ? st.v_zero : st.k_zero) + r0 * hk * gn;
      dq.x = c.temp.data_ptr();
      dq.rows = staged[li];
      dq.num_kv_heads = static_cast<int>(hk);
      dq.head_dim = l.head_dim;
      dq.bits = l.warm_bits;
      dq.group_size = l.group_size;
      dq.dtype = KvDType::kFp32;
      KV_RETURN_IF_ERROR(Cuda(LaunchAkvDequant(dq, stream), "cold dequant"));
      AkvQuantizeParams qp;
      qp.x = c.temp.const_data_ptr();
      qp.codes = (kv ? d.v : d.k) + r0 * hk * cc;
      qp.scale = (kv ? d.v_scale : d.k_scale) + r0 * hk * gn;
      qp.zero = (kv ? d.v_zero : d.k_zero) + r0 * hk * gn;
      qp.rows = staged[li];
      qp.num_kv_heads = static_cast<int>(hk);
      qp.head_dim = l.head_dim;
      qp.bits = plan_.cold_bits;
      qp.group_size = l.group_size;
      qp.dtype = KvDType::kFp32;
      KV_RETURN_IF_ERROR(Cuda(LaunchAkvQuantizePack(qp, stream), "cold quantize"));
    }
    KV_RETURN_IF_ERROR(Cuda(cudaMemcpyAsync(d.pos + r0, st.pos + r0, staged[li] * sizeof(int32_t),
                                            cudaMemcpyDeviceToDevice, stream),
                            "cold positions"));
  }
  // The copy stream takes the staging to pinned memory while the next steps run.
  KV_RETURN_IF_ERROR(Cuda(cudaEventRecord(c.cold_ready, stream), "event"));
  KV_RETURN_IF_ERROR(Cuda(cudaStreamWaitEvent(c.copy, c.cold_ready, 0), "copy wait"));
  KV_RETURN_IF_ERROR(Cuda(
      cudaMemcpyAsync(c.cold_host, c.cold_dev.const_data_ptr(), c.cold_bytes, cudaMemcpyDeviceToHost, c.copy),
      "cold D2H"));
  KV_RETURN_IF_ERROR(Cuda(cudaEventRecord(c.cold_copied, c.copy), "event"));
  d2h_bytes_ += c.cold_bytes;
  c.cold_pending = staged;
  return absl::OkStatus();
}

absl::Status AkvSequenceCache::Flush() {
  if (!cuda_ || plan_.managed_layers == 0) return absl::OkStatus();
  KV_RETURN_IF_ERROR(JoinAside(/*step_start=*/true));
  KV_RETURN_IF_ERROR(DrainCounts());
  return FileColdMirror();
}

#else  // no CUDA in this build

struct AkvCudaState {};
void AkvCudaStateDeleter::operator()(AkvCudaState* s) const { delete s; }
int64_t AkvCudaStateBytes(const AkvCudaState*) { return 0; }
int64_t AkvCudaStateHostBytes(const AkvCudaState*) { return 0; }
AkvSequenceCache::~AkvSequenceCache() = default;
absl::Status AkvSequenceCache::InitCuda() { return absl::FailedPreconditionError("this build has no CUDA kernels"); }
absl::Status AkvSequenceCache::AttendCuda(int64_t, AkvTierSet&, int, const AkvAppendParams&, const AkvScoreParams*,
                                          const at::Tensor&, at::Tensor&, int) {
  return absl::FailedPreconditionError("this build has no CUDA kernels");
}
absl::Status AkvSequenceCache::EndStepCuda() { return absl::FailedPreconditionError("this build has no CUDA kernels"); }
absl::Status AkvSequenceCache::ScoreCuda(int64_t, const AkvScoreParams*, const float*, const at::Tensor&,
                                         const at::Tensor&) {
  return absl::FailedPreconditionError("this build has no CUDA kernels");
}
absl::StatusOr<const AkvAttnSeq*> AkvSequenceCache::BeginBatchedRow(int64_t, const SeqStep&, const StepContext&) {
  return absl::FailedPreconditionError("this build has no CUDA kernels");
}
absl::Status AkvSequenceCache::EndBatchedRow(int64_t, const at::Tensor&, float*, const at::Tensor&) {
  return absl::FailedPreconditionError("this build has no CUDA kernels");
}
absl::Status AkvSequenceCache::JoinAside(bool) { return absl::OkStatus(); }
absl::Status AkvSequenceCache::Flush() { return absl::OkStatus(); }

#endif

}  // namespace kvstream
