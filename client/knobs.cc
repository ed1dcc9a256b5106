#include "client/knobs.h"

#include <cmath>
#include <cstdint>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace kvstream::client {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumDescriptor;
using google::protobuf::EnumValueDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

const google::protobuf::OneofDescriptor& StrategyOneof() {
  const google::protobuf::OneofDescriptor* oneof =
      kvstream::v1::KvCompression::descriptor()->FindOneofByName("strategy");
  return *oneof;  // the proto defines it; a rename fails every knobs test
}

// "akv" for AkvConfig (the strategy's oneof field name), else the message name.
std::string Label(const Descriptor& config) {
  const auto& oneof = StrategyOneof();
  for (int i = 0; i < oneof.field_count(); ++i) {
    if (oneof.field(i)->message_type() == &config) return oneof.field(i)->name();
  }
  return config.name();
}

// The prefix shared by an enum's values, taken from its zero value
// (AKV_SCORING_STRATEGY_UNSPECIFIED -> AKV_SCORING_STRATEGY_); "" if none.
absl::string_view EnumPrefix(const EnumDescriptor& type) {
  const EnumValueDescriptor* zero = type.FindValueByNumber(0);
  if (zero == nullptr) return {};
  absl::string_view name = zero->name();
  if (!absl::ConsumeSuffix(&name, "UNSPECIFIED")) return {};
  return name;
}

template <typename Int>
bool ParseInt(absl::string_view text, Int* out) {
  absl::string_view digits = text;
  if (absl::ConsumePrefix(&digits, "0x") || absl::ConsumePrefix(&digits, "0X")) {
    return !digits.empty() && absl::SimpleHexAtoi(digits, out);
  }
  return absl::SimpleAtoi(text, out);
}

bool ParseBool(absl::string_view text, bool* out) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "true" || lower == "1" || lower == "yes" || lower == "on") {
    *out = true;
    return true;
  }
  if (lower == "false" || lower == "0" || lower == "no" || lower == "off") {
    *out = false;
    return true;
  }
  return false;
}

const EnumValueDescriptor* ParseEnum(const EnumDescriptor& type, absl::string_view text) {
  const std::string upper = absl::AsciiStrToUpper(text);
  if (const EnumValueDescriptor* v = type.FindValueByName(upper)) return v;
  if (const EnumValueDescriptor* v = type.FindValueByName(absl::StrCat(EnumPrefix(type), upper))) return v;
  int number = 0;
  if (absl::SimpleAtoi(text, &number)) return type.FindValueByNumber(number);
  return nullptr;
}

std::string EnumChoices(const EnumDescriptor& type) {
  std::vector<std::string> short_names, full_names;
  for (int i = 0; i < type.value_count(); ++i) {
    std::vector<std::string> names = EnumValueNames(*type.value(i));
    short_names.push_back(names.front());
    full_names.push_back(names.back());
  }
  std::string out = absl::StrJoin(short_names, ", ");
  if (short_names != full_names) absl::StrAppend(&out, " (or the full names ", absl::StrJoin(full_names, ", "), ")");
  return out;
}

absl::Status BadValue(const Message& config, const FieldDescriptor& knob, absl::string_view value,
                      absl::string_view expected) {
  return absl::InvalidArgumentError(absl::StrCat("bad value '", value, "' for knob ", Label(*config.GetDescriptor()),
                                                 ".", knob.name(), ": expected ", expected));
}

// Parses `value` by the knob's type and stores it (appends if repeated).
absl::Status StoreValue(Message& config, const FieldDescriptor& knob, absl::string_view value) {
  const Reflection& refl = *config.GetReflection();
  const bool rep = knob.is_repeated();
  switch (knob.cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32: {
      int32_t v;
      if (!ParseInt(value, &v)) return BadValue(config, knob, value, "a 32-bit integer");
      rep ? refl.AddInt32(&config, &knob, v) : refl.SetInt32(&config, &knob, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_INT64: {
      int64_t v;
      if (!ParseInt(value, &v)) return BadValue(config, knob, value, "a 64-bit integer");
      rep ? refl.AddInt64(&config, &knob, v) : refl.SetInt64(&config, &knob, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_UINT32: {
      uint32_t v;
      if (!ParseInt(value, &v)) return BadValue(config, knob, value, "an unsigned 32-bit integer");
      rep ? refl.AddUInt32(&config, &knob, v) : refl.SetUInt32(&config, &knob, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t v;
      if (!ParseInt(value, &v)) return BadValue(config, knob, value, "an unsigned 64-bit integer");
      rep ? refl.AddUInt64(&config, &knob, v) : refl.SetUInt64(&config, &knob, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_FLOAT: {
      float v;
      if (!absl::SimpleAtof(value, &v) || !std::isfinite(v)) {
        return BadValue(config, knob, value, "a finite number (float)");
      }
      rep ? refl.AddFloat(&config, &knob, v) : refl.SetFloat(&config, &knob, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_DOUBLE: {
      double v;
      if (!absl::SimpleAtod(value, &v) || !std::isfinite(v)) {
        return BadValue(config, knob, value, "a finite number (double)");
      }
      rep ? refl.AddDouble(&config, &knob, v) : refl.SetDouble(&config, &knob, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_BOOL: {
      bool v;
      if (!ParseBool(value, &v)) return BadValue(config, knob, value, "true or false");
      rep ? refl.AddBool(&config, &knob, v) : refl.SetBool(&config, &knob, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_ENUM: {
      const EnumValueDescriptor* v = ParseEnum(*knob.enum_type(), value);
      if (v == nullptr) return BadValue(config, knob, value, absl::StrCat("one of ", EnumChoices(*knob.enum_type())));
      rep ? refl.AddEnum(&config, &knob, v) : refl.SetEnum(&config, &knob, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_STRING: {
      std::string v(value);
      rep ? refl.AddString(&config, &knob, std::move(v)) : refl.SetString(&config, &knob, std::move(v));
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat("knob ", Label(*config.GetDescriptor()), ".", knob.name(),
                                                 " is a message and cannot be set from --kv"));
}

}  // namespace

std::vector<std::string> StrategyNames() {
  std::vector<std::string> names;
  const auto& oneof = StrategyOneof();
  for (int i = 0; i < oneof.field_count(); ++i) names.push_back(oneof.field(i)->name());
  return names;
}

absl::StatusOr<const FieldDescriptor*> FindStrategy(absl::string_view name) {
  const auto& oneof = StrategyOneof();
  for (int i = 0; i < oneof.field_count(); ++i) {
    if (oneof.field(i)->name() == name) return oneof.field(i);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown strategy '", name, "'; valid strategies: ", absl::StrJoin(StrategyNames(), ", ")));
}

std::string KnobNames(const Descriptor& config) {
  std::vector<std::string> names;
  for (int i = 0; i < config.field_count(); ++i) names.push_back(config.field(i)->name());
  return names.empty() ? "(none)" : absl::StrJoin(names, ", ");
}

std::vector<std::string> EnumValueNames(const EnumValueDescriptor& value) {
  absl::string_view name = value.name();
  const std::string full(name);
  if (absl::ConsumePrefix(&name, EnumPrefix(*value.type())) && !name.empty() && name != full) {
    return {std::string(name), full};
  }
  return {full};
}

std::string KnobType(const FieldDescriptor& knob) {
  std::string type;
  if (knob.cpp_type() == FieldDescriptor::CPPTYPE_ENUM) {
    std::vector<std::string> names;
    for (int i = 0; i < knob.enum_type()->value_count(); ++i) {
      if (knob.enum_type()->value(i)->number() == 0) continue;
      names.push_back(EnumValueNames(*knob.enum_type()->value(i)).front());
    }
    type = absl::StrCat("enum ", knob.enum_type()->name(), ": ", absl::StrJoin(names, " | "));
  } else {
    type = knob.type_name();
  }
  return knob.is_repeated() ? absl::StrCat("repeated ", type) : type;
}

absl::Status SetKnob(Message& config, absl::string_view name, absl::string_view value) {
  const Descriptor& desc = *config.GetDescriptor();
  const FieldDescriptor* knob = desc.FindFieldByName(std::string(name));
  if (knob == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown knob '", name, "' for strategy ", Label(desc), "; valid knobs: ", KnobNames(desc)));
  }
  return StoreValue(config, *knob, value);
}

absl::Status ApplyKnobList(Message& config, absl::string_view list) {
  for (absl::string_view item : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
    item = absl::StripAsciiWhitespace(item);
    const size_t eq = item.find('=');
    if (eq == absl::string_view::npos || eq == 0) {
      return absl::InvalidArgumentError(absl::StrCat("--kv item '", item, "' is not name=value; valid knobs of ",
                                                     Label(*config.GetDescriptor()), ": ",
                                                     KnobNames(*config.GetDescriptor())));
    }
    auto status = SetKnob(config, absl::StripAsciiWhitespace(item.substr(0, eq)),
                          absl::StripAsciiWhitespace(item.substr(eq + 1)));
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::Status ApplyStrategy(absl::string_view strategy, const std::vector<std::string>& kv_lists,
                           kvstream::v1::KvCompression& out) {
  if (strategy.empty()) {
    for (const std::string& list : kv_lists) {
      if (!absl::StripAsciiWhitespace(list).empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--kv needs --strategy (one of ", absl::StrJoin(StrategyNames(), ", "), ")"));
      }
    }
    return absl::OkStatus();
  }
  auto field = FindStrategy(strategy);
  if (!field.ok()) return field.status();
  Message* config = out.GetReflection()->MutableMessage(&out, *field);
  for (const std::string& list : kv_lists) {
    auto status = ApplyKnobList(*config, list);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

}  // namespace kvstream::client
