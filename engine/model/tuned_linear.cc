#include "engine/model/tuned_linear.h"

#include <ATen/ATen.h>

#include "engine/env_switch.h"

#ifdef KVSTREAM_HAVE_CUDA_TORCH
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <cublasLt.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>
#endif

namespace kvstream {

#ifdef KVSTREAM_HAVE_CUDA_TORCH
namespace {

// Rows ≤ 2 go to our GEMV (fused_block.h); past 64 a projection is no
// longer a weight read and cuBLAS's own tiles are the right choice.
constexpr int64_t kMinRows = 3, kMaxRows = 64;
constexpr size_t kWorkspaceBytes = 32ull << 20;
// Written between timed runs: more than twice the H100's 50 MB L2, so each
// run reads its weights from HBM as every projection of a real step does.
constexpr int64_t kFlushBytes = 128ll << 20;
constexpr int kCandidates = 16;  // heuristic results asked for
constexpr int kTimedRuns = 9;    // median of these
// An algorithm must beat at::linear by this factor to be kept: timing noise
// alone should not swap in a different kernel.
constexpr double kMinGain = 0.98;

bool prefer_lt_for_testing = false;

bool Enabled() {
  static const bool enabled = EnvSwitchOn("KVSTREAM_LT_LINEAR");
  return enabled;
}

bool Aligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % 256 == 0; }

// One shape's choice. Descriptors live as long as the process (a handful of
// shapes per model).
struct Plan {
  bool use_lt = false;  // false: at::linear was fastest
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t w_layout = nullptr, x_layout = nullptr, y_layout = nullptr;
  cublasLtMatmulAlgo_t algo{};
  ~Plan() {  // only a plan whose tuning failed is ever destroyed (the Tuner is never)
    if (op != nullptr) cublasLtMatmulDescDestroy(op);
    for (cublasLtMatrixLayout_t l : {w_layout, x_layout, y_layout}) {
      if (l != nullptr) cublasLtMatrixLayoutDestroy(l);
    }
  }
};

// (device, dtype, M, N, K, x row stride)
using Key = std::tuple<int, int, int64_t, int64_t, int64_t, int64_t>;

class Tuner {
 public:
  // One per device, each with its own lock: tensor-parallel ranks (a thread
  // and a GPU each) tune at the same time, and a rank that waits on its
  // stream while tuning must not hold up another rank's launches (its
  // stream may be waiting on that rank's next all-reduce).
  static Tuner& Get(int device) {
    static std::mutex registry_mu;
    static auto* tuners = new std::map<int, std::unique_ptr<Tuner>>;  // never destroyed: CUDA may go first at exit
    std::lock_guard<std::mutex> lock(registry_mu);
    std::unique_ptr<Tuner>& t = (*tuners)[device];
    if (t == nullptr) t.reset(new Tuner);
    return *t;
  }

  bool Run(const at::Tensor& x, const at::Tensor& w, at::Tensor& y) {
    const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
    const int device = x.get_device();
    const Key key{device, static_cast<int>(x.scalar_type()), x.size(0), w.size(0), x.size(1), x.stride(0)};
    std::lock_guard<std::mutex> lock(mu_);
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(stream, &capture) != cudaSuccess) return false;
    const bool capturing = capture != cudaStreamCaptureStatusNone;
    auto it = plans_.find(key);
    if (it == plans_.end()) {
      if (capturing) return false;  // timing needs eager runs
      std::unique_ptr<Plan> plan;
      try {
        plan = Tune(x, w, stream);
      } catch (const c10::Error& e) {  // e.g. no memory for at::linear's timing runs: stay with at::linear
        spdlog::warn("tuned linear M={} N={} K={}: not tuned ({})", x.size(0), w.size(0), x.size(1),
                     e.what_without_backtrace());
      }
      // Untunable (no memory to time, no handle): at::linear for this shape
      // from now on rather than a retry on every call.
      if (plan == nullptr) plan = std::make_unique<Plan>();
      it = plans_.emplace(key, std::move(plan)).first;
    }
    const Plan& plan = *it->second;
    if (!plan.use_lt) return false;
    void* ws = Workspace(device, stream, capturing);
    if (ws == nullptr) return false;
    return Matmul(plan, x, w, y, ws, stream) == CUBLAS_STATUS_SUCCESS;
  }

 private:
  cublasLtHandle_t Handle(int device) {
    auto [it, fresh] = handles_.try_emplace(device, nullptr);
    if (fresh && cublasLtCreate(&it->second) != CUBLAS_STATUS_SUCCESS) it->second = nullptr;
    return it->second;
  }

  // Scratch for split-K reductions, one per stream (allocated eagerly only:
  // memory taken under capture would come from the graph's private pool).
  void* Workspace(int device, cudaStream_t stream, bool capturing) {
    auto it = workspaces_.find({device, stream});
    if (it != workspaces_.end()) return it->second.mutable_data_ptr();
    if (capturing) return nullptr;
    at::Tensor ws;
    try {
      ws = at::empty({static_cast<int64_t>(kWorkspaceBytes)},
                     at::TensorOptions().device(at::kCUDA, device).dtype(at::kByte));
    } catch (const c10::Error&) {
      return nullptr;  // no room: at::linear serves this stream
    }
    return workspaces_.emplace(std::make_pair(device, stream), std::move(ws)).first->second.mutable_data_ptr();
  }

  cublasStatus_t Matmul(const Plan& p, const at::Tensor& x, const at::Tensor& w, at::Tensor& y, void* ws,
                        cudaStream_t stream) {
    // Column-major view of y = x · wᵀ: yᵀ [N, M] = (w as K×N)ᵀ · (xᵀ as K×M).
    const float one = 1.f, zero = 0.f;
    return cublasLtMatmul(Handle(x.get_device()), p.op, &one, w.const_data_ptr(), p.w_layout, x.const_data_ptr(),
                          p.x_layout, &zero, y.mutable_data_ptr(), p.y_layout, y.mutable_data_ptr(), p.y_layout,
                          &p.algo, ws, kWorkspaceBytes, stream);
  }

  // Median time (us) of `fn` over kTimedRuns runs, each after an L2 flush.
  template <typename Fn>
  static double MedianUs(Fn&& fn, at::Tensor& flush, cudaStream_t stream) {
    if (!fn() || !fn()) return -1;  // warm-up (and a check that it launches)
    std::array<cudaEvent_t, 2 * kTimedRuns> ev{};
    for (cudaEvent_t& e : ev) cudaEventCreate(&e);
    for (int r = 0; r < kTimedRuns; ++r) {
      flush.fill_(r);
      cudaEventRecord(ev[2 * r], stream);
      fn();
      cudaEventRecord(ev[2 * r + 1], stream);
    }
    std::vector<double> us;
    if (cudaEventSynchronize(ev.back()) == cudaSuccess) {
      for (int r = 0; r < kTimedRuns; ++r) {
        float ms = 0;
        if (cudaEventElapsedTime(&ms, ev[2 * r], ev[2 * r + 1]) == cudaSuccess) us.push_back(ms * 1e3);
      }
    }
    for (cudaEvent_t& e : ev) cudaEventDestroy(e);
    if (us.size() != kTimedRuns) return -1;
    std::nth_element(us.begin(), us.begin() + kTimedRuns / 2, us.end());
    return us[kTimedRuns / 2];
  }

  std::unique_ptr<Plan> Tune(const at::Tensor& x, const at::Tensor& w, cudaStream_t stream) {
    const int device = x.get_device();
    cublasLtHandle_t lt = Handle(device);
    void* ws = Workspace(device, stream, /*capturing=*/false);
    if (lt == nullptr || ws == nullptr) return nullptr;
    const int64_t M = x.size(0), N = w.size(0), K = x.size(1);
    const cudaDataType_t type = x.scalar_type() == at::kBFloat16 ? CUDA_R_16BF : CUDA_R_16F;
    auto plan = std::make_unique<Plan>();
    cublasLtMatmulDescCreate(&plan->op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    const cublasOperation_t transpose = CUBLAS_OP_T, none = CUBLAS_OP_N;
    cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSA, &transpose, sizeof transpose);
    cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSB, &none, sizeof none);
    cublasLtMatrixLayoutCreate(&plan->w_layout, type, K, N, K);
    cublasLtMatrixLayoutCreate(&plan->x_layout, type, K, M, x.stride(0));
    cublasLtMatrixLayoutCreate(&plan->y_layout, type, N, M, N);
    cublasLtMatmulPreference_t pref = nullptr;
    cublasLtMatmulPreferenceCreate(&pref);
    const size_t ws_bytes = kWorkspaceBytes;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes, sizeof ws_bytes);
    std::array<cublasLtMatmulHeuristicResult_t, kCandidates> found{};
    int n_found = 0;
    if (cublasLtMatmulAlgoGetHeuristic(lt, plan->op, plan->w_layout, plan->x_layout, plan->y_layout, plan->y_layout,
                                       pref, kCandidates, found.data(), &n_found) != CUBLAS_STATUS_SUCCESS) {
      n_found = 0;
    }
    cublasLtMatmulPreferenceDestroy(pref);

    at::Tensor flush, y;
    try {
      flush = at::empty({kFlushBytes}, x.options().dtype(at::kByte));
      y = at::empty({M, N}, x.options());
    } catch (const c10::Error&) {
      return nullptr;  // no room to time: stay with at::linear
    }
    const double linear_us = MedianUs([&] { return at::linear(x, w).defined(); }, flush, stream);
    double best_us = prefer_lt_for_testing ? -1 : linear_us;
    int best = -1;
    for (int a = 0; a < n_found; ++a) {
      plan->algo = found[a].algo;
      const double us = MedianUs([&] { return Matmul(*plan, x, w, y, ws, stream) == CUBLAS_STATUS_SUCCESS; },
                                 flush, stream);
      if (us > 0 && (best_us <= 0 || us < best_us * (best < 0 ? kMinGain : 1.0))) best_us = us, best = a;
    }
    plan->use_lt = best >= 0;
    if (plan->use_lt) plan->algo = found[best].algo;
    spdlog::info("tuned linear M={} N={} K={}: {} ({:.1f} us; at::linear {:.1f} us, {} candidates)", M, N, K,
                 plan->use_lt ? "cublasLt algorithm " + std::to_string(best) : std::string("at::linear"), best_us,
                 linear_us, n_found);
    return plan;
  }

  std::mutex mu_;
  std::map<Key, std::unique_ptr<Plan>> plans_;
  std::map<int, cublasLtHandle_t> handles_;
  std::map<std::pair<int, cudaStream_t>, at::Tensor> workspaces_;
};

bool Applies(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  if (!Enabled() || b.defined() || !x.is_cuda() || x.dim() != 2 || w.dim() != 2) return false;
  const auto st = x.scalar_type();
  if ((st != at::kBFloat16 && st != at::kHalf) || w.scalar_type() != st || w.device() != x.device()) return false;
  const int64_t M = x.size(0), K = x.size(1);
  return M >= kMinRows && M <= kMaxRows && w.size(1) == K && K % 8 == 0 && x.stride(1) == 1 &&
         x.stride(0) >= K && x.stride(0) % 8 == 0 && w.is_contiguous() && Aligned(x.const_data_ptr()) &&
         Aligned(w.const_data_ptr());
}

}  // namespace

void TunedLinearPreferCublasLtForTesting(bool prefer) { prefer_lt_for_testing = prefer; }

bool TunedLinearInto(const at::Tensor& x, const at::Tensor& w, at::Tensor& y) {
  if (!Applies(x, w, at::Tensor()) || y.scalar_type() != x.scalar_type() || y.device() != x.device() ||
      !y.is_contiguous() || y.dim() != 2 || y.size(0) != x.size(0) || y.size(1) != w.size(0) ||
      !Aligned(y.const_data_ptr())) {
    return false;
  }
  const c10::cuda::CUDAGuard guard(x.device());
  return Tuner::Get(x.get_device()).Run(x, w, y);
}

std::optional<at::Tensor> TunedLinear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  if (!Applies(x, w, b)) return std::nullopt;
  at::Tensor y = at::empty({x.size(0), w.size(0)}, x.options());
  if (!TunedLinearInto(x, w, y)) return std::nullopt;
  return y;
}

#else  // no CUDA in this build

void TunedLinearPreferCublasLtForTesting(bool) {}
bool TunedLinearInto(const at::Tensor&, const at::Tensor&, at::Tensor&) { return false; }
std::optional<at::Tensor> TunedLinear(const at::Tensor&, const at::Tensor&, const at::Tensor&) {
  return std::nullopt;
}

#endif

}  // namespace kvstream
