// Decode-step benchmark of EntmaxKV (design/strategies/entmax_kv.md, §3 bytes
// read, §7 kernels) against our dense decode kernel (kernels/dense) on the same
// paged cache: Llama-3-8B attention, GQA 32/8, D = 128, bf16, the engine's
// 16-token pool blocks in shuffled order, top-k selector, alpha 1, token
// budget 2048, 1 sink page, SHARED_KV selection (the EntmaxKvConfig defaults),
// pages of --page-size tokens (default 16; 8, 32, 64 as the engine lays them
// over its blocks: EntmaxTokenOffset / EntmaxStatsSlot).
//
//   entmax_kv_decode_bench [--out results.json] [--commit SHA] [--iters 100] [--warmup 10]
//                          [--points 1x32768,8x131072,...] [--k7-splits 8,16,33,66] [--page-size 16]
//
// Per (B, T) point, one layer, T = tokens cached after the append:
//   step   = the launches of RunEntmaxDecode (engine/kv/entmax_kv/
//            entmax_kv_decode.cc), in order: K2 page_criticality, K3
//            topk_pack, K7 sparse_decode (alpha 1: the streaming softmax kernel
//            + LSE merge), MT = T_sel (the host knows it from T), K7 split count
//            from PlanEntmaxSoftmaxDecodeSplits(B, Hs, MT), no score scratch, U
//            not zero-filled (K2 writes every entry K3 reads).
//            Timed as parts (events between launches) and together: eager, and
//            as a replayed CUDA graph (no host launch gaps).
//   k3_one_cta = K3 forced to one CTA per row (chunk_pages 0): A/B of the
//            two-stage selection the planner picks from 4096 pages on.
//   layer_in_graph / dense_layer_in_graph = per layer, L layer steps (or L
//            dense launches) captured in one graph on rotating cache sets: the
//            cost inside the engine's decode graph (no graph launch per layer;
//            PDL between one layer's last kernel and the next layer's first).
//            The EntmaxKV layer is the engine's: K1 on a forked stream beside
//            K2 + K3 + K7 (StepWithK1Aside). Neither side's append is timed.
//   k1     = K1 page_stats of the tail page: the engine runs it in Forward after
//            the append on every step; reported apart (not in `step`).
//   per_seq (B > 1) = one batch-1 step per sequence (the engine before it
//            batched decode rows; kept for the comparison).
//   dense  = LaunchDenseDecode with the planned splits.
//   k7_split_sweep (--k7-splits) = K7 alone at each listed split count, beside
//            the planner's, to check PlanEntmaxSoftmaxDecodeSplits.
// Bytes by the §3 model (unique bytes): selected K/V 2*b_kv*Hkv*D*T_sel plus
// page metadata (kmin + kmax) 2*b_kv*Hkv*D*P_hist, per sequence, plus q and out.
// Copy bandwidth and L2 defeat as in dense_decode_bench.cu: consecutive steps
// use different caches (enough sets that the bytes one step touches, times the
// set count, span >= 4x L2), so no step finds its metadata or K/V in L2.
// Caches are filled with random data on the device; min/max stats come from
// a bulk K1 over every page (what prefill leaves).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench/attention/bench_common.cuh"
#include "bench/attention/entmax_kv_decode_report.h"
#include "kernels/dense/dense_decode.h"
#include "kernels/entmax_kv/entmax_kv.h"

namespace {

using kvstream::bench::CopyGbps;
using kvstream::bench::FillRandomBf16;
using kvstream::bench::Median;

using namespace kvstream;                // NOLINT: bench-local
using namespace kvstream::entmax_bench;  // NOLINT: shapes, Row, output


struct Args : kvstream::bench::BenchArgs {
  // (1, 131000): a tail of 8 tokens, T_sel below K7's graph bound (the engine's case for T % 16 != 0).
  std::vector<std::pair<int, int>> points = {{1, 32768}, {1, 131072}, {1, 131000}, {1, 524288}, {8, 32768},
                                             {8, 131072}};
  std::vector<int> k7_splits;  // K7 split counts to time beside the planner's (none: no sweep)
  int page_size = 16;          // P: 8, 16, 32 or 64
};

using Launch = std::function<void(int r)>;  // enqueue one piece of work on cache set r

// Median microseconds per part: events between the parts of one run, runs
// rotating through the sets. parts.size() == 1 times the whole sequence.
std::vector<float> TimeParts(const std::vector<Launch>& parts, int rot, const Args& a, cudaStream_t s) {
  for (int i = 0; i < a.warmup; ++i)
    for (const Launch& f : parts) f(i % rot);
  BENCH_CHECK(cudaStreamSynchronize(s));
  const size_t np = parts.size();
  std::vector<cudaEvent_t> ev(a.iters * (np + 1));
  for (cudaEvent_t& e : ev) BENCH_CHECK(cudaEventCreate(&e));
  for (int i = 0; i < a.iters; ++i) {
    for (size_t k = 0; k < np; ++k) {
      BENCH_CHECK(cudaEventRecord(ev[i * (np + 1) + k], s));
      parts[k](i % rot);
    }
    BENCH_CHECK(cudaEventRecord(ev[i * (np + 1) + np], s));
  }
  BENCH_CHECK(cudaStreamSynchronize(s));
  std::vector<float> med(np);
  for (size_t k = 0; k < np; ++k) {
    std::vector<float> us(a.iters);
    for (int i = 0; i < a.iters; ++i) {
      BENCH_CHECK(cudaEventElapsedTime(&us[i], ev[i * (np + 1) + k], ev[i * (np + 1) + k + 1]));
      us[i] *= 1000.0f;
    }
    med[k] = Median(us);
  }
  for (cudaEvent_t& e : ev) cudaEventDestroy(e);
  return med;
}

// One (B, T) point: `rot` cache sets (K/V pools, min/max stats, block table, q),
// and the per-step buffers the engine allocates (shared by the sets).
class Point {
 public:
  Point(int batch, int tokens, int page_size, const cudaDeviceProp& prop, cudaStream_t s)
      : b_(batch), t_(tokens), p_(page_size), sms_(prop.multiProcessorCount), s_(s) {
    // Blocks per sequence: whole pages (a 32/64-token page spans 2/4 blocks).
    bps_ = static_cast<int>(EntmaxTableBlocksFor(tokens, p_, kBlock));
    mb_ = bps_ * kBlock / p_;
    pages_ = EntmaxPagesOf(tokens, p_, mb_);
    // K7's max_sel_tokens as the engine's graphs pass it (EntmaxGraphBoundsFor:
    // budget + one page, whatever T's tail): equal to T_sel when T % P == 0.
    mt_ = (BudgetPages() + 1) * p_;
    const size_t nb = size_t(batch) * bps_;
    pool_elems_ = nb * kHkv * kBlock * kD;
    stat_elems_ = nb * EntmaxStatsSlotsPerBlock(p_, kBlock) * kHkv * kD;  // 8-token pages: 2 per block
    const size_t set_bytes = 2 * pool_elems_ * 2 + 2 * stat_elems_ * 2 + nb * 4;
    const double touched = ModelBytes() + AuxBytes();
    size_t free_b = 0, total_b = 0;
    BENCH_CHECK(cudaMemGetInfo(&free_b, &total_b));
    const int by_mem = static_cast<int>(std::max<size_t>(2, free_b / 2 / set_bytes));
    rot_ = std::clamp(static_cast<int>(std::ceil(4.0 * prop.l2CacheSize / touched)), 2, std::min(by_mem, 64));
    std::mt19937 rng(batch * 1000003u + tokens);
    std::vector<int32_t> lens(batch, tokens);
    BENCH_CHECK(cudaMalloc(&seq_lens_, batch * 4));
    BENCH_CHECK(cudaMemcpyAsync(seq_lens_, lens.data(), batch * 4, cudaMemcpyHostToDevice, s_));
    for (int r = 0; r < rot_; ++r) {
      Set st;
      BENCH_CHECK(cudaMalloc(&st.k, pool_elems_ * 2));
      BENCH_CHECK(cudaMalloc(&st.v, pool_elems_ * 2));
      BENCH_CHECK(cudaMalloc(&st.kmin, stat_elems_ * 2));
      BENCH_CHECK(cudaMalloc(&st.kmax, stat_elems_ * 2));
      BENCH_CHECK(cudaMalloc(&st.q, size_t(batch) * kH * kD * 2));
      BENCH_CHECK(cudaMalloc(&st.table, nb * 4));
      // On s_ (non-blocking: it does not wait for the legacy default stream).
      FillRandomBf16<<<1024, 256, 0, s_>>>(st.k, pool_elems_, 3 * r + 1);
      FillRandomBf16<<<1024, 256, 0, s_>>>(st.v, pool_elems_, 3 * r + 2);
      FillRandomBf16<<<64, 256, 0, s_>>>(st.q, size_t(batch) * kH * kD, 3 * r + 3);
      BENCH_CHECK(cudaGetLastError());
      std::vector<int32_t> ids(nb);  // a few MB at most: the only host upload
      std::iota(ids.begin(), ids.end(), 0);
      std::shuffle(ids.begin(), ids.end(), rng);  // fragmented pool: pages in random order
      BENCH_CHECK(cudaMemcpyAsync(st.table, ids.data(), nb * 4, cudaMemcpyHostToDevice, s_));
      BENCH_CHECK(cudaStreamSynchronize(s_));  // ids is pageable host memory, freed below
      sets_.push_back(st);
      EntmaxPageStatsParams k1 = K1(r, 0, b_);
      k1.recent_pages = mb_;  // bulk: every page, as after prefill
      BENCH_CHECK(LaunchEntmaxPageStats(k1, s_));
    }
    const size_t bh = size_t(batch) * kH;
    BENCH_CHECK(cudaMalloc(&u_, size_t(batch) * kHs * mb_ * 4));
    BENCH_CHECK(cudaMalloc(&sel_pages_, size_t(batch) * kHs * mb_ * 4));
    BENCH_CHECK(cudaMalloc(&page_count_, size_t(batch) * kHs * 4));
    BENCH_CHECK(cudaMalloc(&sel_len_, size_t(batch) * kHs * 4));
    BENCH_CHECK(cudaMalloc(&tau_, bh * 4));
    BENCH_CHECK(cudaMalloc(&mass_, bh * 4));
    BENCH_CHECK(cudaMalloc(&sparse_out_, bh * kD * 2));
    BENCH_CHECK(cudaMalloc(&dense_out_, bh * kD * 2));
    splits_ = PlanEntmaxSoftmaxDecodeSplits(b_, kHs, mt_, sms_);
    splits_seq_ = PlanEntmaxSoftmaxDecodeSplits(1, kHs, mt_, sms_);
    const int smax = kEntmaxMaxSplits;  // the planner's, or any count a --k7-splits sweep asks for
    BENCH_CHECK(cudaMalloc(&part_, std::max<size_t>(4, EntmaxSparseDecodeWorkspaceBytes(b_, kH, smax, kD))));
    BENCH_CHECK(cudaMalloc(&part_lse_, std::max<size_t>(4, EntmaxSparseDecodeLseBytes(b_, kH, smax))));
    dense_splits_ = PlanDenseDecodeSplits(b_, kH, kHkv, t_, sms_);
    const DenseDecodeWorkspaceBytes ws = DenseDecodeWorkspace(b_, kH, kDenseDecodeMaxSplits, kD);
    BENCH_CHECK(cudaMalloc(&dense_po_, ws.partial_out));
    BENCH_CHECK(cudaMalloc(&dense_pl_, ws.partial_lse));
    BENCH_CHECK(cudaStreamCreateWithFlags(&side_, cudaStreamNonBlocking));
    BENCH_CHECK(cudaEventCreateWithFlags(&fork_, cudaEventDisableTiming));
    BENCH_CHECK(cudaEventCreateWithFlags(&join_, cudaEventDisableTiming));
    BENCH_CHECK(cudaDeviceSynchronize());
  }
  ~Point() {
    cudaEventDestroy(fork_);
    cudaEventDestroy(join_);
    cudaStreamDestroy(side_);
    for (Set& st : sets_) {
      cudaFree(st.k); cudaFree(st.v); cudaFree(st.kmin); cudaFree(st.kmax); cudaFree(st.q); cudaFree(st.table);
    }
    for (void* p : {static_cast<void*>(seq_lens_), static_cast<void*>(u_), static_cast<void*>(sel_pages_),
                    static_cast<void*>(page_count_), static_cast<void*>(sel_len_), static_cast<void*>(part_lse_),
                    static_cast<void*>(tau_), static_cast<void*>(mass_), static_cast<void*>(sparse_out_),
                    static_cast<void*>(dense_out_), static_cast<void*>(part_), static_cast<void*>(dense_po_),
                    static_cast<void*>(dense_pl_)}) {
      cudaFree(p);
    }
  }

  // ---- the launches; (b0, nb) = the sequences [b0, b0 + nb) of the batch ----
  void RunK1(int r, int b0, int nb) const { BENCH_CHECK(LaunchEntmaxPageStats(K1(r, b0, nb), s_)); }
  void RunK2(int r, int b0, int nb) const {
    EntmaxCriticalityParams cp;
    cp.kv = Kv(r, b0, nb);
    cp.query = Query(r, b0);
    cp.stats.kmin = sets_[r].kmin;
    cp.stats.kmax = sets_[r].kmax;
    cp.u = u_ + size_t(b0) * kHs * mb_;
    cp.select_heads = kHs;
    BENCH_CHECK(LaunchEntmaxCriticality(cp, s_));
  }
  // chunk_pages: -1 = the planner (what the engine runs), 0 = one CTA per row (A/B).
  void RunK3(int b0, int nb, int chunk_pages = -1) const {
    EntmaxTopkPackParams tp;
    tp.u = u_ + size_t(b0) * kHs * mb_;
    tp.seq_lens = seq_lens_ + b0;
    tp.batch = nb;
    tp.page_size = p_;
    tp.max_blocks_per_seq = mb_;
    tp.sel = Sel(b0);
    tp.budget_pages = BudgetPages();
    tp.sink_pages = kSinks;
    tp.min_context = 0;
    tp.chunk_pages = chunk_pages;
    BENCH_CHECK(LaunchEntmaxTopkPack(tp, s_));
  }
  // splits: 0 = the planner's (what the engine runs), else forced (sweep).
  void RunK7(int r, int b0, int nb, int splits = 0) const {
    EntmaxSparseDecodeParams dp;
    dp.kv = Kv(r, b0, nb);
    dp.query = Query(r, b0);
    dp.sel = Sel(b0);
    const size_t bh0 = size_t(b0) * kH;
    dp.out = sparse_out_ + bh0 * kD;
    dp.out_stride_b = kH * kD;
    dp.out_stride_h = kD;
    dp.scores = nullptr;  // alpha-1 fast path: no score scratch
    dp.max_sel_tokens = mt_;
    dp.tau = tau_ + bh0;
    dp.mass = mass_ + bh0;
    dp.alpha = 1.0f;
    dp.scale = 1.0f / std::sqrt(float(kD));
    dp.niter = 3;
    dp.correction_iters = 3;
    dp.normalize_output = true;
    dp.num_splits = splits > 0 ? splits : nb == 1 ? splits_seq_ : splits_;
    dp.partial_out = dp.num_splits > 1 ? part_ + bh0 * dp.num_splits * kD : nullptr;
    dp.partial_lse = dp.num_splits > 1 ? part_lse_ + bh0 * dp.num_splits * 2 : nullptr;
    BENCH_CHECK(LaunchEntmaxSparseDecode(dp, s_));
  }
  // A layer of the engine's batched / graph decode (EntmaxKvStrategy::
  // DecodePrepared): K1 of the tail page on a second stream forked from s_
  // and joined after K7 (nothing in the step reads the tail's stats), then
  // K2, K3, K7.
  void StepWithK1Aside(int r) const {
    BENCH_CHECK(cudaEventRecord(fork_, s_));
    BENCH_CHECK(cudaStreamWaitEvent(side_, fork_, 0));
    BENCH_CHECK(LaunchEntmaxPageStats(K1(r, 0, b_), side_));
    BENCH_CHECK(cudaEventRecord(join_, side_));
    Step(r, 0, b_);
    BENCH_CHECK(cudaStreamWaitEvent(s_, join_, 0));
  }
  void Step(int r, int b0, int nb) const {  // RunEntmaxDecode (engine/kv/entmax_kv/entmax_kv_decode.cc)
    RunK2(r, b0, nb);
    RunK3(b0, nb);
    RunK7(r, b0, nb);
  }
  void Dense(int r) const {
    DenseDecodeParams p;
    p.q = sets_[r].q;
    p.k_pool = sets_[r].k;
    p.v_pool = sets_[r].v;
    p.block_table = sets_[r].table;
    p.seq_lens = seq_lens_;
    p.out = dense_out_;
    p.partial_out = dense_splits_ > 1 ? dense_po_ : nullptr;
    p.partial_lse = dense_splits_ > 1 ? dense_pl_ : nullptr;
    p.batch = b_;
    p.num_heads = kH;
    p.num_kv_heads = kHkv;
    p.head_dim = kD;
    p.page_size = kBlock;
    p.num_blocks = b_ * bps_;
    p.max_blocks_per_seq = bps_;
    p.max_seq_len = t_;
    p.num_splits = dense_splits_;
    p.scale = 1.0f / std::sqrt(float(kD));
    p.dtype = KvDType::kBf16;
    BENCH_CHECK(LaunchDenseDecode(p, s_));
  }

  // Median us of the whole step replayed as one CUDA graph per set.
  float GraphStepUs(const Args& a) const {
    std::vector<cudaGraphExec_t> execs(rot_);
    for (int r = 0; r < rot_; ++r) {
      cudaGraph_t g;
      BENCH_CHECK(cudaStreamBeginCapture(s_, cudaStreamCaptureModeThreadLocal));
      Step(r, 0, b_);
      BENCH_CHECK(cudaStreamEndCapture(s_, &g));
      BENCH_CHECK(cudaGraphInstantiate(&execs[r], g, 0));
      BENCH_CHECK(cudaGraphDestroy(g));
    }
    const float us = TimeParts({[&](int r) { BENCH_CHECK(cudaGraphLaunch(execs[r], s_)); }}, rot_, a, s_)[0];
    for (cudaGraphExec_t e : execs) cudaGraphExecDestroy(e);
    return us;
  }

  // Median us per layer of L consecutive layer steps captured as one CUDA
  // graph, layer l on cache set l % rot (L a multiple of rot, >= 8): what a
  // layer costs inside the engine's decode graph, where no graph launch is
  // paid per layer and one layer's first kernel follows the previous layer's
  // last (PDL edges included). The same for EntmaxKV and dense.
  int Layers() const { return rot_ * ((8 + rot_ - 1) / rot_); }
  float LayeredGraphUs(const Args& a, const std::function<void(int r)>& layer) const {
    cudaGraph_t g;
    cudaGraphExec_t exec;
    BENCH_CHECK(cudaStreamBeginCapture(s_, cudaStreamCaptureModeThreadLocal));
    for (int l = 0; l < Layers(); ++l) layer(l % rot_);
    BENCH_CHECK(cudaStreamEndCapture(s_, &g));
    BENCH_CHECK(cudaGraphInstantiate(&exec, g, 0));
    BENCH_CHECK(cudaGraphDestroy(g));
    const float us = TimeParts({[&](int) { BENCH_CHECK(cudaGraphLaunch(exec, s_)); }}, 1, a, s_)[0];
    cudaGraphExecDestroy(exec);
    return us / Layers();
  }

  // Poisons both outputs, runs a step and the dense kernel; "" or what is wrong.
  std::string Check() const {
    const size_t n = size_t(b_) * kH * kD;
    BENCH_CHECK(cudaMemsetAsync(sparse_out_, 0xff, n * 2, s_));  // 0xffff = NaN in bf16
    BENCH_CHECK(cudaMemsetAsync(dense_out_, 0xff, n * 2, s_));
    Step(0, 0, b_);
    Dense(0);
    BENCH_CHECK(cudaStreamSynchronize(s_));
    std::vector<__nv_bfloat16> so(n), de(n);
    std::vector<int32_t> len(size_t(b_) * kHs);
    BENCH_CHECK(cudaMemcpy(so.data(), sparse_out_, n * 2, cudaMemcpyDeviceToHost));
    BENCH_CHECK(cudaMemcpy(de.data(), dense_out_, n * 2, cudaMemcpyDeviceToHost));
    BENCH_CHECK(cudaMemcpy(len.data(), sel_len_, len.size() * 4, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; ++i) {
      if (!std::isfinite(__bfloat162float(so[i]))) return "sparse output not finite at " + std::to_string(i);
      if (!std::isfinite(__bfloat162float(de[i]))) return "dense output not finite at " + std::to_string(i);
    }
    for (int32_t l : len) {
      if (l != TSel()) return "sel_len " + std::to_string(l) + " != expected " + std::to_string(TSel());
    }
    return "";
  }

  // ---- §3 bytes (whole batch) ----
  int BudgetPages() const { return kBudgetTokens / p_; }
  int NHist() const { return std::min(BudgetPages(), pages_.hist); }  // n of §4 3a (no fallback here)
  int TSel() const { return NHist() * p_ + pages_.tail_len; }
  double QOut() const { return 2.0 * b_ * kH * kD * kBkv; }
  double MetaBytes() const { return double(b_) * kHkv * kD * 2 * kBkv * pages_.hist; }   // kmin + kmax
  double SelKvBytes() const { return double(b_) * kHkv * kD * 2 * kBkv * TSel(); }      // selected K + V
  double ModelBytes() const { return MetaBytes() + SelKvBytes() + QOut(); }
  // Traffic outside the §3 model: U written + read, block table, split
  // partials (out + lse) written and read once.
  double AuxBytes() const {
    return double(b_) * (kHs * pages_.hist * 4.0 * 2 + bps_ * 4.0) +
           (EntmaxSparseDecodeWorkspaceBytes(b_, kH, splits_, kD) + EntmaxSparseDecodeLseBytes(b_, kH, splits_)) * 2.0;
  }
  double DenseBytes() const { return 2.0 * b_ * t_ * kHkv * kD * kBkv + QOut(); }

  int hist() const { return pages_.hist; }
  int page_size() const { return p_; }
  int rotations() const { return rot_; }
  int splits() const { return splits_; }
  int splits_seq() const { return splits_seq_; }
  int dense_splits() const { return dense_splits_; }

 private:
  struct Set {
    __nv_bfloat16 *k = nullptr, *v = nullptr, *kmin = nullptr, *kmax = nullptr, *q = nullptr;
    int32_t* table = nullptr;
  };
  EntmaxPagedKv Kv(int r, int b0, int nb) const {
    EntmaxPagedKv kv;
    kv.k_pool = sets_[r].k;
    kv.v_pool = sets_[r].v;
    kv.block_table = sets_[r].table + size_t(b0) * bps_;
    kv.seq_lens = seq_lens_ + b0;
    kv.batch = nb;
    kv.num_kv_heads = kHkv;
    kv.head_dim = kD;
    kv.page_size = p_;
    kv.block_size = kBlock;
    kv.num_blocks = b_ * bps_;
    kv.max_blocks_per_seq = mb_;  // pages
    kv.dtype = KvDType::kBf16;
    return kv;
  }
  EntmaxQuery Query(int r, int b0) const {
    EntmaxQuery q;
    q.q = sets_[r].q + size_t(b0) * kH * kD;
    q.stride_b = kH * kD;
    q.stride_h = kD;
    q.num_heads = kH;
    return q;
  }
  EntmaxSelection Sel(int b0) const {
    EntmaxSelection s;
    s.pages = sel_pages_ + size_t(b0) * kHs * mb_;
    s.page_count = page_count_ + size_t(b0) * kHs;
    s.sel_len = sel_len_ + size_t(b0) * kHs;
    s.select_heads = kHs;
    return s;
  }
  EntmaxPageStatsParams K1(int r, int b0, int nb) const {
    EntmaxPageStatsParams p;
    p.kv = Kv(r, b0, nb);
    p.stats.kmin = sets_[r].kmin;
    p.stats.kmax = sets_[r].kmax;
    p.kind = EntmaxStatKind::kMinMax;
    p.recent_pages = 1;  // decode: the tail page
    return p;
  }

  int b_, t_, p_, sms_, bps_ = 0, mb_ = 0, mt_ = 0, rot_ = 2, splits_ = 1, splits_seq_ = 1, dense_splits_ = 1;
  cudaStream_t s_;
  cudaStream_t side_ = nullptr;               // StepWithK1Aside
  cudaEvent_t fork_ = nullptr, join_ = nullptr;
  EntmaxSeqPages pages_{};
  size_t pool_elems_ = 0, stat_elems_ = 0;
  std::vector<Set> sets_;
  int32_t *seq_lens_ = nullptr, *sel_pages_ = nullptr, *page_count_ = nullptr, *sel_len_ = nullptr;
  float *u_ = nullptr, *tau_ = nullptr, *mass_ = nullptr, *part_ = nullptr, *part_lse_ = nullptr;
  float *dense_po_ = nullptr, *dense_pl_ = nullptr;
  __nv_bfloat16 *sparse_out_ = nullptr, *dense_out_ = nullptr;
};

Args Parse(int argc, char** argv) {
  Args a;
  kvstream::bench::ParseBenchArgs(argc, argv, &a, [&](const std::string& s, auto next) {
    if (s == "--k7-splits") {  // S,S,... in [1, kEntmaxMaxSplits]
      const std::string v = next();
      for (size_t at = 0; at < v.size();) {
        const size_t comma = std::min(v.find(',', at), v.size());
        const int n = std::atoi(v.substr(at, comma - at).c_str());
        if (n < 1 || n > kEntmaxMaxSplits) {
          std::fprintf(stderr, "bad --k7-splits entry '%s' (1..%d)\n", v.substr(at, comma - at).c_str(),
                       kEntmaxMaxSplits);
          std::exit(2);
        }
        a.k7_splits.push_back(n);
        at = comma + 1;
      }
      return true;
    }
    if (s == "--page-size") {
      a.page_size = std::atoi(next().c_str());
      if (a.page_size != 8 && a.page_size != 16 && a.page_size != 32 && a.page_size != 64) {
        std::fprintf(stderr, "bad --page-size %d (8, 16, 32 or 64)\n", a.page_size);
        std::exit(2);
      }
      return true;
    }
    if (s != "--points") return false;  // BxT,BxT,...
    a.points.clear();
    const std::string v = next();
    for (size_t at = 0; at < v.size();) {
      const size_t comma = std::min(v.find(',', at), v.size());
      int b = 0, t = 0;
      if (std::sscanf(v.substr(at, comma - at).c_str(), "%dx%d", &b, &t) != 2 || b < 1 || t <= kBudgetTokens + 64) {
        std::fprintf(stderr, "bad point '%s' (BxT, T > budget + one page)\n", v.substr(at, comma - at).c_str());
        std::exit(2);
      }
      a.points.emplace_back(b, t);
      at = comma + 1;
    }
    return true;
  });
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = Parse(argc, argv);
  cudaDeviceProp prop{};
  BENCH_CHECK(cudaGetDeviceProperties(&prop, 0));
  const double copy = CopyGbps();
  cudaStream_t s;
  BENCH_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  std::printf("device %s, %d SMs, L2 %d MiB; copy %.0f GB/s; EntmaxKV top-k alpha 1, budget %d tokens, %d sink, "
              "pages of %d tokens over %d-token blocks\n", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize >> 20, copy, kBudgetTokens, kSinks, a.page_size, kBlock);
  std::vector<Row> rows;
  for (const auto& [batch, tokens] : a.points) {
    const Point pt(batch, tokens, a.page_size, prop, s);
    if (const std::string bad = pt.Check(); !bad.empty()) {
      std::fprintf(stderr, "B=%d T=%d: %s\n", batch, tokens, bad.c_str());
      return 1;
    }
    const int B = batch;
    const std::vector<float> parts = TimeParts(
        {[&](int r) { pt.RunK2(r, 0, B); }, [&](int) { pt.RunK3(0, B); }, [&](int r) { pt.RunK7(r, 0, B); }},
        pt.rotations(), a, s);
    Row w{};
    w.b = batch, w.t = tokens, w.p = pt.page_size(), w.hist = pt.hist(), w.t_sel = pt.TSel(), w.splits = pt.splits();
    w.splits_seq = pt.splits_seq(), w.dense_splits = pt.dense_splits(), w.rot = pt.rotations();
    w.k2_us = parts[0], w.k3_us = parts[1], w.k7_us = parts[2];
    w.k3_one_cta_us = TimeParts({[&](int) { pt.RunK3(0, B, 0); }}, pt.rotations(), a, s)[0];
    w.k1_us = TimeParts({[&](int r) { pt.RunK1(r, 0, B); }}, pt.rotations(), a, s)[0];
    w.step_us = TimeParts({[&](int r) { pt.Step(r, 0, B); }}, pt.rotations(), a, s)[0];
    w.graph_us = pt.GraphStepUs(a);
    w.per_seq_us = B == 1 ? w.step_us
                          : TimeParts({[&](int r) { for (int b = 0; b < B; ++b) pt.Step(r, b, 1); }},
                                      pt.rotations(), a, s)[0];
    w.dense_us = TimeParts({[&](int r) { pt.Dense(r); }}, pt.rotations(), a, s)[0];
    w.layers = pt.Layers();
    w.layer_us = pt.LayeredGraphUs(a, [&](int r) { pt.StepWithK1Aside(r); });
    w.dense_layer_us = pt.LayeredGraphUs(a, [&](int r) { pt.Dense(r); });
    std::printf("B=%d T=%d: per layer in a %d-layer graph: EntmaxKV %.1f us, dense %.1f us = %.2fx\n", w.b, w.t,
                w.layers, w.layer_us, w.dense_layer_us, w.dense_layer_us / w.layer_us);
    for (int S : a.k7_splits) {
      w.k7_sweep.emplace_back(S, TimeParts({[&](int r) { pt.RunK7(r, 0, B, S); }}, pt.rotations(), a, s)[0]);
      std::printf("B=%d T=%d: K7 at %d splits %.1f us (planner %d: %.1f us)\n", w.b, w.t, S, w.k7_sweep.back().second,
                  w.splits, w.k7_us);
    }
    w.meta = pt.MetaBytes(), w.sel_kv = pt.SelKvBytes(), w.model = pt.ModelBytes(), w.aux = pt.AuxBytes();
    w.dense_bytes = pt.DenseBytes();
    rows.push_back(w);
    std::printf("B=%d T=%d: P_hist %d, T_sel %d, K3 chunk %d (one CTA per row: %.1f us), K7 splits %d (per-seq %d), "
                "dense splits %d, %d cache sets\n", w.b, w.t, w.hist, w.t_sel,
                EntmaxTopkChunkPages(w.hist + 1, kBudgetTokens / w.p), w.k3_one_cta_us, w.splits, w.splits_seq,
                w.dense_splits, w.rot);
  }

  PrintTable(rows, copy, a.iters);
  if (!a.out.empty() && !WriteJson(a.out, rows, prop, copy, a.commit, a.iters, a.warmup)) return 1;
  BENCH_CHECK(cudaStreamDestroy(s));
  return 0;
}
