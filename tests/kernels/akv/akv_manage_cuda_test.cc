// AKV tier-management kernels on the GPU vs their CPU twins (akv.md §9 test
// 5): append, migrate and the cold scan's append bit-exact on every tier
// buffer and counter; select lists and counters identical on identical (tied)
// scores; score update within fp32-vs-fp64 rounding. Skips with a reason where
// no CUDA device is present.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
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

template <class... A>
std::string Cat(const A&... a) {
  std::ostringstream os;
  (os << ... << a);
  return os.str();
}

void ExpectSameTiers(const AkvProblem& got, const AkvProblem& want, const std::string& what) {
  EXPECT_EQ(got.hot_k, want.hot_k) << what;
  EXPECT_EQ(got.hot_v, want.hot_v) << what;
  EXPECT_EQ(got.hot_pos, want.hot_pos) << what;
  EXPECT_TRUE(testing::SameBits(got.hot_score, want.hot_score)) << what;
  EXPECT_EQ(got.warm_k, want.warm_k) << what;
  EXPECT_EQ(got.warm_v, want.warm_v) << what;
  EXPECT_EQ(got.wks, want.wks) << what;
  EXPECT_EQ(got.wkz, want.wkz) << what;
  EXPECT_EQ(got.wvs, want.wvs) << what;
  EXPECT_EQ(got.wvz, want.wvz) << what;
  EXPECT_EQ(got.warm_pos, want.warm_pos) << what;
  EXPECT_TRUE(testing::SameBits(got.warm_score, want.warm_score)) << what;
  EXPECT_TRUE(testing::SameBits(got.warm_a, want.warm_a)) << what;
  EXPECT_EQ(got.counts, want.counts) << what;
}

TEST(AkvManageCuda, AppendMatchesTwinBitExact) {
  SKIP_WITHOUT_DEVICE();
  for (KvDType dtype : {KvDType::kBf16, KvDType::kFp32}) {
    AkvShape s;
    s.dtype = dtype, s.layers = 2, s.n_hot = 30, s.spare_hot = 20, s.head_dim = 128;
    AkvProblem pr = MakeAkvProblem(s, 4);
    for (int rows : {1, 16, 25}) {  // the last one overflows the capacity
      AkvProblem src = MakeAkvProblem(s, 40 + rows);  // its hot rows are the new K/V
      std::vector<int32_t> pos(rows);
      for (int r = 0; r < rows; ++r) pos[r] = 1000 * rows + r;
      DeviceArena arena;
      const DeviceTiers d = testing::UploadTiers(pr, &arena);
      AkvAppendParams p;
      p.layout = pr.lay, p.layer = 1, p.rows = rows;
      p.row_stride = 0;
      AkvAppendParams host = p;
      host.tiers = pr.Tiers(), host.k = src.hot_k.data(), host.v = src.hot_v.data(), host.pos = pos.data();
      p.tiers = d.tiers, p.k = arena.Up(src.hot_k), p.v = arena.Up(src.hot_v), p.pos = arena.Up(pos);
      ASSERT_CUDA(LaunchAkvAppend(p, nullptr));
      ASSERT_CUDA(cudaDeviceSynchronize());
      ASSERT_TRUE(AkvAppendRef(host));
      AkvProblem got = pr;
      testing::DownloadTiers(d.tiers, &got);
      ExpectSameTiers(got, pr, Cat(KvDTypeName(dtype), " rows ", rows));
    }
  }
}

// Batched decode append (one row per sequence, each into its own tiers at
// layer 1; one sequence full): device tiers bit-exact with the twin's.
TEST(AkvManageCuda, AppendBatchMatchesTwinBitExact) {
  SKIP_WITHOUT_DEVICE();
  for (KvDType dtype : {KvDType::kBf16, KvDType::kFp32}) {
    std::vector<AkvShape> shapes(5);
    for (int i = 0; i < 5; ++i) {
      AkvShape& s = shapes[i];
      s.dtype = dtype, s.layers = 2, s.head_dim = 128, s.num_kv_heads = 8, s.num_heads = 32;
      s.n_hot = 10 + 7 * i, s.spare_hot = i == 3 ? 0 : 3 + i;
    }
    testing::AkvBatch b = testing::MakeAkvBatch(shapes, 70);
    AkvProblem src = MakeAkvProblem(shapes[4], 71);  // its first 5 hot rows are the new K/V
    DeviceArena arena;
    std::vector<AkvTiers> dtiers;
    std::vector<const int32_t*> dpos;
    std::vector<DeviceTiers> dev;
    for (AkvProblem& pr : b.prs) {
      dev.push_back(testing::UploadTiers(pr, &arena));
      dtiers.push_back(dev.back().tiers), dpos.push_back(dev.back().q_pos);
    }
    const std::vector<AkvAttnSeq> host_rows = b.HostRows(1);
    const AkvAttnBatch host_batch = testing::BatchOf(host_rows.data(), 5);
    const AkvAttnBatch dev_batch = testing::BatchOf(arena.Up(b.Rows(1, dtiers, dpos)), 5);
    AkvAppendParams p;
    p.layout = b.layout, p.rows = 5;
    AkvAppendParams host = p;
    host.batch = &host_batch, host.k = src.hot_k.data(), host.v = src.hot_v.data();
    p.batch = &dev_batch, p.k = arena.Up(src.hot_k), p.v = arena.Up(src.hot_v);
    ASSERT_CUDA(LaunchAkvAppend(p, nullptr));
    ASSERT_CUDA(cudaDeviceSynchronize());
    ASSERT_TRUE(AkvAppendRef(host));
    for (int i = 0; i < 5; ++i) {
      AkvProblem got = b.prs[i];
      testing::DownloadTiers(dev[i].tiers, &got);
      ExpectSameTiers(got, b.prs[i], Cat(KvDTypeName(dtype), " sequence ", i));
    }
  }
}

// lse of the last query row for a problem, from the twin attention.
std::vector<float> TwinLse(AkvProblem& pr) {
  std::vector<uint8_t> out(pr.OutElems() * KvDTypeSize(pr.s.dtype));
  std::vector<float> lse(static_cast<size_t>(pr.s.rows) * pr.s.num_heads);
  EXPECT_TRUE(AkvAttentionRef(pr.Attention(out.data(), lse.data())));
  return lse;
}

// Both kernels: one query row (the decode kernel, G <= 8) and several (the
// row kernel: prefill, and HYBRID's all-rows sums), on the default shape
// (Hkv 8, D 128, 4-bit) and a small one (Hkv 3, D 64, 2-bit).
TEST(AkvManageCuda, ScoreUpdateMatchesTwin) {
  SKIP_WITHOUT_DEVICE();
  struct Case { AkvScoring mode; int rows, hkv, d, bits; std::vector<int> groups; };
  const std::vector<Case> cases = {
      {AkvScoring::kImportance, 1, 3, 64, 2, {1, 3, 7}},  {AkvScoring::kHybrid, 9, 3, 64, 2, {1, 3, 7}},
      {AkvScoring::kHybrid, 1, 3, 64, 8, {3}},            {AkvScoring::kImportance, 1, 8, 128, 4, {4, 9}},
      {AkvScoring::kImportance, 5, 8, 128, 4, {4}},       {AkvScoring::kHybrid, 1, 8, 128, 2, {4}}};
  for (const Case& k : cases) {
    const AkvScoring mode = k.mode;
    for (KvDType dtype : {KvDType::kBf16, KvDType::kFp32}) {
      for (int G : k.groups) {
        AkvShape s;
        s.dtype = dtype, s.num_kv_heads = k.hkv, s.num_heads = k.hkv * G, s.head_dim = k.d, s.bits = k.bits;
        s.rows = k.rows, s.n_hot = 200, s.n_warm = 700;
        AkvProblem pr = MakeAkvProblem(s, 9 + G);
        const std::vector<float> lse = TwinLse(pr);
        AkvScoreParams p;
        p.layout = pr.lay, p.num_rows = s.rows, p.num_heads = s.num_heads, p.mode = mode;
        p.scale = 1.0f / std::sqrt(static_cast<float>(k.d));
        p.max_positions = pr.P;
        DeviceArena arena;
        const DeviceTiers d = testing::UploadTiers(pr, &arena);
        AkvScoreParams dev = p;
        dev.tiers = d.tiers, dev.q = d.q, dev.q_pos = d.q_pos, dev.lse = arena.Up(lse);
        dev.workspace = static_cast<uint32_t*>(arena.Alloc(AkvScoreWorkspaceWords(pr.P) * 4));
        // The kept last query row and lse (the cold scan's), poisoned first.
        const size_t keep_bytes = static_cast<size_t>(s.num_heads) * k.d * KvDTypeSize(dtype);
        std::vector<uint8_t> q_keep(keep_bytes, 0xff), want_q(keep_bytes, 0xff);
        std::vector<float> lse_keep(s.num_heads, NAN), want_lse(s.num_heads, NAN);
        dev.q_keep = arena.Up(q_keep), dev.lse_keep = arena.Up(lse_keep);
        ASSERT_CUDA(LaunchAkvScoreUpdate(dev, nullptr));
        ASSERT_CUDA(cudaDeviceSynchronize());
        AkvScoreParams host = p;
        host.tiers = pr.Tiers(), host.q = pr.q.data(), host.q_pos = pr.q_pos.data(), host.lse = lse.data();
        host.q_keep = want_q.data(), host.lse_keep = want_lse.data();
        AkvProblem got = pr;
        ASSERT_TRUE(AkvScoreUpdateRef(host));
        EXPECT_EQ(testing::Down(static_cast<const uint8_t*>(dev.q_keep), keep_bytes), want_q);
        EXPECT_TRUE(testing::SameBits(testing::Down(dev.lse_keep, lse_keep.size()), want_lse));
        testing::DownloadTiers(d.tiers, &got);
        const std::string what = Cat(mode == AkvScoring::kHybrid ? "hybrid " : "importance ", KvDTypeName(dtype), " G", G,
                                     " M", k.rows, " Hkv", k.hkv, " D", k.d, " b", k.bits);
        for (int j = 0; j < s.n_hot; ++j) EXPECT_NEAR(got.hot_score[j], pr.hot_score[j], 1e-5 + 1e-4 * pr.hot_score[j]) << what << " hot " << j;
        for (int j = 0; j < s.n_warm; ++j) {
          EXPECT_NEAR(got.warm_score[j], pr.warm_score[j], 1e-5 + 1e-4 * pr.warm_score[j]) << what << " warm " << j;
          EXPECT_NEAR(got.warm_a[j], pr.warm_a[j], 1e-6 + 1e-4 * pr.warm_a[j]) << what << " a " << j;
        }
        EXPECT_TRUE(std::isnan(got.hot_score[s.n_hot]) && std::isnan(got.warm_score[s.n_warm])) << "spare slots untouched";
      }
    }
  }
}

struct ListBufs {
  std::vector<int32_t> demote, promote, cold;
  explicit ListBufs(const AkvLayout& lay, int layers)
      : demote(static_cast<size_t>(layers) * lay.hot_capacity, -1),
        promote(static_cast<size_t>(layers) * lay.warm_capacity, -1),
        cold(static_cast<size_t>(layers) * lay.warm_capacity, -1) {}
  AkvLists Host() { return AkvLists{demote.data(), promote.data(), cold.data()}; }
};

// A multi-layer state whose scores take few values (many exact ties).
AkvProblem TiedState(KvDType dtype, int layers, uint32_t seed) {
  AkvShape s;
  s.dtype = dtype, s.layers = layers, s.num_kv_heads = 2, s.num_heads = 4, s.head_dim = 128, s.bits = 4;
  s.group_size = 64, s.n_hot = 300, s.n_warm = 900, s.spare_hot = 200, s.spare_warm = 400;
  AkvProblem pr = MakeAkvProblem(s, seed);
  std::mt19937 rng(seed);
  for (float& x : pr.hot_score) x = 0.125f * (rng() % 4);
  for (float& x : pr.warm_score) x = 0.125f * (rng() % 4);
  for (float& x : pr.warm_a) x = 0.03f * (rng() % 4);
  for (int l = 1; l < layers; ++l) {  // layers differ in size
    pr.counts[l * kAkvCountSlots + kAkvNHot] = 300 - 37 * l;
    pr.counts[l * kAkvCountSlots + kAkvNWarm] = 900 - 300 * l;
  }
  return pr;
}

std::vector<AkvPolicy> Policies() {
  std::vector<AkvPolicy> v;
  AkvPolicy p;
  p.hot_budget = 256, p.eviction_batch_size = 1, p.warm_budget = 800, p.n_anchors = 40;
  p.initial_tokens_protected = 4, p.promote_threshold = 0.05f, p.promote_max_per_step = 50;
  v.push_back(p);  // IMPORTANCE: demote, promote (capped), cold
  AkvPolicy h = p;
  h.mode = AkvScoring::kHybrid, h.recent_tokens_protected = 64, h.warm_budget = 0;
  v.push_back(h);  // HYBRID, no warm tier: all demoted rows go on
  AkvPolicy f = p;
  f.mode = AkvScoring::kFifo, f.recent_tokens_protected = 32, f.hot_budget = 100, f.warm_budget = 300;
  v.push_back(f);  // FIFO
  AkvPolicy o = p;
  o.n_anchors = 2, o.initial_tokens_protected = 900, o.hot_budget = 200;
  v.push_back(o);  // cap of 2 promotions; most old rows are sinks: hot overflow
  return v;
}

TEST(AkvManageCuda, SelectAndMigrateMatchTwinOnIdenticalScores) {
  SKIP_WITHOUT_DEVICE();
  int policy_index = 0, seen_demote = 0, seen_promote = 0, seen_cold = 0, seen_overflow = 0;
  for (const AkvPolicy& pol : Policies()) {
    for (KvDType dtype : {KvDType::kBf16, KvDType::kFp32}) {
      const int L = 3;
      AkvProblem pr = TiedState(dtype, L, 100 + policy_index);
      const std::string what = Cat("policy ", policy_index, " ", KvDTypeName(dtype));
      ListBufs host_lists(pr.lay, L), got_lists(pr.lay, L);
      AkvProblem stage = TiedState(dtype, L, 1), got_stage = stage;
      DeviceArena arena;
      const DeviceTiers d = testing::UploadTiers(pr, &arena);
      const DeviceTiers ds = testing::UploadTiers(stage, &arena);
      AkvLists dl{arena.Up(got_lists.demote), arena.Up(got_lists.promote), arena.Up(got_lists.cold)};
      AkvSelectParams sp;
      sp.layout = pr.lay, sp.policy = pol, sp.num_layers = L;
      AkvSelectParams dsp = sp;
      dsp.tiers = d.tiers, dsp.lists = dl;
      ASSERT_CUDA(LaunchAkvSelect(dsp, nullptr));
      sp.tiers = pr.Tiers(), sp.lists = host_lists.Host();
      ASSERT_TRUE(AkvSelectRef(sp));
      AkvMigrateParams mp;
      mp.layout = pr.lay, mp.num_layers = L;
      AkvMigrateParams dmp = mp;
      dmp.tiers = d.tiers, dmp.lists = dl;
      dmp.stage = AkvColdStage{ds.tiers.warm_k, ds.tiers.warm_v, ds.tiers.warm_k_scale, ds.tiers.warm_k_zero,
                               ds.tiers.warm_v_scale, ds.tiers.warm_v_zero, ds.tiers.warm_pos, ds.tiers.warm_score};
      // Odd policies: a compact stage of 2 rows per layer (the engine's S), extra rows dropped.
      const int stage_rows = policy_index % 2 ? 2 : 0;
      dmp.stage.rows_per_layer = stage_rows;
      ASSERT_CUDA(LaunchAkvMigrate(dmp, nullptr));
      ASSERT_CUDA(cudaDeviceSynchronize());
      // Lists (live prefixes) and counters right after select are checked via
      // the counters after migrate, which keep nd/np/nc.
      testing::Down(dl.demote, &got_lists.demote);
      testing::Down(dl.promote, &got_lists.promote);
      testing::Down(dl.cold, &got_lists.cold);
      for (int l = 0; l < L; ++l) {
        const int32_t* c = &pr.counts[l * kAkvCountSlots];
        auto prefix = [](const std::vector<int32_t>& v, size_t off, int n) {
          return std::vector<int32_t>(v.begin() + off, v.begin() + off + n);
        };
        const size_t oh = static_cast<size_t>(l) * pr.lay.hot_capacity, ow = static_cast<size_t>(l) * pr.lay.warm_capacity;
        EXPECT_EQ(prefix(got_lists.demote, oh, c[kAkvNDemote]), prefix(host_lists.demote, oh, c[kAkvNDemote])) << what << " layer " << l;
        EXPECT_EQ(prefix(got_lists.promote, ow, c[kAkvNPromote]), prefix(host_lists.promote, ow, c[kAkvNPromote])) << what << " layer " << l;
        EXPECT_EQ(prefix(got_lists.cold, ow, c[kAkvNCold]), prefix(host_lists.cold, ow, c[kAkvNCold])) << what << " layer " << l;
      }
      mp.tiers = pr.Tiers(), mp.lists = host_lists.Host();
      mp.stage = AkvColdStage{stage.warm_k.data(), stage.warm_v.data(), stage.wks.data(), stage.wkz.data(),
                              stage.wvs.data(), stage.wvz.data(), stage.warm_pos.data(), stage.warm_score.data()};
      mp.stage.rows_per_layer = stage_rows;
      ASSERT_TRUE(AkvMigrateRef(mp));
      AkvProblem got = pr;
      testing::DownloadTiers(d.tiers, &got);
      testing::DownloadTiers(ds.tiers, &got_stage);
      ExpectSameTiers(got, pr, what);
      ExpectSameTiers(got_stage, stage, what + " stage");
      for (int l = 0; l < L; ++l) {
        seen_demote += pr.counts[l * kAkvCountSlots + kAkvTotDemoted];
        seen_promote += pr.counts[l * kAkvCountSlots + kAkvTotPromoted];
        seen_cold += pr.counts[l * kAkvCountSlots + kAkvTotCold];
        seen_overflow += pr.counts[l * kAkvCountSlots + kAkvTotHotOverflow];
      }
    }
    ++policy_index;
  }
  EXPECT_GT(seen_demote, 0);
  EXPECT_GT(seen_promote, 0);
  EXPECT_GT(seen_cold, 0);
  EXPECT_GT(seen_overflow, 0);
}

// The cold scan's promotions: device warm tiers and counters bit-exact with
// the twin's, one layer clamped by warm_limit, one taking all, one none.
TEST(AkvManageCuda, ColdAppendMatchesTwinBitExact) {
  SKIP_WITHOUT_DEVICE();
  for (int bits : {2, 4, 8}) {
    AkvShape s;
    s.dtype = KvDType::kBf16, s.layers = 3, s.n_warm = 20, s.spare_warm = 12, s.bits = bits, s.head_dim = 128;
    AkvProblem pr = MakeAkvProblem(s, 60 + bits);
    testing::AkvColdAppendStage st = testing::MakeColdAppendStage(MakeAkvProblem(s, 70 + bits), 8, {8, 3, 0}, bits);
    DeviceArena arena;
    const DeviceTiers d = testing::UploadTiers(pr, &arena);
    const AkvColdAppendParams host = st.AppendInto(pr, /*warm_limit=*/25);
    AkvColdAppendParams p = host;
    p.tiers = d.tiers;
    p.stage = AkvColdStage{arena.Up(st.k), arena.Up(st.v), arena.Up(st.ks), arena.Up(st.kz), arena.Up(st.vs),
                           arena.Up(st.vz), arena.Up(st.pos), arena.Up(st.score), st.S};
    p.rows = arena.Up(st.rows);
    ASSERT_CUDA(LaunchAkvColdAppend(p, nullptr));
    ASSERT_CUDA(cudaDeviceSynchronize());
    ASSERT_TRUE(AkvColdAppendRef(host));
    AkvProblem got = pr;
    testing::DownloadTiers(d.tiers, &got);
    ExpectSameTiers(got, pr, Cat("bits ", bits));
    EXPECT_EQ(pr.counts[kAkvNWarm], 25);
  }
}

TEST(AkvManageCuda, LaunchersRejectInvalidParams) {
  AkvShape s;
  AkvProblem pr = MakeAkvProblem(s, 3);
  AkvSelectParams sp;
  sp.layout = pr.lay, sp.tiers = pr.Tiers(), sp.num_layers = 1;  // lists missing
  EXPECT_EQ(LaunchAkvSelect(sp, nullptr), cudaErrorInvalidValue);
  AkvScoreParams p;
  p.layout = pr.lay, p.tiers = pr.Tiers(), p.num_rows = 1, p.num_heads = 8, p.mode = AkvScoring::kHybrid;
  p.q = pr.q.data(), p.q_pos = pr.q_pos.data(), p.lse = pr.hot_score.data();
  EXPECT_EQ(LaunchAkvScoreUpdate(p, nullptr), cudaErrorInvalidValue) << "HYBRID needs a workspace";
  AkvColdAppendParams ca;
  ca.layout = pr.lay, ca.tiers = pr.Tiers(), ca.num_layers = 1;  // stage and rows missing
  EXPECT_EQ(LaunchAkvColdAppend(ca, nullptr), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace kvstream
