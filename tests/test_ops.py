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
