// absl flags are declared with underscores (max_new_tokens); people type
// dashes (--max-new-tokens). Rewrites "--a-b[=v]" to "--a_b[=v]" in place
// before absl::ParseCommandLine, leaving values and positional args alone.
#pragma once

#include <cstring>

namespace kvstream {

inline void DashesToUnderscores(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    char* a = argv[i];
    if (std::strncmp(a, "--", 2) != 0) continue;
    if (a[2] == '\0') break;  // "--" ends flags
    for (char* p = a + 2; *p != '\0' && *p != '='; ++p) {
      if (*p == '-') *p = '_';
    }
  }
}

}  // namespace kvstream
