#include "engine/model/loader/hf_weights.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/model/loader/hf_config.h"
#include "engine/model/loader/llama_tensors.h"
#include "engine/model/loader/mapped_file.h"
#include "engine/model/loader/safetensors_reader.h"
#include "engine/status_macros.h"
#include "engine/tokenizer/tokenizer_data.h"
#include "nlohmann/json.hpp"

namespace kvstream::loader {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr uint64_t kMaxJsonBytes = uint64_t{256} << 20;  // a 256K-vocab tokenizer.json is ~20 MB

// Reads a whole (small) file; NotFound if absent.
absl::StatusOr<std::string> ReadTextFile(const fs::path& p) {
  std::error_code ec;
  const uint64_t size = fs::file_size(p, ec);
  if (ec) return absl::NotFoundError(absl::StrCat("cannot read ", p.string(), ": ", ec.message()));
  if (size > kMaxJsonBytes) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: %u bytes exceeds the cap %u",
                                                      p.string(), size, kMaxJsonBytes));
  }
  std::ifstream in(p, std::ios::binary);
  std::string s(size, '\0');
  if (!in.read(s.data(), static_cast<std::streamsize>(size))) {
    return absl::DataLossError(absl::StrCat("short read of ", p.string()));
  }
  return s;
}

// Shard file -> the tensor names the index assigns to it. Without an index,
// one shard "model.safetensors" with no expectations.
absl::StatusOr<std::map<std::string, std::set<std::string>>> ListShards(const fs::path& dir) {
  std::map<std::string, std::set<std::string>> shards;
  const fs::path index = dir / "model.safetensors.index.json";
  if (!fs::exists(index)) {
    if (!fs::exists(dir / "model.safetensors")) {
      return absl::NotFoundError(absl::StrCat(
          dir.string(), ": neither model.safetensors.index.json nor model.safetensors"));
    }
    shards["model.safetensors"];
    return shards;
  }
  KV_ASSIGN_OR_RETURN(std::string text, ReadTextFile(index));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  auto map = j.is_object() ? j.find("weight_map") : j.end();
  if (j.is_discarded() || !j.is_object() || map == j.end() || !map->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(index.string(), ": expected an object with a \"weight_map\" object"));
  }
  for (auto it = map->begin(); it != map->end(); ++it) {
    if (!it.value().is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(index.string(), ": weight_map['", it.key(),
                                                     "'] is not a file name"));
    }
    const std::string file = it.value().get<std::string>();
    // A shard must be a plain file name inside the folder: no path escapes.
    if (file.empty() || file.find('/') != std::string::npos || file == "." || file == ".." ||
        !absl::EndsWith(file, ".safetensors")) {
      return absl::InvalidArgumentError(absl::StrCat(
          index.string(), ": weight_map['", it.key(), "'] = '", file,
          "', expected a *.safetensors file name in the folder"));
    }
    shards[file].insert(it.key());
  }
  if (shards.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(index.string(), ": empty weight_map"));
  }
  return shards;
}

bool IsSkippedBuffer(absl::string_view name) {
  return absl::EndsWith(name, ".rotary_emb.inv_freq");
}

absl::Status LoadShard(const fs::path& path, const std::set<std::string>& expected,
                       bool indexed, LoadedWeights& w) {
  KV_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(path.string()));
  KV_ASSIGN_OR_RETURN(SafetensorsFile st, ParseSafetensors(file->bytes()));
  w.file_bytes += static_cast<int64_t>(file->bytes().size());
  std::set<std::string> found;
  for (const SafetensorsEntry& e : st.tensors) {
    if (indexed && !expected.contains(e.name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", e.name, "' is not assigned to this shard by the index"));
    }
    found.insert(e.name);
    if (IsSkippedBuffer(e.name)) continue;
    if (e.name == "lm_head.weight" && w.config.tie_embeddings) continue;
    KV_ASSIGN_OR_RETURN(std::vector<int64_t> want, LlamaTensorShape(w.config, e.name));
    if (e.shape != want) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "tensor '%s': shape %s, expected %s from config.json", e.name, ShapeString(e.shape),
          ShapeString(want)));
    }
    if (w.tensors.contains(e.name)) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", e.name, "' is stored twice"));
    }
    KV_ASSIGN_OR_RETURN(HostTensor t, ReadSafetensor(st, e));
    w.tensors.emplace(e.name, std::move(t));
  }
  for (const std::string& name : expected) {
    if (!found.contains(name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", name, "' is listed in the index but not stored in the shard"));
    }
  }
  return absl::OkStatus();
}

absl::Status WithContext(const absl::Status& s, absl::string_view ctx) {
  return absl::Status(s.code(), absl::StrCat(ctx, ": ", s.message()));
}

}  // namespace

absl::StatusOr<LoadedWeights> LoadHfFolder(const std::string& dir_str) {
  const fs::path dir(dir_str);
  LoadedWeights w;
  w.format = "safetensors";
  {
    KV_ASSIGN_OR_RETURN(std::string text, ReadTextFile(dir / "config.json"));
    auto config = ParseHfConfig(text);
    if (!config.ok()) return WithContext(config.status(), dir_str);
    w.config = *std::move(config);
  }
  if (w.config.name.empty()) w.config.name = fs::path(dir).lexically_normal().filename().string();
  if (w.config.name.empty()) w.config.name = fs::path(dir).parent_path().filename().string();

  KV_ASSIGN_OR_RETURN(auto shards, ListShards(dir));
  const bool indexed = fs::exists(dir / "model.safetensors.index.json");
  for (const auto& [file, names] : shards) {
    absl::Status s = LoadShard(dir / file, names, indexed, w);
    if (!s.ok()) return WithContext(s, (dir / file).string());
  }
  absl::flat_hash_set<std::string> names;
  for (const auto& [name, t] : w.tensors) names.insert(name);
  if (absl::Status s = CheckLlamaTensorSet(w.config, names); !s.ok()) {
    return WithContext(s, dir_str);
  }

  KV_ASSIGN_OR_RETURN(std::string tok_json, ReadTextFile(dir / "tokenizer.json"));
  std::string tok_config;
  if (fs::exists(dir / "tokenizer_config.json")) {
    KV_ASSIGN_OR_RETURN(tok_config, ReadTextFile(dir / "tokenizer_config.json"));
  }
  auto tok = ParseTokenizerJson(tok_json, tok_config);
  if (!tok.ok()) return WithContext(tok.status(), (dir / "tokenizer.json").string());
  w.tokenizer = *std::move(tok);
  const int64_t n_tokens = static_cast<int64_t>(w.tokenizer.tokens.size());
  if (n_tokens > w.config.vocab_size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: tokenizer has %d tokens, more than config.json's vocab_size %d", dir_str, n_tokens,
        w.config.vocab_size));
  }
  return w;
}

}  // namespace kvstream::loader
