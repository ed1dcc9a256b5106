// Shapes, result rows and output (terminal table, JSON) of
// entmax_kv_decode_bench.cu, kept apart so the bench reads as the measurement.
#pragma once

#include <cuda_runtime.h>

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "kernels/entmax_kv/entmax_kv.h"

namespace kvstream::entmax_bench {

constexpr int kH = 32, kHkv = 8, kD = 128, kHs = kHkv;  // SHARED_KV: one list per KV head
constexpr int kBlock = 16;                                // the engine's pool block (tokens); pages are --page-size
constexpr int kBudgetTokens = 2048, kSinks = 1;           // §5 defaults (alpha 1)
constexpr double kBkv = 2.0;                                     // bf16 bytes per element (§3 b_kv)

struct Row {
  int b, t, p, hist, t_sel, splits, splits_seq, dense_splits, rot;  // p: page size (tokens)
  float k2_us, k3_us, k3_one_cta_us, k7_us, k1_us, step_us, graph_us, per_seq_us, dense_us;
  int layers;
  float layer_us, dense_layer_us;  // per layer inside an L-layer graph (LayeredGraphUs)
  std::vector<std::pair<int, float>> k7_sweep;  // (splits, K7 us)
  double meta, sel_kv, model, aux, dense_bytes;
};

inline double Gbps(double bytes, float us) { return bytes / (us * 1e-6) / 1e9; }

inline void PrintTable(const std::vector<Row>& rows, double copy, int iters) {
  std::printf("\n%2s %2s %7s | %6s %6s %7s %6s | %7s %7s %7s | %8s | %7s %6s %6s %6s | %6s %6s | %6s %7s %6s\n",
              "B", "P", "T", "K2", "K3", "K7", "K1", "step", "graph", "perseq", "dense", "MB(§3)", "GB/s", "%copy", "K2%",
              "xdense", "xgraph", "layer", "dlayer", "xlayer");
  for (const Row& w : rows) {
    const double g = Gbps(w.model, w.step_us);
    std::printf("%2d %2d %7d | %6.1f %6.1f %7.1f %6.1f | %7.1f %7.1f %7.1f | %8.1f | %7.1f %6.0f %5.1f%% %5.1f%% | "
                "%5.1fx %5.1fx | %6.1f %7.1f %5.2fx\n",
                w.b, w.p, w.t, w.k2_us, w.k3_us, w.k7_us, w.k1_us, w.step_us, w.graph_us, w.per_seq_us,
                w.dense_us, w.model / 1e6, g, 100 * g / copy, 100 * Gbps(w.meta, w.k2_us) / copy,
                w.dense_us / w.step_us, w.dense_us / w.graph_us, w.layer_us, w.dense_layer_us,
                w.dense_layer_us / w.layer_us);
  }
  std::printf("(us, medians of %d; step = K2+K3+K7 eager, graph = the same as a CUDA graph; %%copy of the step "
              "on the §3 bytes; K2%% = K2 on the metadata bytes; layer / dlayer = EntmaxKV / dense per layer of a "
              "multi-layer graph)\n", iters);
}

// False (after saying why) if the file cannot be written.
inline bool WriteJson(const std::string& path, const std::vector<Row>& rows, const cudaDeviceProp& prop, double copy,
                      const std::string& commit, int iters, int warmup) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) { std::fprintf(stderr, "cannot write %s\n", path.c_str()); return false; }
  std::fprintf(f, "{\n  \"bench\": \"entmax_kv_decode\",\n  \"device\": \"%s\",\n  \"commit\": \"%s\",\n", prop.name,
               commit.c_str());
  std::fprintf(f, "  \"num_sms\": %d,\n  \"l2_bytes\": %d,\n  \"copy_gbps\": %.1f,\n", prop.multiProcessorCount,
               prop.l2CacheSize, copy);
  std::fprintf(f, "  \"iters\": %d,\n  \"warmup\": %d,\n  \"statistic\": \"median\",\n", iters, warmup);
  std::fprintf(f, "  \"config\": {\"selector\": \"topk\", \"alpha\": 1.0, \"token_budget\": %d, \"sink_pages\": %d, "
               "\"gqa_selection\": \"shared_kv\", \"pool_block_tokens\": %d},\n", kBudgetTokens, kSinks, kBlock);
  std::fprintf(f, "  \"bytes_model\": \"spec §3 unique bytes: selected K/V 2*2*Hkv*D*T_sel + kmin/kmax 2*2*Hkv*D*P_hist "
               "per sequence, plus q and out; aux = U, block table, split partials (out + lse)\",\n");
  std::fprintf(f, "  \"points\": [\n");
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& w = rows[i];
    auto part = [&](const char* name, float us, double bytes) {
      std::fprintf(f, "\"%s\": {\"time_us\": %.2f, \"bytes\": %.0f, \"gbps\": %.1f, \"pct_of_copy\": %.1f}", name, us,
                   bytes, Gbps(bytes, us), 100 * Gbps(bytes, us) / copy);
    };
    std::fprintf(f, "    {\"B\": %d, \"T\": %d, \"H\": %d, \"Hkv\": %d, \"D\": %d, \"P\": %d, \"dtype\": \"bf16\", "
                 "\"p_hist\": %d, \"t_sel\": %d, \"k7_splits\": %d, \"k7_splits_per_seq\": %d, \"dense_splits\": %d, "
                 "\"cache_sets\": %d,\n     ", w.b, w.t, kH, kHkv, kD, w.p, w.hist, w.t_sel, w.splits, w.splits_seq,
                 w.dense_splits, w.rot);
    part("k2_criticality", w.k2_us, w.meta);
    std::fprintf(f, ",\n     ");
    part("k3_topk_pack", w.k3_us, double(w.b) * kHs * w.hist * 4.0);
    std::fprintf(f, ",\n     ");
    part("k3_one_cta_per_row", w.k3_one_cta_us, double(w.b) * kHs * w.hist * 4.0);
    std::fprintf(f, ", \"k3_chunk_pages\": %d,\n     ", EntmaxTopkChunkPages(w.hist + 1, kBudgetTokens / w.p));
    part("k7_sparse_decode", w.k7_us, w.sel_kv + 2.0 * w.b * kH * kD * kBkv);
    std::fprintf(f, ",\n     ");
    part("k1_tail_stats", w.k1_us, double(w.b) * kHkv * kD * (w.p * kBkv + 2 * kBkv));
    std::fprintf(f, ",\n     ");
    part("step", w.step_us, w.model);
    std::fprintf(f, ",\n     ");
    part("step_graph", w.graph_us, w.model);
    std::fprintf(f, ",\n     ");
    part("step_per_seq", w.per_seq_us, w.model);
    std::fprintf(f, ",\n     ");
    part("dense", w.dense_us, w.dense_bytes);
    std::fprintf(f, ",\n     ");
    part("layer_in_graph", w.layer_us, w.model);
    std::fprintf(f, ",\n     ");
    part("dense_layer_in_graph", w.dense_layer_us, w.dense_bytes);
    std::fprintf(f, ", \"graph_layers\": %d, \"speedup_vs_dense_layer_in_graph\": %.2f", w.layers,
                 w.dense_layer_us / w.layer_us);
    std::fprintf(f, ",\n     \"sum_of_parts_us\": %.2f, \"step_minus_scoring_us\": %.2f, \"meta_bytes\": %.0f, "
                 "\"sel_kv_bytes\": %.0f, \"model_bytes\": %.0f, \"aux_bytes\": %.0f, \"read_fraction\": %.4f, "
                 "\"speedup_vs_dense\": %.2f, \"speedup_vs_dense_graph\": %.2f, \"copy_gbps\": %.1f,\n     "
                 "\"k7_split_sweep\": [",
                 w.k2_us + w.k3_us + w.k7_us, w.step_us - w.k2_us - w.k3_us, w.meta, w.sel_kv, w.model,
                 w.aux, w.model / w.dense_bytes, w.dense_us / w.step_us, w.dense_us / w.graph_us, copy);
    for (size_t j = 0; j < w.k7_sweep.size(); ++j) {
      std::fprintf(f, "%s{\"splits\": %d, \"time_us\": %.2f}", j ? ", " : "", w.k7_sweep[j].first,
                   w.k7_sweep[j].second);
    }
    std::fprintf(f, "]}%s\n", i + 1 < rows.size() ? "," : "");
  }
  std::fprintf(f, "  ]\n}\n");
  std::fclose(f);
  std::printf("wrote %s\n", path.c_str());
  return true;
}

}  // namespace kvstream::entmax_bench
