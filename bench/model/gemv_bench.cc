// The decode projections of a model shape through our skinny GEMV
// (kernels/model/gemv.h; the engine routes M ≤ 2 to it, see
// engine/model/fused_block.cc) and through
// at::linear (cuBLAS), side by side at M = 1..8 rows: time per call, weight
// bytes / time, % of the measured copy bandwidth. Each timed call reads a
// different copy of the weights (≥ 512 MB rotated) so none is served from L2.
//
//   build-gpu/gemv_bench --shape=llama3-8b --rows=1,2,4,8 --json=gemv.json
#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "tools/argv_dashes.h"

#ifdef KVSTREAM_HAVE_CUDA_TORCH
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAFunctions.h>

#include <cublasLt.h>

#include "kernels/model/gemv.h"
#endif

ABSL_FLAG(std::string, shape, "llama3-8b", "llama3-8b | qwen2.5-7b");
ABSL_FLAG(std::string, rows, "1,2,4,8", "comma-separated M values (1..8)");
ABSL_FLAG(int32_t, iters, 200, "timed calls per (matrix, M, path)");
ABSL_FLAG(std::string, json, "", "write results here");
ABSL_FLAG(std::string, commit, "unknown", "commit recorded in the JSON");
ABSL_FLAG(bool, lt_search, false,
          "also time every cublasLt heuristic algorithm (up to 16) per (matrix, M) and report the best");

namespace {

using Clock = std::chrono::steady_clock;

struct Matrix {
  const char* name;
  int64_t n, k;
};

std::vector<Matrix> ShapeMatrices(const std::string& shape) {
  if (shape == "qwen2.5-7b") {
    return {{"qkv", 4608, 3584}, {"o", 3584, 3584}, {"gate_up", 37888, 3584}, {"down", 3584, 18944},
            {"lm_head", 152064, 3584}};
  }
  return {{"qkv", 6144, 4096}, {"o", 4096, 4096}, {"gate_up", 28672, 4096}, {"down", 4096, 14336},
          {"lm_head", 128256, 4096}};
}

void Sync() {
#ifdef KVSTREAM_HAVE_CUDA_TORCH
  c10::cuda::device_synchronize();
#endif
}

#ifdef KVSTREAM_HAVE_CUDA_TORCH
// y = x · wᵀ through the kernel directly (all M = 1..8, whatever the engine routes).
std::optional<at::Tensor> OurGemv(const at::Tensor& x, const at::Tensor& w) {
  at::Tensor y = at::empty({x.size(0), w.size(0)}, x.options());
  kvstream::GemvParams p;
  p.x = x.const_data_ptr();
  p.w = w.const_data_ptr();
  p.y = y.mutable_data_ptr();
  p.rows = static_cast<int>(x.size(0));
  p.out_features = static_cast<int>(w.size(0));
  p.in_features = static_cast<int>(w.size(1));
  p.dtype = kvstream::KvDType::kBf16;
  if (kvstream::LaunchGemv(p, at::cuda::getCurrentCUDAStream()) != cudaSuccess) return std::nullopt;
  return y;
}
#endif

#ifdef KVSTREAM_HAVE_CUDA_TORCH
// The cublasLt algorithms its heuristic offers for y[M, N] = x[M, K] · W[N, K]ᵀ
// (column-major: yᵀ[N, M] = op_T(W as K×N) · xᵀ as K×M), each timed like the
// other paths; returns the best time (us) and its rank in the heuristic list.
// Exploration only: does any algorithm beat at::linear's choice at small M?
std::pair<double, int> BestLtUs(const at::Tensor& x, const std::vector<at::Tensor>& w, int iters) {
  static cublasLtHandle_t lt = [] {
    cublasLtHandle_t h = nullptr;
    return cublasLtCreate(&h) == CUBLAS_STATUS_SUCCESS ? h : nullptr;
  }();
  if (lt == nullptr) {
    std::fprintf(stderr, "--lt_search: cublasLtCreate failed\n");
    return {0.0, -1};
  }
  const int64_t M = x.size(0), K = x.size(1), N = w[0].size(0);
  const size_t ws_bytes = 64ull << 20;
  at::Tensor ws = at::empty({static_cast<int64_t>(ws_bytes)}, x.options().dtype(at::kByte));
  at::Tensor y = at::empty({M, N}, x.options());
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
  const cublasOperation_t tA = CUBLAS_OP_T, tB = CUBLAS_OP_N;
  cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &tA, sizeof tA);
  cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tB, sizeof tB);
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, K, N, K);
  cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, K, M, K);
  cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, N, M, N);
  cublasLtMatmulPreference_t pref = nullptr;
  cublasLtMatmulPreferenceCreate(&pref);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes, sizeof ws_bytes);
  cublasLtMatmulHeuristicResult_t res[16];
  int found = 0;
  if (const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 16, res, &found);
      st != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "--lt_search: no heuristic for M=%lld N=%lld K=%lld (cuBLAS status %d)\n",
                 static_cast<long long>(M), static_cast<long long>(N), static_cast<long long>(K), static_cast<int>(st));
    found = 0;
  }
  const float one = 1.f, zero = 0.f;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  double best = 1e30;
  int best_i = -1;
  for (int a = 0; a < found; ++a) {
    auto run = [&](int i) {
      return cublasLtMatmul(lt, op, &one, w[i % w.size()].const_data_ptr(), la, x.const_data_ptr(), lb, &zero,
                            y.mutable_data_ptr(), lc, y.mutable_data_ptr(), lc, &res[a].algo, ws.mutable_data_ptr(),
                            ws_bytes, stream);
    };
    if (run(0) != CUBLAS_STATUS_SUCCESS) continue;
    for (int i = 0; i < 10; ++i) run(i);
    Sync();
    const auto t0 = Clock::now();
    for (int i = 0; i < iters; ++i) run(i);
    Sync();
    const double us = std::chrono::duration<double>(Clock::now() - t0).count() / iters * 1e6;
    if (us < best) best = us, best_i = a;
  }
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(la);
  cublasLtMatrixLayoutDestroy(lb);
  cublasLtMatrixLayoutDestroy(lc);
  cublasLtMatmulDescDestroy(op);
  return {best_i >= 0 ? best : 0.0, best_i};
}
#endif

double CopyBandwidth(const at::TensorOptions& opts) {
  const int64_t n = (1ll << 30) / 2;
  at::Tensor a = at::ones({n}, opts), b = at::empty({n}, opts);
  double best = 0;
  for (int i = 0; i < 6; ++i) {
    Sync();
    const auto t0 = Clock::now();
    b.copy_(a);
    Sync();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (i > 0) best = std::max(best, 2.0 * a.nbytes() / s);
  }
  return best;
}

struct Row {
  std::string matrix;
  int64_t m = 0, n = 0, k = 0;
  double ours_us = 0, cublas_us = 0, weight_bytes = 0, max_rel_diff = 0;
  double lt_best_us = 0;  // --lt_search: best cublasLt heuristic algorithm
  int lt_best_rank = -1;
};

}  // namespace

int main(int argc, char** argv) {
  kvstream::DashesToUnderscores(argc, argv);
  absl::ParseCommandLine(argc, argv);
#ifndef KVSTREAM_HAVE_CUDA_TORCH
  std::fprintf(stderr, "gemv_bench needs the CUDA build\n");
  return 0;
#else
  const auto opts = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  const double bw = CopyBandwidth(opts);
  std::vector<int64_t> ms;
  for (auto s : absl::StrSplit(absl::GetFlag(FLAGS_rows), ',')) {
    int64_t m = 0;
    if (!absl::SimpleAtoi(s, &m) || m < 1 || m > 8) {
      std::fprintf(stderr, "--rows: '%s' is not in 1..8\n", std::string(s).c_str());
      return 2;
    }
    ms.push_back(m);
  }
  const int iters = absl::GetFlag(FLAGS_iters);
  std::vector<Row> rows;
  std::fprintf(stderr, "[gemv] copy bandwidth %.0f GB/s\n", bw / 1e9);
  for (const Matrix& mat : ShapeMatrices(absl::GetFlag(FLAGS_shape))) {
    const int64_t bytes = mat.n * mat.k * 2;
    const int copies = static_cast<int>(std::max<int64_t>(2, (512ll << 20) / bytes + 1));
    std::vector<at::Tensor> w;
    for (int c = 0; c < copies; ++c) w.push_back(at::randn({mat.n, mat.k}, opts) * 0.02);
    for (int64_t m : ms) {
      at::Tensor x = at::randn({m, mat.k}, opts);
      Row r{mat.name, m, mat.n, mat.k};
      r.weight_bytes = static_cast<double>(bytes);
      auto ours = OurGemv(x, w[0]);
      if (!ours) {
        std::fprintf(stderr, "LaunchGemv refused %s M=%lld\n", mat.name, static_cast<long long>(m));
        return 1;
      }
      at::Tensor ref = at::linear(x, w[0]);
      r.max_rel_diff = ((*ours).to(at::kFloat) - ref.to(at::kFloat)).abs().max().item<double>() /
                       ref.to(at::kFloat).abs().max().item<double>();
      auto time_path = [&](bool use_ours) {
        for (int i = 0; i < 10; ++i) use_ours ? (void)OurGemv(x, w[i % copies])
                                              : (void)at::linear(x, w[i % copies]);
        Sync();
        const auto t0 = Clock::now();
        for (int i = 0; i < iters; ++i) use_ours ? (void)OurGemv(x, w[i % copies])
                                                 : (void)at::linear(x, w[i % copies]);
        Sync();
        return std::chrono::duration<double>(Clock::now() - t0).count() / iters * 1e6;
      };
      r.cublas_us = time_path(false);
      r.ours_us = time_path(true);
      if (absl::GetFlag(FLAGS_lt_search)) std::tie(r.lt_best_us, r.lt_best_rank) = BestLtUs(x, w, iters);
      rows.push_back(r);
    }
  }
  std::printf("%-8s %2s %7s %6s | %9s %6s | %9s %6s | %6s %9s\n", "matrix", "M", "N", "K", "ours us", "%copy",
              "cuBLAS us", "%copy", "speed", "max rel");
  for (const Row& r : rows) {
    const double ideal_us = r.weight_bytes / bw * 1e6;
    std::printf("%-8s %2lld %7lld %6lld | %9.1f %5.1f%% | %9.1f %5.1f%% | %5.2fx %9.2e\n", r.matrix.c_str(),
                static_cast<long long>(r.m), static_cast<long long>(r.n), static_cast<long long>(r.k), r.ours_us,
                100 * ideal_us / r.ours_us, r.cublas_us, 100 * ideal_us / r.cublas_us, r.cublas_us / r.ours_us,
                r.max_rel_diff);
    if (r.lt_best_rank >= 0) {
      std::printf("%-8s %2lld   cublasLt best of heuristics: %.1f us %.1f%% (rank %d)\n", r.matrix.c_str(),
                  static_cast<long long>(r.m), r.lt_best_us, 100 * ideal_us / r.lt_best_us, r.lt_best_rank);
    }
  }
  if (const std::string path = absl::GetFlag(FLAGS_json); !path.empty()) {
    std::ofstream f(path);
    f << "{\"bench\": \"gemv\", \"shape\": \"" << absl::GetFlag(FLAGS_shape) << "\", \"commit\": \""
      << absl::GetFlag(FLAGS_commit) << "\", \"copy_bandwidth_bytes_s\": " << bw << ", \"rows\": [";
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      f << (i ? ", " : "") << "{\"matrix\": \"" << r.matrix << "\", \"m\": " << r.m << ", \"n\": " << r.n
        << ", \"k\": " << r.k << ", \"weight_bytes\": " << r.weight_bytes << ", \"ours_us\": " << r.ours_us
        << ", \"cublas_us\": " << r.cublas_us << ", \"ours_copy_fraction\": " << r.weight_bytes / bw * 1e6 / r.ours_us
        << ", \"cublas_copy_fraction\": " << r.weight_bytes / bw * 1e6 / r.cublas_us
        << ", \"max_rel_diff\": " << r.max_rel_diff << ", \"lt_best_us\": " << r.lt_best_us
        << ", \"lt_best_rank\": " << r.lt_best_rank << "}";
    }
    f << "]}\n";
  }
  return 0;
#endif
}
