#include "client/gnuplot_pipe.h"

#include <sys/wait.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kvstream::client {

absl::Status RunGnuplot(const std::string& script) {
  FILE* pipe = popen("gnuplot", "w");
  if (pipe == nullptr) return absl::FailedPreconditionError("cannot start gnuplot (apt-get install gnuplot-nox)");
  const size_t written = std::fwrite(script.data(), 1, script.size(), pipe);
  const int rc = pclose(pipe);
  if (written != script.size()) return absl::InternalError("gnuplot closed its input early");
  if (rc == -1 || !WIFEXITED(rc)) return absl::InternalError("gnuplot did not exit normally");
  if (WEXITSTATUS(rc) == 127) return absl::FailedPreconditionError("gnuplot not found (apt-get install gnuplot-nox)");
  if (WEXITSTATUS(rc) != 0) return absl::InternalError(absl::StrCat("gnuplot exited with ", WEXITSTATUS(rc)));
  return absl::OkStatus();
}

std::string GnuplotQuote(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') {
      out += "''";  // gnuplot's escape inside single quotes
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string DataBlock(const std::string& name, const std::vector<std::string>& rows) {
  return absl::StrCat("$", name, " << EOD\n", absl::StrJoin(rows, "\n"), rows.empty() ? "" : "\n", "EOD\n");
}

}  // namespace kvstream::client
