#!/usr/bin/python3
"""Distribution alignment: fine-tunes a model directory on text the target LLM wrote.

    /usr/bin/python3 tools/align.py --model models/terse-small-en --data pairs.jsonl \\
        --out models/terse-small-en-aligned [--steps 200] [--lr 1e-4] [--batch 8]

Each JSONL line is {"prompt": ..., "response": ...}. A pair is scored as
bos + prompt + "\\n" + response, the loss counting only the response tokens, so the small LM
learns what the target LLM finds predictable (LLMLingua's alignment step). The TorchScript
module is trained as loaded, so any model directory of terse's layout whose tokenizer.model is
a SentencePiece model works. The output directory has the same layout; its model.json is the
base card plus an "alignment" record (data sha256, pairs, steps, optimizer, losses before and
after on the alignment data, base model digest).
"""

import argparse
import json
import math
import os
import random
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import lm_files  # noqa: E402


def load_pairs(path: str):
    """The (prompt, response) pairs of a JSONL file. A last line without its newline is one the
    gateway is still writing (the file may be read while terse runs): it is left out."""
    pairs = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.endswith("\n"):
                print(f"{path}:{n}: an unfinished last line, left out", file=sys.stderr)
                break
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise SystemExit(f"{path}:{n}: not JSON: {e}")
            if not isinstance(obj, dict):
                raise SystemExit(f"{path}:{n}: want {{\"prompt\": str, \"response\": str}}")
            if not isinstance(obj.get("prompt"), str) or not isinstance(obj.get("response"), str):
                raise SystemExit(f"{path}:{n}: want {{\"prompt\": str, \"response\": str}}")
            if obj["response"]:
                pairs.append((obj["prompt"], obj["response"]))
    if not pairs:
        raise SystemExit(f"{path}: no pairs with a response")
    return pairs


def encode_pair(sp, prompt: str, response: str, bos: int, max_len: int):
    """(ids, labels): labels are -100 outside the response. The prompt is cut from the left
    when the pair does not fit, so the response and the text right before it survive."""
    p = sp.encode(prompt + "\n")
    r = sp.encode(response)[:max_len - 2]
    p = p[-(max_len - 1 - len(r)):] if max_len - 1 - len(r) > 0 else []
    ids = [bos] + p + r
    labels = [-100] * (1 + len(p)) + r
    return ids, labels


def batches(examples, batch: int, pad: int, rng: random.Random):
    """Endless shuffled batches: (ids, attention_mask, next-token labels)."""
    order = list(range(len(examples)))
    while True:
        rng.shuffle(order)
        for i in range(0, len(order), batch):
            yield collate([examples[j] for j in order[i:i + batch]], pad)


def collate(chunk, pad: int):
    width = max(len(ids) for ids, _ in chunk)
    ids = torch.full((len(chunk), width), pad, dtype=torch.long)
    mask = torch.zeros((len(chunk), width), dtype=torch.long)
    labels = torch.full((len(chunk), width), -100, dtype=torch.long)
    for row, (x, y) in enumerate(chunk):
        ids[row, :len(x)] = torch.tensor(x)
        mask[row, :len(x)] = 1
        # Position t predicts token t+1.
        labels[row, :len(y) - 1] = torch.tensor(y[1:])
    return ids, mask, labels


def batch_loss(model, ids, mask, labels):
    logits = model(ids, mask)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1),
                           ignore_index=-100)


@torch.no_grad()
def mean_loss(model, examples, pad: int, batch: int) -> float:
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(examples), batch):
        ids, mask, labels = collate(examples[i:i + batch], pad)
        n = int((labels != -100).sum())
        total += batch_loss(model, ids, mask, labels).item() * n
        count += n
    model.train()
    return total / max(1, count)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description="Fine-tune a terse model directory on "
                                             "{prompt, response} pairs.")
    ap.add_argument("--model", required=True, help="input model directory")
    ap.add_argument("--data", required=True, help="JSONL of {prompt, response}")
    ap.add_argument("--out", required=True, help="output model directory")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--max-len", type=int, default=0, help="0: the model's max_context")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    import sentencepiece as spm

    card = lm_files.read_card(args.model)
    model = torch.jit.load(os.path.join(args.model, "model.pt"))
    sp = spm.SentencePieceProcessor(model_file=os.path.join(args.model, "tokenizer.model"))
    bos, pad = int(model.bos_id), int(model.pad_id)
    max_len = args.max_len or int(model.max_context)
    pairs = load_pairs(args.data)
    examples = [encode_pair(sp, p, r, bos, max_len) for p, r in pairs]

    for p in model.parameters():
        p.requires_grad_(True)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95),
                            weight_decay=args.weight_decay)
    loss_before = mean_loss(model, examples, pad, args.batch)
    print(f"alignment data: {len(pairs)} pairs; loss before {loss_before:.4f}", flush=True)
    t0 = time.time()
    stream = batches(examples, args.batch, pad, random.Random(args.seed))
    for step in range(1, args.steps + 1):
        ids, mask, labels = next(stream)
        loss = batch_loss(model, ids, mask, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 10 == 0 or step == args.steps:
            print(f"step {step}/{args.steps} loss {loss.item():.4f}", flush=True)
    loss_after = mean_loss(model, examples, pad, args.batch)
    print(f"loss after {loss_after:.4f} ({time.time() - t0:.0f} s)", flush=True)

    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    os.makedirs(args.out, exist_ok=True)
    lm_files.save_scripted(model, os.path.join(args.out, "model.pt"))
    for name in ("tokenizer.model", "tokenizer.json"):
        shutil.copyfile(os.path.join(args.model, name), os.path.join(args.out, name))
    base_manifest = os.path.join(args.model, "corpus-manifest.json")
    if os.path.exists(base_manifest):
        shutil.copyfile(base_manifest, os.path.join(args.out, "corpus-manifest.json"))
    record = {
        "base_model": card.get("name", os.path.basename(os.path.normpath(args.model))),
        "base_model_sha256": card.get("files", {}).get("model.pt", {}).get("sha256"),
        "data_sha256": lm_files.sha256_file(args.data),
        "pairs": len(pairs),
        "response_tokens": sum(sum(1 for y in lab if y != -100) for _, lab in examples),
        "steps": args.steps,
        "batch": args.batch,
        "optimizer": {"kind": "AdamW", "lr": args.lr, "betas": [0.9, 0.95],
                      "weight_decay": args.weight_decay, "schedule": "constant"},
        "seed": args.seed,
        "loss_before": loss_before,
        "loss_after": loss_after,
        "perplexity_before": math.exp(loss_before),
        "perplexity_after": math.exp(loss_after),
    }
    new_card = {k: v for k, v in card.items() if k != "files"}
    new_card["name"] = record["base_model"] + "-aligned"
    new_card["alignment"] = record
    lm_files.write_card(args.out, new_card)
    return record


if __name__ == "__main__":
    main()
