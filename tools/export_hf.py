#!/usr/bin/python3
"""Exports a Hugging Face causal LM to terse's model layout (needs `transformers`; not run here).

    python3 tools/export_hf.py --hf gpt2 --out models/gpt2
    python3 tools/export_hf.py --hf Qwen/Qwen2.5-0.5B --out models/qwen2.5-0.5b --dtype float16
    python3 tools/export_hf.py --hf meta-llama/Llama-3.2-1B --out models/llama-3.2-1b

Supported families (config.model_type): gpt2; llama, mistral (no sliding window), qwen2. The HF
weights are loaded into TorchScript-ready re-implementations below (HfGpt2, HfLlama) rather than
traced through transformers, so the exported module has exactly the interface of terse_lm.py:
forward(ids, attention_mask=None) and forward_cached(ids, past, attention_mask=None), positions
from the mask, the same integer attributes. For grouped-query attention the cache stores keys
and values expanded to n_head heads, as the contract states. RoPE scaling other than none is
refused. Before writing, the script compares the exported logits with transformers' own on a
sample text (max abs difference recorded in model.json).

Tokenizer: the model's SentencePiece model is copied to tokenizer.model when it has one. If it
is a unigram model with identity normalization, tokenizer.json is written in terse's format and
terse's C++ encoder reads it. Otherwise (byte-level BPE: GPT-2, Llama 3, Qwen), the Hugging Face
tokenizer file is saved as hf_tokenizer.json and tokenizer.json records
{"format": "hf-tokenizers", ...}; terse's C++ LmTokenizer reports Unimplemented for it until a
BPE encoder is added.
"""

import argparse
import json
import math
import os
import sys
from typing import List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import lm_files  # noqa: E402


def _positions_and_bias(ids: Tensor, p: int, attention_mask: Optional[Tensor],
                        max_context: int) -> Tuple[Tensor, Tensor]:
    """Positions of the new tokens and the additive attention bias [B, 1, T, P+T], with the
    semantics of terse_lm.TerseLM.forward_cached."""
    b = ids.size(0)
    t = ids.size(1)
    total = p + t
    device = ids.device
    key_index = torch.arange(total, device=device)
    query_index = torch.arange(p, total, device=device)
    allowed = (key_index.view(1, total) <= query_index.view(t, 1)).view(1, 1, t, total)
    if attention_mask is not None:
        mask = attention_mask.to(device=device, dtype=torch.long)
        positions = (torch.cumsum(mask, dim=1) - mask)[:, p:]
        allowed = allowed & (mask > 0).view(b, 1, 1, total)
    else:
        positions = query_index.view(1, t).expand(b, t)
    positions = positions.clamp(0, max_context - 1)
    zero = torch.zeros(1, device=device, dtype=torch.float32)
    masked = torch.full([1], -1.0e9, device=device, dtype=torch.float32)
    return positions, torch.where(allowed, zero, masked)


def _split_heads(x: Tensor, n_head: int, head_dim: int) -> Tensor:
    """[B, T, n_head * head_dim] -> [B, n_head, T, head_dim]."""
    return x.view(x.size(0), x.size(1), n_head, head_dim).transpose(1, 2)


def _append_past(k: Tensor, v: Tensor, past_k: Optional[Tensor],
                 past_v: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """The cached keys/values followed by the new tokens' ones, along the time axis."""
    if past_k is not None and past_v is not None:
        k = torch.cat([past_k.to(k.dtype), k], dim=2)
        v = torch.cat([past_v.to(v.dtype), v], dim=2)
    return k, v


def _attend(q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
    """Scaled dot-product attention with the softmax in fp32; returns [B, T, n_head * head_dim]
    with the heads merged back."""
    scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(q.size(-1)))
    att = torch.softmax(scores.float() + bias, dim=-1)
    y = torch.matmul(att.to(v.dtype), v)
    return y.transpose(1, 2).contiguous().view(q.size(0), q.size(2), -1)


def _past_length(past: List[Tensor]) -> int:
    """P, the number of cached positions; 0 for an empty cache."""
    if len(past) > 0:
        return past[0].size(2)
    return 0


def _layer_past(past: List[Tensor], i: int,
                p: int) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """Layer i's cached keys and values (k0, v0, k1, v1, ... layout); None when P is 0."""
    if p > 0:
        return past[2 * i], past[2 * i + 1]
    return None, None


class _TerseInterface(nn.Module):
    """forward() of terse's contract in terms of the subclass's forward_cached()."""

    def forward(self, ids: Tensor, attention_mask: Optional[Tensor] = None) -> Tensor:
        empty: List[Tensor] = []
        logits, _ = self.forward_cached(ids, empty, attention_mask)
        return logits


class Gpt2Block(nn.Module):
    def __init__(self, d_model: int, n_head: int, eps: float, activation: str):
        super().__init__()
        self.n_head = n_head
        self.head_dim = d_model // n_head
        self.tanh_gelu = activation in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
        self.ln_1 = nn.LayerNorm(d_model, eps=eps)
        self.c_attn = nn.Linear(d_model, 3 * d_model)
        self.c_proj = nn.Linear(d_model, d_model)
        self.ln_2 = nn.LayerNorm(d_model, eps=eps)
        self.c_fc = nn.Linear(d_model, 4 * d_model)
        self.mlp_proj = nn.Linear(4 * d_model, d_model)

    def forward(self, x: Tensor, bias: Tensor, past_k: Optional[Tensor],
                past_v: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
        q, k, v = self.c_attn(self.ln_1(x)).split(x.size(2), dim=2)
        q = _split_heads(q, self.n_head, self.head_dim)
        k = _split_heads(k, self.n_head, self.head_dim)
        v = _split_heads(v, self.n_head, self.head_dim)
        k, v = _append_past(k, v, past_k, past_v)
        x = x + self.c_proj(_attend(q, k, v, bias))
        h = self.c_fc(self.ln_2(x))
        if self.tanh_gelu:
            h = F.gelu(h, approximate="tanh")
        else:
            h = F.gelu(h)
        return x + self.mlp_proj(h), k, v


class HfGpt2(_TerseInterface):
    """GPT-2 with terse's interface. Weight names follow HF after load_hf_state()."""

    def __init__(self, vocab_size: int, max_context: int, n_layer: int, n_head: int,
                 d_model: int, eps: float, activation: str, bos_id: int, eos_id: int,
                 pad_id: int, unk_id: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.max_context = max_context
        self.n_layer = n_layer
        self.n_head = n_head
        self.d_model = d_model
        self.head_dim = d_model // n_head
        self.bos_id = bos_id
        self.eos_id = eos_id
        self.pad_id = pad_id
        self.unk_id = unk_id
        self.wte = nn.Embedding(vocab_size, d_model)
        self.wpe = nn.Embedding(max_context, d_model)
        self.blocks = nn.ModuleList([Gpt2Block(d_model, n_head, eps, activation)
                                     for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(d_model, eps=eps)

    @torch.jit.export
    def forward_cached(self, ids: Tensor, past: List[Tensor],
                       attention_mask: Optional[Tensor] = None) -> Tuple[Tensor, List[Tensor]]:
        p = _past_length(past)
        positions, bias = _positions_and_bias(ids, p, attention_mask, self.max_context)
        x = self.wte(ids) + self.wpe(positions)
        new_past: List[Tensor] = []
        for i, block in enumerate(self.blocks):
            past_k, past_v = _layer_past(past, i, p)
            x, k, v = block(x, bias, past_k, past_v)
            new_past.append(k)
            new_past.append(v)
        logits = F.linear(self.ln_f(x), self.wte.weight)
        return logits.float(), new_past


def gpt2_state_from_hf(hf: dict, n_layer: int) -> dict:
    """Maps transformers' GPT2LMHeadModel state to HfGpt2's. HF's Conv1D stores weights as
    [in, out]; nn.Linear wants [out, in]."""
    out = {"wte.weight": hf["transformer.wte.weight"], "wpe.weight": hf["transformer.wpe.weight"],
           "ln_f.weight": hf["transformer.ln_f.weight"], "ln_f.bias": hf["transformer.ln_f.bias"]}
    names = {"ln_1": "ln_1", "ln_2": "ln_2", "attn.c_attn": "c_attn", "attn.c_proj": "c_proj",
             "mlp.c_fc": "c_fc", "mlp.c_proj": "mlp_proj"}
    for i in range(n_layer):
        for src, dst in names.items():
            w = hf[f"transformer.h.{i}.{src}.weight"]
            out[f"blocks.{i}.{dst}.weight"] = w if src.startswith("ln_") else w.t().contiguous()
            out[f"blocks.{i}.{dst}.bias"] = hf[f"transformer.h.{i}.{src}.bias"]
    return out


class RmsNorm(nn.Module):
    def __init__(self, d: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


def _rotate_half(x: Tensor) -> Tensor:
    half = x.size(-1) // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class LlamaBlock(nn.Module):
    def __init__(self, d_model: int, n_head: int, n_kv_head: int, head_dim: int, d_ff: int,
                 eps: float, qkv_bias: bool):
        super().__init__()
        self.n_head = n_head
        self.n_kv_head = n_kv_head
        self.head_dim = head_dim
        self.input_layernorm = RmsNorm(d_model, eps)
        self.q_proj = nn.Linear(d_model, n_head * head_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(d_model, n_kv_head * head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(d_model, n_kv_head * head_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(n_head * head_dim, d_model, bias=False)
        self.post_attention_layernorm = RmsNorm(d_model, eps)
        self.gate_proj = nn.Linear(d_model, d_ff, bias=False)
        self.up_proj = nn.Linear(d_model, d_ff, bias=False)
        self.down_proj = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: Tensor, bias: Tensor, cos: Tensor, sin: Tensor,
                past_k: Optional[Tensor], past_v: Optional[Tensor]
                ) -> Tuple[Tensor, Tensor, Tensor]:
        h = self.input_layernorm(x)
        q = _split_heads(self.q_proj(h), self.n_head, self.head_dim)
        k = _split_heads(self.k_proj(h), self.n_kv_head, self.head_dim)
        v = _split_heads(self.v_proj(h), self.n_kv_head, self.head_dim)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        if self.n_kv_head != self.n_head:
            rep = self.n_head // self.n_kv_head
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        k, v = _append_past(k, v, past_k, past_v)
        x = x + self.o_proj(_attend(q, k, v, bias))
        h = self.post_attention_layernorm(x)
        x = x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))
        return x, k, v


class HfLlama(_TerseInterface):
    """Llama / Mistral / Qwen2 with terse's interface (RMSNorm, RoPE, SwiGLU, GQA)."""

    def __init__(self, vocab_size: int, max_context: int, n_layer: int, n_head: int,
                 n_kv_head: int, d_model: int, d_ff: int, eps: float, rope_theta: float,
                 qkv_bias: bool, tie_embeddings: bool, bos_id: int, eos_id: int, pad_id: int,
                 unk_id: int, head_dim: int = 0):
        super().__init__()
        self.vocab_size = vocab_size
        self.max_context = max_context
        self.n_layer = n_layer
        self.n_head = n_head
        self.d_model = d_model
        self.head_dim = head_dim or d_model // n_head
        self.bos_id = bos_id
        self.eos_id = eos_id
        self.pad_id = pad_id
        self.unk_id = unk_id
        self.tie_embeddings = tie_embeddings
        self.embed_tokens = nn.Embedding(vocab_size, d_model)
        self.blocks = nn.ModuleList([
            LlamaBlock(d_model, n_head, n_kv_head, self.head_dim, d_ff, eps, qkv_bias)
            for _ in range(n_layer)])
        self.norm = RmsNorm(d_model, eps)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        inv_freq = 1.0 / (rope_theta ** (torch.arange(0, self.head_dim, 2).float() /
                                         self.head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    @torch.jit.export
    def forward_cached(self, ids: Tensor, past: List[Tensor],
                       attention_mask: Optional[Tensor] = None) -> Tuple[Tensor, List[Tensor]]:
        p = _past_length(past)
        positions, bias = _positions_and_bias(ids, p, attention_mask, self.max_context)
        x = self.embed_tokens(ids)
        freqs = positions.to(torch.float32).unsqueeze(-1) * self.inv_freq  # [B, T, hd/2]
        emb = torch.cat([freqs, freqs], dim=-1).unsqueeze(1)  # [B, 1, T, hd]
        cos = emb.cos().to(x.dtype)
        sin = emb.sin().to(x.dtype)
        new_past: List[Tensor] = []
        for i, block in enumerate(self.blocks):
            past_k, past_v = _layer_past(past, i, p)
            x, k, v = block(x, bias, cos, sin, past_k, past_v)
            new_past.append(k)
            new_past.append(v)
        x = self.norm(x)
        if self.tie_embeddings:
            logits = F.linear(x, self.embed_tokens.weight)
        else:
            logits = self.lm_head(x)
        return logits.float(), new_past


def llama_state_from_hf(hf: dict, n_layer: int, tie: bool) -> dict:
    out = {"embed_tokens.weight": hf["model.embed_tokens.weight"],
           "norm.weight": hf["model.norm.weight"],
           "lm_head.weight": hf["model.embed_tokens.weight"] if tie else hf["lm_head.weight"]}
    for i in range(n_layer):
        pre = f"model.layers.{i}."
        for name in ("input_layernorm", "post_attention_layernorm"):
            out[f"blocks.{i}.{name}.weight"] = hf[pre + name + ".weight"]
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            out[f"blocks.{i}.{name}.weight"] = hf[pre + "self_attn." + name + ".weight"]
            if pre + "self_attn." + name + ".bias" in hf:
                out[f"blocks.{i}.{name}.bias"] = hf[pre + "self_attn." + name + ".bias"]
        for name in ("gate_proj", "up_proj", "down_proj"):
            out[f"blocks.{i}.{name}.weight"] = hf[pre + "mlp." + name + ".weight"]
    return out


def _id(value, default: int) -> int:
    if isinstance(value, list):
        value = value[0] if value else None
    return default if value is None else int(value)


def build_from_config(cfg: dict, max_context: int, special: dict) -> nn.Module:
    """The terse-interface module for an HF config (a plain dict: config.to_dict())."""
    kind = cfg["model_type"]
    ids = dict(bos_id=_id(special.get("bos_id", cfg.get("bos_token_id")), 0),
               eos_id=_id(special.get("eos_id", cfg.get("eos_token_id")), 0),
               pad_id=_id(special.get("pad_id", cfg.get("pad_token_id")),
                          _id(cfg.get("eos_token_id"), 0)),
               unk_id=_id(special.get("unk_id"), -1))
    if kind == "gpt2":
        return HfGpt2(vocab_size=cfg["vocab_size"],
                      max_context=min(max_context, cfg["n_positions"]),
                      n_layer=cfg["n_layer"], n_head=cfg["n_head"], d_model=cfg["n_embd"],
                      eps=cfg.get("layer_norm_epsilon", 1e-5),
                      activation=cfg.get("activation_function", "gelu_new"), **ids)
    if kind in ("llama", "mistral", "qwen2"):
        scaling = cfg.get("rope_scaling")
        if scaling and scaling.get("rope_type", scaling.get("type")) not in (None, "default"):
            raise SystemExit(f"rope_scaling {scaling} is not supported")
        if kind == "mistral" and cfg.get("sliding_window") and \
                cfg["sliding_window"] < max_context:
            raise SystemExit("choose --max-context <= the model's sliding_window")
        n_head = cfg["num_attention_heads"]
        return HfLlama(vocab_size=cfg["vocab_size"],
                       max_context=min(max_context, cfg["max_position_embeddings"]),
                       n_layer=cfg["num_hidden_layers"], n_head=n_head,
                       n_kv_head=cfg.get("num_key_value_heads") or n_head,
                       d_model=cfg["hidden_size"], d_ff=cfg["intermediate_size"],
                       eps=cfg.get("rms_norm_eps", 1e-6),
                       rope_theta=float(cfg.get("rope_theta", 10000.0)),
                       qkv_bias=kind == "qwen2" or bool(cfg.get("attention_bias", False)),
                       tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
                       head_dim=cfg.get("head_dim") or 0, **ids)
    raise SystemExit(f"model_type {kind!r} is not supported (gpt2, llama, mistral, qwen2)")


def convert_state(cfg: dict, hf_state: dict) -> dict:
    if cfg["model_type"] == "gpt2":
        return gpt2_state_from_hf(hf_state, cfg["n_layer"])
    return llama_state_from_hf(hf_state, cfg["num_hidden_layers"],
                               bool(cfg.get("tie_word_embeddings", False)))


def architecture_card(module: nn.Module, cfg: dict) -> dict:
    return {"kind": "hf-" + cfg["model_type"], "vocab_size": module.vocab_size,
            "max_context": module.max_context, "n_layer": module.n_layer,
            "n_head": module.n_head, "d_model": module.d_model, "head_dim": module.head_dim,
            "bos_id": module.bos_id, "eos_id": module.eos_id, "pad_id": module.pad_id,
            "unk_id": module.unk_id}


def write_tokenizer(tokenizer, out: str) -> dict:
    """Writes the tokenizer files; returns the tokenizer section of the card."""
    spm_file = getattr(tokenizer, "vocab_file", None)
    if spm_file and str(spm_file).endswith(".model") and os.path.exists(spm_file):
        import shutil
        shutil.copyfile(spm_file, os.path.join(out, "tokenizer.model"))
        try:
            doc = lm_files.write_tokenizer_json(os.path.join(out, "tokenizer.model"),
                                                os.path.join(out, "tokenizer.json"))
            if not doc["add_dummy_prefix"] and not doc["remove_extra_whitespaces"]:
                return {k: v for k, v in doc.items() if k != "pieces"}
        except ValueError as e:
            print(f"tokenizer is not terse-unigram compatible ({e})", file=sys.stderr)
    tokenizer.backend_tokenizer.save(os.path.join(out, "hf_tokenizer.json"))
    doc = {"format": "hf-tokenizers", "file": "hf_tokenizer.json",
           "vocab_size": len(tokenizer), "bos_id": tokenizer.bos_token_id,
           "eos_id": tokenizer.eos_token_id, "pad_id": tokenizer.pad_token_id,
           "unk_id": tokenizer.unk_token_id}
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description="Export a Hugging Face causal LM to terse's layout.")
    ap.add_argument("--hf", required=True, help="model id or local directory")
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-context", type=int, default=2048)
    ap.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    ap.add_argument("--name", default="")
    ap.add_argument("--revision", default=None)
    args = ap.parse_args()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.hf, revision=args.revision)
    hf_model = AutoModelForCausalLM.from_pretrained(args.hf, revision=args.revision,
                                                    torch_dtype=torch.float32)
    hf_model.eval()
    cfg = hf_model.config.to_dict()
    os.makedirs(args.out, exist_ok=True)
    tok_card = write_tokenizer(tokenizer, args.out)
    special = {k: tok_card.get(k) for k in ("bos_id", "eos_id", "pad_id", "unk_id")}
    module = build_from_config(cfg, args.max_context, special)
    missing, unexpected = module.load_state_dict(convert_state(cfg, hf_model.state_dict()),
                                                 strict=False)
    missing = [m for m in missing if not m.endswith("inv_freq")]
    if missing or unexpected:
        raise SystemExit(f"weight mapping failed: missing {missing}, unexpected {unexpected}")
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)

    # Check against transformers itself before exporting.
    sample = "terse compresses prompts before they reach the model. " * 4
    ids = torch.tensor([[module.bos_id] + tokenizer(sample, add_special_tokens=False)
                        ["input_ids"][:module.max_context - 1]])
    with torch.no_grad():
        ref = hf_model(ids).logits.float()
        ours = module(ids)
    diff = (ref - ours).abs().max().item()
    print(f"max |logits - transformers logits| = {diff:.2e}")
    if diff > 1e-3 * max(1.0, ref.abs().max().item()):
        raise SystemExit("exported module disagrees with transformers")

    dtype = {"float32": torch.float32, "float16": torch.float16,
             "bfloat16": torch.bfloat16}[args.dtype]
    module = module.to(dtype)
    scripted = torch.jit.script(module)
    lm_files.save_scripted(scripted, os.path.join(args.out, "model.pt"))
    total = sum(p.numel() for p in module.parameters())
    lm_files.write_card(args.out, {
        "name": args.name or os.path.basename(os.path.normpath(args.hf)),
        "description": f"Exported from Hugging Face {args.hf} by tools/export_hf.py.",
        "source": {"hf_model": args.hf, "revision": args.revision,
                   "model_type": cfg["model_type"]},
        "architecture": architecture_card(module, cfg),
        "params": {"total": total},
        "dtype": args.dtype,
        "tokenizer": tok_card,
        "export_check_max_abs_diff": diff,
    })
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
