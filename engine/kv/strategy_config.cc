#include "engine/kv/strategy_config.h"

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/str_cat.h"

namespace kvstream {

absl::StatusOr<std::map<std::string, KnobValue>> ParseKnobList(const std::string& text) {
  std::map<std::string, KnobValue> out;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
    std::string name(absl::StripAsciiWhitespace(kv.first));
    std::string value(absl::StripAsciiWhitespace(kv.second));
    if (name.empty() || value.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("knob list item '", item, "' must look like name=value"));
    }
    if (out.count(name)) return absl::InvalidArgumentError(absl::StrCat("knob '", name, "' given twice"));
    int64_t i;
    double d;
    if (absl::SimpleAtoi(value, &i)) {
      out[name] = i;
    } else if (absl::SimpleAtod(value, &d)) {
      out[name] = d;
    } else if (value == "true" || value == "false") {
      out[name] = value == "true";
    } else {
      out[name] = value;
    }
  }
  return out;
}

}  // namespace kvstream
