// Per-model SAM-Gate thresholds (sam_gate.md C14): the seed's f_flat_max /
// f_obs_min are placeholders (§5), so a calibration run per model
// (bench/sam_gate/sam_gate_calibrate_bench) writes a small JSON profile,
//   data/profiles/<model file name>.sam_gate.json
// which SamGateStrategy loads at construction and uses as the defaults of the
// two thresholds (a request that sets them still wins).
//
// File format (one flat JSON object, at most 64 KiB; unknown keys ignored):
//   "format": "kvstream.sam_gate.profile", "version": 1,
//   "model": "<model file name>", "model_bytes": <size of the model file>,
//   "f_flat_max": <number >= 0>, "f_obs_min": <number >= f_flat_max>,
//   "prompts": <calibration prompts>, "source": "<how it was made>"
// "model" and "model_bytes" must match the loaded file (a profile calibrated
// for another file of the same name is refused rather than silently used).
//
// Where it is looked for (first hit wins): $KVSTREAM_PROFILE_DIR, then
// data/profiles/ of the checkout the model lies in (<model dir>/../data/
// profiles), then beside the model, then ./data/profiles. Synthetic models
// (model_path "") have no profile.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kvstream {

struct SamGateProfile {
  std::string path;   // the file it was read from ("" when built in memory)
  std::string model;  // model file name
  int64_t model_bytes = -1;  // -1: not checked (tests)
  double f_flat_max = 0.0;
  double f_obs_min = 0.0;
  int64_t prompts = 0;
  std::string source;
};

// The profile file name for a model file: "<file name>.sam_gate.json".
std::string SamGateProfileFileName(const std::string& model_path);

// The folders searched for `model_path`'s profile, in order (see above).
std::vector<std::string> SamGateProfileDirs(const std::string& model_path);

// Looks for the model's profile in `dirs`. nullopt: no file found (seed
// defaults apply). Error (INVALID_ARGUMENT naming the file and the field):
// a file was found but is malformed, out of range or for another model.
absl::StatusOr<std::optional<SamGateProfile>> FindSamGateProfile(const std::string& model_path,
                                                                 const std::vector<std::string>& dirs);

// Parses one profile file's text (`path` names it in errors); checks it
// against `model_path` when that is not empty.
absl::StatusOr<SamGateProfile> ParseSamGateProfile(const std::string& text, const std::string& path,
                                                   const std::string& model_path);

// The file text for `p` (what the calibration bench writes).
std::string SamGateProfileToJson(const SamGateProfile& p);

}  // namespace kvstream
