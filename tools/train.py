#!/usr/bin/python3
"""Trains terse's default small LM on the corpus of tools/corpus/ within a token or time budget.

    /usr/bin/python3 tools/train.py --tokens 32e6 [--resume]

Steps, each skipped when its output exists in the run directory (default
tools/runs/terse-small-en, gitignored):
  1. tokenizer.model / tokenizer.json: SentencePiece unigram, vocab 8000, options of
     lm_files.SPM_OPTIONS, trained on the lines of train.jsonl (or copied from --tokenizer-from);
  2. {train,val,test}.u16: the documents tokenized, each followed by eos;
  3. training: AdamW (lr 1e-3, betas 0.9/0.95, weight decay 0.1), 150 warm-up steps, cosine
     decay to 1e-4 over the token budget (--tokens) or the time budget (--minutes), bf16
     autocast on CPU (--fp32 to disable), batches of sequences that start with bos, a share of
     them (--copy-share) repeated passages and template lists that teach in-context copying.
     Checkpoints every --checkpoint-minutes to ckpt.pt and on SIGTERM/SIGINT; --resume
     continues from it with the same schedule. Writes final.pt at the end.

A run longer than one sitting on a machine that does not keep its run directory travels in
the repository: --carry FILE writes the weights and the schedule's position (no optimizer
moments, so a quarter of ckpt.pt's size) with every checkpoint, and --resume starts from
it when the run directory has no ckpt.pt, re-warming the fresh optimizer over --warmup steps.
"""

import argparse
import json
import math
import os
import random
import re
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import lm_files  # noqa: E402
from terse_lm import TerseLM, config_of, count_params  # noqa: E402

TOOLS = os.path.dirname(os.path.abspath(__file__))


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S ") + msg, flush=True)


def read_docs(path: str):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def ensure_tokenizer(run: str, corpus: str, vocab: int) -> None:
    if os.path.exists(os.path.join(run, "tokenizer.json")):
        return
    log("training the tokenizer")
    lines = os.path.join(run, "spm_input.txt")
    with open(lines, "w", encoding="utf-8") as f:
        for doc in read_docs(os.path.join(corpus, "train.jsonl")):
            for line in doc.split("\n"):
                if line.strip():
                    f.write(line + "\n")
    lm_files.train_tokenizer("spm_input.txt", "tokenizer", vocab, cwd=run,
                             input_sentence_size=3000000, shuffle_input_sentence=True,
                             minloglevel=1)
    os.remove(lines)
    lm_files.write_tokenizer_json(os.path.join(run, "tokenizer.model"),
                                  os.path.join(run, "tokenizer.json"))


def ensure_tokens(run: str, corpus: str, split: str) -> str:
    """Tokenizes a split into a flat uint16 stream; documents end with eos. Also writes the
    start offset of each document (for windows that begin at a document start)."""
    out = os.path.join(run, f"{split}.u16")
    if os.path.exists(out):
        return out
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=os.path.join(run, "tokenizer.model"))
    docs = read_docs(os.path.join(corpus, f"{split}.jsonl"))
    t0 = time.time()
    ids = sp.encode(docs)
    starts = []
    flat = []
    for d in ids:
        starts.append(len(flat))
        flat.extend(d)
        flat.append(sp.eos_id())
    np.asarray(flat, dtype=np.uint16).tofile(out + ".tmp")
    np.asarray(starts, dtype=np.int64).tofile(out + ".starts")
    os.replace(out + ".tmp", out)
    chars = sum(len(d) for d in docs)
    log(f"tokenized {split}: {len(docs)} docs, {len(flat)} tokens, "
        f"{chars / max(1, len(flat)):.2f} chars/token ({time.time() - t0:.0f} s)")
    return out


def load_stream(path: str):
    return (torch.from_numpy(np.fromfile(path, dtype=np.uint16).astype(np.int64)),
            np.fromfile(path + ".starts", dtype=np.int64))


def random_span(stream, starts, length: int, rng: random.Random, at_start: float = 0.5):
    """`length` stream tokens, beginning at a document start with probability `at_start`."""
    limit = len(stream) - length
    if rng.random() < at_start:
        return stream[min(int(starts[rng.randrange(len(starts))]), limit):][:length]
    i = rng.randrange(limit)
    return stream[i:i + length]


def repeat_row(stream, starts, seq: int, rng: random.Random):
    """A passage, other text, the same passage again, then more text: the second occurrence is
    predictable from the first, which teaches the model to copy from its window."""
    span = rng.randint(24, seq // 3)
    gap = rng.randint(0, seq - 2 * span)
    passage = random_span(stream, starts, span, rng)
    parts = [passage, random_span(stream, starts, gap, rng, 0.0), passage]
    parts.append(random_span(stream, starts, seq - 2 * span - gap, rng, 0.0))
    return torch.cat(parts)


class TemplateLists:
    """Few-shot-shaped lists: one sentence of the corpus made a template by turning some of its
    words into slots, then filled again and again with other words and numbers. The skeleton
    becomes predictable after the first item, the fillers never do, which is the split the
    compressor needs between a repeated demonstration format and its answers."""

    PREFIXES = ["", "{i}. ", "- ", "Example {i}: ", "Q{i}: ", "({i}) "]
    SEPARATORS = ["\n", "\n\n", " ", "\n---\n"]

    def __init__(self, docs, sp):
        self.docs = docs
        self.sp = sp

    def _sentence(self, rng: random.Random):
        for _ in range(20):
            doc = self.docs[rng.randrange(len(self.docs))]
            sentences = re.split(r"(?<=[.!?])\s+", doc)
            words = sentences[rng.randrange(len(sentences))].split()
            if 6 <= len(words) <= 40:
                return words
        return doc.split()[:30]

    def _filler(self, rng: random.Random, like: str) -> str:
        if any(c.isdigit() for c in like) or rng.random() < 0.3:
            n = rng.choice([rng.randint(0, 99), rng.randint(100, 9999), rng.randint(1, 999999)])
            text = str(n) if rng.random() < 0.8 else f"{n / 100:.2f}"
            return text + (like[-1] if like[-1] in ".,;:" else "")
        word = rng.choice(self._sentence(rng))
        return word.capitalize() if like[:1].isupper() else word

    def row(self, stream, starts, seq: int, rng: random.Random):
        words = self._sentence(rng)
        slots = [i for i, w in enumerate(words)
                 if any(c.isdigit() for c in w) or (i and w[:1].isupper()) or rng.random() < 0.25]
        if not slots:
            slots = [rng.randrange(len(words))]
        prefix = rng.choice(self.PREFIXES)
        separator = rng.choice(self.SEPARATORS)
        items = []
        for i in range(rng.randint(3, 8)):
            filled = list(words)
            for s in slots:
                filled[s] = self._filler(rng, words[s])
            items.append(prefix.format(i=i + 1) + " ".join(filled))
        ids = torch.tensor(self.sp.encode(separator.join(items)), dtype=torch.long)[:seq]
        rest = seq - len(ids)
        if rest == 0:
            return ids
        return torch.cat([ids, random_span(stream, starts, rest, rng, 1.0)])


def make_batch(stream, starts, batch: int, seq: int, bos: int, rng: random.Random,
               templates=None, copy_share: float = 0.0):
    """Sequences of bos + seq-1 tokens. Half of the plain rows begin at a document start,
    since scored text always begins right after bos; `copy_share` of the rows are repeated
    passages and template lists, split evenly."""
    rows = []
    for _ in range(batch):
        u = rng.random()
        if u < copy_share / 2:
            rows.append(repeat_row(stream, starts, seq, rng))
        elif u < copy_share and templates is not None:
            rows.append(templates.row(stream, starts, seq, rng))
        else:
            rows.append(random_span(stream, starts, seq, rng))
    x = torch.stack(rows)
    inp = torch.cat([torch.full((batch, 1), bos, dtype=torch.long), x[:, :-1]], dim=1)
    return inp, x


@torch.no_grad()
def copy_ratio(model, stream, starts, bos: int, span: int = 150, docs: int = 8) -> float:
    """Mean NLL of a passage's second occurrence in one window over its first's, on validation
    passages: near 1 for a model that cannot copy, near 0 for one that copies perfectly."""
    model.eval()
    first, second = 0.0, 0.0
    taken = 0
    for a, b in zip(starts[:-1], starts[1:]):
        if b - a < span + 1:
            continue
        passage = stream[a:a + span]
        inp = torch.cat([torch.tensor([bos]), passage, passage[:-1]]).unsqueeze(0)
        nll = F.cross_entropy(model(inp)[0], torch.cat([passage, passage]), reduction="none")
        first += nll[:span].mean().item()
        second += nll[span:].mean().item()
        taken += 1
        if taken == docs:
            break
    model.train()
    return second / max(first, 1e-9)


@torch.no_grad()
def doc_nll(model, stream, starts, bos: int, max_docs: int, seq: int, autocast: bool,
            eos: int = -1):
    """(sum of -log p, token count) over whole documents scored as bos + document, in windows
    of at most `seq` tokens (each window restarts after bos). With eos >= 0 the end-of-document
    token is not scored, so the figure is about the text alone."""
    model.eval()
    total, count = 0.0, 0
    bounds = list(starts[:max_docs + 1]) if max_docs < len(starts) else list(starts) + [len(stream)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        doc = stream[a:b]
        if eos >= 0 and len(doc) > 1 and int(doc[-1]) == eos:
            doc = doc[:-1]
        for w in range(0, len(doc), seq - 1):
            piece = doc[w:w + seq - 1]
            inp = torch.cat([torch.tensor([bos]), piece[:-1]]).unsqueeze(0)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                logits = model(inp)
            total += F.cross_entropy(logits[0].float(), piece, reduction="sum").item()
            count += len(piece)
    model.train()
    return total, count


def lr_at(step: int, frac: float, args, warm_from: int = 0) -> float:
    """Linear warm-up over args.warmup steps from `warm_from`, then cosine decay by `frac`."""
    frac = min(1.0, frac)
    cosine = args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * frac))
    if step - warm_from < args.warmup:
        return cosine * (step - warm_from + 1) / args.warmup
    return cosine


def main() -> None:
    ap = argparse.ArgumentParser(description="Train terse's default small LM.")
    ap.add_argument("--corpus", default=os.path.join(TOOLS, "corpus", "out"))
    ap.add_argument("--run", default=os.path.join(TOOLS, "runs", "terse-small-en"))
    ap.add_argument("--minutes", type=float, default=75.0, help="training time budget")
    ap.add_argument("--tokens", type=float, default=0,
                    help="training token budget; when set it replaces --minutes, so the "
                         "schedule does not depend on how busy the machine is")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--carry", default="",
                    help="a file that also receives each checkpoint's weights and schedule "
                         "position, to resume from when the run directory is gone")
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--context", type=int, default=512)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fp32", action="store_true", help="disable bf16 autocast")
    ap.add_argument("--checkpoint-minutes", type=float, default=4.0)
    ap.add_argument("--eval-minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--copy-share", type=float, default=0.2,
                    help="share of rows that repeat a passage or list items of one template")
    ap.add_argument("--tokenizer-from", default="",
                    help="a model directory whose tokenizer to reuse instead of training one")
    ap.add_argument("--log-every", type=int, default=5, help="steps between progress lines")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    os.makedirs(args.run, exist_ok=True)
    if args.tokenizer_from and not os.path.exists(os.path.join(args.run, "tokenizer.json")):
        for name in ("tokenizer.model", "tokenizer.json"):
            shutil.copyfile(os.path.join(args.tokenizer_from, name), os.path.join(args.run, name))
    ensure_tokenizer(args.run, args.corpus, args.vocab)
    tok = json.load(open(os.path.join(args.run, "tokenizer.json"), encoding="utf-8"))
    for split in ("train", "val", "test"):
        ensure_tokens(args.run, args.corpus, split)
    train, train_starts = load_stream(os.path.join(args.run, "train.u16"))
    val, val_starts = load_stream(os.path.join(args.run, "val.u16"))
    templates = None
    if args.copy_share > 0:
        import sentencepiece as spm
        templates = TemplateLists(read_docs(os.path.join(args.corpus, "train.jsonl")),
                                  spm.SentencePieceProcessor(
                                      model_file=os.path.join(args.run, "tokenizer.model")))

    torch.manual_seed(args.seed)
    model = TerseLM(vocab_size=tok["vocab_size"], max_context=args.context,
                    n_layer=args.layers, n_head=args.heads, d_model=args.d_model,
                    bos_id=tok["bos_id"], eos_id=tok["eos_id"], pad_id=tok["pad_id"],
                    unk_id=tok["unk_id"])
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    autocast = not args.fp32
    state = {"step": 0, "tokens": 0, "elapsed": 0.0, "history": []}
    rng = random.Random(args.seed)
    ckpt_path = os.path.join(args.run, "ckpt.pt")
    if args.resume and os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
        rng.setstate(ck["rng"])
        autocast = ck.get("autocast", autocast) and not args.fp32
        log(f"resumed at step {state['step']}, {state['elapsed'] / 60:.1f} min trained")
    elif args.resume and args.carry and os.path.exists(args.carry):
        ck = torch.load(args.carry)
        model.load_state_dict(ck["model"])
        state = ck["state"]
        state["warm_from"] = state["step"]
        rng.setstate(ck["rng"])
        log(f"resumed from {args.carry} at step {state['step']} "
            f"({state['tokens'] / 1e6:.2f}M tokens) with a fresh optimizer")
    non_emb, total = count_params(model)
    log(f"model: {non_emb / 1e6:.2f}M non-embedding / {total / 1e6:.2f}M params; "
        f"train stream {len(train)} tokens; bf16 autocast {autocast}")

    def save(path: str) -> None:
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state,
                    "rng": rng.getstate(), "config": config_of(model), "args": vars(args),
                    "autocast": autocast}, path + ".tmp")
        os.replace(path + ".tmp", path)
        if args.carry and path == ckpt_path:
            torch.save({"model": model.state_dict(), "state": state, "rng": rng.getstate(),
                        "config": config_of(model), "args": vars(args)}, args.carry + ".tmp")
            os.replace(args.carry + ".tmp", args.carry)

    budget = args.minutes * 60.0

    def progress() -> float:
        """The fraction of the budget spent: of tokens with --tokens, else of training time."""
        if args.tokens > 0:
            return state["tokens"] / args.tokens
        return state["elapsed"] / budget
    last_ckpt = last_eval = state["elapsed"]
    window_tokens, window_time = 0, 0.0
    loss_ema = None
    # SIGTERM/SIGINT: finish the step, checkpoint, exit; --resume continues from there.
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    model.train()
    while progress() < 1.0:
        if stop:
            save(ckpt_path)
            log(f"stopped at step {state['step']}; checkpoint saved, resume with --resume")
            return
        t0 = time.time()
        lr = lr_at(state["step"], progress(), args, state.get("warm_from", 0))
        for g in opt.param_groups:
            g["lr"] = lr
        inp, tgt = make_batch(train, train_starts, args.batch, args.context, tok["bos_id"], rng,
                              templates, args.copy_share)
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                logits = model(inp)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), tgt.view(-1))
        except RuntimeError as e:
            if not autocast:
                raise
            log(f"bf16 autocast failed ({e}); falling back to fp32")
            autocast = False
            continue
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        dt = time.time() - t0
        state["step"] += 1
        state["tokens"] += inp.numel()
        state["elapsed"] += dt
        window_tokens += inp.numel()
        window_time += dt
        lv = loss.item()
        loss_ema = lv if loss_ema is None else 0.95 * loss_ema + 0.05 * lv
        if state["step"] % args.log_every == 0:
            done = progress()
            eta = state["elapsed"] * (1 - done) / max(done, 1e-9)
            log(f"step {state['step']:5d} | {state['tokens'] / 1e6:6.2f}M tok | "
                f"{window_tokens / window_time:5.0f} tok/s | loss {loss_ema:.3f} "
                f"(ppl {math.exp(loss_ema):6.1f}) | lr {lr:.2e} | "
                f"{state['elapsed'] / 60:5.1f} min, {100 * done:4.1f}%, ETA {eta / 60:4.1f} min")
            window_tokens, window_time = 0, 0.0
        if state["elapsed"] - last_eval >= args.eval_minutes * 60:
            nll, n = doc_nll(model, val, val_starts, tok["bos_id"], 60, args.context, autocast)
            copy = copy_ratio(model, val, val_starts, tok["bos_id"])
            state["history"].append({"step": state["step"], "tokens": state["tokens"],
                                     "minutes": state["elapsed"] / 60,
                                     "val_ppl_subset": math.exp(nll / n), "copy_ratio": copy})
            log(f"eval: val perplexity (60 docs, {n} tokens) {math.exp(nll / n):.1f}, "
                f"copy ratio {copy:.2f}")
            last_eval = state["elapsed"]
        if state["elapsed"] - last_ckpt >= args.checkpoint_minutes * 60:
            save(ckpt_path)
            last_ckpt = state["elapsed"]
    save(ckpt_path)
    save(os.path.join(args.run, "final.pt"))
    log(f"done: {state['step']} steps, {state['tokens']} tokens, "
        f"{state['tokens'] / max(1.0, state['elapsed']):.0f} tok/s average")


if __name__ == "__main__":
    main()
