"""Exactness of the hand-written greedy decoder against the stock Whisper forward (tiny random model)."""

from __future__ import annotations

import pytest
import torch
from transformers import WhisperConfig, WhisperForConditionalGeneration

from fastadasp.models.whisper_decode import greedy_decode, is_repetition_loop

torch.set_num_threads(1)

EOS = 2
PROMPT = [1, 5, 7]  # several tokens, so the first step needs a causal self-attention mask


@pytest.fixture(scope="module")
def tiny() -> tuple[WhisperForConditionalGeneration, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    cfg = WhisperConfig(
        vocab_size=100, num_mel_bins=16, d_model=64, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
        max_source_positions=1500, max_target_positions=64,
        pad_token_id=0, bos_token_id=1, eos_token_id=EOS, decoder_start_token_id=1,
        # default init (std 0.02, tied) just copies the last input token whatever the audio;
        # larger untied weights give varied tokens that depend on the encoder states
        init_std=0.3, tie_word_embeddings=False,
    )  # fmt: skip
    model = WhisperForConditionalGeneration(cfg).eval()
    feats = torch.randn(2, 16, 3000)  # the stock encoder insists on 2 * max_source_positions frames
    with torch.inference_mode():
        enc = model.model.encoder(feats).last_hidden_state
    return model, feats, enc


def _reference_greedy(model, feats, steps, suppress=(), suppress_begin=()):
    """Stock full forward re-run every step; returns (per-step last logits, generated ids)."""
    ids = torch.tensor([PROMPT] * feats.shape[0])
    all_logits = []
    with torch.inference_mode():
        for step in range(steps):
            logits = model(input_features=feats, decoder_input_ids=ids).logits[:, -1]
            all_logits.append(logits)
            banned = list(suppress) + (list(suppress_begin) if step == 0 else [])
            masked = logits.clone()
            masked[:, banned] = float("-inf")
            ids = torch.cat([ids, masked.argmax(-1, keepdim=True)], 1)
    return all_logits, ids[:, len(PROMPT) :].tolist()


def _cut(row: list[int]) -> list[int]:
    return row[: row.index(EOS)] if EOS in row else row


def test_logits_and_tokens_match_stock_forward(tiny):
    model, feats, enc = tiny
    res = greedy_decode(model, enc, None, PROMPT, EOS, 10, output_scores=True)
    ref_logits, ref_ids = _reference_greedy(model, feats, res.steps)
    assert res.steps == 10  # the random model never picks EOS here, so all steps are compared
    for mine, ref in zip(res.scores, ref_logits):
        torch.testing.assert_close(mine, ref, atol=1e-4, rtol=0)
    assert res.tokens == [_cut(r) for r in ref_ids]
    assert res.hit_max_new_tokens == [True, True]


def test_suppression_matches_reference(tiny):
    model, feats, enc = tiny
    free = greedy_decode(model, enc, None, PROMPT, EOS, 6)
    # ban what the model actually picks, so suppression must change the output
    sup, sup_begin = [free.tokens[0][1]], [free.tokens[0][0], free.tokens[1][0]]
    res = greedy_decode(model, enc, None, PROMPT, EOS, 6, suppress_ids=sup, suppress_begin_ids=sup_begin)
    _, ref_ids = _reference_greedy(model, feats, 6, sup, sup_begin)
    assert res.tokens == [_cut(r) for r in ref_ids]
    assert res.tokens != free.tokens
    assert all(t not in sup for row in res.tokens for t in row)


def test_padded_encoder_states_are_ignored(tiny):
    model, _, enc = tiny
    a, b = enc[0:1, :700], enc[1:2, :900]  # token-reduced lengths, different per sample
    alone_a = greedy_decode(model, a, None, PROMPT, EOS, 8, output_scores=True)
    alone_b = greedy_decode(model, b, None, PROMPT, EOS, 8)
    junk = 50 * torch.randn(1, 200, enc.shape[-1])
    batch = torch.cat([torch.cat([a, junk], 1), b])
    mask = torch.ones(2, 900, dtype=torch.bool)
    mask[0, 700:] = False
    res = greedy_decode(model, batch, mask, PROMPT, EOS, 8, output_scores=True)
    assert res.tokens == [alone_a.tokens[0], alone_b.tokens[0]]
    for mine, ref in zip(res.scores, alone_a.scores):
        torch.testing.assert_close(mine[0:1], ref, atol=1e-4, rtol=0)
    # without the mask the junk must matter, or the test proves nothing
    unmasked = greedy_decode(model, batch, None, PROMPT, EOS, 8, output_scores=True)
    assert not torch.allclose(unmasked.scores[0][0], alone_a.scores[0][0], atol=1e-3)


def test_finished_rows_keep_eos_and_single_token_prompt(tiny):
    model, _, enc = tiny
    free = greedy_decode(model, enc, None, [1], EOS, 12)
    row0, row1 = free.tokens
    # declare as eos a token row 0 emits later (j >= 1) and row 1 never emits: row 0 stops, row 1 goes on
    j = next(j for j in range(1, len(row0)) if row0[j] not in row0[:j] and row0[j] not in row1)
    res = greedy_decode(model, enc, None, [1], row0[j], 12)
    assert res.tokens == [row0[:j], row1]
    assert res.hit_max_new_tokens == [False, True] and res.steps == 12
    assert res.repetition_loop[0] is False


def test_max_new_tokens_capped_by_positions(tiny):
    model, _, enc = tiny
    res = greedy_decode(model, enc[:, :50], None, PROMPT, 10**6, 1000)
    assert res.steps == 64 - len(PROMPT) + 1 and all(res.hit_max_new_tokens)


def test_repetition_loop_rule():
    assert is_repetition_loop([5, 6, 7, 7], hit_max=True)  # k = 1
    assert is_repetition_loop([9, 1, 2, 3, 1, 2, 3], hit_max=True)  # k = 3
    assert not is_repetition_loop([9, 1, 2, 3, 1, 2, 3], hit_max=False)  # ended with eos: not a loop
    assert not is_repetition_loop([1, 2, 3, 4], hit_max=True)
    assert not is_repetition_loop(list(range(17)) * 2, hit_max=True)  # period 17 > 16
    assert is_repetition_loop(list(range(16)) * 2, hit_max=True)
    assert not is_repetition_loop([], hit_max=True)


def test_one_prompt_per_row_equals_each_row_alone(tiny):
    model, _, enc = tiny
    rows = [[1, 5, 7], [1, 6, 7]]  # equal lengths, differing in one token (a language, for multilingual Whisper)
    both = greedy_decode(model, enc, None, rows, EOS, 8, output_scores=True)
    for i, prompt in enumerate(rows):
        alone = greedy_decode(model, enc[i : i + 1], None, prompt, EOS, 8, output_scores=True)
        assert both.tokens[i] == alone.tokens[0]
        torch.testing.assert_close(both.scores[0][i : i + 1], alone.scores[0], atol=1e-4, rtol=0)
    assert both.tokens[0] != greedy_decode(model, enc, None, rows[1], EOS, 8).tokens[0]  # the prompt matters
    with pytest.raises(ValueError, match="one prompt or one per row"):
        greedy_decode(model, enc, None, [[1, 5, 7]] * 3, EOS, 8)


def test_detect_language_is_the_first_step_restricted_to_the_candidates(tiny):
    from fastadasp.models.whisper_decode import detect_language

    model, _, enc = tiny
    first = greedy_decode(model, enc, None, [1], EOS, 1, output_scores=True).scores[0]
    candidates = [10, 20, 30, 40]
    ids, probs = detect_language(model, enc, None, 1, candidates)
    want = torch.tensor(candidates)[first[:, candidates].argmax(-1)].tolist()
    assert ids == want and all(i in candidates for i in ids)
    expected = first[:, candidates].softmax(-1).max(-1).values
    torch.testing.assert_close(torch.tensor(probs), expected, atol=1e-5, rtol=0)
    unrestricted = first.argmax(-1).tolist()
    assert unrestricted != ids  # the restriction decides here, or the test proves nothing
