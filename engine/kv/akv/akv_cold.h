// AKV cold tier (akv.md §4 step 6, §6 "Cold tier"): rows that leave warm are
// re-quantized to cold_bits and kept in host memory in blocks of 256 tokens
// per layer (strategies/README.md). Cold rows are never attended. With
// cold_scan_interval = 0 (default, as upstream) they are never read back
// either: the tier is an archive whose bytes the report counts; a cold scan
// (akv_cold_scan.h) reads a window of them and takes rows back to warm.
//
// Block layout (one layer, R = kAkvColdBlockRows rows, c = cold_bits,
// Cc = D*c/8, Gn groups per head):
//   k codes [R, Hkv, Cc] | v codes [R, Hkv, Cc] | k scale, k zero, v scale,
//   v zero [R, Hkv, Gn] fp16 bits each | pos [R] int32
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/akv/akv_layout.h"

namespace kvstream {

inline constexpr int kAkvColdBlockRows = 256;

// Rows of one layer in the cold format, packed [n, ...] per array (the
// layout the GPU staging buffer and the CPU re-quantizer both produce).
struct AkvColdRows {
  const uint8_t* k = nullptr;         // [n, Hkv, Cc]
  const uint8_t* v = nullptr;         // [n, Hkv, Cc]
  const uint16_t* k_scale = nullptr;  // [n, Hkv, Gn]
  const uint16_t* k_zero = nullptr;
  const uint16_t* v_scale = nullptr;
  const uint16_t* v_zero = nullptr;
  const int32_t* pos = nullptr;       // [n]
  int rows = 0;
};

struct AkvColdScratch;

// Rows of one cold block's key arrays (k codes, k scale, k zero, pos).
struct AkvColdKeyRun {
  const uint8_t* src[4];
  int64_t width[4];  // bytes per row of each array
  int64_t rows;
};
// Copies runs back to back into dst[4] (packed [rows, ...] arrays).
void AkvCopyKeyRuns(const std::vector<AkvColdKeyRun>& runs, uint8_t* const dst[4]);

class AkvColdTier {
 public:
  AkvColdTier(int num_layers, int num_kv_heads, int head_dim, int group_size, int cold_bits);

  // Appends rows to layer `layer`, growing it block by block.
  void Append(int layer, const AkvColdRows& rows);

  int64_t Rows(int layer) const { return rows_[layer]; }
  int64_t TotalRows() const;
  // Host bytes of every block allocated.
  int64_t Bytes() const;
  int64_t BytesPerRow() const { return row_bytes_; }
  // Position of cold row `i` of `layer` (tests check tier partitions).
  int32_t Pos(int layer, int64_t i) const;
  // Rows `rows` (each < Rows(layer)) of `layer` packed into *out in that
  // order (cold format).
  void CopyRows(int layer, const std::vector<int64_t>& rows, AkvColdScratch* out) const;
  // Key codes, scale, zero and positions of rows [first, first + n) of
  // `layer` (each < Rows(layer)) into packed arrays (cold format): what a
  // cold scan rates.
  void CopyKeys(int layer, int64_t first, int n, uint8_t* k, uint16_t* k_scale, uint16_t* k_zero,
                int32_t* pos) const;
  // The same copy as runs of rows inside one block each, for a copy done
  // elsewhere (another thread: the block memory stays put while rows are
  // appended; Remove may free it).
  std::vector<AkvColdKeyRun> KeyRuns(int layer, int64_t first, int n) const;
  // Removes the rows `sorted_rows` (ascending, distinct, < Rows(layer)) of
  // `layer`: the rows past the last hole move into the holes (cost is the
  // rows removed, not the tier's size); the others stay where they are.
  // Blocks left empty are freed.
  void Remove(int layer, const std::vector<int64_t>& sorted_rows);

 private:
  uint8_t* Array(int layer, int64_t block, int which) const;  // 0..6 as in the layout
  int64_t Width(int which) const;                              // bytes per row of array `which`

  int layers_, hkv_, cc_, gn_;
  int64_t row_bytes_;
  std::vector<int64_t> rows_;
  std::vector<std::vector<std::unique_ptr<uint8_t[]>>> blocks_;
};

// CPU re-quantization of rows from `in_bits` to `out_bits` codes (head dim
// and group size of `lay`) into `out`, resized for in.rows; returns saturated
// groups. Bit-identical to the CUDA dequant -> quantize pair (kernels/akv
// twins). Warm -> cold (the spill) and cold -> warm (the cold scan).
struct AkvColdScratch {
  std::vector<uint8_t> k, v;
  std::vector<uint16_t> k_scale, k_zero, v_scale, v_zero;
  std::vector<int32_t> pos;
  AkvColdRows View(int n) const;
};
int AkvRequantizeRows(const AkvColdRows& in, const AkvLayout& lay, int in_bits, int out_bits, AkvColdScratch* out);
// The first `n` rows of layer `layer` of a warm -> cold stage (warm_bits of
// `warm`) re-quantized to cold_bits.
int AkvRequantizeStageRows(const AkvLayout& warm, const AkvColdStage& stage, int layer, int n, int cold_bits,
                           AkvColdScratch* out);

}  // namespace kvstream
