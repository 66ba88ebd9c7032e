"""Reduction operators on hand-made cases."""

import pytest
import torch

from fastadasp.reduction import weighted_merge
from fastadasp.reduction.ops import (
    adjacent_similarity,
    chain_merge,
    counts_from_ratio,
    evict,
    non_overlapping,
    pair_segments,
    segment_lengths,
    segment_topk,
)


def keys_from_pattern(sims_high: list[bool], n: int) -> torch.Tensor:
    """Keys where adjacent pair t is similar (identical) iff sims_high[t]."""
    keys = torch.zeros(n, n)
    current = 0
    keys[0, 0] = 1
    for t in range(n - 1):
        if not sims_high[t]:
            current += 1
        keys[t + 1, current] = 1
    return keys[None]


def test_chaining_makes_one_group_per_run():
    hidden = torch.arange(6.0).view(1, 6, 1)
    # pairs 0,1 identical keys (tokens 0-1-2 chain), pair 3 identical (3-4)
    keys = keys_from_pattern([True, True, False, True, False], 6)
    out = weighted_merge(hidden, keys, None, 3)
    assert out.reduction.group_sizes.tolist() == [[3, 2, 1]]
    assert out.hidden.squeeze(-1).tolist() == [[1.0, 3.5, 5.0]]
    assert out.lengths.tolist() == [3]


def test_weights_give_weighted_average_and_singletons_pass_exactly():
    hidden = torch.randn(1, 5, 8)
    keys = keys_from_pattern([True, False, False, False], 5)
    weights = torch.tensor([[3.0, 1.0, 0.3, 7.0, 0.01]])
    out = weighted_merge(hidden, keys, weights, 1)
    expected = (3 * hidden[0, 0] + 1 * hidden[0, 1]) / 4
    assert torch.allclose(out.hidden[0, 0], expected, atol=1e-6)
    assert torch.equal(out.hidden[0, 1:], hidden[0, 2:])  # bit-exact singletons


def test_ties_go_to_the_earlier_pair():
    hidden = torch.arange(4.0).view(1, 4, 1)
    keys = torch.ones(1, 4, 2)  # every pair has similarity 1
    out = weighted_merge(hidden, keys, None, 1)
    assert out.reduction.group_sizes.tolist() == [[2, 1, 1]]


def test_per_sample_counts():
    hidden = torch.randn(3, 10, 4)
    keys = torch.randn(3, 10, 6)
    out = weighted_merge(hidden, keys, None, torch.tensor([0, 3, 9]))
    assert out.lengths.tolist() == [10, 7, 1]
    assert out.hidden.shape == (3, 10, 4)
    assert torch.equal(out.hidden[0], hidden[0])
    assert torch.allclose(out.hidden[2, 0], hidden[2].mean(0), atol=1e-6)
    assert torch.equal(out.hidden[2, 1:], torch.zeros(9, 4))  # padding slots


def test_num_remove_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="num_remove"):
        weighted_merge(torch.randn(1, 4, 2), torch.randn(1, 4, 2), None, 4)


def test_segments_never_merge_across_a_boundary_or_touch_text():
    # text(2) | span0 (4) | text(1) | span1 (3)
    segments = torch.tensor([[-1, -1, 0, 0, 0, 0, -1, 1, 1, 1]])
    keys = torch.ones(1, 10, 3)  # everything identical: only the rules stop merging
    hidden = torch.arange(10.0).view(1, 10, 1)
    out = weighted_merge(hidden, keys, None, 2, segments=segments)
    # 2 removed from each span: span0 keeps 2, span1 keeps 1
    assert out.lengths.tolist() == [10 - 4]
    kept = out.hidden.squeeze(-1)[0].tolist()
    assert kept[:2] == [0.0, 1.0] and kept[4] == 6.0  # text untouched and in place
    assert kept[2] == 3.0 and kept[3] == 5.0  # {2,3,4} then {5}: earlier pairs win ties
    assert kept[5] == 8.0  # span1 {7,8,9}


def test_segment_topk_counts_per_segment_and_ineligible():
    scores = torch.tensor([[5.0, 4.0, 3.0, 9.0, 1.0, 2.0]])
    segs = torch.tensor([[0, 0, -1, 1, 1, 1]])
    k = torch.tensor([[1, 2]])
    assert segment_topk(scores, segs, k).tolist() == [[True, False, False, True, False, True]]
    assert segment_topk(scores, segs, k, largest=False).tolist() == [[False, True, False, False, True, True]]


@pytest.mark.parametrize("largest", [True, False])
def test_single_span_topk_equals_the_general_path(largest):
    """The one-span shortcut (no grouping sort) against the general path: ties,
    infinite scores that tie with the ineligible fill, text and padding."""
    torch.manual_seed(2)
    scores = torch.randint(0, 5, (3, 40)).float()
    scores[0, 3] = scores[1, 7] = float("-inf") if largest else float("inf")
    segs = torch.zeros(3, 40, dtype=torch.long)
    segs[:, :4] = -1
    segs[2, 30:] = -1
    k = torch.tensor([[0], [9], [25]])
    general = segment_topk(scores, segs, k, largest)
    assert torch.equal(segment_topk(scores, segs, k, largest, num_segments=1), general)
    assert general.sum(1).tolist() == [0, 9, 25]


def test_counts_use_floor_of_n_times_r():
    lengths = torch.tensor([[1500, 7]])
    assert counts_from_ratio(lengths, 0.1).tolist() == [[150, 0]]
    assert counts_from_ratio(torch.tensor([[10]]), 0.29).tolist() == [[2]]


def test_evict_keeps_order():
    drop = torch.tensor([[False, True, False, True, False]])
    red = evict(drop)
    x = torch.arange(5.0).view(1, 5, 1)
    assert red.apply(x).squeeze(-1).tolist() == [[0.0, 2.0, 4.0]]
    red_r = evict(torch.tensor([[True, False], [False, False]]), align_right=True)
    assert red_r.filled.tolist() == [[False, True], [True, True]]


def test_non_overlapping_picks_every_other_pair_in_a_run():
    cand = torch.tensor([[True, True, True, False, True, True, False]])
    assert non_overlapping(cand).tolist() == [[True, False, True, False, True, False, False]]


def test_take_first_and_positions():
    red = chain_merge(torch.tensor([[False, True, True, False]]))
    pos = torch.arange(5).view(1, 5)
    assert red.take_first(pos).tolist() == [[0, 1, 4]]


def test_adjacent_similarity_and_pair_segments():
    keys = torch.tensor([[[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]]])
    assert torch.allclose(adjacent_similarity(keys), torch.tensor([[1.0, 0.0]]))
    assert pair_segments(torch.tensor([[0, 0, 1, 1, -1]])).tolist() == [[0, -1, 1, -1]]
    assert segment_lengths(torch.tensor([[0, 0, 1, -1], [1, -1, -1, -1]])).tolist() == [[2, 1], [0, 1]]


@pytest.mark.parametrize("align_right", [False, True])
def test_host_known_lengths_build_the_same_reduction_without_a_read(align_right, monkeypatch):
    torch.manual_seed(3)
    pairs = torch.rand(3, 11) < 0.4
    pairs[2] = False  # a row that keeps every token
    read = chain_merge(pairs, align_right)
    lengths = (read.num_out, int(read.out_lengths.min()))
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: pytest.fail("read the device"))
    planned = chain_merge(pairs, align_right, lengths)
    monkeypatch.undo()
    for name in ("dest", "out_lengths", "first", "filled", "group_sizes"):
        assert torch.equal(getattr(planned, name), getattr(read, name)), name
    assert (planned.num_out, planned.uniform) == (read.num_out, read.uniform) == (12, False)
    x = torch.randn(3, 12, 4)
    assert torch.equal(planned.apply(x), read.apply(x))


def test_a_wrong_length_plan_stays_in_bounds():
    """A plan shorter than the data sends the overflow to the dump slot (the
    engine's per-forward check then reports it) instead of indexing out of bounds."""
    drop = torch.tensor([[False, True, False, False, False]])
    red = evict(drop, align_right=False, lengths=(3, 3))
    assert red.out_lengths.tolist() == [4] and red.num_out == 3
    assert red.apply(torch.arange(5.0).view(1, 5, 1)).squeeze(-1).tolist() == [[0.0, 2.0, 3.0]]
    red_r = evict(drop, align_right=True, lengths=(3, 3))
    assert red_r.dest.min() >= 0 and red_r.dest.max() <= 3


# -- the short paths (one span every row shares; one span per row) against the general one ----------
def _general(scores: torch.Tensor, segments: torch.Tensor, k: torch.Tensor, align_right: bool):
    """The general path on the same pair scores: top-k per span, chained."""
    return chain_merge(segment_topk(scores, pair_segments(segments), k), align_right)


@pytest.mark.parametrize("start,n,total,remove", [(0, 40, 40, 13), (5, 30, 42, 11), (3, 20, 23, 0), (0, 2, 9, 1)])
def test_shared_span_chains_equal_the_general_path(start, n, total, remove):
    """span_chains (host-sized, no device read) against segment_topk + chain_merge: the
    same groups, first tokens and merged values (weighted and not), ties included."""
    from fastadasp.reduction.ops import span_chains

    g = torch.Generator().manual_seed(start + n + remove)
    b, d = 3, 5
    scores = torch.randint(0, 4, (b, n - 1), generator=g).float()  # many ties: earlier pairs must win
    full = torch.full((b, total - 1), float("-inf"))
    full[:, start : start + n - 1] = scores
    segments = torch.full((b, total), -1)
    segments[:, start : start + n] = 0
    ref = _general(full, segments, torch.full((b, 1), remove), align_right=False)
    fast = span_chains(scores, remove, start, total)
    assert fast.num_out == ref.num_out == total - remove
    for name in ("dest", "first", "group_sizes", "out_lengths", "filled"):
        assert torch.equal(getattr(fast, name), getattr(ref, name)), name
    x = torch.randn(b, total, d, generator=g)
    w = torch.rand(b, total, generator=g) + 0.1
    grouped = ref.group_sizes.gather(1, ref.dest) > 1
    w = torch.where(grouped, w, torch.ones_like(w))  # singletons weigh 1, as the engine gives them
    assert torch.allclose(fast.apply(x), ref.apply(x), atol=1e-6)
    assert torch.allclose(fast.apply(x, w), ref.apply(x, w), atol=1e-6)
    assert torch.equal(fast.apply(x)[~(ref.group_sizes > 1)], ref.apply(x)[~(ref.group_sizes > 1)])  # singletons exact
    assert torch.equal(fast.take_first(segments), ref.take_first(segments))
    assert torch.equal(fast.take_first(x[:1]), ref.take_first(x[:1].expand(b, -1, -1)))  # rows share x
    pairs = fast.pair_columns()
    assert pairs.shape == (b, 2 * remove) and bool(grouped.gather(1, pairs).all())  # only grouped tokens


@pytest.mark.parametrize("align_right", [False, True])
def test_one_span_per_row_equals_the_general_path(align_right):
    """row_chains on a padded batch whose rows hold spans of different lengths at
    different places (left padding when right-aligned), against the general path."""
    from fastadasp.engine.state import plan_row_spans
    from fastadasp.reduction import TokenLayout
    from fastadasp.reduction.ops import row_chains

    g = torch.Generator().manual_seed(7)
    b, t, d = 3, 30, 4
    spans = [(4, 20), (9, 12), (2, 25)] if align_right else [(0, 30), (0, 21), (0, 14)]
    valid = torch.ones(b, t, dtype=torch.bool)
    segments = torch.full((b, t), -1)
    for i, (s, n) in enumerate(spans):
        segments[i, s : s + n] = 0
        if align_right:
            valid[i, : s - 2] = False  # left padding, then two text tokens
        else:
            valid[i, n:] = False  # right padding after the span
    layouts = [TokenLayout(int(valid[i].sum()) - n, (n,)) for i, (_, n) in enumerate(spans)]
    ratios = torch.tensor([[0.3], [0.45], [0.2]], dtype=torch.float64)
    rows, layout = plan_row_spans(segments, valid, layouts, ratios, frozenset({0}), align_right)
    scores = torch.randint(0, 3, (b, t - 1), generator=g).float()
    k = torch.tensor([[int(n * r)] for (_, n), r in zip(spans, ratios[:, 0].tolist())])
    ref = _general(scores, segments, k, align_right)
    fast = row_chains(scores, rows[0])
    assert (fast.num_out, fast.uniform) == (ref.num_out, ref.uniform)
    for name in ("dest", "out_lengths", "filled", "group_sizes"):
        assert torch.equal(getattr(fast, name), getattr(ref, name)), name
    filled = ref.filled
    assert torch.equal(fast.first[filled], ref.first[filled])
    x = torch.randn(b, t, d, generator=g)
    assert torch.allclose(fast.apply(x), ref.apply(x), atol=1e-6)
    assert torch.equal(fast.take_first(segments, -1), ref.take_first(segments, -1))
    assert torch.equal(layout[0][0], ref.take_first(segments, -1))  # the planned span ids and validity
    assert torch.equal(layout[0][1], ref.take_first(valid, False))
