#include "engine/kv/akv/akv_batched_decode.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/env_switch.h"
#include "engine/status_macros.h"

#ifdef KVSTREAM_HAVE_CUDA_TORCH
#include <ATen/cuda/CUDAContext.h>
#include <cuda_runtime_api.h>
#endif

namespace kvstream {

namespace {

bool SameFamily(const AkvLayout& a, const AkvLayout& b) {
  return a.num_kv_heads == b.num_kv_heads && a.head_dim == b.head_dim && a.warm_bits == b.warm_bits &&
         a.group_size == b.group_size && a.dtype == b.dtype;
}

std::atomic<int64_t> g_batched_layers{0};

}  // namespace

int64_t AkvBatchedDecodeLayers() { return g_batched_layers.load(std::memory_order_relaxed); }

bool AkvBatchedDecodeApplies(int64_t layer, absl::Span<AkvSequenceCache* const> caches,
                             absl::Span<const SeqStep> steps, const GroupTensors& t) {
  // Read per call (a getenv per layer of an eager or captured step), so a
  // test can run both paths in one process.
  const bool on = EnvSwitchOptIn("KVSTREAM_AKV_BATCHED");
  const int64_t B = static_cast<int64_t>(caches.size());
  if (!on || B < 2 || !t.q.is_cuda() || t.q.scalar_type() != at::ScalarType::BFloat16) return false;
  if (t.q.size(0) < B || t.out.size(0) < B) return false;
  for (int64_t i = 0; i < B; ++i) {
    if (steps[i].n_new != 1 || t.row_offset[i] != i) return false;
  }
  const AkvLayout& lay = caches[0]->LayoutAt(layer);
  const int64_t H = t.q.size(1), D = t.q.size(2), Hkv = t.k.size(1);
  if (H % Hkv != 0 || H / Hkv > kAkvAttnMmaMaxGroup || lay.dtype != KvDType::kBf16) return false;
  for (AkvSequenceCache* c : caches) {
    if (!SameFamily(c->LayoutAt(layer), lay)) return false;
  }
  // The kernels read q with 16-byte loads and k/v/out as packed rows.
  const auto vec = [](int64_t stride) { return stride % 8 == 0; };
  const bool q_ok = t.q.stride(2) == 1 && vec(t.q.stride(1)) && vec(t.q.stride(0));
  const bool kv_ok = t.k.stride(2) == 1 && t.k.stride(1) == D && t.v.stride(2) == 1 && t.v.stride(1) == D &&
                     t.v.stride(0) == t.k.stride(0) && vec(t.k.stride(0));
  return q_ok && kv_ok && t.out.narrow(0, 0, B).is_contiguous();
}

#ifdef KVSTREAM_HAVE_CUDA_TORCH

absl::Status AkvBatchedDecode(int64_t layer, absl::Span<AkvSequenceCache* const> caches,
                              absl::Span<const SeqStep> steps, GroupTensors& t, const StepContext& ctx) {
  g_batched_layers.fetch_add(1, std::memory_order_relaxed);
  const int B = static_cast<int>(caches.size());
  const int64_t H = t.q.size(1), D = t.q.size(2);
  std::vector<const AkvAttnSeq*> rows(B);
  AkvLayout launch = caches[0]->LayoutAt(layer);  // capacities: the largest of the rows'
  for (int i = 0; i < B; ++i) {
    KV_ASSIGN_OR_RETURN(rows[i], caches[i]->BeginBatchedRow(layer, steps[i], ctx));
    const AkvLayout& l = caches[i]->LayoutAt(layer);
    launch.hot_capacity = std::max(launch.hot_capacity, l.hot_capacity);
    launch.warm_capacity = std::max(launch.warm_capacity, l.warm_capacity);
  }
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int num_sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int splits = PlanAkvAttentionSplits(1, static_cast<int>(H), launch.num_kv_heads,
                                            launch.hot_capacity + launch.warm_capacity, num_sms, B,
                                            /*one_launch=*/true);
  at::Tensor lse = at::empty({B, H}, t.q.options().dtype(at::kFloat));
  at::Tensor ws;
  float *partial_out = nullptr, *partial_lse = nullptr;
  if (splits > 1) {
    const auto w = AkvAttentionWorkspace(B, static_cast<int>(H), splits, static_cast<int>(D));
    ws = at::empty({static_cast<int64_t>((w.partial_out + w.partial_lse) / 4)}, lse.options());
    partial_out = ws.data_ptr<float>();
    partial_lse = partial_out + w.partial_out / 4;
  }
  const auto esz = static_cast<int64_t>(t.q.element_size());
  for (int b0 = 0; b0 < B; b0 += kAkvAttnMaxBatch) {
    const int n = std::min(B - b0, kAkvAttnMaxBatch);
    AkvAttnBatch batch;
    for (int i = 0; i < n; ++i) batch.seq[i] = rows[b0 + i];
    AkvAppendParams ap;
    ap.layout = launch;
    ap.batch = &batch;
    ap.k = static_cast<const uint8_t*>(t.k.const_data_ptr()) + b0 * t.k.stride(0) * esz;
    ap.v = static_cast<const uint8_t*>(t.v.const_data_ptr()) + b0 * t.v.stride(0) * esz;
    ap.row_stride = t.k.stride(0);
    ap.rows = n;
    cudaError_t e = LaunchAkvAppend(ap, stream);
    if (e != cudaSuccess) return absl::InternalError(absl::StrCat("akv batched append: ", cudaGetErrorString(e)));
    AkvAttentionParams p;
    p.layout = launch;
    p.batch = &batch;
    p.q = static_cast<const uint8_t*>(t.q.const_data_ptr()) + b0 * t.q.stride(0) * esz;
    p.out = static_cast<uint8_t*>(t.out.data_ptr()) + b0 * H * D * esz;
    p.lse = lse.data_ptr<float>() + b0 * H;
    p.q_stride_m = t.q.stride(0);
    p.q_stride_h = t.q.stride(1);
    p.num_rows = n;
    p.num_heads = static_cast<int>(H);
    p.num_splits = splits;
    p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
    if (splits > 1) {
      p.partial_out = partial_out + b0 * H * splits * D;
      p.partial_lse = partial_lse + b0 * H * splits;
    }
    e = LaunchAkvMixedAttention(p, stream);
    if (e != cudaSuccess) return absl::InternalError(absl::StrCat("akv batched attention: ", cudaGetErrorString(e)));
  }
  for (int i = 0; i < B; ++i) {
    KV_RETURN_IF_ERROR(caches[i]->EndBatchedRow(layer, t.q.narrow(0, i, 1), lse.data_ptr<float>() + i * H, lse));
  }
  return absl::OkStatus();
}

#else  // no CUDA in this build

absl::Status AkvBatchedDecode(int64_t, absl::Span<AkvSequenceCache* const>, absl::Span<const SeqStep>,
                              GroupTensors&, const StepContext&) {
  return absl::FailedPreconditionError("this build has no CUDA kernels");
}

#endif

}  // namespace kvstream
