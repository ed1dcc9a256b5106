#!/usr/bin/env python3
"""Writes the weight-loader fixtures and the values the C++ tests expect.

Oracles: gguf-py 0.19 (GGUFWriter, gguf.quants, GGUFReader) and transformers'
loaders (GGUF and safetensors). Run from the repo root with the kvstream venv:

    ~/.cache/kvstream/venv/bin/python tests/oracle/gguf_make_fixtures.py

Outputs (all deterministic, seeded):
  tests/fixtures/gguf/all_types.gguf            one tensor per supported dtype,
                                                metadata of every value type
  tests/fixtures/gguf/all_types_expected.json   gguf.quants.dequantize of each
                                                tensor (fp32 bit patterns) and
                                                every metadata value with its type
  tests/fixtures/gguf/smollm2_spot_values.json  config + spot values of the real
                                                model as transformers loads it
                                                (skipped if the model is absent)
  tests/fixtures/hf_tiny/                       2-layer random Llama: config.json,
                                                model.safetensors (F32/F16/BF16),
                                                tokenizer.json, tokenizer_config.json,
                                                kvstream_expected.json
"""
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT
from gguf import GGUFValueType as VT

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GGUF_DIR = os.path.join(ROOT, "tests", "fixtures", "gguf")
HF_DIR = os.path.join(ROOT, "tests", "fixtures", "hf_tiny")
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")

TYPE_NAMES = {VT.UINT8: "u8", VT.INT8: "i8", VT.UINT16: "u16", VT.INT16: "i16",
              VT.UINT32: "u32", VT.INT32: "i32", VT.FLOAT32: "f32", VT.BOOL: "bool",
              VT.STRING: "string", VT.ARRAY: "array", VT.UINT64: "u64", VT.INT64: "i64",
              VT.FLOAT64: "f64"}


def bits(a):
    """fp32 array -> list of uint32 bit patterns (exact, NaN-safe)."""
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).ravel().tolist()


# ---- metadata ---------------------------------------------------------------
def exact_f32(x):
    return float(np.float32(x))


# (key, GGUF type, value); for arrays the type is the element type.
SCALARS = [
    ("test.u8", VT.UINT8, 200), ("test.i8", VT.INT8, -100),
    ("test.u16", VT.UINT16, 60000), ("test.i16", VT.INT16, -30000),
    ("test.u32", VT.UINT32, 4000000000), ("test.i32", VT.INT32, -2000000000),
    ("test.f32", VT.FLOAT32, exact_f32(3.14159)), ("test.bool", VT.BOOL, True),
    ("test.bool_false", VT.BOOL, False),
    ("test.string", VT.STRING, "h\u00e9llo w\u00f6rld \u2713"), ("test.empty_string", VT.STRING, ""),
    ("test.u64", VT.UINT64, 2**63 + 5), ("test.i64", VT.INT64, -(2**62) - 7),
    ("test.f64", VT.FLOAT64, 2.718281828459045),
]
ARRAYS = [
    ("test.arr.u8", VT.UINT8, [0, 1, 255]), ("test.arr.i8", VT.INT8, [-128, 0, 127]),
    ("test.arr.u16", VT.UINT16, [0, 65535]), ("test.arr.i16", VT.INT16, [-32768, 32767]),
    ("test.arr.u32", VT.UINT32, [0, 4294967295]), ("test.arr.i32", VT.INT32, [-2147483648, 7]),
    ("test.arr.f32", VT.FLOAT32, [exact_f32(x) for x in (0.5, -1.25e-3, 6.5e4)]),
    ("test.arr.bool", VT.BOOL, [True, False, True]),
    ("test.arr.string", VT.STRING, ["a", "", "\u00fcn\u00efc\u00f6d\u00e9"]),
    ("test.arr.u64", VT.UINT64, [0, 2**64 - 1]), ("test.arr.i64", VT.INT64, [-(2**63), 2**63 - 1]),
    ("test.arr.f64", VT.FLOAT64, [1e-300, -2.5]),
]


# GGUFWriter packs a list of lists as an array of arrays, inferring each
# inner element type (Python int -> i32, str -> string).
NESTED = [
    ("test.arr.nested_i32", VT.INT32, [[1, 2, 3], [4], [5, 6]]),
    ("test.arr.nested_str", VT.STRING, [["x", "yz"], ["w"]]),
    ("test.arr.nested3", VT.INT32, [[[1], [2, 3]], [[4]]]),  # three levels
]


def expected_nested(val, elem):
    if isinstance(val[0], list):
        return {"type": "array", "elem_type": "array",
                "value": [expected_nested(v, elem) for v in val]}
    return {"type": "array", "elem_type": TYPE_NAMES[elem], "value": val}


# ---- tensors ----------------------------------------------------------------
def f16_sample():
    """512 half bit patterns: a sweep of the 16-bit space (no NaN) plus the edges."""
    sweep = [h for h in range(0, 65536, 127) if (h & 0x7C00) != 0x7C00 or (h & 0x3FF) == 0]
    edges = [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x83FF, 0x0400, 0x8400, 0x7BFF, 0xFBFF,
             0x7C00, 0xFC00, 0x3C00, 0xBC00, 0x0200, 0x3555]
    pats = (edges + sweep)[:512]
    assert len(pats) == 512
    return np.array(pats, dtype=np.uint16).view(np.float16)


def k_quant_blocks(rng, qtype, n_blocks):
    """Random-but-valid raw Q4_K / Q6_K blocks: random bytes, finite f16 scales."""
    _, type_size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    d = (rng.standard_normal(n_blocks) * 1e-2).astype(np.float16).view(np.uint8).reshape(-1, 2)
    if qtype == QT.Q4_K:  # d at bytes 0-1, dmin at 2-3
        dmin = (np.abs(rng.standard_normal(n_blocks)) * 1e-2).astype(np.float16)
        raw[:, 0:2] = d
        raw[:, 2:4] = dmin.view(np.uint8).reshape(-1, 2)
    else:  # Q6_K: d is the last two bytes
        raw[:, -2:] = d
    return raw


def make_all_types():
    rng = np.random.default_rng(1234)
    w = gguf.GGUFWriter(os.path.join(GGUF_DIR, "all_types.gguf"), arch="llama")
    w.data_alignment = 64
    w.add_uint32("general.alignment", 64)
    w.add_name("all types fixture")
    meta = {"general.alignment": {"type": "u32", "value": 64},
            "general.architecture": {"type": "string", "value": "llama"},
            "general.name": {"type": "string", "value": "all types fixture"}}
    for key, t, v in SCALARS:
        w.add_key_value(key, v, t)
        meta[key] = {"type": TYPE_NAMES[t], "value": v}
    for key, t, v in ARRAYS:
        w.add_key_value(key, v, VT.ARRAY, sub_type=t)
        meta[key] = {"type": "array", "elem_type": TYPE_NAMES[t], "value": v}
    for key, elem, v in NESTED:
        w.add_array(key, v)
        meta[key] = expected_nested(v, elem)

    tensors = {}  # name -> (dtype name, numpy shape)

    def add(name, data, qtype, shape):
        w.add_tensor(name, data, raw_dtype=qtype if data.dtype == np.uint8 else None)
        tensors[name] = (qtype.name, list(shape))

    f32 = rng.standard_normal((2, 3, 32)).astype(np.float32)
    f32.flat[:4] = [0.0, -0.0, np.inf, np.finfo(np.float32).tiny / 4]
    add("t.f32", f32, QT.F32, f32.shape)
    f16 = f16_sample().reshape(2, 1, 8, 32)  # 4-D: ne = [32, 8, 1, 2]
    add("t.f16", f16, QT.F16, f16.shape)
    src = rng.standard_normal((4, 64)).astype(np.float32)
    for qt in (QT.BF16, QT.Q8_0, QT.Q4_0, QT.Q4_1):
        q = gguf.quants.quantize(src, qt)
        if qt == QT.BF16:  # quantize returns uint8 bytes; view as raw BF16
            q = q.view(np.uint8)
        add(f"t.{qt.name.lower()}", q.reshape(4, -1), qt, src.shape)
    for qt in (QT.Q4_K, QT.Q6_K):
        raw = k_quant_blocks(rng, qt, 2 * 2)  # 2 rows of 512 elements
        add(f"t.{qt.name.lower()}", raw.reshape(2, -1), qt, (2, 512))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    # The oracle: read the file back with gguf-py and dequantize every tensor.
    r = gguf.GGUFReader(os.path.join(GGUF_DIR, "all_types.gguf"))
    out = {"metadata": meta, "tensors": {}}
    for t in r.tensors:
        deq = gguf.quants.dequantize(t.data, t.tensor_type)
        dtype, shape = tensors[t.name]
        assert t.tensor_type.name == dtype, (t.name, t.tensor_type.name)
        assert deq.size == int(np.prod(shape)), (t.name, deq.shape, shape)
        out["tensors"][t.name] = {"dtype": dtype, "shape": shape, "bits": bits(deq)}
    for key in meta:
        assert key in r.fields, key
    with open(os.path.join(GGUF_DIR, "all_types_expected.json"), "w") as fh:
        json.dump(out, fh, separators=(",", ":"))
        fh.write("\n")


# ---- real model spot values ---------------------------------------------------
SPOT_TENSORS = [
    "model.embed_tokens.weight",                 # Q8_0
    "model.layers.0.self_attn.q_proj.weight",    # Q4_1, permuted with 9 heads
    "model.layers.0.self_attn.k_proj.weight",    # Q4_1, permuted with 3 KV heads
    "model.layers.7.self_attn.v_proj.weight",
    "model.layers.29.self_attn.o_proj.weight",
    "model.layers.13.mlp.gate_proj.weight",
    "model.layers.29.mlp.down_proj.weight",
    "model.layers.5.input_layernorm.weight",     # F32
    "model.norm.weight",
]


def spot(state, names, rng, per_tensor):
    out = {}
    for name in names:
        t = state[name].detach().float().contiguous().numpy()
        flat = t.ravel()
        idx = sorted(set(rng.integers(0, flat.size, size=per_tensor).tolist()) |
                     {0, flat.size - 1})
        out[name] = {"shape": list(t.shape), "index": idx, "bits": bits(flat[idx]),
                     "values": [float(flat[i]) for i in idx]}
    return out


def make_smollm2_spots():
    if not os.path.exists(MODEL):
        print(f"skip: {MODEL} absent", file=sys.stderr)
        return
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(MODEL), gguf_file=os.path.basename(MODEL), dtype=torch.float32)
    cfg = model.config
    state = model.state_dict()
    rng = np.random.default_rng(99)
    q = state["model.layers.0.self_attn.q_proj.weight"]
    out = {
        "oracle": "transformers AutoModelForCausalLM.from_pretrained(gguf_file=...), float32",
        "config": {"num_hidden_layers": cfg.num_hidden_layers, "hidden_size": cfg.hidden_size,
                   "intermediate_size": cfg.intermediate_size,
                   "num_attention_heads": cfg.num_attention_heads,
                   "num_key_value_heads": cfg.num_key_value_heads,
                   "head_dim": cfg.head_dim, "vocab_size": cfg.vocab_size,
                   "max_position_embeddings": cfg.max_position_embeddings,
                   "rms_norm_eps": cfg.rms_norm_eps,
                   "rope_theta": cfg.rope_parameters["rope_theta"],
                   "tie_word_embeddings": cfg.tie_word_embeddings},
        "tensors": spot(state, SPOT_TENSORS, rng, 24),
        # Whole rows 0..3 of q_proj: a wrong permutation shows up at once.
        "q_proj_rows_0_3_first8": {"bits": bits(q[:4, :8].numpy())},
    }
    with open(os.path.join(GGUF_DIR, "smollm2_spot_values.json"), "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    os.makedirs(GGUF_DIR, exist_ok=True)
    make_all_types()
    make_smollm2_spots()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import gguf_make_hf_tiny
    gguf_make_hf_tiny.make(HF_DIR)
