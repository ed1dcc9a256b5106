#!/usr/bin/env python3
"""Tokenizer oracle: Hugging Face transformers loading the same GGUF file that
kvstream loads. Writes three JSONL fixtures into --out-dir:

  smollm2_corpus.jsonl     per string: ids (add_special_tokens=False and True),
                           decode with and without skip_special_tokens
  smollm2_decode.jsonl     per random id sequence (random tokens, lone byte
                           tokens that form broken UTF-8, special tokens):
                           decode with and without skip_special_tokens
  smollm2_chat.jsonl       per conversation: apply_chat_template(tokenize=False)
                           with and without add_generation_prompt, and its ids
  pretokenize_corpus.jsonl per string: the pieces tokenizers' Split(Regex,
                           "isolated") makes with the GPT-2, Llama-3 and Qwen2
                           regexes (checks kvstream's RE2 translation, no model
                           needed)

    ~/.cache/kvstream/venv/bin/python tests/oracle/tokenizer_make_fixture.py \
        --model models/SmolLM2-135M-Instruct.Q4_1.gguf --out-dir tests/fixtures/tokenizer
"""
import argparse
import json
import os
import random

# The split regexes as the models publish them (same strings as
# engine/tokenizer/pre_tokenizer.cc).
REGEXES = {
    "gpt2": r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
    "llama3": r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
    "qwen2": r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
}

HANDWRITTEN = [
    # empty and whitespace
    "", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\n ", "a ", "a  ", "a   ", " a", "  a", "   a",
    "a  b", "a   b", "a\tb", "a\t\tb", "a \tb", "a\t b", "a\n\nb", "a \n b", "a\n \nb", "\t\tindented",
    "trailing spaces   ", "trailing tab\t", "trailing newline\n", "  both  ", "\n\n\nthree newlines",
    "word\r\nword\r\n", "x\u00a0y", "x\u00a0\u00a0y", "x \u00a0y", "x\u3000y", "x\u2028y", "x\u2029y", "x\u000by",
    "x\u000cy", "x\u0085y", "x\u200by", "x\ufeffy", "x\u2003\u2003y", "x\u180ey", "x\u205fy", " \u00a0word",
    "end with nbsp\u00a0", "\u3000\u3000全角", "tab\there\tand\tthere", "mixed \t \n \r\n end",
    # digits and numbers
    "0", "7", "42", "123", "1234", "12345678901234567890", "3.14159265358979", "1,000,000", "-273.15",
    " 42", "  42", "x42", "42x", "v1.2.3", "2024-06-01T12:34:56Z", "+1 (555) 123-4567", "0xDEADBEEF",
    "1e-9", "10²", "x²+y²=z²", " ²³", " ¹²³⁴", "½ cup", "١٢٣ ٤٥", "Ⅻ", "१२३", "①②", "๑๒๓", "1st 2nd 3rd 4th",
    "$9.99", "€12,50", "£3", "¥1000", "100%", "3/4", "π≈3.14",
    # punctuation and contractions
    "!!!", "...", "?!", "—", "–", "(a)", "[b]", "{c}", "<d>", "«quotes»", "“smart” ‘quotes’", "don't", "DON'T",
    "I'm", "I'M", "we'll", "they've", "you're", "he'd", "it's", "It'S", "'s", "''", "'''", "rock 'n' roll",
    "O'Neil's", "l’été", "Hello, world!", "Wait... what?!", "a--b", "a—b", "e.g. i.e. etc.", "@user #tag",
    "https://example.com/path?q=1&r=2#frag", "user@example.com", "C:\\Windows\\System32", "~/.bashrc",
    "***bold*** _it_ `code`", "| a | b |\n|---|---|", "-> => <= >= != ==", "#!/bin/bash",
    # code
    "def f(x):\n    return x * 2\n",
    "for i in range(10):\n\tprint(i)\n",
    "class Foo:\n    def __init__(self):\n        self.x = 1\n\n    def bar(self) -> int:\n        return self.x\n",
    "#include <vector>\nint main() {\n  std::vector<int> v{1, 2, 3};\n  return v.size();\n}\n",
    "template <typename T>\nT max(T a, T b) { return a > b ? a : b; }",
    "fn main() {\n    let s: &str = \"hi\";\n    println!(\"{}\", s);\n}\n",
    "const f = async (x) => { await fetch(`/api/${x}`); };",
    "func main() {\n\tfmt.Println(\"hello\")\n}",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
    "<html><body><p class=\"x\">Hi &amp; bye</p></body></html>",
    '{"key": [1, 2, {"nested": null}], "b": true}',
    "main :: IO ()\nmain = putStrLn \"hi\" >>= \\_ -> return ()",
    "if [ -f \"$FILE\" ]; then\n  echo ok\nfi",
    "    \n    \n",
    "x = [i**2 for i in range(100) if i % 3 == 0]",
    "    # comment with   spaces\n    pass",
    "public static void main(String[] args) {\n        System.out.println(\"Hi\");\n    }",
    "\\begin{equation} E = mc^2 \\end{equation}",
    # emoji
    "😀", "😀😃😄", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷🇯🇵", "❤️", "I ❤️ NY", "emoji at end 🎉", "🚀 launch",
    "👩🏾‍💻 coding", "🧑‍🤝‍🧑", "#️⃣", "☕ and 🍩", "🤷‍♀️🤷‍♂️",
    # CJK
    "你好，世界！", "東京は日本の首都です。", "ひらがなカタカナ", "한국어 텍스트입니다", "中文 English 混合",
    "漢字かな交じり文", "ｆｕｌｌｗｉｄｔｈ　ＡＢＣ", "《三国演义》", "これは「テスト」です。",
    # accents and combining marks
    "café", "cafe\u0301", "naïve résumé", "Ångström", "Tiếng Việt", "Zürich Straße", "ﬁ ligature",
    "Z\u0351\u0353a\u0342l\u0357g\u0344o", "a\u0300\u0301\u0302", "e\u0308", "ñ n\u0303", "ǅ ǈ ǋ",
    # other scripts
    "مرحبا بالعالم", "שלום עולם", "Привет, мир!", "Ελληνικά γράμματα", "สวัสดีครับ", "नमस्ते दुनिया",
    "தமிழ் எழுத்து", "Բարեւ", "ქართული", "አማርኛ", "ܫܠܡܐ", "ⴰⵣⵓⵍ", "Hello مرحبا שלום Привет",
    # special tokens inside text
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>user\nHi<|im_end|>\n",
    "a<|im_end|>b", "<|im_start|><|im_end|>", "<|im_start", "im_start|>", "< |im_start|>", "<<|im_end|>>",
    "<repo_name>kvstream<file_sep>main.cc", "<reponame>x", "<filename>a.py\n<gh_stars>10",
    "<jupyter_start><jupyter_code>print(1)<jupyter_output>1<empty_output>", " <|im_end|> ",
    "text <|endoftext|> more text", "<|im_start|>system\nYou are helpful.<|im_end|>",
    # control bytes and odd characters
    "\x00", "a\x00b", "\x1b[31mred\x1b[0m", "\x7f", "\u0007bell", "\ufffd", "\U0010ffff", "\u2603 snowman",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𝟘𝟙𝟚", "ﷺ", "\u202eright-to-left override",
    # bytes with no byte token in SmolLM2's vocabulary (0x04, 0x06, 0x13,
    # 0x14, 0x16, 0x1d; lead bytes 0xF1/0xF2 of planes 4-12): <unk>, fused
    "\x04", "\x04\x06", "a\x13\x14b", "\x16 \x1d", "\U00050000", "x\U00050000\U00090000y",
    # mixed
    "The quick brown fox jumps over the lazy dog.",
    "In 2023, 42% of 1,234 users said: \"I'm fine\" — or not? 🤔",
    "Mixed: café 東京 🚀 123 <|im_end|> end",
    "Line one.\nLine two.\n\nParagraph two.\n",
    "   leading and trailing   \n",
]

POOL = (
    list(" " * 12) + list("\t\n\r") + ["\n\n", "  ", "\u00a0", "\u3000"] + list("abcdefghijklmnopqrstuvwxyz" * 2)
    + list("ABCDEFXYZ") + list("0123456789" * 2) + list(".,;:!?'\"-()[]{}<>/\\|@#$%^&*_+=~`")
    + ["'s", "'ll", "'T", "é", "ü", "ß", "ñ", "\u0301", "²", "½", "٣", "東", "京", "한", "ж", "ш", "ع", "ש",
       "😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "\u200d", "\ufe0f", "—", "…", "€", "<|im_end|>", "<|im_start|>",
       "the", " the", "ing", "tion", "def ", "return", "    "]
)


def random_strings(n, seed=1234):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(1, 40)
        out.append("".join(rng.choice(POOL) for _ in range(k)))
    return out


def corpus():
    texts = list(HANDWRITTEN) + random_strings(160)
    texts.append("The history of the Roman Empire is a story of conquest and decline. " * 20)
    texts.append("".join(chr(c) for c in range(0x20, 0x7f)))
    texts.append("".join(chr(c) for c in range(0xa0, 0x180)))
    seen, unique = set(), []
    for t in texts:
        if t not in seen:
            seen.add(t)
            unique.append(t)
    return unique


CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a joke."}],
    [{"role": "assistant", "content": "I speak first."}, {"role": "user", "content": "OK"}],
    [{"role": "user", "content": "  spaces around  \n"}, {"role": "assistant", "content": ""}],
    [{"role": "system", "content": "Système: réponds en français 🇫🇷"},
     {"role": "user", "content": "東京はどこ？\nAnd <|im_end|> inside"}],
    [{"role": "user", "content": "Line1\nLine2\n\n```python\nprint(1)\n```"}],
]


def decode_cases(tok, seed=99):
    """Random id sequences: any tokens, and lone byte tokens whose bytes form
    truncated or ill-formed UTF-8 (checks U+FFFD placement)."""
    rng = random.Random(seed)
    vocab = tok.get_vocab()
    byte_chars = [c for c in map(chr, list(range(0x21, 0x7f)) + list(range(0xa1, 0x100)) + list(range(0x100, 0x144)))
                  if c in vocab]
    byte_ids = [vocab[c] for c in byte_chars]
    n = len(vocab)
    cases = []
    for _ in range(150):
        cases.append([rng.randrange(n) if rng.random() < 0.9 else rng.randrange(17) for _ in range(rng.randint(1, 12))])
    for _ in range(150):
        cases.append([rng.choice(byte_ids) for _ in range(rng.randint(1, 8))])
    return cases


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="path to the .gguf file")
    ap.add_argument("--out-dir", required=True)
    args = ap.parse_args()

    from tokenizers import Regex, pre_tokenizers
    from transformers import AutoTokenizer

    model_dir, gguf_file = os.path.split(os.path.abspath(args.model))
    tok = AutoTokenizer.from_pretrained(model_dir, gguf_file=gguf_file)
    os.makedirs(args.out_dir, exist_ok=True)

    texts = corpus()
    with open(os.path.join(args.out_dir, "smollm2_corpus.jsonl"), "w", encoding="utf-8") as f:
        for t in texts:
            ids = tok.encode(t, add_special_tokens=False)
            rec = {
                "text": t,
                "ids": ids,
                "ids_special": tok.encode(t, add_special_tokens=True),
                "decoded": tok.decode(ids),
                "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
            }
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")

    with open(os.path.join(args.out_dir, "smollm2_decode.jsonl"), "w", encoding="utf-8") as f:
        for ids in decode_cases(tok):
            rec = {"ids": ids, "decoded": tok.decode(ids),
                   "decoded_skip_special": tok.decode(ids, skip_special_tokens=True)}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")

    with open(os.path.join(args.out_dir, "smollm2_chat.jsonl"), "w", encoding="utf-8") as f:
        for conv in CONVERSATIONS:
            for gen in (False, True):
                text = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen)
                rec = {"messages": conv, "add_generation_prompt": gen, "text": text,
                       "ids": tok.encode(text, add_special_tokens=False)}
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")

    splitters = {name: pre_tokenizers.Split(Regex(rx), behavior="isolated") for name, rx in REGEXES.items()}
    with open(os.path.join(args.out_dir, "pretokenize_corpus.jsonl"), "w", encoding="utf-8") as f:
        for t in texts:
            rec = {"text": t}
            for name, sp in splitters.items():
                rec[name] = [piece for piece, _ in sp.pre_tokenize_str(t)]
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print(f"wrote {len(texts)} strings, {2 * len(CONVERSATIONS)} chats to {args.out_dir}")


if __name__ == "__main__":
    main()
