// SAM-Gate ring kernels on the GPU vs their CPU twins on fresh random inputs
// with poisoned outputs (sam_gate.md §7, §9 tests 1, 5). Skips with a reason
// where no CUDA device is present.
//
// Bounds: kv_write rings and slot_pos, and ring_dequant rows, bit-exact.
// Decode attention ||gpu - twin|| / ||twin||: bf16 2e-3 (§7), fp32 1e-4
// (fp32 online softmax vs the twin's fp64); dropped heads exact. Fused
// append (the engine's decode launch): rings and slot_pos after it
// bit-exact with the twin's write, outputs within the same bounds.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/sam_gate/sam_gate.h"
#include "tests/kernels/sam_gate/sam_cuda_util.h"

namespace kvstream {
namespace {

using testing::Down;
using testing::RandomValues;
using testing::RelErr;
using testing::SamDeviceArena;
using testing::SamRingSpec;
using testing::SamTestRing;
using testing::UploadRing;

template <class... A>
std::string Cat(const A&... a) {
  std::ostringstream os;
  (os << ... << a);
  return os.str();
}

// K/V rows [n, Hk, D] with row stride `stride` and adversarial groups:
// constant rows (scale 0), exact ties at code + 0.5, large values.
std::vector<uint8_t> AdversarialRows(int n, int stride, KvDType dtype, std::mt19937* rng) {
  std::vector<uint8_t> x = RandomValues(size_t(n) * stride, dtype, rng);
  for (int r = 0; r < n; ++r) {
    for (int e = 0; e < stride; ++e) {
      const size_t i = size_t(r) * stride + e;
      if (r % 5 == 1) StoreFromFloat(x.data(), i, 0.75f, dtype);
      if (r % 5 == 2) StoreFromFloat(x.data(), i, static_cast<float>((*rng)() % 16) * 0.5f, dtype);
      // Large groups: the fp16 scale saturates for bf16/fp32 input; fp16
      // input stays finite (an inf input would give NaN params, whose bits
      // the host and device conversions need not agree on).
      const float big = dtype == KvDType::kFp16 ? 500.0f : 3.0e4f;
      if (r % 5 == 3) StoreFromFloat(x.data(), i, LoadAsFloat(x.data(), i, dtype) * big, dtype);
    }
  }
  return x;
}

TEST(SamRingCuda, KvWriteAndDequantMatchTwinBitExact) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(31);
  for (KvDType dtype : {KvDType::kBf16, KvDType::kFp32, KvDType::kFp16}) {
    for (int D : {64, 128}) {
      for (int bits : {4, 8, 16}) {
        for (int gs : {16, 32, 64, 128}) {
          for (int fake : {0, 4, 8}) {
            if (gs > D || (fake != 0 && bits != 16)) continue;
            const std::string what = Cat(KvDTypeName(dtype), " D", D, " b", bits, " gs", gs, " fake", fake);
            SamRingSpec s;
            s.head_dim = D, s.bits = bits, s.group_size = gs, s.window = 40, s.sinks = 3, s.kept_groups = {0, 1, 3};
            SamTestRing host(s);
            SamDeviceArena arena;
            const testing::SamDeviceRing dev = UploadRing(host, &arena);  // same poisoned bytes
            const int T = 54, Hk = s.num_kv_heads, stride = Hk * D + 16;
            const std::vector<uint8_t> k = AdversarialRows(T, stride, dtype, &rng);
            const std::vector<uint8_t> v = AdversarialRows(T, stride, dtype, &rng);
            std::vector<int32_t> pos(T), seq_len = {T};
            for (int i = 0; i < T; ++i) pos[i] = i;
            pos[7] = -1;  // a padding row
            SamKvWriteParams p;
            p.stride_n = stride, p.num_rows = T, p.num_seqs = 1, p.num_kv_heads = Hk, p.head_dim = D;
            p.fake_quant_bits = fake, p.dtype = dtype;
            SamKvWriteParams hp = p, dp = p;
            hp.k = k.data(), hp.v = v.data(), hp.pos = pos.data(), hp.seq_len = seq_len.data(), hp.rings = &host.desc;
            ASSERT_TRUE(SamKvWriteRef(hp)) << what;
            dp.k = arena.Up(k), dp.v = arena.Up(v), dp.pos = arena.Up(pos), dp.seq_len = arena.Up(seq_len);
            dp.rings = arena.Up(std::vector<SamRingDesc>{dev.desc});
            ASSERT_CUDA(LaunchSamKvWrite(dp, nullptr));
            ASSERT_CUDA(cudaDeviceSynchronize());
            ASSERT_EQ(Down(dev.desc.k, dev.bytes), host.k) << what;
            ASSERT_EQ(Down(dev.desc.v, dev.bytes), host.v) << what;
            ASSERT_EQ(Down(dev.desc.slot_pos, dev.slots), host.slot_pos) << what;

            const size_t n = size_t(s.kept_groups.size()) * (s.window + s.sinks) * D;
            std::vector<float> hk(n, NAN), hv(n, NAN), poison(n, NAN);
            SamRingDequantParams hq{host.desc, hk.data(), hv.data(), D};
            ASSERT_TRUE(SamRingDequantRef(hq)) << what;
            SamRingDequantParams dq{dev.desc, arena.Up(poison), arena.Up(poison), D};
            ASSERT_CUDA(LaunchSamRingDequant(dq, nullptr));
            ASSERT_CUDA(cudaDeviceSynchronize());
            const std::vector<float> gk = Down(dq.k_out, n), gv = Down(dq.v_out, n);
            ASSERT_EQ(0, std::memcmp(gk.data(), hk.data(), n * 4)) << what;
            ASSERT_EQ(0, std::memcmp(gv.data(), hv.data(), n * 4)) << what;
          }
        }
      }
    }
  }
}

// Attention outputs (elements of `dtype`) as fp32.
std::vector<float> Floats(const std::vector<uint8_t>& bytes, KvDType dtype) {
  std::vector<float> out(bytes.size() / KvDTypeSize(dtype));
  for (size_t i = 0; i < out.size(); ++i) out[i] = LoadAsFloat(bytes.data(), i, dtype);
  return out;
}

// Fills a host ring through the twin: prompt of T tokens, then `steps` decodes.
void FillHost(SamTestRing& r, int T, int steps, std::mt19937* rng) {
  const int Hk = r.spec.num_kv_heads, D = r.spec.head_dim;
  auto write = [&](int first, int n, int32_t len) {
    std::vector<uint8_t> k = RandomValues(size_t(n) * Hk * D, KvDType::kFp32, rng);
    std::vector<uint8_t> v = RandomValues(size_t(n) * Hk * D, KvDType::kFp32, rng);
    std::vector<int32_t> pos(n);
    for (int i = 0; i < n; ++i) pos[i] = first + i;
    SamKvWriteParams p;
    p.k = k.data(), p.v = v.data(), p.pos = pos.data(), p.seq_len = &len, p.rings = &r.desc;
    p.num_rows = n, p.num_seqs = 1, p.num_kv_heads = Hk, p.head_dim = D, p.dtype = KvDType::kFp32;
    ASSERT_TRUE(SamKvWriteRef(p));
  };
  write(0, T, T);
  for (int t = T; t < T + steps; ++t) write(t, 1, t + 1);
}

TEST(SamRingCuda, DecodeAttnMatchesTwin) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(32);
  for (KvDType dtype : {KvDType::kBf16, KvDType::kFp32}) {
    for (int D : {64, 128}) {
      for (int G : {1, 3, 4}) {
        for (int bits : {4, 8, 16}) {
          for (int splits : {1, 3}) {
            const std::string what = Cat(KvDTypeName(dtype), " D", D, " G", G, " b", bits, " S", splits);
            const int Hk = 4, H = Hk * G, B = 3;
            // Three sequences: a full ring, a ring holding one token, a mixed
            // regime with ZERO dropped heads (C15).
            SamRingSpec s0, s1, s2;
            for (SamRingSpec* s : {&s0, &s1, &s2}) s->num_heads = H, s->num_kv_heads = Hk, s->head_dim = D;
            s0.bits = bits, s0.window = 93, s0.sinks = 4, s0.kept_groups = {0, 2, 3};
            s1.bits = bits, s1.window = 54, s1.kept_groups = {1};
            s2.bits = bits == 16 ? 4 : 16, s2.window = 16, s2.sinks = 1, s2.kept_groups = {2};
            s2.dropped_mode = SamDroppedHeadMode::kZero;
            SamTestRing r0(s0), r1(s1), r2(s2);
            FillHost(r0, 4097, 2, &rng);
            FillHost(r1, 1, 0, &rng);
            FillHost(r2, 30, 1, &rng);
            SamDeviceArena arena;
            const std::vector<SamRingDesc> hr = {r0.desc, r1.desc, r2.desc};
            const std::vector<SamRingDesc> dr = {UploadRing(r0, &arena).desc, UploadRing(r1, &arena).desc,
                                                 UploadRing(r2, &arena).desc};
            const std::vector<uint8_t> q = RandomValues(size_t(B) * H * D, dtype, &rng, 2.0f);
            const std::vector<uint8_t> vn = RandomValues(size_t(B) * Hk * D, dtype, &rng);
            const size_t esz = KvDTypeSize(dtype), n_out = size_t(B) * H * D;
            std::vector<uint8_t> hout(n_out * esz, 0xFF), poison(n_out * esz, 0xFF);  // NaN in bf16 and fp32
            std::vector<float> hpo(n_out * splits, NAN), hpl(size_t(B) * H * splits, NAN);
            SamDecodeAttnParams p;
            p.num_seqs = B, p.num_heads = H, p.num_kv_heads = Hk, p.head_dim = D, p.num_splits = splits;
            p.scale = 1.0f / std::sqrt(float(D)), p.dtype = dtype;
            SamDecodeAttnParams hp = p, dp = p;
            hp.rings = hr.data(), hp.q = q.data(), hp.v_new = vn.data(), hp.out = hout.data();
            hp.partial_out = hpo.data(), hp.partial_lse = hpl.data();
            ASSERT_TRUE(SamDecodeAttnRef(hp)) << what;
            dp.rings = arena.Up(dr), dp.q = arena.Up(q), dp.v_new = arena.Up(vn);
            uint8_t* dout = arena.Up(poison);
            dp.out = dout;
            dp.partial_out = arena.Up(hpo), dp.partial_lse = arena.Up(hpl);
            ASSERT_CUDA(LaunchSamDecodeAttn(dp, nullptr));
            ASSERT_CUDA(cudaDeviceSynchronize());
            const std::vector<float> g = Floats(Down(dout, hout.size()), dtype), h = Floats(hout, dtype);
            EXPECT_LE(RelErr(g, h), dtype == KvDType::kFp32 ? 1e-4 : 2e-3) << what;
            for (int b = 0; b < B; ++b) {
              const SamTestRing& r = b == 0 ? r0 : (b == 1 ? r1 : r2);
              for (int hh = 0; hh < H; ++hh) {
                if (r.head_ring_group[hh] >= 0) continue;
                for (int c = 0; c < D; ++c) {
                  const size_t i = (size_t(b) * H + hh) * D + c;
                  ASSERT_EQ(g[i], h[i]) << what << " dropped head " << hh << " of sequence " << b;
                }
              }
            }
          }
        }
      }
    }
  }
}

TEST(SamRingCuda, FusedAppendMatchesTwin) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(33);
  for (KvDType dtype : {KvDType::kBf16, KvDType::kFp32, KvDType::kFp16}) {
    for (int D : {64, 128}) {
      for (int bits : {4, 8, 16}) {
        for (int gs : {16, 32, 64}) {
          for (int splits : {1, 3}) {
            if (bits == 16 && gs != 32) continue;  // gs is unused at 16 bits
            const std::string what = Cat(KvDTypeName(dtype), " D", D, " b", bits, " gs", gs, " S", splits);
            const int Hk = 4, G = 4, H = Hk * G, B = 4;
            // A full ring that wraps (the append evicts the oldest slot), a
            // ring filling a sink slot, a mixed regime with ZERO dropped
            // heads (C15), and a padded row (pos -1: nothing written).
            SamRingSpec s0, s1, s2, s3;
            for (SamRingSpec* s : {&s0, &s1, &s2, &s3}) {
              s->num_heads = H, s->num_kv_heads = Hk, s->head_dim = D, s->group_size = gs, s->bits = bits;
            }
            s0.window = 93, s0.sinks = 4, s0.kept_groups = {0, 2, 3};
            s1.window = 54, s1.sinks = 4, s1.kept_groups = {1};
            s2.bits = bits == 16 ? 4 : 16, s2.window = 16, s2.sinks = 1, s2.kept_groups = {2};
            s2.dropped_mode = SamDroppedHeadMode::kZero;
            s3.window = 8, s3.kept_groups = {0, 1, 2, 3};
            SamTestRing r0(s0), r1(s1), r2(s2), r3(s3);
            FillHost(r0, 4097, 2, &rng);
            FillHost(r1, 2, 0, &rng);
            FillHost(r2, 30, 1, &rng);
            FillHost(r3, 5, 0, &rng);
            SamDeviceArena arena;
            const testing::SamDeviceRing d0 = UploadRing(r0, &arena), d1 = UploadRing(r1, &arena),
                                         d2 = UploadRing(r2, &arena), d3 = UploadRing(r3, &arena);
            const std::vector<SamRingDesc> hr = {r0.desc, r1.desc, r2.desc, r3.desc};
            const std::vector<SamRingDesc> dr = {d0.desc, d1.desc, d2.desc, d3.desc};
            const std::vector<int32_t> pos = {4099, 2, 31, -1};
            const int stride = Hk * D + 8;  // k_new / v_new rows with a gap
            const std::vector<uint8_t> q = RandomValues(size_t(B) * H * D, dtype, &rng, 2.0f);
            const std::vector<uint8_t> kn = AdversarialRows(B, stride, dtype, &rng);
            const std::vector<uint8_t> vn = AdversarialRows(B, stride, dtype, &rng);
            const size_t esz = KvDTypeSize(dtype), n_out = size_t(B) * H * D;
            std::vector<uint8_t> hout(n_out * esz, 0xFF), poison(n_out * esz, 0xFF);  // NaN in every dtype
            std::vector<float> hpo(n_out * splits, NAN), hpl(size_t(B) * H * splits, NAN);
            SamDecodeAttnParams p;
            p.num_seqs = B, p.num_heads = H, p.num_kv_heads = Hk, p.head_dim = D, p.num_splits = splits;
            p.v_stride_b = stride, p.scale = 1.0f / std::sqrt(float(D)), p.dtype = dtype;
            SamDecodeAttnParams hp = p, dp = p;
            hp.rings = hr.data(), hp.q = q.data(), hp.k_new = kn.data(), hp.v_new = vn.data(), hp.pos = pos.data();
            hp.out = hout.data(), hp.partial_out = hpo.data(), hp.partial_lse = hpl.data();
            ASSERT_TRUE(SamDecodeAttnRef(hp)) << what;
            dp.rings = arena.Up(dr), dp.q = arena.Up(q), dp.k_new = arena.Up(kn), dp.v_new = arena.Up(vn);
            dp.pos = arena.Up(pos);
            uint8_t* dout = arena.Up(poison);
            dp.out = dout;
            dp.partial_out = arena.Up(hpo), dp.partial_lse = arena.Up(hpl);
            ASSERT_CUDA(LaunchSamDecodeAttn(dp, nullptr));
            ASSERT_CUDA(cudaDeviceSynchronize());
            const SamTestRing* host[] = {&r0, &r1, &r2, &r3};
            const testing::SamDeviceRing* dev[] = {&d0, &d1, &d2, &d3};
            for (int b = 0; b < B; ++b) {
              ASSERT_EQ(Down(dev[b]->desc.k, dev[b]->bytes), host[b]->k) << what << " ring " << b;
              ASSERT_EQ(Down(dev[b]->desc.v, dev[b]->bytes), host[b]->v) << what << " ring " << b;
              ASSERT_EQ(Down(dev[b]->desc.slot_pos, dev[b]->slots), host[b]->slot_pos) << what << " ring " << b;
            }
            const std::vector<float> g = Floats(Down(dout, hout.size()), dtype), h = Floats(hout, dtype);
            EXPECT_LE(RelErr(g, h), dtype == KvDType::kFp32 ? 1e-4 : 2e-3) << what;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace kvstream
