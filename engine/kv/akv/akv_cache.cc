#include "engine/kv/akv/akv_cache.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "engine/status_macros.h"

namespace kvstream {
namespace {

double NowMs() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

absl::Status KernelError(const char* what, const char* why) {
  return absl::InternalError(absl::StrCat("akv ", what, ": ", why ? why : "invalid parameters"));
}

}  // namespace

AkvSequenceCache::AkvSequenceCache(const AkvConfig& config, const AkvPlan& plan, const KvGeometry& g)
    : config_(config), plan_(plan), geometry_(g) {
  static std::atomic<uint64_t> next_id{1};
  id_ = next_id.fetch_add(1);
}

absl::Status AkvSequenceCache::Init() {
  managed_ = AllocateTierSet(plan_.managed, plan_.managed_layers, plan_.stage_rows, geometry_.device);
  dense_ = AllocateTierSet(plan_.dense, plan_.dense_layers, 0, geometry_.device);
  if (plan_.stage_rows > 0) {
    cold_ = std::make_unique<AkvColdTier>(plan_.managed_layers, plan_.managed.num_kv_heads, plan_.managed.head_dim,
                                          plan_.managed.group_size, plan_.cold_bits);
  }
  const size_t L = static_cast<size_t>(plan_.managed_layers);
  cold_promoted_.assign(L, 0);
  if (plan_.scan_rows > 0) {
    scan_cursor_.assign(L, 0);
    if (!geometry_.device.is_cuda()) {  // CUDA keeps them on the device (akv_cold_scan_cuda.cc)
      scan_q_.assign(L * geometry_.n_heads * plan_.managed.head_dim * KvDTypeSize(plan_.managed.dtype), 0);
      scan_lse_.assign(L * geometry_.n_heads, 0.0f);
      scan_has_query_.assign(L, false);
    }
  }
  const int64_t rows = plan_.StepRows();
  lse_ = at::empty({rows, geometry_.n_heads}, at::TensorOptions().dtype(at::kFloat).device(geometry_.device));
  pos_buf_ = at::empty({rows}, at::TensorOptions().dtype(at::kInt).device(geometry_.device));
  pos_host_ = at::empty({1}, at::TensorOptions().dtype(at::kInt).pinned_memory(geometry_.device.is_cuda()));
  host_counts_.assign(static_cast<size_t>(plan_.managed_layers) * kAkvCountSlots, 0);
  if (geometry_.device.is_cuda()) KV_RETURN_IF_ERROR(InitCuda());
  peak_bytes_ = BytesHeld();
  return absl::OkStatus();
}

absl::Status AkvSequenceCache::CheckStart(int64_t layer, const SeqStep& seq) const {
  if (layer < 0 || layer >= geometry_.n_layers) {
    return absl::InternalError(absl::StrCat("akv: layer ", layer, " out of range [0, ", geometry_.n_layers, ")"));
  }
  if (seq.start_pos != seen_) {
    return absl::InternalError(
        absl::StrCat("akv: step starts at position ", seq.start_pos, " but the cache has seen ", seen_, " tokens"));
  }
  if (seen_ + seq.n_new > plan_.max_tokens) {
    return absl::InternalError(absl::StrCat("akv: ", seen_ + seq.n_new, " tokens exceed the ", plan_.max_tokens,
                                            " the cache was sized for"));
  }
  if (seq.n_new < 1 || seq.n_new > lse_.size(0)) {
    return absl::InternalError(absl::StrCat("akv: step of ", seq.n_new, " rows (at most ", lse_.size(0), ")"));
  }
  return absl::OkStatus();
}

absl::Status AkvSequenceCache::StepPositions(int n, const StepContext& ctx) {
  if (ctx.decode_prepared) {
    // PrepareDecodeStep put the position in pos_buf_ already: nothing here
    // may depend on host values that change between graph replays.
    if (prepared_step_ != ctx.step || n != 1) {
      return absl::InternalError(absl::StrCat("akv: prepared decode step ", ctx.step, " was not prepared"));
    }
    pos_ = pos_buf_.narrow(0, 0, 1);
  } else if (pos_step_ != ctx.step || pos_.numel() != n) {
    pos_ = pos_buf_.narrow(0, 0, n);
    at::arange_out(pos_, at::Scalar(seen_), at::Scalar(seen_ + n), at::Scalar(1));
    pos_step_ = ctx.step;
  }
  step_rows_ = n;
  return absl::OkStatus();
}

std::optional<AkvScoreParams> AkvSequenceCache::ScoreParams(int64_t layer, const at::Tensor& q, int n) {
  if (!plan_.IsManaged(layer) || config_.scoring == AkvScoring::kFifo) return std::nullopt;
  AkvScoreParams sp;
  sp.layout = managed_.layout;
  sp.tiers = managed_.Tiers();
  sp.layer = plan_.Index(layer);
  sp.q = q.const_data_ptr();
  sp.q_pos = pos_.const_data_ptr<int32_t>();
  sp.lse = lse_.const_data_ptr<float>();
  sp.q_stride_m = q.stride(0);
  sp.q_stride_h = q.stride(1);
  sp.num_rows = n;
  sp.num_heads = static_cast<int>(geometry_.n_heads);
  sp.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(geometry_.head_dim)));
  sp.mode = config_.scoring;
  sp.decay = config_.importance_decay;
  sp.attention_weight = config_.attention_weight;
  sp.recency_weight = config_.recency_weight;
  sp.max_positions = static_cast<int>(plan_.max_tokens);
  // Cold scan: the update also keeps the layer's last query row and lse.
  if (!scan_has_query_.empty()) {  // CPU
    sp.q_keep = scan_q_.data() + int64_t(sp.layer) * sp.num_heads * managed_.layout.head_dim *
                                     static_cast<int64_t>(KvDTypeSize(managed_.layout.dtype));
    sp.lse_keep = scan_lse_.data() + int64_t(sp.layer) * sp.num_heads;
    scan_has_query_[sp.layer] = true;
  } else if (scan_cuda_) {
    std::tie(sp.q_keep, sp.lse_keep) = ColdScanKeep(sp.layer);
  }
  return sp;
}

absl::Status AkvSequenceCache::Attend(int64_t layer, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                      at::Tensor& out, const SeqStep& seq, const StepContext& ctx) {
  KV_RETURN_IF_ERROR(CheckStart(layer, seq));
  const int n = static_cast<int>(seq.n_new);
  KV_RETURN_IF_ERROR(StepPositions(n, ctx));
  AkvTierSet& set = plan_.IsManaged(layer) ? managed_ : dense_;
  const int idx = plan_.Index(layer);
  // One set of kernel parameters for both paths. The kernels and twins read
  // k and v rows with one stride and packed heads.
  const bool packed = k.stride(2) == 1 && k.stride(1) == k.size(2) && v.stride(2) == 1 &&
                      v.stride(1) == v.size(2) && v.stride(0) == k.stride(0);
  const at::Tensor kc = packed ? k : k.contiguous();
  const at::Tensor vc = packed ? v : v.contiguous();
  AkvAppendParams ap;
  ap.layout = set.layout;
  ap.tiers = set.Tiers();
  ap.layer = idx;
  ap.k = kc.const_data_ptr();
  ap.v = vc.const_data_ptr();
  ap.pos = pos_.const_data_ptr<int32_t>();
  ap.row_stride = kc.stride(0);
  ap.rows = n;
  const std::optional<AkvScoreParams> sp = ScoreParams(layer, q, n);
  if (geometry_.device.is_cuda()) return AttendCuda(layer, set, idx, ap, sp ? &*sp : nullptr, q, out, n);

  // CPU: append and score through the kernels' twins; attention through ATen
  // on the dequantized tiers (AttendCpu), the same math as the twin.
  if (!AkvAppendRef(ap)) return KernelError("append", AkvAppendValidate(ap));
  KV_RETURN_IF_ERROR(AttendCpu(set, idx, q, out, n));
  if (!sp) return absl::OkStatus();
  const double t0 = NowMs();
  if (!AkvScoreUpdateRef(*sp)) return KernelError("score update", AkvScoreValidate(*sp));
  compression_ms_ += NowMs() - t0;
  return absl::OkStatus();
}

absl::Status AkvSequenceCache::PrepareDecodeStep(const SeqStep& seq, const StepContext& ctx) {
  if (seq.n_new != 1) return absl::InternalError("akv: a prepared decode step appends one token");
  KV_RETURN_IF_ERROR(CheckStart(0, seq));
  KV_RETURN_IF_ERROR(JoinAside(/*step_start=*/true));  // before the replay (on this stream) touches the tiers
  pos_host_.data_ptr<int32_t>()[0] = static_cast<int32_t>(seen_);
  pos_buf_.narrow(0, 0, 1).copy_(pos_host_, /*non_blocking=*/true);  // current stream, before the replay
  prepared_step_ = ctx.step;
  step_rows_ = 1;
  return absl::OkStatus();
}

absl::Status AkvSequenceCache::AttendCpu(AkvTierSet& set, int idx, const at::Tensor& q, at::Tensor& out, int n) {
  const AkvLayout& lay = set.layout;
  const int32_t* counts = set.counts.const_data_ptr<int32_t>() + int64_t(idx) * kAkvCountSlots;
  const int64_t n_hot = counts[kAkvNHot], n_warm = lay.warm_capacity > 0 ? counts[kAkvNWarm] : 0;
  const int64_t Hkv = lay.num_kv_heads, D = lay.head_dim, H = geometry_.n_heads, G = H / Hkv;
  at::Tensor K = set.hot_k[idx].narrow(0, 0, n_hot).to(at::kFloat);
  at::Tensor V = set.hot_v[idx].narrow(0, 0, n_hot).to(at::kFloat);
  at::Tensor pos = set.hot_pos[idx].narrow(0, 0, n_hot);
  if (n_warm > 0) {
    // Warm rows dequantized exactly as the kernels' twin does (x^ = code*scale + zero).
    const AkvTiers t = AkvTiersAtLayer(set.Tiers(), lay, idx);
    at::Tensor wk = at::empty({n_warm, Hkv, D}, at::kFloat), wv = at::empty({n_warm, Hkv, D}, at::kFloat);
    AkvDequantParams dp;
    dp.rows = static_cast<int>(n_warm);
    dp.num_kv_heads = static_cast<int>(Hkv);
    dp.head_dim = static_cast<int>(D);
    dp.bits = lay.warm_bits;
    dp.group_size = lay.group_size;
    dp.dtype = KvDType::kFp32;
    dp.codes = t.warm_k, dp.scale = t.warm_k_scale, dp.zero = t.warm_k_zero, dp.x = wk.data_ptr();
    if (!AkvDequantRef(dp)) return KernelError("dequant", AkvDequantValidate(dp));
    dp.codes = t.warm_v, dp.scale = t.warm_v_scale, dp.zero = t.warm_v_zero, dp.x = wv.data_ptr();
    if (!AkvDequantRef(dp)) return KernelError("dequant", AkvDequantValidate(dp));
    K = at::cat({K, wk}, 0);
    V = at::cat({V, wv}, 0);
    pos = at::cat({pos, set.warm_pos[idx].narrow(0, 0, n_warm)}, 0);
  }
  const int64_t T = K.size(0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  at::Tensor q4 = q.to(at::kFloat).view({n, Hkv, G, D}).permute({1, 2, 0, 3});  // [Hkv, G, n, D]
  at::Tensor z = at::matmul(q4, K.permute({1, 2, 0}).unsqueeze(1)).mul_(scale);  // [Hkv, G, n, T]
  at::Tensor hidden = pos.view({1, T}) > pos_.view({n, 1});                     // causal by stored position
  z.masked_fill_(hidden, -std::numeric_limits<float>::infinity());
  at::Tensor l = at::logsumexp(z, -1, /*keepdim=*/true);  // every row sees at least its own key
  at::Tensor o = at::matmul(at::exp(z - l), V.permute({1, 0, 2}).unsqueeze(1));  // [Hkv, G, n, D]
  out.copy_(o.permute({2, 0, 1, 3}).reshape({n, H, D}));
  lse_.narrow(0, 0, n).copy_(l.squeeze(-1).permute({2, 0, 1}).reshape({n, H}));
  return absl::OkStatus();
}

absl::StatusOr<at::Tensor> AkvSequenceCache::Forward(int64_t layer, const at::Tensor& q, const at::Tensor& k,
                                                     const at::Tensor& v, const SeqStep& seq,
                                                     const StepContext& ctx) {
  // Head-major contract of SequenceCache -> the row-major form of Attend.
  at::Tensor qr = q.transpose(0, 1).contiguous(), kr = k.transpose(0, 1).contiguous(),
             vr = v.transpose(0, 1).contiguous();
  at::Tensor out = at::empty_like(qr);
  KV_RETURN_IF_ERROR(Attend(layer, qr, kr, vr, out, seq, ctx));
  return out.transpose(0, 1).contiguous();
}

absl::Status AkvSequenceCache::EndStep(const SeqStep& seq, const StepContext&) {
  if (seq.n_new != step_rows_) {
    return absl::InternalError(absl::StrCat("akv: EndStep for ", seq.n_new, " rows after a step of ", step_rows_));
  }
  seen_ += seq.n_new;  // akv.md §4 step 8
  step_rows_ = 0;
  absl::Status s = plan_.managed_layers == 0 ? absl::OkStatus()
                   : geometry_.device.is_cuda() ? EndStepCuda()
                                                : EndStepCpu();
  peak_bytes_ = std::max(peak_bytes_, BytesHeld());
  return s;
}

AkvSelectParams AkvSequenceCache::SelectParams() const {
  AkvSelectParams sel;
  sel.layout = managed_.layout;
  sel.tiers = managed_.Tiers();
  sel.lists = managed_.Lists();
  sel.policy = config_.Policy(seen_);
  sel.num_layers = plan_.managed_layers;
  return sel;
}

AkvMigrateParams AkvSequenceCache::MigrateParams() const {
  AkvMigrateParams mig;
  mig.layout = managed_.layout;
  mig.tiers = managed_.Tiers();
  mig.lists = managed_.Lists();
  mig.stage = managed_.Stage();
  mig.num_layers = plan_.managed_layers;
  return mig;
}

absl::Status AkvSequenceCache::EndStepCpu() {
  const double t0 = NowMs();
  const AkvSelectParams sel = SelectParams();
  if (!AkvSelectRef(sel)) return KernelError("select", AkvSelectValidate(sel));
  const AkvMigrateParams mig = MigrateParams();
  if (!AkvMigrateRef(mig)) return KernelError("migrate", AkvMigrateValidate(mig));
  if (cold_ != nullptr) {
    const int32_t* counts = managed_.counts.const_data_ptr<int32_t>();
    AkvColdScratch scratch;
    for (int l = 0; l < plan_.managed_layers; ++l) {
      const int n = std::min(counts[l * kAkvCountSlots + kAkvNCold], plan_.stage_rows);
      if (n <= 0) continue;
      cold_saturations_ += AkvRequantizeStageRows(managed_.layout, mig.stage, l, n, plan_.cold_bits, &scratch);
      cold_->Append(l, scratch.View(n));
    }
    if (!scan_has_query_.empty() && ++steps_since_scan_ >= config_.cold_scan_interval) {
      steps_since_scan_ = 0;
      KV_RETURN_IF_ERROR(ColdScanCpu());
    }
  }
  compression_ms_ += NowMs() - t0;
  return absl::OkStatus();
}

const int32_t* AkvSequenceCache::HostCounts() const {
  if (!geometry_.device.is_cuda()) return managed_.counts.const_data_ptr<int32_t>();
  return host_counts_.data();
}

int64_t AkvSequenceCache::DeviceBytesHeld() const {
  return managed_.Bytes() + dense_.Bytes() + lse_.nbytes() + pos_buf_.nbytes() + AkvCudaStateBytes(cuda_.get()) +
         AkvScanCudaBytes(scan_cuda_.get());
}

int64_t AkvSequenceCache::BytesHeld() const { return DeviceBytesHeld() + (cold_ != nullptr ? cold_->Bytes() : 0); }

}  // namespace kvstream
