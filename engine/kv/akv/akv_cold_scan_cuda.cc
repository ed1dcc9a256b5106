// The cold scan on CUDA servers (akv.md §4 step 7, §6 "Cold tier": "H2D only
// packed cold keys of a bounded window per interval, score with the saved
// q_last/lse, promote next step"; pipeline in akv_cold_scan.h). Transfers run
// on the scan's own copy stream, the compute stream waits only on events of
// transfers issued a step earlier, and the host waits for the gather and the
// shares a step after it started them (done by then: a step ends in a host
// sync), so the scan's timing, and with it the tokens, never depend on load.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <future>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "engine/kv/akv/akv_cache.h"
#include "engine/status_macros.h"

#ifdef KVSTREAM_HAVE_CUDA_TORCH
#include <ATen/cuda/CUDAContext.h>
#include <cuda_runtime_api.h>
#endif

namespace kvstream {

#ifdef KVSTREAM_HAVE_CUDA_TORCH

namespace {

// Stages of the scan in flight, one per EndStep (akv_cold_scan.h).
enum ScanPhase : int { kIdle = 0, kGathering = 1, kWindowSent = 2, kScored = 3, kPicksSent = 4, kAppended = 5 };

absl::Status Cuda(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("akv cold scan ", what, ": ", cudaGetErrorString(e)));
}

}  // namespace

struct AkvScanCudaState {
  AkvScanLayout lay{};
  at::Tensor dev;           // [lay.total] bytes
  uint8_t* host = nullptr;  // pinned: window mirror [0, win_end) | stage mirror | shares [Lm, W] fp32
  cudaStream_t copy = nullptr;
  cudaEvent_t window_in = nullptr, scored = nullptr, shares_out = nullptr, picks_in = nullptr, appended = nullptr;
  bool scored_once = false, appended_once = false;
  // The window's gather into the pinned mirror, on a thread of its own: ~10
  // MB for an 8B-model sequence, which the step's host thread must not copy.
  std::future<void> gather;

  uint8_t* Dev(int64_t off) { return dev.data_ptr<uint8_t>() + off; }
  uint8_t* HostStage(int64_t off) { return host + lay.win_end + (off - lay.stage_begin); }
  float* HostShares() { return reinterpret_cast<float*>(host + lay.win_end + (lay.stage_end - lay.stage_begin)); }
  // The promotion stage at `at(offset)` (device or host mirror), P rows per layer.
  template <class At>
  static AkvColdStage Stage(const AkvScanLayout& l, const AkvPlan& p, At at) {
    const int64_t g = int64_t(p.managed_layers) * p.scan_picks * p.managed.num_kv_heads * p.managed.Groups() * 2;
    return AkvColdStage{at(l.st_k),
                        at(l.st_v),
                        reinterpret_cast<uint16_t*>(at(l.st_groups)),
                        reinterpret_cast<uint16_t*>(at(l.st_groups + g)),
                        reinterpret_cast<uint16_t*>(at(l.st_groups + 2 * g)),
                        reinterpret_cast<uint16_t*>(at(l.st_groups + 3 * g)),
                        reinterpret_cast<int32_t*>(at(l.st_pos)),
                        reinterpret_cast<float*>(at(l.st_score)),
                        p.scan_picks};
  }

  ~AkvScanCudaState() {
    if (gather.valid()) gather.wait();  // it writes the pinned mirror and reads cold blocks
    if (copy) cudaStreamSynchronize(copy);
    for (cudaEvent_t e : {window_in, scored, shares_out, picks_in, appended}) {
      if (e) cudaEventDestroy(e);
    }
    if (copy) cudaStreamDestroy(copy);
    if (host) cudaFreeHost(host);
  }
};

void AkvScanCudaStateDeleter::operator()(AkvScanCudaState* s) const { delete s; }
int64_t AkvScanCudaBytes(const AkvScanCudaState* s) { return s ? s->lay.total : 0; }
int64_t AkvScanCudaHostBytes(const AkvScanCudaState* s) { return s ? s->lay.host_bytes : 0; }

absl::Status AkvSequenceCache::InitColdScanCuda() {
  scan_cuda_.reset(new AkvScanCudaState());
  AkvScanCudaState& s = *scan_cuda_;
  s.lay = MakeAkvScanLayout(plan_, geometry_.n_heads);
  s.dev = at::zeros({s.lay.total}, at::TensorOptions().dtype(at::kByte).device(geometry_.device));
  KV_RETURN_IF_ERROR(Cuda(cudaStreamCreateWithFlags(&s.copy, cudaStreamNonBlocking), "stream"));
  for (cudaEvent_t* e : {&s.window_in, &s.scored, &s.shares_out, &s.picks_in, &s.appended}) {
    KV_RETURN_IF_ERROR(Cuda(cudaEventCreateWithFlags(e, cudaEventDisableTiming), "event"));
  }
  KV_RETURN_IF_ERROR(Cuda(cudaHostAlloc(reinterpret_cast<void**>(&s.host), s.lay.host_bytes, 0), "pinned"));
  std::fill(s.host, s.host + s.lay.host_bytes, uint8_t{0});
  scan_first_.assign(static_cast<size_t>(plan_.managed_layers), 0);
  scan_window_.assign(static_cast<size_t>(plan_.managed_layers), 0);
  scan_picks_.assign(static_cast<size_t>(plan_.managed_layers), AkvColdPicks{});
  return absl::OkStatus();
}

std::pair<void*, float*> AkvSequenceCache::ColdScanKeep(int idx) {
  AkvScanCudaState& s = *scan_cuda_;
  const int64_t H = geometry_.n_heads, D = geometry_.head_dim;
  const int64_t esz = static_cast<int64_t>(KvDTypeSize(plan_.managed.dtype));
  return {s.Dev(s.lay.q_live) + idx * H * D * esz, reinterpret_cast<float*>(s.Dev(s.lay.lse_live)) + idx * H};
}

absl::Status AkvSequenceCache::ColdScanCudaStage() {
  AkvScanCudaState& s = *scan_cuda_;
  const AkvScanLayout& sl = s.lay;
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int Lm = plan_.managed_layers, W = plan_.scan_rows, P = plan_.scan_picks;
  const AkvLayout& lay = plan_.managed;
  const int64_t H = geometry_.n_heads, D = lay.head_dim, hkv = lay.num_kv_heads, gn = lay.Groups();
  const int64_t cc = D * plan_.cold_bits / 8, esz = static_cast<int64_t>(KvDTypeSize(lay.dtype));
  ++steps_since_scan_;

  if (scan_phase_ == kIdle) {
    // 1. Freeze this step's queries; a thread gathers the windows' key codes.
    if (steps_since_scan_ < config_.cold_scan_interval) return absl::OkStatus();
    bool any = false;
    for (int l = 0; l < Lm; ++l) any = any || cold_->Rows(l) > 0;
    if (!any) return absl::OkStatus();
    // The freeze first: nothing below may fail with the gather thread running.
    KV_RETURN_IF_ERROR(Cuda(cudaMemcpyAsync(s.Dev(sl.q_frozen), s.Dev(sl.q_live), Lm * H * D * esz,
                                            cudaMemcpyDeviceToDevice, stream),
                            "freeze query"));
    KV_RETURN_IF_ERROR(Cuda(cudaMemcpyAsync(s.Dev(sl.lse_frozen), s.Dev(sl.lse_live), Lm * H * 4,
                                            cudaMemcpyDeviceToDevice, stream),
                            "freeze lse"));
    steps_since_scan_ = 0;
    ++cold_scans_;
    auto* counts = reinterpret_cast<int32_t*>(s.host + sl.win_counts);
    std::fill(counts, counts + Lm * kAkvCountSlots, 0);
    std::vector<std::pair<std::vector<AkvColdKeyRun>, int64_t>> jobs;  // (runs, first window row of the layer)
    for (int l = 0; l < Lm; ++l) {
      const int64_t rows = cold_->Rows(l);
      const int64_t first = scan_cursor_[l] < rows ? scan_cursor_[l] : 0;
      const int n = static_cast<int>(std::min<int64_t>(W, rows - first));
      scan_cursor_[l] = first + n;
      scan_first_[l] = first;
      scan_window_[l] = n;
      scan_picks_[l] = AkvColdPicks{};
      counts[l * kAkvCountSlots + kAkvNWarm] = n;
      if (n > 0) jobs.emplace_back(cold_->KeyRuns(l, first, n), int64_t(l) * W);
    }
    *reinterpret_cast<int32_t*>(s.host + sl.win_qpos) = static_cast<int32_t>(seen_ - 1);
    uint8_t* host = s.host;
    auto gather = [jobs = std::move(jobs), host, sl, hkv, cc, gn] {
      for (const auto& [runs, r0] : jobs) {
        uint8_t* const dst[4] = {host + sl.win_k + r0 * hkv * cc, host + sl.win_scale + r0 * hkv * gn * 2,
                                 host + sl.win_zero + r0 * hkv * gn * 2, host + sl.win_pos + r0 * 4};
        AkvCopyKeyRuns(runs, dst);
      }
    };
    try {
      s.gather = std::async(std::launch::async, gather);  // a copy: the fallback below needs the original
    } catch (const std::system_error&) {  // no thread to be had: gather here, once
      s.gather = std::async(std::launch::deferred, std::move(gather));
      s.gather.wait();
    }
    scan_phase_ = kGathering;
    return absl::OkStatus();
  }

  if (scan_phase_ == kGathering) {
    // 2. Once the gather is done: the window goes H2D.
    // Waited for, not polled: a scan's timing must not depend on the host's
    // load (the same request gives the same tokens). A step later it is done.
    s.gather.get();
    // The last scan's score kernel has read the device window long ago; say so to the stream order.
    if (s.scored_once) KV_RETURN_IF_ERROR(Cuda(cudaStreamWaitEvent(s.copy, s.scored, 0), "copy wait"));
    KV_RETURN_IF_ERROR(Cuda(cudaMemcpyAsync(s.Dev(0), s.host, sl.win_end, cudaMemcpyHostToDevice, s.copy),
                            "window H2D"));
    KV_RETURN_IF_ERROR(Cuda(cudaEventRecord(s.window_in, s.copy), "event"));
    h2d_bytes_ += sl.win_end;
    scan_phase_ = kWindowSent;
    return absl::OkStatus();
  }

  if (scan_phase_ == kWindowSent) {
    // 3. Rate each window as a warm tier of cold_bits codes beside an empty
    // hot tier (the score kernel, akv_manage.h); the shares go D2H.
    KV_RETURN_IF_ERROR(Cuda(cudaStreamWaitEvent(stream, s.window_in, 0), "window wait"));
    AkvTiers window;
    window.hot_k = s.Dev(sl.hot);
    window.hot_pos = reinterpret_cast<int32_t*>(s.Dev(sl.hot_meta));
    window.hot_score = reinterpret_cast<float*>(s.Dev(sl.hot_meta) + Lm * 4);
    window.warm_k = s.Dev(sl.win_k);
    window.warm_k_scale = reinterpret_cast<uint16_t*>(s.Dev(sl.win_scale));
    window.warm_k_zero = reinterpret_cast<uint16_t*>(s.Dev(sl.win_zero));
    window.warm_pos = reinterpret_cast<int32_t*>(s.Dev(sl.win_pos));
    window.warm_score = reinterpret_cast<float*>(s.Dev(sl.win_w));
    window.warm_a = reinterpret_cast<float*>(s.Dev(sl.win_a));
    window.counts = reinterpret_cast<int32_t*>(s.Dev(sl.win_counts));
    AkvScoreParams sp = AkvColdWindowScoreParams(lay, plan_.cold_bits, W, lay.dtype, static_cast<int>(H), window);
    sp.q_pos = reinterpret_cast<const int32_t*>(s.Dev(sl.win_qpos));
    for (int l = 0; l < Lm; ++l) {
      if (scan_window_[l] == 0) continue;
      sp.layer = l;
      sp.q = s.Dev(sl.q_frozen) + int64_t(l) * H * D * esz;
      sp.lse = reinterpret_cast<const float*>(s.Dev(sl.lse_frozen)) + int64_t(l) * H;
      KV_RETURN_IF_ERROR(Cuda(LaunchAkvScoreUpdate(sp, stream), "score"));
    }
    KV_RETURN_IF_ERROR(Cuda(cudaEventRecord(s.scored, stream), "event"));
    s.scored_once = true;
    KV_RETURN_IF_ERROR(Cuda(cudaStreamWaitEvent(s.copy, s.scored, 0), "copy wait"));
    KV_RETURN_IF_ERROR(Cuda(cudaMemcpyAsync(s.HostShares(), s.Dev(sl.win_a), int64_t(Lm) * W * 4,
                                            cudaMemcpyDeviceToHost, s.copy),
                            "shares D2H"));
    KV_RETURN_IF_ERROR(Cuda(cudaEventRecord(s.shares_out, s.copy), "event"));
    d2h_bytes_ += int64_t(Lm) * W * 4;
    scan_phase_ = kScored;
    return absl::OkStatus();
  }

  if (scan_phase_ == kScored) {
    // 4. Once the shares are here: pick, re-quantize to warm_bits, H2D.
    // Synced, not polled (as the gather): done a step ago, the step ended in a host sync.
    KV_RETURN_IF_ERROR(Cuda(cudaEventSynchronize(s.shares_out), "shares"));
    const int cap = std::min(config_.PromoteCap(config_.EffectiveHotBudget(seen_)), P);
    const int limit = config_.WarmAfterStep();
    const AkvColdStage stage = AkvScanCudaState::Stage(sl, plan_, [&](int64_t o) { return s.HostStage(o); });
    auto* rows = reinterpret_cast<int32_t*>(s.HostStage(sl.st_rows));
    int64_t total = 0;
    for (int l = 0; l < Lm; ++l) {
      const int64_t first = scan_first_[l];
      AkvColdPicks& picks = scan_picks_[l];
      picks = AkvColdPicks{};
      rows[l] = 0;
      // Room by the counters a step old; the append clamps to the device's n_warm.
      const int room = std::min(cap, limit - host_counts_[l * kAkvCountSlots + kAkvNWarm]);
      if (scan_window_[l] == 0) continue;
      if (room <= 0) {  // as the CPU scan: this window waits for room instead of being passed over
        scan_cursor_[l] = first;
        continue;
      }
      const float* a = s.HostShares() + int64_t(l) * W;
      const int32_t* pos = reinterpret_cast<const int32_t*>(s.host + sl.win_pos) + int64_t(l) * W;
      for (int j : AkvBestShares(a, pos, scan_window_[l], config_.promote_threshold, room)) {
        picks.rows.push_back(first + j);
        picks.a.push_back(a[j]);
      }
      cold_saturations_ += AkvStageColdPicks(*cold_, l, picks, lay, plan_.cold_bits, stage, l);
      rows[l] = static_cast<int32_t>(picks.rows.size());
      total += rows[l];
    }
    if (total == 0) {
      scan_phase_ = kIdle;
      return absl::OkStatus();
    }
    if (s.appended_once) KV_RETURN_IF_ERROR(Cuda(cudaStreamWaitEvent(s.copy, s.appended, 0), "copy wait"));
    KV_RETURN_IF_ERROR(Cuda(cudaMemcpyAsync(s.Dev(sl.stage_begin), s.HostStage(sl.stage_begin),
                                            sl.stage_end - sl.stage_begin, cudaMemcpyHostToDevice, s.copy),
                            "picks H2D"));
    KV_RETURN_IF_ERROR(Cuda(cudaEventRecord(s.picks_in, s.copy), "event"));
    h2d_bytes_ += sl.stage_end - sl.stage_begin;
    scan_phase_ = kPicksSent;
    return absl::OkStatus();
  }

  if (scan_phase_ == kPicksSent) {
    // 5. Into warm against the device's n_warm (after this step's migrate).
    KV_RETURN_IF_ERROR(Cuda(cudaStreamWaitEvent(stream, s.picks_in, 0), "picks wait"));
    AkvColdAppendParams ap;
    ap.layout = lay;
    ap.tiers = managed_.Tiers();
    ap.stage = AkvScanCudaState::Stage(sl, plan_, [&](int64_t o) { return s.Dev(o); });
    ap.rows = reinterpret_cast<const int32_t*>(s.Dev(sl.st_rows));
    ap.warm_limit = config_.WarmAfterStep();
    ap.num_layers = Lm;
    KV_RETURN_IF_ERROR(Cuda(LaunchAkvColdAppend(ap, stream), "append"));
    KV_RETURN_IF_ERROR(Cuda(cudaEventRecord(s.appended, stream), "event"));
    s.appended_once = true;
    scan_phase_ = kAppended;
  }
  return absl::OkStatus();
}

void AkvSequenceCache::DropColdTaken() {
  if (scan_phase_ != kAppended) return;
  // 6. The counters now include the append: drop what it took from cold.
  for (int l = 0; l < plan_.managed_layers; ++l) {
    const int64_t taken = host_counts_[l * kAkvCountSlots + kAkvTotColdTaken] - cold_promoted_[l];
    AkvDropTakenColdRows(cold_.get(), l, scan_picks_[l], taken);
    cold_promoted_[l] += taken;
    scan_picks_[l] = AkvColdPicks{};
  }
  scan_phase_ = kIdle;
}

#else  // no CUDA in this build

struct AkvScanCudaState {};
void AkvScanCudaStateDeleter::operator()(AkvScanCudaState* s) const { delete s; }
int64_t AkvScanCudaBytes(const AkvScanCudaState*) { return 0; }
int64_t AkvScanCudaHostBytes(const AkvScanCudaState*) { return 0; }
absl::Status AkvSequenceCache::InitColdScanCuda() {
  return absl::FailedPreconditionError("this build has no CUDA kernels");
}
std::pair<void*, float*> AkvSequenceCache::ColdScanKeep(int) { return {nullptr, nullptr}; }
absl::Status AkvSequenceCache::ColdScanCudaStage() {
  return absl::FailedPreconditionError("this build has no CUDA kernels");
}
void AkvSequenceCache::DropColdTaken() {}

#endif

}  // namespace kvstream
