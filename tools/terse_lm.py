"""terse's small causal LM: the model definition shared by training, export and tests.

GPT-style decoder: pre-LayerNorm blocks, learned absolute positions, tied input/output
embeddings and hand-written causal attention (torch 1.13 has no fused attention). The module
is written so that `torch.jit.script` compiles it unchanged; the scripted module is what the
C++ scorer loads.

Contract relied on by compressor/ (keep in sync with models/README.md):
  forward(ids[B,T] int64, attention_mask[B,T] or None) -> logits[B,T,V] float32
  forward_cached(ids[B,T], past, attention_mask[B,P+T] or None) -> (logits[B,T,V], new_past)
    past: 2*n_layer tensors k0, v0, k1, v1, ... each [B, n_head, P, head_dim]; [] means P=0.
    new_past holds the old past followed by the new tokens' keys/values (P grows by T).
  attention_mask: 1 for real tokens, 0 for padding; masked keys are never attended.
  Position of a token = number of real (mask 1) tokens before it in its row; without a mask
  the new tokens take positions P..P+T-1. Positions past max_context-1 are clamped, so
  callers must slide their window before reaching max_context.
  Integer attributes: vocab_size, max_context, n_layer, n_head, d_model, head_dim, bos_id,
  eos_id, pad_id, unk_id, past_tensors (the length of past; absent in older modules, where it
  is 2*n_layer). Text is scored with bos_id prepended.

Copy component (copy_context > 0; copy_matches): the network's next-token distribution is mixed
with one read off the window itself, as an induction head would: the tokens that followed the earlier
occurrences of the longest context (up to copy_context tokens) that ends at this position.
The mixing weight depends on that longest match's length (copy_weight[length]). The logits
are then log-probabilities, which the contract's readers (softmax, logsumexp) take unchanged.
Past gets one more tensor, the window's token ids as [B, 1, P, 1] int64, so that the cached
path sees the same window as the full one.
"""

import math
from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

class Block(nn.Module):
    """One pre-LayerNorm transformer block; returns the new tokens' keys and values too."""

    def __init__(self, d_model: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.head_dim = d_model // n_head
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc = nn.Linear(d_model, 4 * d_model)
        self.fc_out = nn.Linear(4 * d_model, d_model)

    def forward(self, x: Tensor, bias: Tensor, past_k: Optional[Tensor],
                past_v: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        # Scaled before the product: t x head_dim values instead of t x keys.
        scale = 1.0 / math.sqrt(self.head_dim)
        q = q.view(b, t, self.n_head, self.head_dim).transpose(1, 2) * scale
        k = k.view(b, t, self.n_head, self.head_dim).transpose(1, 2)
        v = v.view(b, t, self.n_head, self.head_dim).transpose(1, 2)
        if past_k is not None and past_v is not None:
            k = torch.cat([past_k.to(k.dtype), k], dim=2)
            v = torch.cat([past_v.to(v.dtype), v], dim=2)
        # Softmax in fp32 even under bf16 autocast: the mask constant and the normalisation
        # need the range. The bias is added in place (the product's output is not needed for
        # the backward pass).
        scores = torch.matmul(q, k.transpose(-2, -1)).float()
        att = torch.softmax(scores.add_(bias), dim=-1)
        y = torch.matmul(att.to(v.dtype), v)
        y = y.transpose(1, 2).contiguous().view(b, t, c)
        x = x + self.proj(y)
        x = x + self.fc_out(F.gelu(self.fc(self.ln2(x))))
        return x, k, v


def copy_matches(ids: Tensor, query: Tensor, copy_context: int) -> Tuple[Tensor, Tensor, Tensor]:
    """For a window ids[B,N] of real tokens (unique negative values stand for padding, which
    matches nothing) and query[B,T] positions in it, returns (match[B,T], weight[B,T,N],
    following[B,N]): the length of the longest context ending at each query that also ends at
    an earlier position (capped at copy_context; 0 when none); over the earlier positions j,
    the copy distribution's weight (those where that longest match ends, normalised; zeros
    when none); and the token after each position (0 past the end), which those weights
    predict. The copy distribution of query t gives token v the weight of the j with
    following[j] == v."""
    b, n = ids.shape
    t = query.size(1)
    device = ids.device
    # run[b, t, j]: the last k + 1 tokens before query t equal those before position j. Values
    # outside the window are sentinels below every id and padding value, different per side.
    run = torch.ones(b, t, n, dtype=torch.bool, device=device)
    length = torch.zeros(b, t, n, dtype=torch.uint8, device=device)
    for k in range(0, min(copy_context, n)):
        at_query = torch.where(query >= k, ids.gather(1, (query - k).clamp_min(0)),
                               torch.full_like(query, -n - 10))
        at_key = torch.cat([torch.full_like(ids[:, :k], -n - 20), ids[:, :n - k]], dim=1)
        run = run & (at_query.view(b, t, 1) == at_key.view(b, 1, n))
        length = length + run.to(torch.uint8)
    earlier = torch.arange(n, device=device).view(1, 1, n) < query.view(b, t, 1)
    length = length * earlier.to(torch.uint8)
    match = length.max(dim=2)[0].to(torch.int64)
    weight = ((length == match.view(b, t, 1)) & (match.view(b, t, 1) > 0)).to(torch.float32)
    weight = weight / weight.sum(dim=2, keepdim=True).clamp_min(1.0)
    following = torch.cat([ids[:, 1:], torch.zeros(b, 1, dtype=ids.dtype, device=ids.device)],
                          dim=1).clamp_min(0)
    return match, weight, following


class TerseLM(nn.Module):
    def __init__(self, vocab_size: int, max_context: int = 512, n_layer: int = 6,
                 n_head: int = 4, d_model: int = 256, bos_id: int = 1, eos_id: int = 2,
                 pad_id: int = 3, unk_id: int = 0, copy_context: int = 0,
                 copy_weight: Optional[List[float]] = None):
        super().__init__()
        assert d_model % n_head == 0
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
        self.copy_context = copy_context
        self.past_tensors = 2 * n_layer + (1 if copy_context > 0 else 0)
        weights = copy_weight if copy_weight is not None else [0.0] * (copy_context + 1)
        assert len(weights) == copy_context + 1 and weights[0] == 0.0
        assert all(0.0 <= w < 1.0 for w in weights)
        # Not in state_dict: training checkpoints stay the network's; export sets the mix.
        self.register_buffer("copy_weight", torch.tensor(weights, dtype=torch.float32),
                             persistent=False)
        self.wte = nn.Embedding(vocab_size, d_model)
        self.wpe = nn.Embedding(max_context, d_model)
        self.blocks = nn.ModuleList([Block(d_model, n_head) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(d_model)
        self._init_weights()

    def _init_weights(self):
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02
                # Residual projections scaled down so the residual stream does not grow with
                # depth (GPT-2's initialisation).
                if name.endswith("proj.weight") or name.endswith("fc_out.weight"):
                    std = 0.02 / math.sqrt(2 * self.n_layer)
                nn.init.normal_(p, mean=0.0, std=std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, ids: Tensor, attention_mask: Optional[Tensor] = None) -> Tensor:
        empty: List[Tensor] = []
        logits, _ = self.forward_cached(ids, empty, attention_mask)
        return logits

    @torch.jit.export
    def forward_cached(self, ids: Tensor, past: List[Tensor],
                       attention_mask: Optional[Tensor] = None) -> Tuple[Tensor, List[Tensor]]:
        b = ids.size(0)
        t = ids.size(1)
        p = 0
        if len(past) > 0:
            p = past[0].size(2)
        total = p + t
        device = ids.device
        key_index = torch.arange(total, device=device)
        query_index = torch.arange(p, total, device=device)
        allowed = (key_index.view(1, total) <= query_index.view(t, 1)).view(1, 1, t, total)
        if attention_mask is not None:
            mask = attention_mask.to(device=device, dtype=torch.long)
            # Number of real tokens strictly before each token of the full row.
            positions = (torch.cumsum(mask, dim=1) - mask)[:, p:]
            allowed = allowed & (mask > 0).view(b, 1, 1, total)
        else:
            positions = query_index.view(1, t).expand(b, t)
        positions = positions.clamp(0, self.max_context - 1)
        zero = torch.zeros(1, device=device, dtype=torch.float32)
        # Finite, so a row with no visible key (all padding) gets a uniform softmax, not NaN.
        masked = torch.full([1], -1.0e9, device=device, dtype=torch.float32)
        bias = torch.where(allowed, zero, masked)

        x = self.wte(ids) + self.wpe(positions)
        new_past: List[Tensor] = []
        for i, block in enumerate(self.blocks):
            past_k: Optional[Tensor] = None
            past_v: Optional[Tensor] = None
            if p > 0:
                past_k = past[2 * i]
                past_v = past[2 * i + 1]
            x, k, v = block(x, bias, past_k, past_v)
            new_past.append(k)
            new_past.append(v)
        x = self.ln_f(x)
        logits = F.linear(x, self.wte.weight).float()
        if self.copy_context > 0:
            past_ids: Optional[Tensor] = None
            if p > 0:
                past_ids = past[2 * self.n_layer].view(b, p)
            logits, window = self._mix_copy(logits, ids, past_ids, attention_mask)
            new_past.append(window.view(b, 1, total, 1))
        return logits, new_past

    def _mix_copy(self, logits: Tensor, ids: Tensor, past_ids: Optional[Tensor],
                  attention_mask: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        """log((1 - w) softmax(logits) + w copy), w = copy_weight[longest match]; also the
        window's ids (past then new), the past tensor the next call reads."""
        b = ids.size(0)
        t = ids.size(1)
        window = ids if past_ids is None else torch.cat([past_ids.to(ids.dtype), ids], dim=1)
        n = window.size(1)
        device = ids.device
        # Padding leaves the window: real tokens move to their rank among real tokens, the
        # rest of the row holds unique negatives that match nothing.
        compact = -1 - torch.arange(n + 1, device=device).view(1, n + 1).repeat(b, 1)
        if attention_mask is not None:
            mask = attention_mask.to(device=device, dtype=torch.long)
            rank = torch.cumsum(mask, dim=1) - mask
            slot = torch.where(mask > 0, rank, torch.full_like(rank, n))
        else:
            rank = torch.arange(n, device=device).view(1, n).expand(b, n)
            slot = rank
        compact = compact.scatter(1, slot, window)[:, :n]
        query = rank[:, n - t:]
        match, copy, following = copy_matches(compact, query, self.copy_context)
        mix = self.copy_weight.to(device)[match].view(b, t, 1)
        # Every token gets (1 - mix) of the network's probability; the tokens the copy
        # distribution names get theirs added, written once per earlier position (positions
        # naming the same token write the same value). Only those entries are touched: the
        # copy distribution is never made dense over the vocabulary.
        log_probs = torch.log_softmax(logits, dim=-1)
        named = following.clamp_max(self.vocab_size - 1).view(b, 1, n).expand(b, t, n)
        copy_of_named = torch.zeros(b, t, self.vocab_size, device=device).scatter_add_(
            2, named, copy).gather(2, named)
        kept = torch.log1p(-mix)
        mixed = torch.logaddexp(log_probs.gather(2, named) + kept,
                                torch.log(mix) + torch.log(copy_of_named))
        out = (log_probs + kept).scatter_(2, named, mixed)
        return out, window


def config_of(model: TerseLM) -> dict:
    """The architecture fields recorded in checkpoints and model cards."""
    return {
        "vocab_size": model.vocab_size,
        "max_context": model.max_context,
        "n_layer": model.n_layer,
        "n_head": model.n_head,
        "d_model": model.d_model,
        "bos_id": model.bos_id,
        "eos_id": model.eos_id,
        "pad_id": model.pad_id,
        "unk_id": model.unk_id,
        **({"copy_context": model.copy_context,
            "copy_weight": [round(w, 4) for w in model.copy_weight.tolist()]}
           if model.copy_context > 0 else {}),
    }


def count_params(model: nn.Module) -> Tuple[int, int]:
    """(non-embedding, total) parameter counts; the tied output matrix is counted once."""
    total = sum(p.numel() for p in model.parameters())
    emb = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("wte.", "wpe.")))
    return total - emb, total


def script(model: TerseLM) -> torch.jit.ScriptModule:
    model.eval()
    return torch.jit.script(model)
