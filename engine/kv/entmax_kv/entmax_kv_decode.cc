#include "engine/kv/entmax_kv/entmax_kv_decode.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <climits>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "engine/kv/entmax_kv/entmax_kv_strategy.h"
#include "engine/status_macros.h"
#include "kernels/entmax_kv/entmax_kv.h"

#ifdef KVSTREAM_HAVE_CUDA_TORCH
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

namespace kvstream {
namespace {

// Twin result (CPU) -> status.
absl::Status TwinStatus(bool ok, const char* why, const char* kernel, int64_t layer) {
  if (ok) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("entmax_kv ", kernel, " twin (layer ", layer, "): ",
                                          why ? why : "page id out of range"));
}

#ifdef KVSTREAM_HAVE_CUDA_TORCH
absl::Status CudaStatus(cudaError_t e, const char* kernel, int64_t layer) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("entmax_kv ", kernel, " (layer ", layer, "): ", cudaGetErrorString(e)));
}
#endif

EntmaxPagedKv PagedView(const PagedKvPool& pool, int64_t layer, const EntmaxDecodeRows& rows) {
  const KvGeometry& g = pool.geometry();
  EntmaxPagedKv kv;
  kv.k_pool = pool.keys(layer).const_data_ptr();
  kv.v_pool = pool.values(layer).const_data_ptr();
  kv.block_table = rows.block_table;
  kv.seq_lens = rows.seq_lens;
  kv.batch = rows.batch;
  kv.num_kv_heads = static_cast<int>(g.n_kv_heads);
  kv.head_dim = static_cast<int>(g.head_dim);
  kv.page_size = rows.page_size;
  kv.block_size = static_cast<int>(PagedKvPool::kPageTokens);
  kv.num_blocks = static_cast<int>(pool.num_pages());
  kv.max_blocks_per_seq = static_cast<int>(rows.max_pages());  // the kernels' MB counts pages
  kv.dtype = KvDTypeOf(g.dtype);
  return kv;
}

}  // namespace

at::Tensor EntmaxUploadAsync(const std::vector<int64_t>& v, const c10::Device& device) {
  at::Tensor host = at::from_blob(const_cast<int64_t*>(v.data()), {static_cast<int64_t>(v.size())}, at::kLong);
  if (!device.is_cuda()) return host.clone();
  return host.pin_memory().to(device, at::kLong, /*non_blocking=*/true, /*copy=*/true);
}

std::vector<int64_t> EntmaxKernelScalars(const EntmaxKvConfig& c) {
  return {static_cast<int64_t>(c.selector), static_cast<int64_t>(std::lround(c.alpha * 1000)), c.page_size,
          c.budget_pages(), c.niter, c.tau_correction_iters, c.min_context, c.sink_pages, c.dense_layers,
          static_cast<int64_t>(c.gqa_selection), c.normalize_output ? 1 : 0};
}

int64_t EntmaxTableBlocks(int64_t tokens, int page_size) {
  return EntmaxTableBlocksFor(tokens, page_size, static_cast<int>(PagedKvPool::kPageTokens));
}

EntmaxDecodeCounts EntmaxCountsFor(const EntmaxKvConfig& config, int64_t layer, int64_t T, int64_t max_pages) {
  const int64_t P = config.page_size;
  EntmaxDecodeCounts c;
  c.pages = EntmaxPagesOf(static_cast<int32_t>(T), static_cast<int>(P), static_cast<int>(max_pages));
  c.fallback = layer < config.dense_layers || T < config.min_context || config.budget_pages() >= c.pages.hist;
  c.n_hist = c.fallback ? c.pages.hist : std::min<int64_t>(config.budget_pages(), c.pages.hist);
  c.t_sel = c.n_hist * P + c.pages.tail_len;
  return c;
}

EntmaxDecodeBounds EntmaxBoundsFor(const EntmaxKvConfig& config, int64_t layer, const std::vector<int64_t>& lengths,
                                   int64_t max_pages) {
  EntmaxDecodeBounds b;
  b.rank_pages = false;
  for (int64_t T : lengths) {
    const EntmaxDecodeCounts c = EntmaxCountsFor(config, layer, T, max_pages);
    b.max_sel_tokens = std::max(b.max_sel_tokens, c.t_sel);
    b.rank_pages = b.rank_pages || !c.fallback;
  }
  return b;
}

EntmaxDecodeBounds EntmaxGraphBoundsFor(const EntmaxKvConfig& config, int64_t layer, int64_t max_pages,
                                        bool rank_pages) {
  EntmaxDecodeBounds b;
  const int64_t P = config.page_size, all = max_pages * P, ranked = (config.budget_pages() + 1) * P;
  // A fallback row attends T tokens: below budget + P when the budget covers
  // its history, below min_context when that keeps it dense, any T on a
  // dense layer.
  const bool dense_layer = layer < config.dense_layers;
  b.max_sel_tokens = dense_layer ? all : std::min(all, std::max(ranked, config.min_context));
  b.rank_pages = !dense_layer && rank_pages;
  return b;
}

absl::Status RunEntmaxPageStats(const PagedKvPool& pool, EntmaxStatsStore& stats, int64_t layer,
                                const EntmaxDecodeRows& rows, int recent_pages) {
  EntmaxPageStatsParams p;
  p.kv = PagedView(pool, layer, rows);
  const int sb = EntmaxSlotsPerBlock(rows.page_size);
  p.stats.kmin = stats.kmin(layer, sb).mutable_data_ptr();
  p.stats.kmax = stats.kmax(layer, sb).mutable_data_ptr();
  p.kind = EntmaxStatKind::kMinMax;
  p.recent_pages = recent_pages;
  if (pool.geometry().device.is_cuda()) {
#ifdef KVSTREAM_HAVE_CUDA_TORCH
    return CudaStatus(LaunchEntmaxPageStats(p, at::cuda::getCurrentCUDAStream()), "K1 page_stats", layer);
#else
    return absl::FailedPreconditionError("this build has no CUDA kernels");
#endif
  }
  return TwinStatus(EntmaxPageStatsRef(p), EntmaxPageStatsValidate(p), "K1 page_stats", layer);
}

EntmaxStatsAside::~EntmaxStatsAside() {
#ifdef KVSTREAM_HAVE_CUDA_TORCH
  if (fork_ != nullptr) cudaEventDestroy(static_cast<cudaEvent_t>(fork_));
  if (join_ != nullptr) cudaEventDestroy(static_cast<cudaEvent_t>(join_));
#endif
}

absl::Status EntmaxStatsAside::Begin(const PagedKvPool& pool, EntmaxStatsStore& stats, int64_t layer,
                                     const EntmaxDecodeRows& rows) {
  if (pending_) return absl::InternalError("entmax_kv: K1 aside begun twice without End");
  if (!pool.geometry().device.is_cuda()) return RunEntmaxPageStats(pool, stats, layer, rows, /*recent_pages=*/1);
#ifdef KVSTREAM_HAVE_CUDA_TORCH
  if (side_ == nullptr) {
    side_ = at::cuda::getStreamFromPool(/*isHighPriority=*/false).stream();
    cudaEvent_t f = nullptr, j = nullptr;
    KV_RETURN_IF_ERROR(CudaStatus(cudaEventCreateWithFlags(&f, cudaEventDisableTiming), "K1 fork event", layer));
    KV_RETURN_IF_ERROR(CudaStatus(cudaEventCreateWithFlags(&j, cudaEventDisableTiming), "K1 join event", layer));
    fork_ = f, join_ = j;
  }
  const c10::cuda::CUDAStream main = at::cuda::getCurrentCUDAStream();
  const c10::cuda::CUDAStream side =
      c10::cuda::getStreamFromExternal(static_cast<cudaStream_t>(side_), main.device_index());
  KV_RETURN_IF_ERROR(CudaStatus(cudaEventRecord(static_cast<cudaEvent_t>(fork_), main.stream()), "K1 fork", layer));
  KV_RETURN_IF_ERROR(
      CudaStatus(cudaStreamWaitEvent(side.stream(), static_cast<cudaEvent_t>(fork_), 0), "K1 fork wait", layer));
  {
    c10::cuda::CUDAStreamGuard guard(side);
    KV_RETURN_IF_ERROR(RunEntmaxPageStats(pool, stats, layer, rows, /*recent_pages=*/1));
  }
  KV_RETURN_IF_ERROR(CudaStatus(cudaEventRecord(static_cast<cudaEvent_t>(join_), side.stream()), "K1 join", layer));
  pending_ = true;
  return absl::OkStatus();
#else
  return absl::FailedPreconditionError("this build has no CUDA kernels");
#endif
}

absl::Status EntmaxStatsAside::End() {
  if (!pending_) return absl::OkStatus();
  pending_ = false;
#ifdef KVSTREAM_HAVE_CUDA_TORCH
  return CudaStatus(cudaStreamWaitEvent(at::cuda::getCurrentCUDAStream().stream(), static_cast<cudaEvent_t>(join_), 0),
                    "K1 join wait", -1);
#else
  return absl::OkStatus();
#endif
}

absl::Status RunEntmaxDecode(const PagedKvPool& pool, EntmaxStatsStore& stats, const EntmaxKvConfig& config,
                             int64_t layer, const EntmaxDecodeRows& rows, const EntmaxDecodeBounds& bounds,
                             const at::Tensor& q, at::Tensor& out, at::Tensor& mass) {
  if (rows.page_size != config.page_size) {
    return absl::InternalError(
        absl::StrCat("entmax_kv: rows of ", rows.page_size, "-token pages decoded with page_size ", config.page_size));
  }
  const KvGeometry& g = pool.geometry();
  const int64_t B = rows.batch, H = g.n_heads, D = g.head_dim, MB = rows.max_pages();
  const int64_t Hs = config.gqa_selection == EntmaxKvConfig::GqaSelection::kPerQueryHead ? H : g.n_kv_heads;
  const bool cuda = g.device.is_cuda();
  auto f32 = at::TensorOptions().dtype(at::kFloat).device(g.device);
  auto i32 = f32.dtype(at::kInt);
  // Not zero-filled: K2 writes every p < P_hist, the only entries K3 reads
  // (and K3's fallback rows read none).
  at::Tensor u = at::empty({B, Hs, MB}, f32);
  at::Tensor sel_pages = at::empty({B, Hs, MB}, i32);
  at::Tensor page_count = at::empty({B, Hs}, i32);
  at::Tensor sel_len = at::empty({B, Hs}, i32);

  const EntmaxPagedKv kv = PagedView(pool, layer, rows);
  EntmaxQuery query;
  query.q = q.const_data_ptr();
  query.stride_b = q.stride(0);
  query.stride_h = q.stride(1);
  query.num_heads = static_cast<int>(H);
  EntmaxSelection sel;
  sel.pages = sel_pages.mutable_data_ptr<int32_t>();
  sel.page_count = page_count.mutable_data_ptr<int32_t>();
  sel.sel_len = sel_len.mutable_data_ptr<int32_t>();
  sel.select_heads = static_cast<int>(Hs);

  // The score scratch, the split plan and K7's max_sel_tokens are sized by
  // the host's bound on T_sel (budget + tail when it knows the lengths), not
  // MB * P; K2 only runs if some row ranks pages.
  const int64_t MT = std::max<int64_t>(bounds.max_sel_tokens, 1);
  const bool any_ranked = bounds.rank_pages;
  EntmaxCriticalityParams cp;
  cp.kv = kv;
  cp.query = query;
  const int sb = EntmaxSlotsPerBlock(config.page_size);
  cp.stats.kmin = stats.kmin(layer, sb).mutable_data_ptr();
  cp.stats.kmax = stats.kmax(layer, sb).mutable_data_ptr();
  cp.u = u.mutable_data_ptr<float>();
  cp.select_heads = static_cast<int>(Hs);
  EntmaxTopkPackParams tp;
  tp.u = u.const_data_ptr<float>();
  tp.seq_lens = rows.seq_lens;
  tp.batch = static_cast<int>(B);
  tp.page_size = config.page_size;
  tp.max_blocks_per_seq = static_cast<int>(MB);
  tp.sel = sel;
  tp.budget_pages = config.budget_pages();
  tp.sink_pages = config.sink_pages;
  tp.min_context = layer < config.dense_layers ? INT32_MAX : static_cast<int>(config.min_context);

  const bool fast = EntmaxSoftmaxFastPath(config.alpha, static_cast<int>(H), static_cast<int>(Hs));
  at::Tensor scores = fast ? at::Tensor() : at::empty({B, H, MT}, f32);
  at::Tensor tau = at::empty({B, H}, f32);
  mass = at::empty({B, H}, f32);
  EntmaxSparseDecodeParams dp;
  dp.kv = kv;
  dp.query = query;
  dp.sel = sel;
  dp.out = out.mutable_data_ptr();
  dp.out_stride_b = out.stride(0);
  dp.out_stride_h = out.stride(1);
  dp.scores = fast ? nullptr : scores.mutable_data_ptr<float>();  // alpha-1 fast path: no scratch
  dp.max_sel_tokens = static_cast<int>(MT);
  dp.tau = tau.mutable_data_ptr<float>();
  dp.mass = mass.mutable_data_ptr<float>();
  dp.alpha = config.alpha;
  dp.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
  dp.niter = config.niter;
  dp.correction_iters = config.tau_correction_iters;
  dp.normalize_output = config.normalize_output;
  dp.num_splits = 1;

  if (!cuda) {
    if (any_ranked) {
      KV_RETURN_IF_ERROR(TwinStatus(EntmaxCriticalityRef(cp), EntmaxCriticalityValidate(cp), "K2", layer));
    }
    KV_RETURN_IF_ERROR(TwinStatus(EntmaxTopkPackRef(tp), EntmaxTopkPackValidate(tp), "K3", layer));
    return TwinStatus(EntmaxSparseDecodeRef(dp), EntmaxSparseDecodeValidate(dp), "K7", layer);
  }
#ifdef KVSTREAM_HAVE_CUDA_TORCH
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  if (any_ranked) KV_RETURN_IF_ERROR(CudaStatus(LaunchEntmaxCriticality(cp, stream), "K2 page_criticality", layer));
  KV_RETURN_IF_ERROR(CudaStatus(LaunchEntmaxTopkPack(tp, stream), "K3 topk_pack", layer));
  const int sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  dp.num_splits = fast ? PlanEntmaxSoftmaxDecodeSplits(static_cast<int>(B), static_cast<int>(Hs),
                                                       static_cast<int>(MT), sms)
                       : PlanEntmaxSparseDecodeSplits(static_cast<int>(B), static_cast<int>(H),
                                                      static_cast<int>(MT), sms);
  at::Tensor part, part_lse;
  if (dp.num_splits > 1) {
    part = at::empty({B * H * dp.num_splits * D}, f32);
    dp.partial_out = part.mutable_data_ptr<float>();
    if (fast) {
      part_lse = at::empty({B * H * dp.num_splits * 2}, f32);
      dp.partial_lse = part_lse.mutable_data_ptr<float>();
    }
  }
  return CudaStatus(LaunchEntmaxSparseDecode(dp, stream), "K7 sparse_decode", layer);
#else
  return absl::FailedPreconditionError("this build has no CUDA kernels");
#endif
}

}  // namespace kvstream
