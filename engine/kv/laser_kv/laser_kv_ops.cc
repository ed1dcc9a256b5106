#include "engine/kv/laser_kv/laser_kv_ops.h"

#include "absl/strings/str_cat.h"

#ifdef KVSTREAM_HAVE_CUDA_TORCH
#include <ATen/cuda/CUDAContext.h>
#include <cuda_runtime_api.h>
#endif

namespace kvstream {
namespace {

// Validate, then twin (CPU) or launcher (CUDA). `name` is the kernel's.
template <class P, class Validate, class Ref, class Launch>
absl::Status Run(const char* name, const P& p, c10::Device device, Validate validate, Ref ref, Launch launch) {
  if (const char* why = validate(p); why != nullptr) {
    return absl::InternalError(absl::StrCat("laser_kv: ", name, " params: ", why));
  }
  if (device.is_cuda()) {
#ifdef KVSTREAM_HAVE_CUDA_TORCH
    cudaStream_t stream = at::cuda::getCurrentCUDAStream();
    if (cudaError_t e = launch(p, stream); e != cudaSuccess) {
      return absl::InternalError(absl::StrCat("laser_kv: Launch", name, ": ", cudaGetErrorString(e)));
    }
    return absl::OkStatus();
#else
    (void)launch;
    return absl::FailedPreconditionError(absl::StrCat("laser_kv: ", name, ": this build has no CUDA"));
#endif
  }
  if (!ref(p)) return absl::InternalError(absl::StrCat("laser_kv: ", name, "Ref refused its params"));
  return absl::OkStatus();
}

#ifdef KVSTREAM_HAVE_CUDA_TORCH
#define KV_LASER_LAUNCH(fn) [](const auto& p, cudaStream_t s) { return fn(p, s); }
#else
#define KV_LASER_LAUNCH(fn) 0
#endif

}  // namespace

absl::Status LaserWindowScores(const LaserWindowScoresParams& p, c10::Device d) {
  return Run("LaserWindowScores", p, d, LaserWindowScoresValidate, LaserWindowScoresRef,
             KV_LASER_LAUNCH(LaunchLaserWindowScores));
}
absl::Status LaserPoolScores(const LaserPoolScoresParams& p, c10::Device d) {
  return Run("LaserPoolScores", p, d, LaserPoolScoresValidate, LaserPoolScoresRef,
             KV_LASER_LAUNCH(LaunchLaserPoolScores));
}
absl::Status LaserHeadMean(const LaserHeadMeanParams& p, c10::Device d) {
  return Run("LaserHeadMean", p, d, LaserHeadMeanValidate, LaserHeadMeanRef, KV_LASER_LAUNCH(LaunchLaserHeadMean));
}
absl::Status LaserColumnMean(const LaserColumnMeanParams& p, c10::Device d) {
  return Run("LaserColumnMean", p, d, LaserColumnMeanValidate, LaserColumnMeanRef,
             KV_LASER_LAUNCH(LaunchLaserColumnMean));
}
absl::Status LaserLshHash(const LaserLshHashParams& p, c10::Device d) {
  return Run("LaserLshHash", p, d, LaserLshHashValidate, LaserLshHashRef, KV_LASER_LAUNCH(LaunchLaserLshHash));
}
absl::Status LaserCollisionCount(const LaserCollisionCountParams& p, c10::Device d) {
  return Run("LaserCollisionCount", p, d, LaserCollisionCountValidate, LaserCollisionCountRef,
             KV_LASER_LAUNCH(LaunchLaserCollisionCount));
}
absl::Status LaserBestMatch(const LaserBestMatchParams& p, c10::Device d) {
  return Run("LaserBestMatch", p, d, LaserBestMatchValidate, LaserBestMatchRef,
             KV_LASER_LAUNCH(LaunchLaserBestMatch));
}
absl::Status LaserTiebreak(const LaserTiebreakParams& p, c10::Device d) {
  return Run("LaserTiebreak", p, d, LaserTiebreakValidate, LaserTiebreakRef, KV_LASER_LAUNCH(LaunchLaserTiebreak));
}
absl::Status LaserMakeKeys(const LaserMakeKeysParams& p, c10::Device d) {
  return Run("LaserMakeKeys", p, d, LaserMakeKeysValidate, LaserMakeKeysRef, KV_LASER_LAUNCH(LaunchLaserMakeKeys));
}
absl::Status LaserSelectTopk(const LaserSelectTopkParams& p, c10::Device d) {
  return Run("LaserSelectTopk", p, d, LaserSelectTopkValidate, LaserSelectTopkRef,
             KV_LASER_LAUNCH(LaunchLaserSelectTopk));
}
absl::Status LaserCompact(const LaserCompactParams& p, c10::Device d) {
  return Run("LaserCompact", p, d, LaserCompactValidate, LaserCompactRef, KV_LASER_LAUNCH(LaunchLaserCompact));
}

size_t LaserSelectTopkScratch(int num, int k, c10::Device device) {
#ifdef KVSTREAM_HAVE_CUDA_TORCH
  if (device.is_cuda()) return LaserSelectTopkWorkspaceBytes(num, k);
#endif
  (void)num;
  (void)k;
  (void)device;
  return 0;
}

}  // namespace kvstream
