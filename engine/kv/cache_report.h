// What a sequence's cache holds, reported at the end of a request (and
// mirrored into the proto CacheReport by server/). Bytes are counted from
// buffers really allocated, never from a formula alone.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace kvstream {

struct LayerCacheReport {
  int32_t layer = 0;
  std::string detail;   // e.g. regime name, tier split
  int64_t bytes = 0;
  int64_t tokens_held = 0;
  std::map<std::string, double> stats;
};

struct CacheReport {
  std::string strategy;
  int64_t kv_bytes_device = 0;         // cache buffers on the compute device (CPU when serving on CPU)
  int64_t kv_bytes_host = 0;           // host-memory tiers (AKV cold), else 0
  int64_t dense_equivalent_bytes = 0;  // a dense 16-bit cache of tokens_seen tokens
  double compression_ratio = 0.0;      // dense_equivalent / (device + host)
  int64_t peak_kv_bytes = 0;
  int64_t tokens_seen = 0;
  int64_t tokens_held = 0;             // largest number of token slots any layer holds
  std::vector<LayerCacheReport> layers;
  std::map<std::string, double> stats;
  double compression_ms = 0.0;
};

}  // namespace kvstream
