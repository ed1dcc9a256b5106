// Charts through gnuplot: the script goes to `gnuplot` on a pipe (data
// inline as $name << EOD blocks), the PNG comes out where the script's
// `set output` points. gnuplot-nox is a Debian package (scripts/setup.sh).
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace kvstream::client {

// Runs `gnuplot` with `script` on its standard input. FailedPrecondition when
// gnuplot cannot be started, Internal when it exits non-zero (its stderr
// is left on ours).
absl::Status RunGnuplot(const std::string& script);

// "'out.png'": a gnuplot single-quoted string (a ' inside is doubled).
std::string GnuplotQuote(const std::string& text);

// A gnuplot inline data block: "$name << EOD\n<rows>\nEOD\n".
std::string DataBlock(const std::string& name, const std::vector<std::string>& rows);

}  // namespace kvstream::client
