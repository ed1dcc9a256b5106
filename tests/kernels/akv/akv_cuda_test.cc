// AKV quantizer and attention kernels on the GPU vs their CPU twins on fresh
// random inputs with poisoned outputs (akv.md §9 tests 1, 2). Skips with a
// reason where no CUDA device is present.
//
// Bounds: codes, scales and zeros bit-exact. Attention ||gpu - twin|| /
// ||twin||: bf16 2e-3 (akv.md §7; both round the same fp32-ish value to bf16;
// the tensor-core decode kernel, tested beside the CUDA-core one, also
// rounds K/V/P to fp16), fp32 1e-4 (fp32 online softmax vs the twin's fp64).
// lse: 1e-3 * (1 + |lse|). Speed: bench/attention/akv_attention_bench.cu.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/akv/akv.h"
#include "tests/kernels/akv/akv_cuda_util.h"
#include "tests/kernels/akv/akv_problem.h"

namespace kvstream {
namespace {

using testing::AkvProblem;
using testing::AkvShape;
using testing::DeviceArena;
using testing::DeviceTiers;
using testing::HaveDevice;
using testing::MakeAkvProblem;

double Bound(KvDType t) { return t == KvDType::kFp32 ? 1e-4 : 2e-3; }

template <class... A>
std::string Cat(const A&... a) {
  std::ostringstream os;
  (os << ... << a);
  return os.str();
}

// ---- quantize / dequant -----------------------------------------------------------------

TEST(AkvCuda, QuantizeAndDequantMatchTwinBitExact) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(17);
  for (KvDType dtype : {KvDType::kBf16, KvDType::kFp32}) {
    for (int D : {64, 128}) {
      for (int bits : {2, 4, 8}) {
        for (int g : {32, 64, 128}) {
          if (g > D) continue;
          const int rows = 37, hkv = 3, stride = hkv * D + 16, gn = D / g, cb = D * bits / 8;
          const std::string what = Cat(KvDTypeName(dtype), " D", D, " b", bits, " g", g);
          std::vector<uint8_t> x(static_cast<size_t>(rows) * stride * KvDTypeSize(dtype));
          for (int r = 0; r < rows; ++r) {
            for (int e = 0; e < stride; ++e) {
              float v = std::normal_distribution<float>(0.0f, 1.0f)(rng);
              if (r % 5 == 1) v = 0.75f;                                   // constant groups: scale 0
              if (r % 5 == 2) v = static_cast<float>(rng() % 16) * 0.5f;   // exact ties at code + 0.5
              if (r % 5 == 3) v *= 3.0e5f;                                 // scale/zero saturate
              StoreFromFloat(x.data(), static_cast<size_t>(r) * stride + e, v, dtype);
            }
          }
          AkvQuantizeParams p;
          p.x_row_stride = stride;
          p.rows = rows;
          p.num_kv_heads = hkv;
          p.head_dim = D;
          p.bits = bits;
          p.group_size = g;
          p.dtype = dtype;
          std::vector<uint8_t> codes(rows * hkv * cb, 0xAB), gcodes(codes.size());
          std::vector<uint16_t> scale(rows * hkv * gn, 0xABAB), zero(scale), gscale(scale.size()), gzero(scale.size());
          std::vector<int32_t> sat = {0}, gsat = {0};
          AkvQuantizeParams host = p;
          host.x = x.data(), host.codes = codes.data(), host.scale = scale.data(), host.zero = zero.data();
          host.saturations = sat.data();
          ASSERT_TRUE(AkvQuantizeRef(host));
          DeviceArena arena;
          AkvQuantizeParams dev = p;
          dev.x = arena.Up(x);
          dev.codes = arena.Up(std::vector<uint8_t>(codes.size(), 0xCD));
          dev.scale = arena.Up(std::vector<uint16_t>(scale.size(), 0xCDCD));
          dev.zero = arena.Up(std::vector<uint16_t>(scale.size(), 0xCDCD));
          dev.saturations = arena.Up(gsat);
          ASSERT_CUDA(LaunchAkvQuantizePack(dev, nullptr));
          ASSERT_CUDA(cudaDeviceSynchronize());
          testing::Down(dev.codes, &gcodes);
          testing::Down(dev.scale, &gscale);
          testing::Down(dev.zero, &gzero);
          testing::Down(dev.saturations, &gsat);
          EXPECT_EQ(gcodes, codes) << what;
          EXPECT_EQ(gscale, scale) << what;
          EXPECT_EQ(gzero, zero) << what;
          EXPECT_EQ(gsat, sat) << what;
          EXPECT_GT(sat[0], 0) << what << ": the saturating rows must saturate";

          AkvDequantParams dq;
          dq.rows = rows, dq.num_kv_heads = hkv, dq.head_dim = D, dq.bits = bits, dq.group_size = g, dq.dtype = dtype;
          const size_t out_bytes = static_cast<size_t>(rows) * hkv * D * KvDTypeSize(dtype);
          std::vector<uint8_t> hx(out_bytes, 0xff), gx(out_bytes);
          AkvDequantParams hq = dq;
          hq.codes = codes.data(), hq.scale = scale.data(), hq.zero = zero.data(), hq.x = hx.data();
          ASSERT_TRUE(AkvDequantRef(hq));
          dq.codes = dev.codes, dq.scale = dev.scale, dq.zero = dev.zero;
          dq.x = arena.Up(std::vector<uint8_t>(out_bytes, 0xff));
          ASSERT_CUDA(LaunchAkvDequant(dq, nullptr));
          ASSERT_CUDA(cudaDeviceSynchronize());
          testing::Down(static_cast<const uint8_t*>(dq.x), &gx);
          EXPECT_EQ(gx, hx) << what;
        }
      }
    }
  }
}

// ---- attention ----------------------------------------------------------------------------

struct AttnRun {
  std::vector<double> out;
  std::vector<float> lse;
};

AttnRun RunTwin(AkvProblem& pr, int splits) {
  std::vector<uint8_t> out(pr.OutElems() * KvDTypeSize(pr.s.dtype));
  testing::PoisonOut(out.data(), pr.OutElems(), pr.s.dtype);
  AttnRun r;
  r.lse.assign(static_cast<size_t>(pr.s.rows) * pr.s.num_heads, NAN);
  const AkvAttentionWorkspaceBytes ws = AkvAttentionWorkspace(pr.s.rows, pr.s.num_heads, splits, pr.s.head_dim);
  std::vector<float> po(ws.partial_out / 4 + 1), pl(ws.partial_lse / 4 + 1);
  EXPECT_TRUE(AkvAttentionRef(pr.Attention(out.data(), r.lse.data(), 0, splits, po.data(), pl.data())));
  r.out = testing::ToDoubles(out.data(), pr.OutElems(), pr.s.dtype);
  return r;
}

// Launches on device copies (outputs poisoned with 0xff = NaN), optionally
// inside a graph replayed after the counts change to `replay_counts`.
AttnRun RunGpu(AkvProblem& pr, int splits, AkvAttnPath path = AkvAttnPath::kAuto) {
  DeviceArena arena;
  const DeviceTiers d = testing::UploadTiers(pr, &arena);
  const size_t out_bytes = pr.OutElems() * KvDTypeSize(pr.s.dtype);
  AkvAttentionParams p = pr.Attention(arena.Alloc(out_bytes), nullptr, 0, splits);
  p.path = path;
  const AkvAttentionWorkspaceBytes ws = AkvAttentionWorkspace(pr.s.rows, pr.s.num_heads, splits, pr.s.head_dim);
  p.tiers = d.tiers;
  p.q = d.q;
  p.q_pos = d.q_pos;
  p.lse = static_cast<float*>(arena.Alloc(static_cast<size_t>(pr.s.rows) * pr.s.num_heads * 4));
  if (splits > 1) {
    p.partial_out = static_cast<float*>(arena.Alloc(ws.partial_out));
    p.partial_lse = static_cast<float*>(arena.Alloc(ws.partial_lse));
  }
  AttnRun r;
  EXPECT_EQ(cudaMemset(p.out, 0xff, out_bytes), cudaSuccess);
  EXPECT_EQ(cudaMemset(p.lse, 0xff, static_cast<size_t>(pr.s.rows) * pr.s.num_heads * 4), cudaSuccess);
  const cudaError_t e = LaunchAkvMixedAttention(p, nullptr);
  EXPECT_EQ(e, cudaSuccess) << cudaGetErrorString(e);
  const cudaError_t s = cudaDeviceSynchronize();
  EXPECT_EQ(s, cudaSuccess) << cudaGetErrorString(s);
  if (e != cudaSuccess || s != cudaSuccess) return r;
  std::vector<uint8_t> out(out_bytes);
  testing::Down(static_cast<const uint8_t*>(p.out), &out);
  r.out = testing::ToDoubles(out.data(), pr.OutElems(), pr.s.dtype);
  r.lse.resize(static_cast<size_t>(pr.s.rows) * pr.s.num_heads);
  testing::Down(p.lse, &r.lse);
  return r;
}

void ExpectClose(const AttnRun& got, const AttnRun& want, KvDType t, const std::string& what) {
  ASSERT_EQ(got.out.size(), want.out.size()) << what;
  EXPECT_LT(testing::RelErr(got.out, want.out), Bound(t)) << what;
  for (size_t i = 0; i < want.lse.size(); ++i) {
    if (std::isinf(want.lse[i])) {
      EXPECT_EQ(got.lse[i], want.lse[i]) << what << " lse " << i;
    } else {
      EXPECT_NEAR(got.lse[i], want.lse[i], 1e-3 * (1.0 + std::abs(want.lse[i]))) << what << " lse " << i;
    }
  }
}

int NumSms() {
  int dev = 0, sms = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  return sms;
}

TEST(AkvCuda, DecodeAttentionMatchesTwin) {
  SKIP_WITHOUT_DEVICE();
  for (KvDType dtype : {KvDType::kBf16, KvDType::kFp32}) {
    for (int D : {64, 128}) {
      for (int G : {1, 3, 4, 8, 7, 14}) {
        for (auto [n_hot, n_warm, bits] : {std::tuple{1, 0, 4}, std::tuple{0, 54, 2}, std::tuple{97, 2100, 4},
                                           std::tuple{0, 0, 8}, std::tuple{1030, 4097, 8}}) {
          for (int g : D == 64 ? std::vector<int>{32} : std::vector<int>{128, 32}) {
            AkvShape s;
            s.dtype = dtype, s.head_dim = D, s.num_kv_heads = 2, s.num_heads = 2 * G, s.bits = bits;
            s.group_size = g;
            s.n_hot = n_hot, s.n_warm = n_warm;
            AkvProblem pr = MakeAkvProblem(s, 1000 + D + G * 7 + n_hot + n_warm);
            const int planned = PlanAkvAttentionSplits(1, s.num_heads, 2, pr.lay.hot_capacity + pr.lay.warm_capacity,
                                                       NumSms());
            // bf16 with G <= 8 has two kernels: the CUDA-core one and the tensor-core one (kAuto's pick).
            const bool two = dtype == KvDType::kBf16 && G <= kAkvAttnMmaMaxGroup;
            for (int splits : {1, planned, 7}) {
              const AttnRun want = RunTwin(pr, splits);
              for (AkvAttnPath path : {AkvAttnPath::kCudaCore, AkvAttnPath::kTensorCore}) {
                if (path == AkvAttnPath::kTensorCore && !two) continue;
                const std::string what =
                    Cat(KvDTypeName(dtype), " D", D, " G", G, " g", g, " hot ", n_hot, " warm ", n_warm, " b", bits,
                        " S", splits, path == AkvAttnPath::kTensorCore ? " tensor-core" : " cuda-core");
                ExpectClose(RunGpu(pr, splits, path), want, dtype, what);
              }
            }
          }
        }
      }
    }
  }
}

// The tensor-core kernel puts up to 8 KV heads in a CTA and copies their
// scale groups together: KV head counts that split into CTAs of 6 (whose
// first head's groups start mid-chunk) and a last warm block cut short.
TEST(AkvCuda, DecodeAttentionWithManyKvHeadsMatchesTwin) {
  SKIP_WITHOUT_DEVICE();
  for (int hkv : {12, 5}) {
    for (int g : {128, 32}) {
      for (int bits : {4, 8}) {
        AkvShape s;
        s.dtype = KvDType::kBf16, s.head_dim = 128, s.num_kv_heads = hkv, s.num_heads = 2 * hkv, s.bits = bits;
        s.group_size = g, s.n_hot = 40, s.n_warm = 1001;
        AkvProblem pr = MakeAkvProblem(s, 300 + hkv + g + bits);
        const int planned =
            PlanAkvAttentionSplits(1, s.num_heads, hkv, pr.lay.hot_capacity + pr.lay.warm_capacity, NumSms());
        for (int splits : {1, planned}) {
          ExpectClose(RunGpu(pr, splits, AkvAttnPath::kTensorCore), RunTwin(pr, splits), s.dtype,
                      Cat("Hkv ", hkv, " g", g, " b", bits, " S", splits));
        }
      }
    }
  }
}

TEST(AkvCuda, CausalPrefillAttentionMatchesTwin) {
  SKIP_WITHOUT_DEVICE();
  for (KvDType dtype : {KvDType::kBf16, KvDType::kFp32}) {
    for (int G : {1, 3, 4, 8}) {
      for (int rows : {16, 37}) {
        AkvShape s;
        s.dtype = dtype, s.num_kv_heads = 2, s.num_heads = 2 * G, s.head_dim = 128, s.group_size = 64;
        s.rows = rows, s.n_hot = 60 + rows, s.n_warm = 300;
        AkvProblem pr = MakeAkvProblem(s, 77 + G + rows);
        for (int splits : {1, 3}) {
          ExpectClose(RunGpu(pr, splits), RunTwin(pr, splits), dtype,
                      Cat(KvDTypeName(dtype), " G", G, " M", rows, " S", splits));
        }
      }
    }
  }
}

TEST(AkvCuda, StackedLayerAndGraphReplayReadLiveCounts) {
  SKIP_WITHOUT_DEVICE();
  AkvShape s;
  s.dtype = KvDType::kBf16, s.layers = 2, s.num_heads = 8, s.head_dim = 128, s.n_hot = 300, s.n_warm = 900;
  AkvProblem pr = MakeAkvProblem(s, 5);
  DeviceArena arena;
  const DeviceTiers d = testing::UploadTiers(pr, &arena);
  const size_t out_bytes = pr.OutElems() * 2;
  AkvAttentionParams p = pr.Attention(arena.Alloc(out_bytes), static_cast<float*>(arena.Alloc(s.num_heads * 4)), 1, 4);
  p.tiers = d.tiers, p.q = d.q, p.q_pos = d.q_pos;
  const AkvAttentionWorkspaceBytes ws = AkvAttentionWorkspace(1, s.num_heads, 4, s.head_dim);
  p.partial_out = static_cast<float*>(arena.Alloc(ws.partial_out));
  p.partial_lse = static_cast<float*>(arena.Alloc(ws.partial_lse));
  cudaStream_t stream = nullptr;
  ASSERT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ASSERT_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  const cudaError_t launch = LaunchAkvMixedAttention(p, stream);
  ASSERT_CUDA(cudaStreamEndCapture(stream, &graph));
  ASSERT_EQ(launch, cudaSuccess) << cudaGetErrorString(launch);
  ASSERT_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  for (auto [n_hot, n_warm] : {std::pair{300, 900}, std::pair{17, 0}, std::pair{0, 433}, std::pair{299, 1}}) {
    pr.counts[kAkvCountSlots + kAkvNHot] = n_hot;
    pr.counts[kAkvCountSlots + kAkvNWarm] = n_warm;
    ASSERT_CUDA(
        cudaMemcpyAsync(d.tiers.counts, pr.counts.data(), pr.counts.size() * 4, cudaMemcpyHostToDevice, stream));
    ASSERT_CUDA(cudaMemsetAsync(p.out, 0xff, out_bytes, stream));
    ASSERT_CUDA(cudaGraphLaunch(exec, stream));
    ASSERT_CUDA(cudaStreamSynchronize(stream));
    AttnRun got;
    std::vector<uint8_t> out(out_bytes);
    testing::Down(static_cast<const uint8_t*>(p.out), &out);
    got.out = testing::ToDoubles(out.data(), pr.OutElems(), s.dtype);
    got.lse.resize(s.num_heads);
    testing::Down(p.lse, &got.lse);
    std::vector<uint8_t> tout(out_bytes);
    AttnRun want;
    want.lse.resize(s.num_heads);
    ASSERT_TRUE(AkvAttentionRef(pr.Attention(tout.data(), want.lse.data(), 1)));
    want.out = testing::ToDoubles(tout.data(), pr.OutElems(), s.dtype);
    ExpectClose(got, want, s.dtype, Cat("hot ", n_hot, " warm ", n_warm));
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

// Batched decode: one launch over sequences whose tiers, sizes and
// capacities differ (stacked layers, layer 1 attended), against the twin on
// the same batch; outputs and lse poisoned. Splits as the engine plans them
// for the batch, and fixed.
TEST(AkvCuda, BatchedDecodeAttentionMatchesTwin) {
  SKIP_WITHOUT_DEVICE();
  for (int D : {64, 128}) {
    for (int G : {1, 4, 8}) {
      for (int bits : {2, 4, 8}) {
        for (int g : {D, 32}) {
          const int sizes[4][4] = {{40, 2100, 7, 9}, {1, 0, 0, 3}, {300, 50, 1, 900}, {97, 4097, 20, 0}};
          std::vector<AkvShape> shapes(4);
          for (int i = 0; i < 4; ++i) {
            AkvShape& s = shapes[i];
            s.dtype = KvDType::kBf16, s.head_dim = D, s.num_kv_heads = 2, s.num_heads = 2 * G, s.bits = bits;
            s.group_size = g, s.layers = 2;
            s.n_hot = sizes[i][0], s.n_warm = sizes[i][1], s.spare_hot = sizes[i][2], s.spare_warm = sizes[i][3];
          }
          testing::AkvBatch b = testing::MakeAkvBatch(shapes, 600 + D + G + bits + g);
          const int B = b.rows(), H = 2 * G;
          DeviceArena arena;
          std::vector<AkvTiers> dtiers;
          std::vector<const int32_t*> dpos;
          for (int i = 0; i < B; ++i) {
            const DeviceTiers d = testing::UploadTiers(b.prs[i], &arena);
            dtiers.push_back(d.tiers), dpos.push_back(d.q_pos);
          }
          const std::vector<AkvAttnSeq> host_rows = b.HostRows(1);
          const AkvAttnBatch host_batch = testing::BatchOf(host_rows.data(), B);
          const AkvAttnBatch dev_batch = testing::BatchOf(arena.Up(b.Rows(1, dtiers, dpos)), B);
          const void* q = arena.Up(b.q);
          const int planned = PlanAkvAttentionSplits(1, H, 2, b.layout.hot_capacity + b.layout.warm_capacity,
                                                     NumSms(), B);
          for (int splits : {1, planned, 7}) {
            const std::string what = Cat("D", D, " G", G, " b", bits, " g", g, " S", splits);
            const AkvAttentionWorkspaceBytes ws = AkvAttentionWorkspace(B, H, splits, D);
            // Twin on host copies.
            AttnRun want;
            std::vector<uint8_t> tout(b.OutElems() * 2);
            want.lse.assign(static_cast<size_t>(B) * H, NAN);
            std::vector<float> po(ws.partial_out / 4 + 1), pl(ws.partial_lse / 4 + 1);
            ASSERT_TRUE(AkvAttentionRef(
                b.Attention(&host_batch, b.q.data(), tout.data(), want.lse.data(), splits, po.data(), pl.data())))
                << what;
            want.out = testing::ToDoubles(tout.data(), b.OutElems(), KvDType::kBf16);
            // GPU.
            AkvAttentionParams p = b.Attention(&dev_batch, q, arena.Alloc(tout.size()),
                                               static_cast<float*>(arena.Alloc(want.lse.size() * 4)), splits,
                                               nullptr, nullptr);
            if (splits > 1) {
              p.partial_out = static_cast<float*>(arena.Alloc(ws.partial_out));
              p.partial_lse = static_cast<float*>(arena.Alloc(ws.partial_lse));
            }
            ASSERT_CUDA(cudaMemset(p.out, 0xff, tout.size()));
            ASSERT_CUDA(cudaMemset(p.lse, 0xff, want.lse.size() * 4));
            ASSERT_CUDA(LaunchAkvMixedAttention(p, nullptr));
            ASSERT_CUDA(cudaDeviceSynchronize());
            AttnRun got;
            std::vector<uint8_t> out(tout.size());
            testing::Down(static_cast<const uint8_t*>(p.out), &out);
            got.out = testing::ToDoubles(out.data(), b.OutElems(), KvDType::kBf16);
            got.lse.resize(want.lse.size());
            testing::Down(p.lse, &got.lse);
            ExpectClose(got, want, KvDType::kBf16, what);
          }
        }
      }
    }
  }
}

// Runs without a device: validation happens before any CUDA call.
TEST(AkvCuda, LaunchersRejectUnsupportedOrMisalignedParams) {
  AkvShape s;
  s.dtype = KvDType::kBf16;
  AkvProblem pr = MakeAkvProblem(s, 3);
  alignas(16) static uint8_t fake[64];
  AkvAttentionParams p = pr.Attention(fake, nullptr);
  p.layout.dtype = KvDType::kFp16;  // twin only
  EXPECT_EQ(LaunchAkvMixedAttention(p, nullptr), cudaErrorInvalidValue);
  p = pr.Attention(fake + 2, nullptr);  // out not 16-byte aligned
  EXPECT_EQ(LaunchAkvMixedAttention(p, nullptr), cudaErrorInvalidValue);
  p = pr.Attention(fake, nullptr, 0, 2);  // no workspace
  EXPECT_EQ(LaunchAkvMixedAttention(p, nullptr), cudaErrorInvalidValue);
  p = pr.Attention(fake, nullptr);
  p.q_stride_h = 68;  // not a multiple of 8 bf16 elements
  EXPECT_EQ(LaunchAkvMixedAttention(p, nullptr), cudaErrorInvalidValue);
  AkvShape s9 = s;
  s9.num_kv_heads = 1, s9.num_heads = kAkvAttnMmaMaxGroup + 1;
  AkvProblem pr9 = MakeAkvProblem(s9, 4);
  p = pr9.Attention(fake, nullptr);
  p.path = AkvAttnPath::kTensorCore;  // more query heads per KV head than the tensor-core kernel serves
  EXPECT_EQ(LaunchAkvMixedAttention(p, nullptr), cudaErrorInvalidValue);
  // Batched decode runs on the tensor-core kernel only: not fp32, not the CUDA-core path, not G > 8.
  testing::AkvBatch b = testing::MakeAkvBatch(std::vector<AkvShape>(2, s), 5);
  static AkvAttnSeq fake_rows[2];
  const AkvAttnBatch fake_batch = testing::BatchOf(fake_rows, 2);
  p = b.Attention(&fake_batch, fake, fake, nullptr, 1, nullptr, nullptr);
  p.path = AkvAttnPath::kCudaCore;
  EXPECT_EQ(LaunchAkvMixedAttention(p, nullptr), cudaErrorInvalidValue);
  p.path = AkvAttnPath::kAuto;
  p.layout.dtype = KvDType::kFp32;
  EXPECT_EQ(LaunchAkvMixedAttention(p, nullptr), cudaErrorInvalidValue);
  p = b.Attention(&fake_batch, fake, fake, nullptr, 1, nullptr, nullptr);
  p.layout.num_kv_heads = 1, p.num_heads = kAkvAttnMmaMaxGroup + 1;
  EXPECT_EQ(LaunchAkvMixedAttention(p, nullptr), cudaErrorInvalidValue);
  AkvQuantizeParams q;
  q.rows = 1, q.num_kv_heads = 1, q.head_dim = 96, q.bits = 4, q.group_size = 32;
  EXPECT_EQ(LaunchAkvQuantizePack(q, nullptr), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace kvstream
