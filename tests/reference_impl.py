"""An independent reference for token reduction, written for clarity, not speed.

Nothing here is imported from ``fastadasp``. It takes a Hugging Face model's
own modules as building blocks (norms, q/k/v/o projections, the rotary
embedding table, MLPs, the LM head) and writes out, from SPEC sections 1-5
and 8, everything the engine adds on top of them:

* eager attention (causal for the LLM decoder, bidirectional for the Whisper
  encoder) and the attention mass each token receives, summed over every
  query of the prompt and every head (per head for H2O);
* per span: adjacent cosine similarity of this layer's post-RoPE keys (all
  KV heads concatenated), ``k = floor(n * r)``, top-k with ties to the earlier
  index, chained groups, the weighted average of ``x = h + attn`` (or the
  plain mean), eviction of the lowest scores, A-ToMe's non-overlapping pairs;
* the MLP on the shorter sequence, each layer's KV cache, RoPE positions in
  ``keep`` mode (a group keeps its first token's position) and ``paper`` mode
  (after the first reduction every layer takes the last ``n_l`` positions
  ending at the prompt's last position), H2O's per-head decode masks, and
  greedy decode steps over the per-layer caches.

One sample at a time and never padded: a padded batch in the engine must give
every sample exactly what it gets here alone. Selections are made over Python
lists; similarities are computed in float64 (the engine uses float32; with
random tiny models no two candidates are that close).

The random baselines are re-derived from the engine's documented seeding
protocol (``reduction/methods.py``: ``sample_seed`` and ``_uniform_scores``),
restated here: the per-sample seed is the first 8 bytes (little endian) of
``sha256(f"{seed}:{sample_key}")`` shifted right by one bit; at layer ``l`` a
``torch.Generator`` seeded with ``(sample_seed + 1_000_003 * l) % (2**63 - 1)``
draws ``torch.rand(n)`` for the ``n`` reducible tokens of the sample in order;
a token's draw is its score and a pair is scored by its left token's draw.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = [
    "Method",
    "LayerTrace",
    "DecoderTrace",
    "EncoderTrace",
    "audio_spans",
    "schedule_ratios",
    "decoder_reference",
    "whisper_encoder_reference",
]

MERGE_METHODS = ("fastadasp_dense", "fastadasp_sparse", "random_merge")


@dataclass(frozen=True)
class Method:
    """What a reducing layer does, as plain data. ``weighted`` is FastAdaSP's
    flag (False = the merge_ave ablation); ``pair_factor`` and
    ``cap_to_budget`` are A-ToMe's; ``seed`` is the random baselines'."""

    name: str
    weighted: bool = True
    pair_factor: float = 2.0
    cap_to_budget: bool = True
    seed: int = 0


# -- small helpers over Python lists -------------------------------------------------
def top_k(scores: list[float], k: int, largest: bool = True, margins: list[float] | None = None) -> list[int]:
    """Indices of the ``k`` best scores, ties to the earlier index, ascending.

    ``margins`` collects the gap between the last chosen and the first
    passed-over score (relative to their size): float32 rounding in a
    different order can only swap choices whose gap is that small."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i] if largest else scores[i], i))
    k = max(k, 0)
    if margins is not None and 0 < k < len(order):
        a, b = scores[order[k - 1]], scores[order[k]]
        margins.append(abs(a - b) / max(1.0, abs(a)))
    return sorted(order[:k])


def cosine(a: Tensor, b: Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a @ b) / (a.norm() * b.norm()))


def audio_spans(ids: list[int], audio_token: int, begin_token: int | None = None) -> list[list[int]]:
    """Contiguous runs of ``audio_token`` in a token list; with ``begin_token``,
    a begin tag right before a run joins it (the authors' Qwen-Audio span)."""
    spans: list[list[int]] = []
    for i, tok in enumerate(ids):
        is_audio = tok == audio_token
        is_begin = begin_token is not None and tok == begin_token and i + 1 < len(ids) and ids[i + 1] == audio_token
        if not (is_audio or is_begin):
            continue
        if spans and spans[-1][-1] == i - 1 and not is_begin:
            spans[-1].append(i)
        else:
            spans.append([i])
    return spans


def schedule_ratios(schedule: str, num_layers: int, start: int, r: float) -> list[float]:
    """SPEC s.3: single layer, constant from ``start``, or decay linear from r to 0."""
    last = num_layers - 1
    out = []
    for i in range(num_layers):
        if i < start:
            out.append(0.0)
        elif schedule == "single":
            out.append(r if i == start else 0.0)
        elif schedule == "constant":
            out.append(r)
        else:
            out.append(r * (1 - (i - start) / (last - start)))
    return out


def sample_seed(seed: int, sample_key: str) -> int:
    digest = hashlib.sha256(f"{seed}:{sample_key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def token_draws(seed: int, sample_key: str, layer: int, n: int) -> list[float]:
    g = torch.Generator().manual_seed((sample_seed(seed, sample_key) + 1_000_003 * layer) % (2**63 - 1))
    return torch.rand(max(n, 1), generator=g).tolist()


# -- one reducing layer ------------------------------------------------------------------
def reduce_layer(
    method: Method,
    r: float,
    span_of: list[int],
    keys: Tensor,
    received: Tensor,
    layer: int,
    sample_key: str,
    margins: list[float] | None = None,
) -> tuple[list[list[int]], bool]:
    """The slots (lists of input token indices, in order) a reducing layer
    keeps, and whether their tokens are averaged with attention weights.

    ``span_of[j]``: span id of token j or -1; ``keys (T, dk)`` post-RoPE with
    heads concatenated; ``received (T,)`` the attention mass each token got."""
    t_len = len(span_of)
    join_prev: set[int] = set()  # token j joins the group of token j - 1
    drop: set[int] = set()
    reducible = [j for j in range(t_len) if span_of[j] >= 0]
    draws = {}
    if method.name in ("random_merge", "random_evict"):
        values = token_draws(method.seed, sample_key, layer, len(reducible))
        draws = {j: values[i] for i, j in enumerate(reducible)}
    recv = received.tolist()
    for s in sorted({span_of[j] for j in reducible}):
        idx = [j for j in range(t_len) if span_of[j] == s]
        assert idx == list(range(idx[0], idx[0] + len(idx))), "a span is a contiguous run"
        n = len(idx)
        k = math.floor(n * r)
        sims = [cosine(keys[idx[t]], keys[idx[t + 1]]) for t in range(n - 1)]
        if method.name in ("fastadasp_dense", "fastadasp_sparse"):
            pairs = top_k(sims, k, margins=margins)
        elif method.name == "random_merge":
            pairs = top_k([draws[idx[t]] for t in range(n - 1)], k)
        elif method.name == "atome":
            candidates = top_k(sims, math.floor(n * (r * method.pair_factor)), margins=margins)
            pairs = []
            for t in candidates:  # greedy left to right, no pair shares a token
                if not pairs or pairs[-1] != t - 1:
                    pairs.append(t)
            if method.cap_to_budget:
                kept = top_k([sims[t] for t in pairs], k, margins=margins)
                pairs = [pairs[t] for t in kept]
        elif method.name == "fastv":
            drop |= {idx[t] for t in top_k([recv[j] for j in idx], k, largest=False, margins=margins)}
            continue
        elif method.name == "random_evict":
            drop |= {idx[t] for t in top_k([draws[j] for j in idx], k, largest=False)}
            continue
        else:
            raise ValueError(f"the reference has no token reduction for {method.name!r}")
        join_prev |= {idx[t + 1] for t in pairs}
    slots: list[list[int]] = []
    for j in range(t_len):
        if j in drop:
            continue
        if j in join_prev:
            slots[-1].append(j)
        else:
            slots.append([j])
    weighted = method.name == "random_merge" or (method.name in MERGE_METHODS and method.weighted)
    return slots, weighted


def merge(x: Tensor, slots: list[list[int]], weights: Tensor | None) -> Tensor:
    """Each slot becomes the (weighted) mean of its tokens' rows of ``x (T, d)``."""
    rows = []
    for slot in slots:
        if weights is None or float(weights[slot].sum()) == 0.0:
            rows.append(x[slot].mean(0))
        else:
            w = weights[slot]
            rows.append((w[:, None] * x[slot]).sum(0) / w.sum())
    return torch.stack(rows)


def h2o_keep(per_head: Tensor, span_of: list[int], r: float, margins: list[float] | None = None) -> Tensor:
    """H2O: per query head, which prompt entries decoding attends. Per sample
    ``round(r * audio)`` evictions (keep = 1 - r), shared over spans by largest
    remainder (ties to the earlier span), at most ``n - 1`` per span; in each
    span a head drops the entries that received the least attention."""
    h, t_len = per_head.shape
    spans = sorted({s for s in span_of if s >= 0})
    idx = {s: [j for j in range(t_len) if span_of[j] == s] for s in spans}
    total = sum(len(v) for v in idx.values())
    want = round(r * total)
    share = {s: want * len(idx[s]) / total for s in spans}
    count = {s: math.floor(share[s]) for s in spans}
    left = want - sum(count.values())
    for s in sorted(spans, key=lambda s: (-(share[s] - count[s]), s))[:left]:
        count[s] += 1
    keep = torch.ones(h, t_len, dtype=torch.bool)
    for head in range(h):
        scores = per_head[head].tolist()
        for s in spans:
            k = min(count[s], len(idx[s]) - 1)
            for t in top_k([scores[j] for j in idx[s]], k, largest=False, margins=margins):
                keep[head, idx[s][t]] = False
    return keep


# -- attention written out ----------------------------------------------------------------
def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """RoPE: ``x (heads, T, hd)`` rotated by ``cos/sin (T, hd)``."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin


def attend(q: Tensor, k: Tensor, v: Tensor, allowed: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """``q (H, Tq, hd)``, ``k, v (Hkv, Tk, hd)`` (query head h reads KV head
    ``h // (H / Hkv)``), ``allowed (H, Tq, Tk)``. Returns ``(Tq, H * hd)`` and
    the probabilities ``(H, Tq, Tk)``."""
    group = q.shape[0] // k.shape[0]
    k = k.repeat_interleave(group, dim=0)
    v = v.repeat_interleave(group, dim=0)
    scores = (q @ k.transpose(1, 2)) * scale
    scores = scores.masked_fill(~allowed, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    out = probs @ v  # (H, Tq, hd)
    return out.transpose(0, 1).reshape(q.shape[1], -1), probs


@dataclass
class LayerTrace:
    """One decoder layer in the prefill."""

    positions: list[int]  # RoPE position of each token entering the layer
    keys: Tensor  # (Hkv, T_l, hd) post-RoPE: what the layer caches
    values: Tensor  # (Hkv, T_l, hd)
    out: Tensor  # (T_{l+1}, d) the layer's output
    keep: Tensor | None = None  # (H, T_l) bool, H2O: entries each head attends in decode


@dataclass
class DecoderTrace:
    layers: list[LayerTrace]
    logits: list[Tensor] = field(default_factory=list)  # (V,) per generated token
    slots: dict[int, list[list[int]]] = field(default_factory=dict)  # reducing layer -> kept groups
    margins: list[float] = field(default_factory=list)  # of every score-based selection (see top_k)


def _qkv(attn, normed: Tensor, positions: list[int], rotary) -> tuple[Tensor, Tensor, Tensor]:
    hd = attn.head_dim
    t_len = normed.shape[0]
    q = attn.q_proj(normed).view(t_len, -1, hd).transpose(0, 1)
    k = attn.k_proj(normed).view(t_len, -1, hd).transpose(0, 1)
    v = attn.v_proj(normed).view(t_len, -1, hd).transpose(0, 1)
    cos, sin = rotary(normed[None], torch.tensor([positions]))
    return rotate(q, cos[0], sin[0]), rotate(k, cos[0], sin[0]), v


@torch.inference_mode()
def decoder_reference(
    language_model,
    lm_head,
    embeds: Tensor,
    spans: list[list[int]],
    method: Method,
    ratios: list[float],
    positions_mode: str = "keep",
    sample_key: str = "0",
    decode_tokens: list[int] = (),
) -> DecoderTrace:
    """Prefill of one unpadded prompt ``embeds (T, d)`` through a pre-norm
    Qwen2 decoder with reduction at every layer whose ratio is > 0, then one
    decode step per token of ``decode_tokens`` (teacher forcing: the tokens
    the engine generated). ``logits[0]`` is the prefill's next-token logits."""
    layers, rotary = language_model.layers, language_model.rotary_emb
    h = embeds.float()
    t_len = h.shape[0]
    positions = list(range(t_len))
    last_position = t_len - 1
    span_of = [-1] * t_len
    for s, span in enumerate(spans):
        for j in span:
            span_of[j] = s
    reduced = False
    trace = DecoderTrace(layers=[])
    for li, block in enumerate(layers):
        attn = block.self_attn
        n = h.shape[0]
        if positions_mode == "paper" and reduced:  # contiguous, right-aligned on the last prompt position
            layer_pos = list(range(last_position - n + 1, last_position + 1))
        else:
            layer_pos = list(positions)
        q, k, v = _qkv(attn, block.input_layernorm(h), layer_pos, rotary)
        causal = torch.ones(n, n, dtype=torch.bool).tril()
        a, probs = attend(q, k, v, causal.expand(q.shape[0], n, n), attn.head_dim**-0.5)
        x = h + attn.o_proj(a)
        keep = None
        r = ratios[li]
        if r > 0 and method.name == "h2o":
            keep = h2o_keep(probs.sum(dim=1), span_of, r, trace.margins)
        elif r > 0:
            received = probs.sum(dim=(0, 1))  # over heads and queries
            keys_cat = k.transpose(0, 1).reshape(n, -1)  # KV heads concatenated
            slots, weighted = reduce_layer(method, r, span_of, keys_cat, received, li, sample_key, trace.margins)
            x = merge(x, slots, received if weighted else None)
            positions = [positions[s[0]] for s in slots]
            span_of = [span_of[s[0]] for s in slots]
            trace.slots[li] = slots
            reduced = True
        out = x + block.mlp(block.post_attention_layernorm(x))
        trace.layers.append(LayerTrace(layer_pos, k, v, out, keep))
        h = out
    trace.logits.append(lm_head(language_model.norm(h[-1:]))[0])
    caches = [(lt.keys, lt.values, lt.keep) for lt in trace.layers]
    for step, token in enumerate(decode_tokens):
        h = language_model.embed_tokens(torch.tensor([token])).float()
        pos = [t_len + step]  # decoding continues after the original prompt in both modes
        for li, block in enumerate(layers):
            attn = block.self_attn
            q, k, v = _qkv(attn, block.input_layernorm(h), pos, rotary)
            past_k, past_v, keep = caches[li]
            keys, values = torch.cat([past_k, k], 1), torch.cat([past_v, v], 1)
            heads = q.shape[0]
            allowed = torch.ones(heads, 1, keys.shape[1], dtype=torch.bool)
            if keep is not None:
                allowed[:, 0, : keep.shape[1]] = keep
                keep = torch.cat([keep, torch.ones(heads, 1, dtype=torch.bool)], 1)
            a, _ = attend(q, keys, values, allowed, attn.head_dim**-0.5)
            caches[li] = (keys, values, keep)
            x = h + attn.o_proj(a)
            h = x + block.mlp(block.post_attention_layernorm(x))
        trace.logits.append(lm_head(language_model.norm(h))[0])
    return trace


@dataclass
class EncoderTrace:
    outs: list[Tensor]  # (T_{l+1}, d) per layer
    final: Tensor  # after the final layer norm
    margins: list[float] = field(default_factory=list)  # of every score-based selection (see top_k)


@torch.inference_mode()
def whisper_encoder_reference(
    model, features: Tensor, method: Method, ratios: list[float], sample_key: str = "0"
) -> EncoderTrace:
    """Whisper's encoder on one sample ``features (mels, frames)``:
    bidirectional attention, the whole 1500-token sequence one span."""
    enc = model.model.encoder
    x = torch.nn.functional.gelu(enc.conv1(features[None].float()))
    x = torch.nn.functional.gelu(enc.conv2(x))[0].transpose(0, 1)
    h = x + enc.embed_positions.weight[: x.shape[0]]
    span_of = [0] * h.shape[0]
    outs, margins = [], []
    for li, layer in enumerate(enc.layers):
        attn = layer.self_attn
        n, hd = h.shape[0], attn.head_dim
        normed = layer.self_attn_layer_norm(h)
        q = attn.q_proj(normed).view(n, -1, hd).transpose(0, 1)
        k = attn.k_proj(normed).view(n, -1, hd).transpose(0, 1)
        v = attn.v_proj(normed).view(n, -1, hd).transpose(0, 1)
        a, probs = attend(q, k, v, torch.ones(q.shape[0], n, n, dtype=torch.bool), hd**-0.5)
        x = h + attn.out_proj(a)
        if ratios[li] > 0:
            received = probs.sum(dim=(0, 1))
            keys_cat = k.transpose(0, 1).reshape(n, -1)
            slots, weighted = reduce_layer(method, ratios[li], span_of, keys_cat, received, li, sample_key, margins)
            x = merge(x, slots, received if weighted else None)
            span_of = [span_of[s[0]] for s in slots]
        h = x + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(x))))
        outs.append(h)
    return EncoderTrace(outs, enc.layer_norm(h), margins)
