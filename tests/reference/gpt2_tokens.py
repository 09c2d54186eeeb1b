#!/usr/bin/env python3
"""Make tests/reference/gpt2_tokens.json: GPT-2's token ids, as OpenAI's tiktoken gives them, for
a list of awkward strings (non-ASCII, emoji, runs of spaces and newlines, contractions, numbers,
`<|endoftext|>` inside a text). The Rust tokenizer (`src/bpe.rs`) is checked against it.

tiktoken downloads its ranks on first use; offline, it reads them from a file instead. The
tiktoken-rs crate ships the same file (`assets/r50k_base.tiktoken`), so after a build:

    pip install tiktoken
    python3 tests/reference/gpt2_tokens.py --ranks ~/.cargo/registry/src/*/tiktoken-rs-0.12.1/assets/r50k_base.tiktoken

`--check` compares with the committed file instead of writing it.
"""
import argparse
import json
import os
import sys

import tiktoken
from tiktoken.load import load_tiktoken_bpe
from tiktoken_ext.openai_public import r50k_pat_str

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "gpt2_tokens.json")

TEXTS = [
    "",
    "Hello world",
    "Hello, world! How's it going? I'm fine; they'd've said so.",
    "  leading spaces, trailing spaces   ",
    "tabs\tand\nnewlines\n\n\nand\r\nwindows line ends",
    "     five spaces, then\n    four, then a blank line\n\n",
    "numbers: 0 1 12 123 1234 12345 3.14159 1e-5 -42 1,000,000",
    "ROMEO:\nBut, soft! what light through yonder window breaks?\nIt is the east, and Juliet is the sun.",
    "naïve café, résumé, Zürich, São Paulo, Ångström",
    "Ελληνικά, русский, עברית, العربية, हिन्दी",
    "日本語のテキストと中文文本",
    "emoji: 😀 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️",
    "a<|endoftext|>b",
    "<|endoftext|>",
    "code: fn main() { println!(\"{}\", x + 1); } // done",
    "URLs https://example.com/a?b=c&d=e#f and e-mail a.b@c.de",
    "MiXeD CaSe and ALL CAPS and snake_case and camelCase",
    "'s 't 're 've 'm 'll 'd 'S 'T",
    "!!! ??? ... --- ___ *** ###",
    "\u00a0non-breaking\u2003em space\u200bzero width",
    "x" * 300,
]


def encoding(ranks):
    return tiktoken.Encoding(
        "gpt2-local",
        pat_str=r50k_pat_str,
        mergeable_ranks=load_tiktoken_bpe(ranks),
        special_tokens={"<|endoftext|>": 50256},
    )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ranks", required=True, help="r50k_base.tiktoken (tiktoken-rs ships it)")
    p.add_argument("--check", action="store_true", help="compare with the committed file")
    args = p.parse_args()
    enc = encoding(args.ranks)
    cases = [
        {
            "text": text,
            # <|endoftext|> in a text is ordinary text unless asked otherwise
            "ordinary": enc.encode_ordinary(text),
            "special": enc.encode(text, allowed_special={"<|endoftext|>"}),
        }
        for text in TEXTS
    ]
    # one case a line
    rows = ",\n".join("  " + json.dumps(case, ensure_ascii=False) for case in cases)
    made = f'{{"tiktoken": "{tiktoken.__version__}", "cases": [\n{rows}\n]}}\n'
    if args.check:
        same = json.load(open(OUT, encoding="utf-8"))["cases"] == cases
        print("gpt2_tokens.json: the same" if same else "gpt2_tokens.json: DIFFERS")
        sys.exit(0 if same else 1)
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(made)
    print(f"wrote {OUT}: {len(cases)} texts")


if __name__ == "__main__":
    main()
