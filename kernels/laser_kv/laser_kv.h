// LASER-KV kernel family (design/strategies/laser_kv.md §7): one include for
// the engine (engine/kv/laser_kv/).
//   laser_common.h   legend, LaserSegment, GQA map, splitmix64, ordered float bits
//   laser_score.h    K1 laser_window_scores, K2 laser_head_mean
//   laser_lsh.h      R generator, magicpig U(p), K3a laser_column_mean,
//                    K3 laser_lsh_hash, K4 laser_collision_count, K5 laser_best_match
//   laser_select.h   K6 laser_tiebreak_dist, K7a laser_make_keys (composite keys),
//                    K7 laser_select_topk
//   laser_compact.h  K8 laser_compact_kv
// Every kernel has a CPU twin (*_ref.cpp, no CUDA) taking the same Params;
// launchers take device pointers and a stream, return cudaError_t and never
// allocate or synchronise (scratch comes from the caller: *WorkspaceBytes).
// Host-only policy (budget split, slots, candidate lists, survivors, fallbacks,
// hybrid split) belongs to the engine.
#pragma once

#include "kernels/laser_kv/laser_common.h"
#include "kernels/laser_kv/laser_compact.h"
#include "kernels/laser_kv/laser_lsh.h"
#include "kernels/laser_kv/laser_score.h"
#include "kernels/laser_kv/laser_select.h"
