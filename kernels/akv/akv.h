// AKV kernel family (design/strategies/akv.md §7): one include for the engine.
//   akv_layout.h     tier buffers, device counters, policy knobs, selection keys
//   akv_quant.h      warm quantizer: quantize_pack / dequant (+ host math)
//   akv_attention.h  mixed hot + warm attention (decode split-K, causal prefill)
//   akv_manage.h     append, score update, select, migrate
#pragma once

#include "kernels/akv/akv_attention.h"
#include "kernels/akv/akv_layout.h"
#include "kernels/akv/akv_manage.h"
#include "kernels/akv/akv_quant.h"
