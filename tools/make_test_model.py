#!/usr/bin/python3
"""Makes a tiny random-weight model directory with the real layout, for fast tests.

    /usr/bin/python3 tools/make_test_model.py OUT_DIR [--copy-context 3]

Writes model.pt (d_model 32, 2 layers, 2 heads, context 128; with --copy-context, the copy
component with fixed weights TEST_COPY_WEIGHT), a tiny SentencePiece tokenizer
trained with the real options on generated text, tokenizer.json and model.json. Deterministic:
fixed seeds and a single-threaded tokenizer trainer. Takes a few seconds.
"""

import argparse
import os
import random
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import lm_files  # noqa: E402
from terse_lm import TerseLM, config_of, count_params, script  # noqa: E402

TOOLS_DIR = os.path.dirname(os.path.abspath(__file__))
# Copy weight by longest match length 0..3: strong for long matches, so tests see copying.
TEST_COPY_WEIGHT = [0.0, 0.1, 0.5, 0.9]


def tiny_corpus() -> str:
    """Generated English-like lines plus the hand-written evaluation text: enough variety for a
    few hundred pieces, including digits, punctuation and whitespace runs."""
    rng = random.Random(1234)
    subjects = ["the model", "a user", "the gateway", "our team", "the server", "this prompt",
                "every request", "the cache", "a student", "the old sailor"]
    verbs = ["compresses", "reads", "sends", "keeps", "drops", "counts", "scores", "writes",
             "answers", "forgets"]
    objects = ["the long context", "twelve tokens", "a short question", "the system message",
               "all the examples", "three documents", "the final answer", "its own notes"]
    tails = [" quickly.", " in 2024.", " before noon.", " again and again.", "!", "?",
             " with 3.5 percent loss.", " (see section 4)."]
    lines = []
    for _ in range(3000):
        line = (rng.choice(subjects) + " " + rng.choice(verbs) + " " + rng.choice(objects) +
                rng.choice(tails))
        lines.append(line[0].upper() + line[1:])
    lines.append("def f(x):  return x  *  2")
    lines.append("    indented    line   with   runs")
    with open(os.path.join(TOOLS_DIR, "data", "ood_eval.txt"), encoding="utf-8") as f:
        lines.extend(l for l in f.read().split("\n") if l.strip())
    return "\n".join(lines) + "\n"


def main() -> None:
    # TorchScript writes a module's constants in set order: pin the hash seed so two runs give
    # byte-identical files.
    if os.environ.get("PYTHONHASHSEED") != "0":
        env = dict(os.environ, PYTHONHASHSEED="0")
        os.execve(sys.executable, [sys.executable] + sys.argv, env)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--copy-context", type=int, default=0, choices=[0, 3])
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "tiny.txt"), "w", encoding="utf-8") as f:
            f.write(tiny_corpus())
        # Relative names: the trainer records them in tokenizer.model.
        model_path = lm_files.train_tokenizer("tiny.txt", "tokenizer", 512, cwd=tmp,
                                              minloglevel=2)
        with open(os.path.join(tmp, model_path), "rb") as src, \
                open(os.path.join(args.out_dir, "tokenizer.model"), "wb") as dst:
            dst.write(src.read())
    tok = lm_files.write_tokenizer_json(os.path.join(args.out_dir, "tokenizer.model"),
                                        os.path.join(args.out_dir, "tokenizer.json"))

    torch.manual_seed(0)
    model = TerseLM(vocab_size=tok["vocab_size"], max_context=128, n_layer=2, n_head=2,
                    d_model=32, bos_id=tok["bos_id"], eos_id=tok["eos_id"],
                    pad_id=tok["pad_id"], unk_id=tok["unk_id"], copy_context=args.copy_context,
                    copy_weight=TEST_COPY_WEIGHT if args.copy_context else None)
    for p in model.parameters():
        p.requires_grad_(False)
    lm_files.save_scripted(script(model), os.path.join(args.out_dir, "model.pt"))
    non_emb, total = count_params(model)
    lm_files.write_card(args.out_dir, {
        "name": "terse-tiny-test",
        "description": "Random weights, for tests only: scores are meaningless.",
        "architecture": dict(config_of(model), kind="terse-gpt", tied_embeddings=True,
                             positions="learned", norm="pre-layernorm"),
        "params": {"non_embedding": non_emb, "total": total},
        "dtype": "float32",
        "tokenizer": {k: v for k, v in tok.items() if k != "pieces"},
    })
    print(f"wrote {args.out_dir}: vocab {tok['vocab_size']}, {total} params")


if __name__ == "__main__":
    main()
