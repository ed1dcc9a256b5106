// --strategy / --kv: fills KvCompression through protobuf reflection, so any
// knob added to a *Config message in kvstream.proto works here unchanged.
//
// The strategies are the fields of KvCompression's `strategy` oneof (dense,
// sam_gate, ...); the knobs of a strategy are the fields of its config
// message. Values are parsed by the field's type: integers (decimal, or hex
// with 0x), floats (finite), bools (true/false/1/0/yes/no/on/off), strings,
// and enums by value name, case-insensitive, with or without the enum's
// prefix (fifo = AKV_SCORING_STRATEGY_FIFO). A repeated field takes one value
// per occurrence. Range checks are the server's (it names the allowed range).
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "kvstream/v1/kvstream.pb.h"

namespace kvstream::client {

// Names of the strategies, in proto order: "dense", "sam_gate", ...
std::vector<std::string> StrategyNames();

// The KvCompression field of strategy `name`; InvalidArgument listing the
// valid names otherwise.
absl::StatusOr<const google::protobuf::FieldDescriptor*> FindStrategy(absl::string_view name);

// Sets knob `name` of `config` (a strategy config message) from text.
// InvalidArgument naming the valid knobs (unknown name) or the expected type
// or enum values (bad value).
absl::Status SetKnob(google::protobuf::Message& config, absl::string_view name, absl::string_view value);

// Applies "name=value,name=value" to `config`.
absl::Status ApplyKnobList(google::protobuf::Message& config, absl::string_view list);

// Selects `strategy` in `out` (an empty strategy leaves `out` untouched when
// no knobs are given) and applies every --kv list to its config.
absl::Status ApplyStrategy(absl::string_view strategy, const std::vector<std::string>& kv_lists,
                           kvstream::v1::KvCompression& out);

// "hot_budget, warm_budget, ..." for a config message ("(none)" if empty).
std::string KnobNames(const google::protobuf::Descriptor& config);

// "uint32", "bool", "enum: IMPORTANCE | HYBRID | FIFO", ... for listings.
std::string KnobType(const google::protobuf::FieldDescriptor& knob);

// The names an enum value is accepted by, short form first: {"FIFO",
// "AKV_SCORING_STRATEGY_FIFO"} (one name when the enum has no prefix).
std::vector<std::string> EnumValueNames(const google::protobuf::EnumValueDescriptor& value);

}  // namespace kvstream::client
