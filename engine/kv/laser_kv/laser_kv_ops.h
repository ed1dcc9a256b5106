// LASER-KV kernel calls for the engine: each op runs the kernel's CPU twin on
// CPU tensors and its launcher (current stream) on CUDA ones, so the strategy
// has one code path. The Params carry raw pointers of tensors on `device`;
// scratch comes from the caller (launchers never allocate).
#pragma once

#include <c10/core/Device.h>

#include "absl/status/status.h"
#include "kernels/laser_kv/laser_kv.h"

namespace kvstream {

absl::Status LaserWindowScores(const LaserWindowScoresParams& p, c10::Device device);   // K1
absl::Status LaserPoolScores(const LaserPoolScoresParams& p, c10::Device device);       // K1b
absl::Status LaserHeadMean(const LaserHeadMeanParams& p, c10::Device device);           // K2
absl::Status LaserColumnMean(const LaserColumnMeanParams& p, c10::Device device);       // K3a
absl::Status LaserLshHash(const LaserLshHashParams& p, c10::Device device);             // K3
absl::Status LaserCollisionCount(const LaserCollisionCountParams& p, c10::Device device);  // K4
absl::Status LaserBestMatch(const LaserBestMatchParams& p, c10::Device device);         // K5
absl::Status LaserTiebreak(const LaserTiebreakParams& p, c10::Device device);           // K6
absl::Status LaserMakeKeys(const LaserMakeKeysParams& p, c10::Device device);           // K7a
absl::Status LaserSelectTopk(const LaserSelectTopkParams& p, c10::Device device);       // K7
absl::Status LaserCompact(const LaserCompactParams& p, c10::Device device);             // K8

// Workspace bytes K7 needs on `device` (0 on CPU).
size_t LaserSelectTopkScratch(int num, int k, c10::Device device);

}  // namespace kvstream
