// SAM-Gate per-model threshold calibration (sam_gate.md C14): runs N
// representative prompts with `calibrate=true` (every layer OBSTRUCTED, the
// report gives each layer's f and the regime the seed thresholds would pick),
// pools the per-layer f values and proposes
//   f_flat_max = their 25th percentile, f_obs_min = their 75th
// (linear interpolation between order statistics). Prints progress and a
// per-layer table, writes JSON (and the table as text) and, with --profile,
// the data/profiles/ file SamGateStrategy loads for this model.
//
// Prompts (deterministic from --seed) cycle over four kinds at lengths
// 256..2048 tokens: Austen prose (data/corpus), passkey retrieval in
// repetitive filler, a needle sentence inside prose, and prose followed by an
// instruction. One new token per prompt: the probe runs at the end of the
// prompt, so decoding further adds nothing.
//
//   KVSTREAM_THREADS=2 OMP_WAIT_POLICY=passive build/sam_gate_calibrate_bench
//     --prompts=50 --json=bench/results/sam_gate_calibration_smollm2.json
//     --txt=bench/results/sam_gate_calibration_smollm2.txt
//     --profile=data/profiles/SmolLM2-135M-Instruct.Q4_1.gguf.sam_gate.json
//   (one command line; the model defaults to the bundled SmolLM2 file)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "engine/kv/sam_gate/sam_gate_profile.h"
#include "engine/runtime/engine.h"
#include "tools/argv_dashes.h"

ABSL_FLAG(std::string, model, "models/SmolLM2-135M-Instruct.Q4_1.gguf", "GGUF model");
ABSL_FLAG(std::string, device, "cpu", "cpu | cuda | auto");
ABSL_FLAG(std::string, corpus, "data/corpus", "folder of .txt prose");
ABSL_FLAG(int32_t, prompts, 56, "number of prompts (C14 asks for at least 50)");
ABSL_FLAG(std::string, lengths, "256,384,512,768,1024,1536,2048", "prompt lengths in tokens, cycled");
ABSL_FLAG(uint64_t, seed, 1, "prompt sampling seed");
ABSL_FLAG(std::string, kv, "", "extra sam_gate knobs name=value,... (e.g. probe_window=128)");
ABSL_FLAG(std::string, json, "", "write the result here");
ABSL_FLAG(std::string, txt, "", "write the printed table here too");
ABSL_FLAG(std::string, profile, "", "write the per-model profile (data/profiles/<model file>.sam_gate.json) here");

namespace kvstream {
namespace {

using Clock = std::chrono::steady_clock;

// Paragraphs of every .txt under `dir` (lines joined, blank line = break).
std::vector<std::string> LoadParagraphs(const std::string& dir) {
  std::vector<std::string> paras;
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() == ".txt") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    std::ifstream in(f);
    std::string line, cur;
    while (std::getline(in, line)) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) {
        if (cur.size() > 40) paras.push_back(cur);
        cur.clear();
      } else {
        if (!cur.empty()) cur += ' ';
        cur += line;
      }
    }
    if (cur.size() > 40) paras.push_back(cur);
  }
  return paras;
}

struct PromptSpec {
  std::string kind;
  std::vector<int32_t> ids;
};

// Prose from a random paragraph on, at least `chars` characters.
std::string Prose(const std::vector<std::string>& paras, std::mt19937_64& rng, size_t chars) {
  std::string s;
  size_t i = std::uniform_int_distribution<size_t>(0, paras.size() - 1)(rng);
  while (s.size() < chars) {
    s += paras[i % paras.size()];
    s += "\n\n";
    ++i;
  }
  return s;
}

// `body` tokens cut to `n_body`, then `tail` appended.
std::vector<int32_t> Fit(const Tokenizer& tok, const std::string& body, const std::string& tail, int64_t target) {
  std::vector<int32_t> t = tok.Encode(tail, false);
  std::vector<int32_t> b = tok.Encode(body, true);
  const int64_t n_body = std::max<int64_t>(1, target - static_cast<int64_t>(t.size()));
  if (static_cast<int64_t>(b.size()) > n_body) b.resize(n_body);
  b.insert(b.end(), t.begin(), t.end());
  return b;
}

PromptSpec MakePrompt(const Tokenizer& tok, const std::vector<std::string>& paras, int kind, int64_t len,
                      std::mt19937_64& rng) {
  const size_t chars = static_cast<size_t>(len) * 6 + 512;  // ~4.5 chars per token in English prose
  PromptSpec p;
  switch (kind) {
    case 0: {
      p.kind = "prose";
      p.ids = Fit(tok, Prose(paras, rng, chars), "", len);
      break;
    }
    case 1: {  // passkey retrieval (filler + key at a random depth)
      p.kind = "passkey";
      const int key = std::uniform_int_distribution<int>(10000, 99999)(rng);
      const std::string filler =
          "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ";
      const std::string tail = "\nWhat is the pass key? The pass key is";
      const int64_t n_fill = std::max<int64_t>(1, (len - 40) / 24);  // ~24 tokens per filler sentence set
      const int64_t at = std::uniform_int_distribution<int64_t>(0, n_fill - 1)(rng);
      std::string body = "There is important info hidden inside a lot of irrelevant text. Find it and memorize it.\n";
      for (int64_t i = 0; i < n_fill * 2; ++i) {
        if (i == at) body += absl::StrCat("The pass key is ", key, ". Remember it. ", key, " is the pass key. ");
        body += filler;
      }
      p.ids = Fit(tok, body, tail, len);
      break;
    }
    case 2: {  // needle sentence at a random depth of prose
      p.kind = "needle";
      std::string body = Prose(paras, rng, chars);
      const size_t depth = std::uniform_int_distribution<size_t>(0, std::min(body.size(), chars / 2))(rng);
      const size_t cut = body.find(". ", depth);
      const std::string needle = " The best thing to do in San Francisco is eat a sandwich in Dolores Park on a sunny day.";
      body.insert(cut == std::string::npos ? depth : cut + 1, needle);
      p.ids = Fit(tok, body.substr(0, std::min(body.size(), chars)),
                  "\n\nQuestion: What is the best thing to do in San Francisco?\nAnswer:", len);
      break;
    }
    default: {
      p.kind = "instruct";
      p.ids = Fit(tok, Prose(paras, rng, chars),
                  "\n\nSummarize the passage above in two sentences, naming the characters involved.\n", len);
      break;
    }
  }
  return p;
}

// numpy's default percentile (linear between order statistics); sorted input.
double Percentile(const std::vector<double>& s, double q) {
  if (s.empty()) return std::nan("");
  const double pos = q * static_cast<double>(s.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos)), hi = std::min(lo + 1, s.size() - 1);
  return s[lo] + (pos - static_cast<double>(lo)) * (s[hi] - s[lo]);
}

std::string Num(double x) {
  if (std::isnan(x)) return "null";
  return absl::StrFormat("%.9g", x);
}

int Run() {
  std::ostringstream table;
  auto out = [&](const std::string& s) {
    std::fputs(s.c_str(), stdout);
    std::fflush(stdout);
    table << s;
  };
  const std::string model_path = absl::GetFlag(FLAGS_model);
  EngineOptions o;
  o.model_path = model_path;
  o.device = absl::GetFlag(FLAGS_device);
  // Whole prompts in one step: SAM-Gate stages the prompt densely (C1) and
  // re-copies the staging at every chunk.
  o.prefill_chunk = 4096;
  auto engine = Engine::Load(o);
  if (!engine.ok()) {
    std::fprintf(stderr, "load %s: %s\n", model_path.c_str(), engine.status().ToString().c_str());
    return 1;
  }
  Engine& e = **engine;
  const std::vector<std::string> paras = LoadParagraphs(absl::GetFlag(FLAGS_corpus));
  if (paras.empty()) {
    std::fprintf(stderr, "no prose under %s\n", absl::GetFlag(FLAGS_corpus).c_str());
    return 1;
  }
  std::vector<int64_t> lengths;
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_lengths), ',')) {
    lengths.push_back(std::stoll(std::string(s)));
  }
  auto extra = ParseKnobList(absl::GetFlag(FLAGS_kv));
  if (!extra.ok()) {
    std::fprintf(stderr, "--kv: %s\n", extra.status().ToString().c_str());
    return 1;
  }

  std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));
  const int n = absl::GetFlag(FLAGS_prompts);
  std::vector<std::vector<double>> f_by_layer;  // [layer][prompt]
  std::vector<double> pooled;
  std::map<std::string, int> seed_regimes;  // proposed regime under the thresholds in force
  std::ostringstream prompts_json;
  double seed_flat = 0, seed_obs = 0;
  const auto t_all = Clock::now();
  out(absl::StrFormat("SAM-Gate calibration: %s, %d prompts, device %s\n", model_path, n, o.device));
  out(absl::StrFormat("%4s %-9s %6s %8s %11s %11s %11s  %s\n", "#", "kind", "tokens", "secs", "f_min", "f_median",
                      "f_max", "proposed F/T/O"));
  for (int i = 0; i < n; ++i) {
    const int64_t len = lengths[i % lengths.size()];
    const int kind = (i / static_cast<int>(lengths.size()) + i) % 4;
    PromptSpec p = MakePrompt(e.tokenizer(), paras, kind, len, rng);
    GenerateSpec s;
    s.prompt_ids = p.ids;
    s.sampling.temperature = 0.0f;
    s.sampling.max_new_tokens = 1;
    s.sampling.ignore_eos = true;
    s.kv.strategy = "sam_gate";
    s.kv.knobs = *extra;
    s.kv.knobs["calibrate"] = true;
    const auto t0 = Clock::now();
    auto r = e.GenerateBatch({s});
    if (!r.ok()) {
      std::fprintf(stderr, "prompt %d: %s\n", i, r.status().ToString().c_str());
      return 1;
    }
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    const CacheReport& c = (*r)[0].cache;
    seed_flat = c.stats.at("f_flat_max");
    seed_obs = c.stats.at("f_obs_min");
    if (f_by_layer.size() < c.layers.size()) f_by_layer.resize(c.layers.size());
    std::vector<double> fs;
    int prop[3] = {0, 0, 0};
    for (const LayerCacheReport& l : c.layers) {
      const double f = l.stats.at("f");
      ++prop[static_cast<int>(l.stats.at("proposed_regime"))];
      if (std::isnan(f)) continue;
      f_by_layer[l.layer].push_back(f);
      pooled.push_back(f);
      fs.push_back(f);
    }
    std::sort(fs.begin(), fs.end());
    seed_regimes["FLAT"] += prop[0];
    seed_regimes["TRANSITION"] += prop[1];
    seed_regimes["OBSTRUCTED"] += prop[2];
    out(absl::StrFormat("%4d %-9s %6d %8.2f %11.5g %11.5g %11.5g  %d/%d/%d\n", i, p.kind, p.ids.size(), secs,
                        fs.empty() ? NAN : fs.front(), Percentile(fs, 0.5), fs.empty() ? NAN : fs.back(), prop[0],
                        prop[1], prop[2]));
    prompts_json << (i ? ",\n    " : "    ") << "{\"kind\": \"" << p.kind << "\", \"tokens\": " << p.ids.size()
                 << ", \"secs\": " << Num(secs) << ", \"f\": [";
    for (size_t l = 0; l < c.layers.size(); ++l) {
      prompts_json << (l ? ", " : "") << Num(c.layers[l].stats.at("f"));
    }
    prompts_json << "]}";
  }
  std::sort(pooled.begin(), pooled.end());
  const double p25 = Percentile(pooled, 0.25), p50 = Percentile(pooled, 0.5), p75 = Percentile(pooled, 0.75);
  const double total_s = std::chrono::duration<double>(Clock::now() - t_all).count();

  out(absl::StrFormat("\nper layer (f over %d prompts) and the regime share under the new thresholds\n", n));
  out(absl::StrFormat("%5s %11s %11s %11s %11s %11s %6s %6s %6s\n", "layer", "min", "p25", "median", "p75", "max",
                      "FLAT", "TRANS", "OBS"));
  std::ostringstream layers_json;
  for (size_t l = 0; l < f_by_layer.size(); ++l) {
    std::vector<double> v = f_by_layer[l];
    std::sort(v.begin(), v.end());
    int cnt[3] = {0, 0, 0};
    for (double f : v) ++cnt[f < p25 ? 0 : f < p75 ? 1 : 2];
    const double min = v.empty() ? NAN : v.front(), max = v.empty() ? NAN : v.back();
    out(absl::StrFormat("%5d %11.5g %11.5g %11.5g %11.5g %11.5g %6d %6d %6d\n", l, min, Percentile(v, 0.25),
                        Percentile(v, 0.5), Percentile(v, 0.75), max, cnt[0], cnt[1], cnt[2]));
    layers_json << (l ? ",\n    " : "    ") << "{\"layer\": " << l << ", \"min\": " << Num(min)
                << ", \"p25\": " << Num(Percentile(v, 0.25)) << ", \"median\": " << Num(Percentile(v, 0.5))
                << ", \"p75\": " << Num(Percentile(v, 0.75)) << ", \"max\": " << Num(max) << ", \"flat\": " << cnt[0]
                << ", \"transition\": " << cnt[1] << ", \"obstructed\": " << cnt[2] << "}";
  }
  out(absl::StrFormat("\npooled f: %d values, min %.6g p25 %.6g median %.6g p75 %.6g max %.6g\n", pooled.size(),
                      pooled.empty() ? NAN : pooled.front(), p25, p50, p75, pooled.empty() ? NAN : pooled.back()));
  out(absl::StrFormat("seed thresholds (%.6g, %.6g) would give FLAT %d, TRANSITION %d, OBSTRUCTED %d layer-prompts\n",
                      seed_flat, seed_obs, seed_regimes["FLAT"], seed_regimes["TRANSITION"],
                      seed_regimes["OBSTRUCTED"]));
  out(absl::StrFormat("calibrated (C14): f_flat_max = %.6g, f_obs_min = %.6g  (%.1f s total)\n", p25, p75, total_s));

  const std::string model_file = std::filesystem::path(model_path).filename().string();
  if (const std::string path = absl::GetFlag(FLAGS_json); !path.empty()) {
    std::ofstream j(path);
    j << "{\n  \"bench\": \"sam_gate_calibrate\",\n  \"model\": \"" << model_file << "\",\n  \"device\": \""
      << o.device << "\",\n  \"prompts\": " << n << ",\n  \"seed\": " << absl::GetFlag(FLAGS_seed)
      << ",\n  \"extra_knobs\": \"" << absl::GetFlag(FLAGS_kv) << "\",\n  \"pooled_values\": " << pooled.size()
      << ",\n  \"f_min\": " << Num(pooled.empty() ? NAN : pooled.front()) << ",\n  \"f_p25\": " << Num(p25)
      << ",\n  \"f_median\": " << Num(p50) << ",\n  \"f_p75\": " << Num(p75)
      << ",\n  \"f_max\": " << Num(pooled.empty() ? NAN : pooled.back()) << ",\n  \"f_flat_max\": " << Num(p25)
      << ",\n  \"f_obs_min\": " << Num(p75) << ",\n  \"seed_f_flat_max\": " << Num(seed_flat)
      << ",\n  \"seed_f_obs_min\": " << Num(seed_obs) << ",\n  \"seed_proposed\": {\"flat\": " << seed_regimes["FLAT"]
      << ", \"transition\": " << seed_regimes["TRANSITION"] << ", \"obstructed\": " << seed_regimes["OBSTRUCTED"]
      << "},\n  \"total_secs\": " << Num(total_s) << ",\n  \"layers\": [\n" << layers_json.str()
      << "\n  ],\n  \"per_prompt\": [\n" << prompts_json.str() << "\n  ]\n}\n";
    std::printf("wrote %s\n", path.c_str());
  }
  if (const std::string path = absl::GetFlag(FLAGS_txt); !path.empty()) {
    std::ofstream(path) << table.str();
    std::printf("wrote %s\n", path.c_str());
  }
  if (const std::string path = absl::GetFlag(FLAGS_profile); !path.empty()) {
    SamGateProfile prof;
    prof.model = model_file;
    prof.model_bytes = static_cast<int64_t>(std::filesystem::file_size(model_path));
    prof.f_flat_max = p25;
    prof.f_obs_min = p75;
    prof.prompts = n;
    prof.source = absl::StrCat("bench/sam_gate/sam_gate_calibrate_bench --prompts=", n, " --seed=",
                               absl::GetFlag(FLAGS_seed), absl::GetFlag(FLAGS_kv).empty() ? "" : " --kv=",
                               absl::GetFlag(FLAGS_kv));
    std::ofstream(path) << SamGateProfileToJson(prof);
    std::printf("wrote %s\n", path.c_str());
  }
  return 0;
}

}  // namespace
}  // namespace kvstream

int main(int argc, char** argv) {
  kvstream::DashesToUnderscores(argc, argv);
  absl::ParseCommandLine(argc, argv);
  return kvstream::Run();
}
