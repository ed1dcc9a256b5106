// CPU twin of akv_cold_append (akv.md §4 step 7, the cold scan's promotions):
// the same copies in the same order, so warm tiers end bit-identical.
#include <cstring>

#include "kernels/akv/akv_manage.h"

namespace kvstream {

bool AkvColdAppendRef(const AkvColdAppendParams& p) {
  if (AkvColdAppendValidate(p) != nullptr) return false;
  const AkvLayout& lay = p.layout;
  const int S = p.stage.Rows(lay);
  const int64_t code_row = int64_t(lay.num_kv_heads) * lay.CodeBytes();
  const int64_t group_row = int64_t(lay.num_kv_heads) * lay.Groups();
  for (int l = 0; l < p.num_layers; ++l) {
    const AkvTiers t = AkvTiersAtLayer(p.tiers, lay, l);
    const int n_warm = t.counts[kAkvNWarm];
    const int take = AkvColdTakeRows(p, p.rows[l], n_warm);
    const int64_t s0 = int64_t(l) * S;
    std::memcpy(t.warm_k + n_warm * code_row, p.stage.k + s0 * code_row, take * code_row);
    std::memcpy(t.warm_v + n_warm * code_row, p.stage.v + s0 * code_row, take * code_row);
    const size_t gbytes = static_cast<size_t>(take * group_row) * 2;
    std::memcpy(t.warm_k_scale + n_warm * group_row, p.stage.k_scale + s0 * group_row, gbytes);
    std::memcpy(t.warm_k_zero + n_warm * group_row, p.stage.k_zero + s0 * group_row, gbytes);
    std::memcpy(t.warm_v_scale + n_warm * group_row, p.stage.v_scale + s0 * group_row, gbytes);
    std::memcpy(t.warm_v_zero + n_warm * group_row, p.stage.v_zero + s0 * group_row, gbytes);
    for (int i = 0; i < take; ++i) {
      t.warm_pos[n_warm + i] = p.stage.pos[s0 + i];
      t.warm_score[n_warm + i] = p.stage.score[s0 + i];  // w_j = a_j: scored once, as a fresh row is
      t.warm_a[n_warm + i] = p.stage.score[s0 + i];
    }
    t.counts[kAkvNWarm] = n_warm + take;
    t.counts[kAkvTotColdTaken] += take;
  }
  return true;
}

}  // namespace kvstream
