// SAM-Gate kernel family (design/strategies/sam_gate.md §7): one include for
// the engine (engine/kv/sam_gate/).
//   sam_ring.h         legend, ring descriptor, row format, slot rule, byte formulas
//   sam_ring_io.h      sam_kv_write (quantize/pack, bf16 copy, compat fake-quant),
//                      sam_ring_dequant, host row codec
//   sam_decode_attn.h  split-K decode attention over the ring (SELF/ZERO dropped heads)
//   sam_probe.h        sam_probe_softmax, sam_rademacher, sam_probe_products,
//                      sam_probe_pairs, sam_probe_exact
// Every kernel has a CPU twin (*_ref.cpp, no CUDA) taking the same Params.
// Host-only policy (harmonic set, f in double, regime, group ranking, ring
// allocation) belongs to the engine; SamKeepCount is the one rounding rule
// shared with the byte tests.
#pragma once

#include "kernels/sam_gate/sam_decode_attn.h"
#include "kernels/sam_gate/sam_probe.h"
#include "kernels/sam_gate/sam_ring.h"
#include "kernels/sam_gate/sam_ring_io.h"
