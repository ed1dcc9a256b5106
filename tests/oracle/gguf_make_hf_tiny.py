#!/usr/bin/env python3
"""Writes tests/fixtures/hf_tiny/: a 2-layer random Llama as a Hugging Face
folder, and kvstream_expected.json with the values transformers loads from it.

Called by gguf_make_fixtures.py (or alone: python gguf_make_hf_tiny.py [DIR]).
The weights are stored in mixed dtypes (F32 norms, BF16 attention and
embedding, F16 MLP and lm_head) so the safetensors reader meets all three.
"""
import json
import os
import sys

import numpy as np

CORPUS = """The quick brown fox jumps over the lazy dog. A tiny model for tests.
kvstream reads safetensors and GGUF files; every read is bounded.
Hello world! Bonjour le monde. Hallo Welt. 12345 67890.
The cache holds keys and values for every layer of the model.
""" * 4

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
                 "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
                 "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def bits(a):
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).ravel().tolist()


def make_tokenizer(out_dir):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(CORPUS.splitlines(), trainer=trainer)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as fh:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": None,
                   "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                   "unk_token": None, "add_bos_token": False, "add_eos_token": False,
                   "chat_template": CHAT_TEMPLATE}, fh, indent=1)
        fh.write("\n")
    return tok.get_vocab_size()


def make(out_dir):
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    os.makedirs(out_dir, exist_ok=True)
    n_tokens = make_tokenizer(out_dir)
    cfg = LlamaConfig(
        hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, vocab_size=320, max_position_embeddings=256,
        rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=None, eos_token_id=2,
        pad_token_id=0,
        rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 2.0,
                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 128})
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):  # not all ones, so a swap would show
                p.copy_(1 + 0.1 * torch.randn_like(p))
    model.save_pretrained(out_dir)
    for extra in ("generation_config.json",):
        if os.path.exists(os.path.join(out_dir, extra)):
            os.remove(os.path.join(out_dir, extra))

    def dtype_for(name):
        if "norm" in name:
            return torch.float32
        if "mlp" in name or name == "lm_head.weight":
            return torch.float16
        return torch.bfloat16

    state = {k: v.detach().to(dtype_for(k)).contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    os.chmod(os.path.join(out_dir, "model.safetensors"), 0o644)

    # The oracle: transformers loads the folder back as float32.
    loaded = LlamaForCausalLM.from_pretrained(out_dir, dtype=torch.float32)
    rng = np.random.default_rng(7)
    tensors = {}
    for name, t in sorted(loaded.state_dict().items()):
        flat = t.detach().float().numpy().ravel()
        idx = sorted(set(rng.integers(0, flat.size, size=12).tolist()) | {0, flat.size - 1})
        tensors[name] = {"shape": list(t.shape), "dtype": str(state[name].dtype).split(".")[-1],
                         "index": idx, "bits": bits(flat[idx])}
    c = loaded.config
    out = {"oracle": "transformers LlamaForCausalLM.from_pretrained(dtype=float32)",
           "n_tokens": n_tokens,
           "config": {"num_hidden_layers": c.num_hidden_layers, "hidden_size": c.hidden_size,
                      "intermediate_size": c.intermediate_size,
                      "num_attention_heads": c.num_attention_heads,
                      "num_key_value_heads": c.num_key_value_heads, "head_dim": c.head_dim,
                      "vocab_size": c.vocab_size,
                      "max_position_embeddings": c.max_position_embeddings,
                      "rms_norm_eps": c.rms_norm_eps, "rope_parameters": c.rope_parameters,
                      "tie_word_embeddings": c.tie_word_embeddings},
           "tensors": tensors}
    with open(os.path.join(out_dir, "kvstream_expected.json"), "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    make(sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests", "fixtures", "hf_tiny"))
