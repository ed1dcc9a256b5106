// ParseTokenizerJson: Hugging Face tokenizer.json (+ tokenizer_config.json)
// -> TokenizerData. The files are untrusted: every field is type-checked
// before use (no nlohmann exception escapes), ids are capped, and any feature
// we do not implement is refused with FailedPrecondition instead of being
// silently ignored, so a model never tokenizes differently from its files.
#include <algorithm>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/status_macros.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/pre_tokenizer.h"
#include "engine/tokenizer/tokenizer_data.h"
#include "nlohmann/json.hpp"
#include "re2/re2.h"

namespace kvstream {
namespace {

using json = nlohmann::json;
using tok_internal::Av;

constexpr int64_t kMaxVocab = int64_t{1} << 24;  // same cap as Tokenizer::Create
constexpr int kMaxPreTokenizerDepth = 8;          // Sequence nesting

absl::Status Bad(std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: ", Av(what)));
}
absl::Status Unsupported(std::string_view what) {
  return absl::FailedPreconditionError(absl::StrCat("tokenizer.json: ", Av(what), " is not supported"));
}

const json* Member(const json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

// A token named in a config: "<s>" or {"content": "<s>", ...}.
const std::string* TokenContent(const json* v) {
  if (v == nullptr) return nullptr;
  if (v->is_string()) return &v->get_ref<const std::string&>();
  const json* c = Member(*v, "content");
  return c != nullptr && c->is_string() ? &c->get_ref<const std::string&>() : nullptr;
}

absl::Status AddPreTokenizer(const json& pt, int depth, std::vector<std::string>* regexes, bool* byte_level) {
  if (depth > kMaxPreTokenizerDepth) return Bad("pre_tokenizer nesting too deep");
  const json* type = Member(pt, "type");
  if (type == nullptr || !type->is_string()) return Bad("pre_tokenizer without a string \"type\"");
  const std::string& t = type->get_ref<const std::string&>();
  if (t == "Sequence") {
    const json* list = Member(pt, "pretokenizers");
    if (list == nullptr || !list->is_array()) return Bad("Sequence pre_tokenizer without \"pretokenizers\" array");
    for (const json& child : *list) KV_RETURN_IF_ERROR(AddPreTokenizer(child, depth + 1, regexes, byte_level));
    return absl::OkStatus();
  }
  if (t == "ByteLevel") {
    const json* prefix = Member(pt, "add_prefix_space");
    if (prefix != nullptr && prefix->is_boolean() && prefix->get<bool>()) return Unsupported("ByteLevel add_prefix_space");
    const json* use_regex = Member(pt, "use_regex");
    if (use_regex == nullptr || !use_regex->is_boolean() || use_regex->get<bool>()) {
      KV_ASSIGN_OR_RETURN(std::vector<std::string> gpt2, tok_internal::RegexesForPreName("gpt2"));
      regexes->insert(regexes->end(), gpt2.begin(), gpt2.end());
    }
    *byte_level = true;
    return absl::OkStatus();
  }
  if (t == "Digits") {
    const json* individual = Member(pt, "individual_digits");
    const bool one = individual != nullptr && individual->is_boolean() && individual->get<bool>();
    regexes->push_back(one ? R"(\p{N})" : R"(\p{N}+)");  // Rust char::is_numeric is \p{N}
    return absl::OkStatus();
  }
  if (t == "Split") {
    const json* behavior = Member(pt, "behavior");
    if (behavior == nullptr || !behavior->is_string() || behavior->get_ref<const std::string&>() != "Isolated") {
      return Unsupported("Split pre_tokenizer behavior other than \"Isolated\"");
    }
    const json* invert = Member(pt, "invert");
    if (invert != nullptr && invert->is_boolean() && invert->get<bool>()) return Unsupported("Split invert=true");
    const json* pattern = Member(pt, "pattern");
    const json* regex = pattern != nullptr ? Member(*pattern, "Regex") : nullptr;
    const json* literal = pattern != nullptr ? Member(*pattern, "String") : nullptr;
    if (regex != nullptr && regex->is_string()) {
      regexes->push_back(regex->get<std::string>());
    } else if (literal != nullptr && literal->is_string()) {
      regexes->push_back(RE2::QuoteMeta(literal->get<std::string>()));
    } else {
      return Bad("Split pre_tokenizer without a \"Regex\" or \"String\" pattern");
    }
    return absl::OkStatus();
  }
  return Unsupported(absl::StrCat("pre_tokenizer type \"", t, "\""));
}

// TemplateProcessing's single-sequence template: special tokens before "$A"
// are what add_bos inserts, after it what add_eos appends.
void ReadPostProcessor(const json& pp, int depth, std::string* bos, std::string* eos) {
  if (depth > kMaxPreTokenizerDepth) return;
  const json* type = Member(pp, "type");
  if (type == nullptr || !type->is_string()) return;
  if (*type == "Sequence") {
    const json* list = Member(pp, "processors");
    if (list != nullptr && list->is_array()) {
      for (const json& child : *list) ReadPostProcessor(child, depth + 1, bos, eos);
    }
    return;
  }
  if (*type != "TemplateProcessing") return;
  const json* single = Member(pp, "single");
  if (single == nullptr || !single->is_array()) return;
  bool seen_sequence = false;
  for (const json& item : *single) {
    if (Member(item, "Sequence") != nullptr) {
      seen_sequence = true;
      continue;
    }
    const json* special = Member(item, "SpecialToken");
    const json* id = special != nullptr ? Member(*special, "id") : nullptr;
    if (id == nullptr || !id->is_string()) continue;
    std::string* target = seen_sequence ? eos : bos;
    if (target->empty()) *target = id->get<std::string>();
  }
}

absl::Status ReadVocab(const json& model, std::vector<std::string>* tokens) {
  const json* vocab = Member(model, "vocab");
  if (vocab == nullptr || !vocab->is_object()) return Bad("model.vocab is missing or not an object");
  int64_t max_id = -1;
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    if (!it->is_number_integer()) return Bad(absl::StrCat("model.vocab[\"", it.key(), "\"] is not an integer id"));
    const int64_t id = it->get<int64_t>();
    if (id < 0 || id >= kMaxVocab) {
      return Bad(absl::StrCat("model.vocab[\"", it.key(), "\"] = ", id, "; expected 0..", kMaxVocab - 1));
    }
    max_id = std::max(max_id, id);
  }
  tokens->assign(static_cast<size_t>(max_id + 1), std::string());
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    std::string& slot = (*tokens)[it->get<int64_t>()];
    if (!slot.empty() || it.key().empty()) {
      return Bad(absl::StrCat("model.vocab id ", it->get<int64_t>(), " is used twice or by an empty token"));
    }
    slot = it.key();
  }
  return absl::OkStatus();
}

absl::Status ReadMerges(const json& model, std::vector<std::string>* merges) {
  const json* list = Member(model, "merges");
  if (list == nullptr) return absl::OkStatus();  // a vocabulary of single bytes needs none
  if (!list->is_array()) return Bad("model.merges is not an array");
  merges->reserve(list->size());
  for (size_t i = 0; i < list->size(); ++i) {
    const json& m = (*list)[i];
    if (m.is_string()) {  // legacy form "left right"
      merges->push_back(m.get<std::string>());
      continue;
    }
    if (!m.is_array() || m.size() != 2 || !m[0].is_string() || !m[1].is_string()) {
      return Bad(absl::StrCat("model.merges[", i, "] is neither \"a b\" nor [\"a\", \"b\"]"));
    }
    const std::string& a = m[0].get_ref<const std::string&>();
    const std::string& b = m[1].get_ref<const std::string&>();
    if (a.find(' ') != std::string::npos || b.find(' ') != std::string::npos) {
      return Unsupported(absl::StrCat("model.merges[", i, "] with a space inside a token"));
    }
    merges->push_back(absl::StrCat(a, " ", b));
  }
  return absl::OkStatus();
}

absl::Status ReadAddedTokens(const json& root, std::vector<std::string>* tokens, std::vector<TokenType>* types) {
  const json* added = Member(root, "added_tokens");
  if (added == nullptr) return absl::OkStatus();
  if (!added->is_array()) return Bad("added_tokens is not an array");
  for (size_t i = 0; i < added->size(); ++i) {
    const json& a = (*added)[i];
    const json* id = Member(a, "id");
    const json* content = Member(a, "content");
    if (id == nullptr || !id->is_number_integer() || content == nullptr || !content->is_string() ||
        content->get_ref<const std::string&>().empty()) {
      return Bad(absl::StrCat("added_tokens[", i, "] needs an integer \"id\" and a non-empty \"content\""));
    }
    const int64_t v = id->get<int64_t>();
    if (v < 0 || v >= kMaxVocab) return Bad(absl::StrCat("added_tokens[", i, "].id = ", v, "; out of range"));
    if (static_cast<size_t>(v) >= tokens->size()) {
      tokens->resize(v + 1);
      types->resize(v + 1, TokenType::kUnused);
    }
    (*tokens)[v] = content->get<std::string>();
    const json* special = Member(a, "special");
    (*types)[v] = special != nullptr && special->is_boolean() && special->get<bool>() ? TokenType::kControl
                                                                                     : TokenType::kUserDefined;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TokenizerData> ParseTokenizerJson(std::string_view tokenizer_json,
                                                 std::string_view tokenizer_config_json) {
  const json root = json::parse(tokenizer_json.begin(), tokenizer_json.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) return Bad("not a JSON object");
  json config = json::object();
  if (!tokenizer_config_json.empty()) {
    config = json::parse(tokenizer_config_json.begin(), tokenizer_config_json.end(), nullptr, false);
    if (config.is_discarded() || !config.is_object()) {
      return absl::InvalidArgumentError("tokenizer_config.json: not a JSON object");
    }
  }

  const json* model = Member(root, "model");
  if (model == nullptr || !model->is_object()) return Bad("\"model\" is missing");
  const json* type = Member(*model, "type");
  if (type != nullptr && (!type->is_string() || *type != "BPE")) {
    return Unsupported(absl::StrCat("model type ", type->dump()));
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const json* v = Member(*model, key);
    if (v != nullptr && (!v->is_string() || !v->get_ref<const std::string&>().empty())) {
      return Unsupported(absl::StrCat("model.", key));
    }
  }

  TokenizerData d;
  d.model = "gpt2";
  KV_RETURN_IF_ERROR(ReadVocab(*model, &d.tokens));
  d.token_types.assign(d.tokens.size(), TokenType::kNormal);
  for (size_t i = 0; i < d.tokens.size(); ++i) {
    if (d.tokens[i].empty()) d.token_types[i] = TokenType::kUnused;  // hole in the id range
  }
  KV_RETURN_IF_ERROR(ReadAddedTokens(root, &d.tokens, &d.token_types));
  KV_RETURN_IF_ERROR(ReadMerges(*model, &d.merges));
  const json* ignore_merges = Member(*model, "ignore_merges");
  d.ignore_merges = ignore_merges != nullptr && ignore_merges->is_boolean() && ignore_merges->get<bool>();

  // NFC is accepted without normalizing (as llama.cpp does): input that is
  // already NFC, nearly all text, tokenizes identically.
  if (const json* norm = Member(root, "normalizer")) {
    const json* ntype = Member(*norm, "type");
    const json* list = Member(*norm, "normalizers");
    const bool empty_sequence = ntype != nullptr && *ntype == "Sequence" && list != nullptr && list->is_array() &&
                                list->empty();
    if (!empty_sequence && !(ntype != nullptr && *ntype == "NFC")) {
      return Unsupported(absl::StrCat("normalizer ", norm->dump().substr(0, 80)));
    }
  }
  bool byte_level = false;
  if (const json* pt = Member(root, "pre_tokenizer")) {
    KV_RETURN_IF_ERROR(AddPreTokenizer(*pt, 0, &d.pre_regexes, &byte_level));
  }
  if (!byte_level) return Unsupported("a tokenizer without a ByteLevel pre_tokenizer (not byte-level BPE)");
  // No regex anywhere (ByteLevel use_regex=false alone): the text is one
  // piece. A non-empty list keeps Create() from deriving one from `pre`.
  if (d.pre_regexes.empty()) d.pre_regexes.push_back("(?s:.+)");

  absl::flat_hash_map<std::string, int32_t> ids;
  for (size_t i = 0; i < d.tokens.size(); ++i) {
    if (!d.tokens[i].empty()) ids[d.tokens[i]] = static_cast<int32_t>(i);
  }
  auto resolve = [&](const std::string* text, std::string_view field, int32_t* id) -> absl::Status {
    if (text == nullptr || text->empty()) return absl::OkStatus();
    auto it = ids.find(*text);
    if (it == ids.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer: ", Av(field), " '", *text, "' is not in the vocabulary"));
    }
    *id = it->second;
    return absl::OkStatus();
  };
  std::string pp_bos, pp_eos;
  if (const json* pp = Member(root, "post_processor")) ReadPostProcessor(*pp, 0, &pp_bos, &pp_eos);
  KV_RETURN_IF_ERROR(resolve(&pp_bos, "post_processor BOS", &d.bos_id));
  KV_RETURN_IF_ERROR(resolve(&pp_eos, "post_processor EOS", &d.eos_id));
  KV_RETURN_IF_ERROR(resolve(TokenContent(Member(*model, "unk_token")), "model.unk_token", &d.unk_id));
  KV_RETURN_IF_ERROR(resolve(TokenContent(Member(config, "bos_token")), "bos_token", &d.bos_id));
  KV_RETURN_IF_ERROR(resolve(TokenContent(Member(config, "eos_token")), "eos_token", &d.eos_id));
  KV_RETURN_IF_ERROR(resolve(TokenContent(Member(config, "pad_token")), "pad_token", &d.pad_id));
  if (d.unk_id < 0) KV_RETURN_IF_ERROR(resolve(TokenContent(Member(config, "unk_token")), "unk_token", &d.unk_id));

  // An explicit add_bos_token/add_eos_token wins over the post-processor, as
  // transformers rebuilds the post-processor from them.
  const json* add_bos = Member(config, "add_bos_token");
  const json* add_eos = Member(config, "add_eos_token");
  d.add_bos = add_bos != nullptr && add_bos->is_boolean() ? add_bos->get<bool>() : !pp_bos.empty();
  d.add_eos = add_eos != nullptr && add_eos->is_boolean() ? add_eos->get<bool>() : !pp_eos.empty();

  if (const json* tmpl = Member(config, "chat_template")) {
    if (tmpl->is_string()) {
      d.chat_template = tmpl->get<std::string>();
    } else if (tmpl->is_array()) {  // [{"name": "default", "template": ...}, ...]
      for (const json& t : *tmpl) {
        const json* name = Member(t, "name");
        const json* body = Member(t, "template");
        if (name != nullptr && *name == "default" && body != nullptr && body->is_string()) {
          d.chat_template = body->get<std::string>();
        }
      }
    }
  }
  return d;
}

}  // namespace kvstream
