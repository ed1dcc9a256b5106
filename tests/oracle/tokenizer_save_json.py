#!/usr/bin/env python3
"""Writes the tokenizer.json + tokenizer_config.json that transformers builds
from a GGUF file (its GGUF converter, then save_pretrained). The C++ test
tests/engine/tokenizer/tokenizer_json_test.cc runs this at test time into its
build directory, so the 3.5 MB file is never committed.

    ~/.cache/kvstream/venv/bin/python tests/oracle/tokenizer_save_json.py \
        --model models/SmolLM2-135M-Instruct.Q4_1.gguf --out-dir /tmp/smollm2_tok
"""
import argparse
import os


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="path to the .gguf file")
    ap.add_argument("--out-dir", required=True)
    args = ap.parse_args()

    from transformers import AutoTokenizer

    model_dir, gguf_file = os.path.split(os.path.abspath(args.model))
    tok = AutoTokenizer.from_pretrained(model_dir, gguf_file=gguf_file)
    tok.save_pretrained(args.out_dir)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if not os.path.exists(os.path.join(args.out_dir, name)):
            raise SystemExit(f"save_pretrained wrote no {name}")


if __name__ == "__main__":
    main()
