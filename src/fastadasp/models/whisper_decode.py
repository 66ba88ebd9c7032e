"""Batched greedy Whisper decoding from encoder hidden states of any length.

Token reduction shortens the encoder output (and by a different amount per sample), so the
decoder must cross-attend to ``n != 1500`` states with per-sample padding.  The stock
``WhisperDecoder.forward`` always passes ``encoder_attention_mask=None`` to its layers, so this
module runs its own step loop over the stock decoder modules and hands each layer an additive
cross-attention mask.  With ``encoder_mask=None`` and unreduced states it reproduces the stock
forward's logits (see tests/test_whisper_decode.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from transformers import WhisperForConditionalGeneration
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

from ..engine.masks import additive_mask

__all__ = ["DecodeResult", "detect_language", "greedy_decode", "is_repetition_loop"]

MAX_LOOP_PERIOD = 16


@dataclass
class DecodeResult:
    """``tokens[i]``: generated ids after the prompt, cut at the first eos (eos excluded).
    ``hit_max_new_tokens[i]``: no eos within ``max_new_tokens`` (output truncated).
    ``repetition_loop[i]``: see :func:`is_repetition_loop`.  ``steps``: decoder forward passes.
    ``scores``: per step the raw (pre-suppression) logits ``(B, vocab)``, only when asked for."""

    tokens: list[list[int]]
    hit_max_new_tokens: list[bool]
    repetition_loop: list[bool]
    steps: int
    scores: list[torch.Tensor] | None = field(default=None, repr=False)


def is_repetition_loop(tokens: Sequence[int], hit_max: bool, max_period: int = MAX_LOOP_PERIOD) -> bool:
    """A decoding loop: the output ran into the token cap *and* ends with a k-gram repeated
    twice back to back (``tokens[-k:] == tokens[-2k:-k]``) for some ``k`` in ``1..max_period``.
    Requiring the cap separates degenerate loops from legitimately repeated words that end
    with eos."""
    if not hit_max:
        return False
    t = list(tokens)
    return any(t[-k:] == t[-2 * k : -k] for k in range(1, min(max_period, len(t) // 2) + 1))


@torch.inference_mode()
def greedy_decode(
    model: WhisperForConditionalGeneration,
    encoder_hidden_states: torch.Tensor,
    encoder_mask: torch.Tensor | None,
    prompt_ids: Sequence[int] | Sequence[Sequence[int]],
    eos_id: int,
    max_new_tokens: int,
    suppress_ids: Sequence[int] = (),
    suppress_begin_ids: Sequence[int] = (),
    output_scores: bool = False,
) -> DecodeResult:
    """Greedy-decode a batch from ``encoder_hidden_states`` ``(B, n, d)``.

    ``prompt_ids``: one prompt for every row, or one per row (equal lengths: a multilingual
    batch whose rows differ only in their language token).
    ``encoder_mask`` ``(B, n)`` bool, True = real state; padded states get no cross-attention.
    ``suppress_ids`` are banned at every step, ``suppress_begin_ids`` at the first generated
    step.  Finished rows keep emitting ``eos_id`` until every row is done or
    ``max_new_tokens`` is reached.  ``max_new_tokens`` is capped so that no fed position exceeds
    the decoder's ``max_target_positions``.  ``output_scores`` keeps each step's raw logits
    (used by the exactness tests).
    """
    dec = model.model.decoder
    bsz, n, _ = encoder_hidden_states.shape
    device, dtype = encoder_hidden_states.device, encoder_hidden_states.dtype
    ids = torch.as_tensor(prompt_ids, dtype=torch.long, device=device)
    ids = ids.expand(bsz, -1) if ids.dim() == 1 else ids
    if ids.dim() != 2 or ids.shape[0] != bsz or ids.shape[1] == 0:
        raise ValueError(f"prompt ids of shape {tuple(ids.shape)} for a batch of {bsz}: give one prompt or one per row")
    p = ids.shape[1]
    max_new_tokens = min(max_new_tokens, dec.max_target_positions - p + 1)

    cross_mask = None
    if encoder_mask is not None:
        if encoder_mask.shape != (bsz, n):
            raise ValueError(f"encoder_mask shape {tuple(encoder_mask.shape)} != {(bsz, n)}")
        keep = encoder_mask.to(device=device, dtype=torch.bool)
        cross_mask = additive_mask(keep[:, None, None, :], dtype)  # (B, 1, 1, n), broadcast over queries
    # Only the prompt step has several queries; later steps attend to the whole cache.
    causal = torch.ones(p, p, dtype=torch.bool, device=device).tril()
    self_mask = additive_mask(causal[None, None], dtype) if p > 1 else None

    vocab = model.proj_out.out_features
    banned = torch.zeros(vocab, dtype=torch.bool, device=device)
    banned[list(suppress_ids)] = True
    banned_first = banned.clone()
    banned_first[list(suppress_begin_ids)] = True

    cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
    finished = torch.zeros(bsz, dtype=torch.bool, device=device)
    generated: list[torch.Tensor] = []
    scores: list[torch.Tensor] = []
    steps = 0
    for step in range(max_new_tokens):
        past = cache.get_seq_length()
        # Stock WhisperDecoder adds no embed_scale (scale_embedding is False for Whisper).
        h = dec.embed_tokens(ids) + dec.embed_positions(ids, cache_length=past)
        for layer in dec.layers:
            h = layer(
                h,
                attention_mask=self_mask if step == 0 else None,
                encoder_hidden_states=encoder_hidden_states,
                encoder_attention_mask=cross_mask,
                cache=cache,
                use_cache=True,
            )
        logits = model.proj_out(dec.layer_norm(h[:, -1]))
        steps += 1
        if output_scores:
            scores.append(logits.float().clone())
        logits = logits.masked_fill((banned_first if step == 0 else banned)[None], float("-inf"))
        nxt = torch.where(finished, eos_id, logits.argmax(-1))
        generated.append(nxt)
        finished |= nxt == eos_id
        if bool(finished.all()):
            break
        ids = nxt[:, None]

    out = torch.stack(generated, 1).tolist() if generated else [[] for _ in range(bsz)]
    tokens = [row[: row.index(eos_id)] if eos_id in row else row for row in out]
    hit = [eos_id not in row for row in out]
    loops = [is_repetition_loop(t, capped) for t, capped in zip(tokens, hit)]
    return DecodeResult(tokens, hit, loops, steps, scores if output_scores else None)


@torch.inference_mode()
def detect_language(
    model: WhisperForConditionalGeneration,
    encoder_hidden_states: torch.Tensor,
    encoder_mask: torch.Tensor | None,
    sot_id: int,
    language_ids: Sequence[int],
) -> tuple[list[int], list[float]]:
    """Whisper's language identification: the decoder's first step after
    ``<|startoftranscript|>``, restricted to the language tokens. Returns, per row, the
    most likely language token and its probability among the languages (softmax over them)."""
    step = greedy_decode(model, encoder_hidden_states, encoder_mask, [sot_id], eos_id=-1, max_new_tokens=1,
                         output_scores=True)
    candidates = torch.as_tensor(list(language_ids), dtype=torch.long, device=step.scores[0].device)
    probs = step.scores[0][:, candidates].float().softmax(-1)
    best = probs.argmax(-1)
    return candidates[best].tolist(), probs.gather(1, best[:, None]).squeeze(1).tolist()
