#!/usr/bin/env python3
"""Greedy-decoding oracle: Hugging Face transformers (fp32, CPU) on the same GGUF
file kvstream loads. Writes, per prompt, the prompt ids, 32 greedy token ids and
the log-softmax of each chosen token. The C++ parity test
(tests/engine/model/parity_test.cc) compares kvstream's run against this file;
with KVSTREAM_LIVE_ORACLE=1 it re-runs this script instead of reading the
committed fixture.

    ~/.cache/kvstream/venv/bin/python tests/oracle/parity_make_fixture.py \
        --model models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --out tests/fixtures/parity/smollm2_greedy.json
"""
import argparse
import hashlib
import json
import os
import sys
import time

PROMPTS = [
    ("prose", "The history of the Roman Empire is a story of"),
    ("code", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"),
    ("digits", "Count: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,"),
    ("non_ascii", "Le café où nous étions coûtait 3,50 € — très cher! 東京は日本の首都です。"),
    ("emoji", "My favourite emoji are 😀🎉🚀 because"),
    ("chat", "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
             "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"),
    ("long_prose", "In the beginning of the twentieth century, the small town by the river had "
                   "only one bakery, two churches and a school. " * 6 + "Years later,"),
    ("json", '{"name": "kvstream", "version": 3, "strategies": ["dense", "akv", '),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--new-tokens", type=int, default=32)
    args = ap.parse_args()

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    d, f = os.path.split(os.path.abspath(args.model))
    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    model.eval()
    print(f"[oracle] loaded in {time.time() - t0:.1f}s", file=sys.stderr)

    out = {
        "model_file": f,
        "model_sha256": hashlib.sha256(open(args.model, "rb").read()).hexdigest(),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "new_tokens": args.new_tokens,
        "prompts": [],
    }
    for i, (name, text) in enumerate(PROMPTS):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        x = torch.tensor([ids])
        gen, lps, margins = [], [], []
        past = None
        with torch.no_grad():
            for _ in range(args.new_tokens):
                o = model(input_ids=x, past_key_values=past, use_cache=True)
                past = o.past_key_values
                logits = o.logits[0, -1].float()
                lp = torch.log_softmax(logits.double(), -1)
                top2 = torch.topk(logits, 2)
                nxt = int(torch.argmax(logits))
                gen.append(nxt)
                lps.append(float(lp[nxt]))
                margins.append(float(top2.values[0] - top2.values[1]))
                x = torch.tensor([[nxt]])
        out["prompts"].append({"name": name, "text": text, "prompt_ids": ids, "tokens": gen,
                               "logprobs": lps, "top2_margin": margins})
        print(f"[oracle] {i + 1}/{len(PROMPTS)} {name}: {len(ids)} prompt tokens -> "
              f"{tok.decode(gen)!r}", file=sys.stderr)
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
