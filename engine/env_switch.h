// A/B switches read from the environment (KVSTREAM_GEMV, KVSTREAM_DENSE_FUSED,
// ...): on unless the variable is "0". Benches flip them to time a fused path
// against the one it replaced in the same build.
#pragma once

#include <cstdlib>
#include <cstring>

namespace kvstream {

inline bool EnvSwitchOn(const char* name) {
  const char* env = std::getenv(name);
  return env == nullptr || std::strcmp(env, "0") != 0;
}

// An opt-in path (off unless the variable is "1"): one kept for A/B after
// the path it was meant to replace measured faster.
inline bool EnvSwitchOptIn(const char* name) {
  const char* env = std::getenv(name);
  return env != nullptr && std::strcmp(env, "1") == 0;
}

}  // namespace kvstream
