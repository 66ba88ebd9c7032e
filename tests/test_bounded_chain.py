"""FastAdaSP with bounded chains (method.max_group_size): groups of at most G tokens,
still exactly floor(n * r) tokens removed per span whenever groups of G allow it.

The reference is written independently of the vectorised search: it walks the
pairs in score order in plain Python, cuts runs from their left end, and stops at
the first prefix that leaves k pairs; feasibility is checked by enumerating every
set of k pairs."""

import itertools

import pytest
import torch

from fastadasp.engine import Budget, TokenReducer
from fastadasp.models.whisper import WHISPER_ENCODER_LAYOUT, encode_whisper, whisper_stack_spec
from fastadasp.reduction import FastAdaSPDense, FastAdaSPSparse
from fastadasp.reduction.methods import MethodSettingsError
from fastadasp.reduction.ops import bounded_pairs, pair_segments, segment_ranks


def reference(scores: list[float], k: int, g: int) -> tuple[list[bool], int]:
    """Take pairs best first (ties: earlier pair); after each, cut every run of taken
    pairs at its g-th, 2g-th, ... pair; stop when k pairs are left."""
    order = sorted(range(len(scores)), key=lambda p: (-scores[p], p))
    kept: list[bool] = [False] * len(scores)
    for j in range(len(scores) + 1):
        taken, run, kept = set(order[:j]), 0, []
        for p in range(len(scores)):
            run = run + 1 if p in taken else 0
            kept.append(p in taken and run % g != 0)
        if sum(kept) >= k:
            break
    return kept, sum(kept)


def groups_fit(kept: list[bool], g: int) -> bool:
    run = 0
    for joined in kept:
        run = run + 1 if joined else 0
        if run >= g:  # g joined pairs in a row make a group of g + 1 tokens
            return False
    return True


def feasible(pairs: int, k: int, g: int) -> bool:
    return any(groups_fit([p in chosen for p in range(pairs)], g) for chosen in itertools.combinations(range(pairs), k))


def test_bounded_pairs_follow_the_reference_on_small_spans():
    g = torch.Generator().manual_seed(0)
    for _ in range(400):
        pairs = int(torch.randint(1, 11, (1,), generator=g))
        group = int(torch.randint(2, 5, (1,), generator=g))
        k = int(torch.randint(0, pairs + 1, (1,), generator=g))
        scores = torch.randint(0, 3, (pairs,), generator=g).float()  # ties on purpose
        rank = torch.argsort(torch.argsort(scores[None], dim=1, descending=True, stable=True), dim=1)
        kept, got = bounded_pairs(rank, torch.zeros_like(rank), torch.tensor([[k]]), group)
        want, want_count = reference(scores.tolist(), k, group)
        assert kept[0].tolist() == want and int(got) == want_count
        assert groups_fit(want, group)
        # exactly k whenever some k pairs fit in groups of `group` tokens, and only then
        assert (int(got) == k) == feasible(pairs, k, group), (pairs, k, group, scores.tolist())


def test_bounded_pairs_per_span_with_text_between():
    """Several spans in a row, each with its own k, text in between (never a pair)."""
    segments = torch.tensor([[-1, 0, 0, 0, 0, 0, 0, -1, 1, 1, 1, 1, 1]])
    scores = torch.tensor([[0.0, 9, 8, 7, 6, 5, 0, 0, 4, 4, 4, 4]])
    pair_seg = pair_segments(segments)
    k = torch.tensor([[3, 2]])
    kept, got = bounded_pairs(segment_ranks(scores, pair_seg), pair_seg, k, 2)
    assert got.tolist() == [[3, 2]]
    span0 = reference(scores[0, 1:6].tolist(), 3, 2)[0]
    span1 = reference(scores[0, 8:12].tolist(), 2, 2)[0]
    assert kept[0, 1:6].tolist() == span0 and kept[0, 8:12].tolist() == span1
    assert not kept[0, [0, 6, 7]].any()


def encode(whisper, features, method, flops=0.4, plans=True, monkeypatch=None):
    red = TokenReducer(whisper.model.encoder.layers, WHISPER_ENCODER_LAYOUT, method,
                       whisper_stack_spec(whisper.config), Budget(flops))
    if not plans:  # the general path: no host-planned span shapes
        from fastadasp.engine import reducer as R

        monkeypatch.setattr(R.TokenReducer, "_plan_spans", lambda self, *a: ({}, {}, {}))
    with red:
        hidden, valid, realised, tokens = encode_whisper(whisper, features, red)
    return hidden, valid, realised, tokens


@pytest.mark.parametrize("weighted", [True, False])
def test_bounded_merge_keeps_the_budget_and_its_groups_small(tiny_whisper, features, monkeypatch, weighted):
    from fastadasp.engine.state import ReductionState

    sizes: list[torch.Tensor] = []
    advance = ReductionState.advance

    def record(self, layer, red):
        sizes.append(red.group_sizes)
        advance(self, layer, red)

    monkeypatch.setattr(ReductionState, "advance", record)
    bounded = FastAdaSPDense("constant", weighted=weighted, max_group_size=3)
    hidden, valid, realised, tokens = encode(tiny_whisper, features, bounded)
    assert sizes and all(int(s.max()) <= 3 for s in sizes) and max(int(s.max()) for s in sizes) == 3
    monkeypatch.setattr(ReductionState, "advance", advance)
    free_tokens = encode(tiny_whisper, features, FastAdaSPDense("constant", weighted=weighted))[3]
    assert tokens == free_tokens  # the same floor(n * r) per layer: the plan check passed too
    general_hidden, *_ = encode(tiny_whisper, features, bounded, plans=False, monkeypatch=monkeypatch)
    assert torch.allclose(hidden, general_hidden, atol=1e-5)  # the shared-span path = the general one


def test_unbounded_chains_grow_longer_than_the_bound(tiny_whisper, features, monkeypatch):
    """The bound changes something: unbounded, the same budget makes bigger groups."""
    from fastadasp.engine.state import ReductionState

    sizes: list[int] = []
    advance = ReductionState.advance
    monkeypatch.setattr(ReductionState, "advance",
                        lambda self, layer, red: (sizes.append(int(red.group_sizes.max())), advance(self, layer, red)))
    encode(tiny_whisper, features, FastAdaSPDense("constant"), flops=0.5)
    assert max(sizes) > 3


def test_settings_record_the_bound_only_when_set():
    assert "max_group_size" not in FastAdaSPDense().describe()  # the paper's method keeps its run keys
    assert FastAdaSPDense(max_group_size=4).describe()["max_group_size"] == 4
    assert FastAdaSPSparse(layer=1, max_group_size=2).describe()["max_group_size"] == 2
    for bad in (1, 0, True, 2.5, "3"):
        with pytest.raises(MethodSettingsError, match="max_group_size"):
            FastAdaSPDense(max_group_size=bad)


def test_an_unreachable_count_is_refused_in_one_line(tiny_whisper, features):
    """Groups of 2 tokens can remove at most half a span's pairs in one layer."""
    with pytest.raises(MethodSettingsError, match=r"max_group_size=2: a layer cannot remove \d+ of a span's"):
        encode(tiny_whisper, features, FastAdaSPSparse(layer=1, max_group_size=2), flops=0.5)


def test_config_key_reaches_the_method():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    for name in ("fastadasp_dense", "fastadasp_sparse"):
        cfg = OmegaConf.load(f"configs/method/{name}.yaml")
        assert cfg.max_group_size is None
        cfg.max_group_size = 3
        assert instantiate(cfg).describe()["max_group_size"] == 3


@pytest.mark.parametrize("align_right", [False, True])
def test_bounded_rows_of_a_padded_batch_equal_the_general_path(align_right):
    """The one-span-per-row path (row_chains) with a bound, against the general
    bounded path (segment_ranks + bounded_pairs + chain_merge) on the same scores."""
    from fastadasp.engine.state import plan_row_spans
    from fastadasp.reduction import TokenLayout
    from fastadasp.reduction.ops import chain_merge, row_chains

    g = torch.Generator().manual_seed(3)
    b, t = 3, 26
    spans = [(3, 20), (6, 12), (2, 23)] if align_right else [(0, 26), (0, 19), (0, 11)]
    valid, segments = torch.ones(b, t, dtype=torch.bool), torch.full((b, t), -1)
    for i, (s, n) in enumerate(spans):
        segments[i, s : s + n] = 0
        if align_right:
            valid[i, : s - 1] = False
        else:
            valid[i, n:] = False
    layouts = [TokenLayout(int(valid[i].sum()) - n, (n,)) for i, (_, n) in enumerate(spans)]
    ratios = torch.tensor([[0.4], [0.3], [0.45]], dtype=torch.float64)
    rows, _ = plan_row_spans(segments, valid, layouts, ratios, frozenset({0}), align_right)
    scores = torch.randint(0, 3, (b, t - 1), generator=g).float()
    pair_seg = pair_segments(segments)
    k = rows[0].remove
    chosen, got = bounded_pairs(segment_ranks(scores, pair_seg), pair_seg, k, 3)
    assert torch.equal(got, k)
    ref = chain_merge(chosen, align_right)
    fast = row_chains(scores, rows[0], max_group=3)
    assert torch.equal(fast.dest, ref.dest) and torch.equal(fast.group_sizes, ref.group_sizes)
    assert int(fast.group_sizes.max()) <= 3
    grouped = ref.group_sizes.gather(1, ref.dest) > 1
    covered = torch.zeros_like(grouped).scatter_(1, fast.pair_columns(), True)
    assert bool((covered | ~grouped).all())  # every grouped token gets its mass (rows with fewer pairs: extra ones)
