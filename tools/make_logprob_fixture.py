#!/usr/bin/python3
"""Writes per-token log-probabilities of a fixed text under a model directory, so the C++
scorer can be checked against Python.

    /usr/bin/python3 tools/make_logprob_fixture.py MODEL_DIR OUT_JSON

OUT_JSON: {"model_dir", "model_sha256", "text", "ids", "logprobs"}: ids = [bos_id] + the
SentencePiece ids of text; logprobs[i] = log p(ids[i+1] | ids[0..i]) from model.pt's forward
in float32, one per token of the text.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import lm_files  # noqa: E402

TOOLS = os.path.dirname(os.path.abspath(__file__))

# Short enough to fit the tiny test model's 128-token context with its 512-piece vocabulary.
TEXT = ("In 2023, LLMLingua kept the question and dropped words a small model can guess.\n"
        "def keep(t):\n    return [x for x in t if x.score > 0.5]\n"
        "Caf\u00e9 \u2014 +3.5% \U0001F4C8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("out_json")
    args = ap.parse_args()
    import sentencepiece as spm
    torch.set_num_threads(1)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(args.model_dir, "tokenizer.model"))
    model = torch.jit.load(os.path.join(args.model_dir, "model.pt"))
    model.eval()
    ids = [int(model.bos_id)] + sp.encode(TEXT)
    if len(ids) > int(model.max_context):
        raise SystemExit(f"{len(ids)} tokens exceed the model context {int(model.max_context)}")
    with torch.no_grad():
        logits = model(torch.tensor([ids]))[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    values = [logp[i, ids[i + 1]].item() for i in range(len(ids) - 1)]
    model_dir = os.path.relpath(os.path.abspath(args.model_dir), os.path.dirname(TOOLS))
    doc = {"model_dir": model_dir,
           "model_sha256": lm_files.sha256_file(os.path.join(args.model_dir, "model.pt")),
           "text": TEXT, "ids": ids, "logprobs": [round(v, 6) for v in values]}
    os.makedirs(os.path.dirname(os.path.abspath(args.out_json)), exist_ok=True)
    with open(args.out_json, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(values)} log-probs to {args.out_json}")


if __name__ == "__main__":
    main()
