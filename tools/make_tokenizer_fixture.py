#!/usr/bin/python3
"""Writes the expected SentencePiece ids for a varied text set, for the C++ tokenizer test.

    /usr/bin/python3 tools/make_tokenizer_fixture.py MODEL_DIR OUT_JSON

OUT_JSON holds {"model_dir", "tokenizer_sha256", "cases": [{"text", "ids"}]}, ids from the Python
SentencePiece model MODEL_DIR/tokenizer.model. tests/compressor/lm_tokenizer_test.cc checks that
compressor/lm_tokenizer.cc reproduces them. Deterministic.
"""

import argparse
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lm_files  # noqa: E402

TOOLS = os.path.dirname(os.path.abspath(__file__))

FIXED = [
    "",
    " ",
    "   ",
    "a",
    "Hello, world!",
    " leading space and trailing space ",
    "double  spaces   and    more     spaces",
    "tabs\tand\t\ttabs",
    "line one\nline two\n\nline four\r\nwindows line",
    "\n\n\n",
    "Numbers: 0 7 42 3.14159 -17 1,000,000 2024-05-01 0x1F 1e-9",
    "Phone +1 (555) 010-9999, ISBN 978-3-16-148410-0.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))  # 5\n",
    "for (int i = 0; i < n; ++i) { sum += v[i]; }",
    '{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}',
    "<html><body><p class=\"x\">Text &amp; more</p></body></html>",
    "https://example.com/path?query=1&other=two#frag",
    "user@example.org wrote: > quoted text",
    "Caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber stra\u00dfe \u00e5ngstr\u00f6m",
    "\u00c9l\u00e8ve, \u00e7a va? Se\u00f1or \u00d1and\u00fa",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac",
    "\u4f60\u597d\uff0c\u4e16\u754c\u3002\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3002\ud55c\uad6d\uc5b4",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645 \u05e9\u05dc\u05d5\u05dd",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e \u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35",
    "Emoji: \U0001F600 \U0001F44D\U0001F3FD \U0001F468\u200D\U0001F469\u200D\U0001F467 \u2764\ufe0f \U0001F1EB\U0001F1F7",
    "Math: \u2200x \u2208 \u211d, x\u00b2 \u2265 0; \u222b f(x) dx \u2248 \u03c0",
    "Quotes \u201csmart\u201d and \u2018single\u2019 \u2014 dashes \u2013 and\u2026 ellipsis",
    "zero\u200bwidth\u00a0nbsp\u2002en-space\u3000ideographic",
    "Control \x01\x02\x7f chars and NUL \x00 inside",
    "\u2581 literal lower one eighth block \u2581\u2581",
    "<s> </s> <unk> <pad> <0x41> look like special pieces",
    "MiXeD CaSe WORDS and ALLCAPS and lowercase",
    "a" * 300,
    "ab " * 120,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "Q: What is 17 * 23?\nA: 391.",
]


def varied_cases(rng: random.Random, n: int):
    """Random strings mixing ASCII words, digits, whitespace runs and characters of many
    scripts, to reach paths the fixed cases miss."""
    alphabet = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") +
                list(" \t\n.,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`") +
                ["\u00e9", "\u00fc", "\u00df", "\u4e2d", "\u6587", "\u3042", "\u0416",
                 "\u03a9", "\u2581", "\U0001F600", "\U0001F680", "\u00a0", "\u200d", "\ufe0f"])
    words = ["the", "model", "token", "compress", "prompt", " ", "  ", "\n", "and", "of",
             "ing", "ed", "tion", "re", "un"]
    for _ in range(n):
        parts = []
        for _ in range(rng.randrange(1, 30)):
            if rng.random() < 0.5:
                parts.append(rng.choice(words))
            else:
                parts.append("".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 6))))
        yield "".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("out_json")
    args = ap.parse_args()
    import sentencepiece as spm
    model_path = os.path.join(args.model_dir, "tokenizer.model")
    sp = spm.SentencePieceProcessor(model_file=model_path)
    texts = list(FIXED)
    with open(os.path.join(TOOLS, "data", "ood_eval.txt"), encoding="utf-8") as f:
        ood = f.read()
    texts.append(ood)
    texts.extend(p for p in ood.split("\n\n") if p)
    texts.extend(varied_cases(random.Random(7), 300))
    cases = [{"text": t, "ids": sp.encode(t)} for t in texts]
    # Recorded relative to the repository root, where tests run.
    model_dir = os.path.relpath(os.path.abspath(args.model_dir), os.path.dirname(TOOLS))
    doc = {"model_dir": model_dir, "tokenizer_sha256": lm_files.sha256_file(model_path), "cases": cases}
    os.makedirs(os.path.dirname(os.path.abspath(args.out_json)), exist_ok=True)
    with open(args.out_json, "w", encoding="utf-8") as f:
        # One case per line keeps the file small and its diffs readable.
        f.write('{"model_dir": %s,\n"tokenizer_sha256": %s,\n"cases": [\n' %
                (json.dumps(doc["model_dir"]), json.dumps(doc["tokenizer_sha256"])))
        f.write(",\n".join(json.dumps(c, ensure_ascii=False) for c in cases))
        f.write("\n]}\n")
    print(f"wrote {len(cases)} cases, {sum(len(c['ids']) for c in cases)} ids to {args.out_json}")


if __name__ == "__main__":
    main()
