"""How many aten operators a reduced prefill dispatches, per layer, and whose they are.

On a GPU every dispatched operator costs host time (and most launch a kernel);
a reducing layer that adds a hundred small ones leaves the device waiting.
:class:`OpCounter` records every operator that reaches the dispatcher (a
``TorchDispatchMode``: views, slices and dtype conversions included), which
block of the stack was running, and who asked for it: the innermost frame of
the project or of transformers on the Python stack decides.

* ``stock``: the model's own code (transformers, the adapters' block layout);
* ``attention``: the engine's attention call that replaces the stock one
  (the fused kernel with its log-sum-exp, and its glue);
* ``matching``: scoring and choosing pairs or tokens (similarity, top-k, counts);
* ``merge``: applying a reduction to the hidden states;
* ``bookkeeping``: building the reduction, span ids, validity, positions,
  per-layer masks and rotary embeddings;
* ``mass``: the received attention mass of grouped keys (merge weights);
* ``per_forward``: once per forward (the check of the host plan).

The engine's own operators at a layer are the layer's total minus the same
stock layer's total on the same input (a full-token forward), less the
per-forward ones: what the engine adds beyond the stock layer.
:func:`gpu_path` counts what a GPU would run on the CPU: no size read from the
device (``attention.READ_SIZES_ON`` emptied) and the GPU's chunking of the mass.
"""

from __future__ import annotations

import sys
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from ..engine.attention import device_policy

__all__ = ["CATEGORIES", "OpCounter", "LayerOps", "count_ops", "engine_ops", "gpu_path", "count_encoder_layers",
           "count_llm_prefill", "padded_llm_prompt", "op_count_rows", "OP_COUNT_COLUMNS"]

CATEGORIES = ("stock", "attention", "matching", "merge", "bookkeeping", "mass", "per_forward")
ENGINE_CATEGORIES = CATEGORIES[1:-1]

#: (file, function) -> category for the engine's and the reduction core's code; the rest of a file
#: falls to its default (the ``None`` entry)
_RULES: dict[str, dict[str | None, str]] = {
    "reduction/ops.py": {
        None: "bookkeeping",
        "apply": "merge",
        **dict.fromkeys(("adjacent_similarity", "segment_topk", "pair_segments", "non_overlapping",
                         "counts_from_ratio", "segment_lengths", "bounded_chains", "_first_of_span",
                         "_topk_single", "_topk_general"), "matching"),
    },
    "reduction/methods.py": {None: "matching"},
    "engine/attention.py": {
        None: "attention",
        **dict.fromkeys(("at", "_mass", "_take_keys", "_float32_matmul", "attention_with_received",
                         "_received_torch", "_unmasked_at"), "mass"),
    },
    "engine/mass_kernel.py": {None: "mass"},
    "engine/reducer.py": {None: "bookkeeping", "group_weights": "mass"},
    "engine/state.py": {None: "bookkeeping"},
    "engine/policies.py": {None: "bookkeeping"},
    "engine/masks.py": {None: "bookkeeping"},
}
_OUTSIDE = "outside"  # the caller's own code (a script, a test): not part of any layer's count


#: (file, function) whose operators run once per forward whatever they call: the check of the host plan
_PER_FORWARD = {("engine/reducer.py", "_check_plan")}


def _category(frame) -> str:
    """The category of an operator: ``per_forward`` inside a once-per-forward function,
    else from the innermost frame of the project or transformers."""
    outer = frame
    while outer is not None:
        path = outer.f_code.co_filename.replace("\\", "/")
        if "/fastadasp/" in path and (path.rsplit("/fastadasp/", 1)[1], outer.f_code.co_name) in _PER_FORWARD:
            return "per_forward"
        outer = outer.f_back
    while frame is not None:
        path = frame.f_code.co_filename.replace("\\", "/")
        if "/transformers/" in path:
            return "stock"
        if "/fastadasp/" in path:
            rel = path.rsplit("/fastadasp/", 1)[1]
            if rel.startswith("models/"):
                return "stock"  # the adapters' block layout: stock modules called in the stock order
            rules = _RULES.get(rel)
            if rules is not None:
                name = frame.f_code.co_name
                if name.startswith("<") and frame.f_back is not None:  # a comprehension: its function's name
                    name = frame.f_back.f_code.co_name
                return rules.get(name, rules[None])
            if not rel.startswith(("run/", "testing/")) and not rel.startswith("_"):
                return "bookkeeping"  # any other engine-side module
            return _OUTSIDE
        frame = frame.f_back
    return _OUTSIDE


@dataclass
class LayerOps:
    """Operators of one block's forward by category (and by name, for reading)."""

    by_category: Counter = field(default_factory=Counter)
    by_name: Counter = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.by_category.values())

    def engine(self, stock_total: int) -> int:
        """What the engine adds beyond a stock layer of ``stock_total`` operators."""
        return self.total - self.by_category["per_forward"] - stock_total


class OpCounter(TorchDispatchMode):
    """Records the operators dispatched inside ``blocks`` (per block) and outside them.

    Block boundaries come from forward pre-/post-hooks, so whatever the engine
    does inside a wrapped block's ``forward`` counts towards that block."""

    def __init__(self, blocks: Sequence[nn.Module]):
        super().__init__()
        self.blocks = list(blocks)
        self.layers = [LayerOps() for _ in self.blocks]
        self.outside = LayerOps()
        self._current: int | None = None
        self._handles: list[Any] = []

    def __enter__(self):
        for i, block in enumerate(self.blocks):
            self._handles.append(block.register_forward_pre_hook(lambda m, a, i=i: self._enter_block(i)))
            self._handles.append(block.register_forward_hook(lambda m, a, o: self._enter_block(None)))
        return super().__enter__()

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        return super().__exit__(*exc)

    def _enter_block(self, index: int | None) -> None:
        self._current = index

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        where = self.outside if self._current is None else self.layers[self._current]
        category = _category(sys._getframe(1))
        if where is not self.outside or category != _OUTSIDE:
            where.by_category[category] += 1
            where.by_name[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def count_ops(run: Callable[[], Any], blocks: Sequence[nn.Module]) -> OpCounter:
    """Call ``run()`` once under an :class:`OpCounter` of ``blocks``."""
    counter = OpCounter(blocks)
    with counter:
        run()
    return counter


def engine_ops(reduced: OpCounter, stock: OpCounter, layers: Sequence[int]) -> dict:
    """Per reducing layer: the engine's operators beyond the stock layer's, and their split.

    ``stock``: a full-token forward of the same stack on the same input."""
    rows = []
    for i in layers:
        red, base = reduced.layers[i], stock.layers[i]
        split = {c: red.by_category[c] for c in CATEGORIES}
        rows.append({"layer": i, "total": red.total, "stock_layer": base.total, "engine": red.engine(base.total),
                     **split})
    engine = [r["engine"] for r in rows]
    return {"layers": rows, "engine_max": max(engine, default=0),
            "engine_mean": sum(engine) / len(engine) if engine else 0.0,
            "per_forward": sum(reduced.layers[i].by_category["per_forward"] for i in range(len(reduced.layers)))}


@contextmanager
def gpu_path(device_type: str = "cuda") -> Iterator[None]:
    """Run the engine on the CPU as it runs on ``device_type``: host-bound sizes (no
    device read) and that device's chunking of the received mass."""
    with device_policy(device_type):
        yield


# -- the cases the benchmarks count and the tests hold to their targets --------------------
def count_encoder_layers(blocks: Sequence[nn.Module], layout, spec, method, flops: float, hidden: torch.Tensor,
                         valid: torch.Tensor | None = None) -> dict:
    """A bidirectional encoder stack (Whisper's) run layer by layer on ``hidden (B, T, d)``,
    all audio; ``valid (B, T)`` pads rows. Stock: the same layers with the padding mask."""
    from ..engine import Budget, TokenReducer
    from ..engine.masks import additive_mask

    b, t, _ = hidden.shape
    mask = None if valid is None else additive_mask(valid[:, None, None, :], hidden.dtype)

    def stock() -> None:
        h = hidden
        for block in blocks:
            h = block(h, mask)

    reducer = TokenReducer(blocks, layout, method, spec, Budget(flops))

    def reduced() -> None:
        h = hidden
        with reducer, reducer.forward_state(torch.zeros(b, t, dtype=torch.long), valid):
            for block in blocks:
                h = block(h, None)

    with torch.inference_mode():
        return engine_ops(count_ops(reduced, blocks), count_ops(stock, blocks), sorted(reducer.reducing))


def count_llm_prefill(model, reducer, embeds: torch.Tensor, mask: torch.Tensor, segments: torch.Tensor) -> dict:
    """A causal LM's prefill (``inputs_embeds``, cache on, last logits only), stock and reduced."""
    blocks = model.model.layers

    def forward() -> None:
        model(inputs_embeds=embeds, attention_mask=mask, use_cache=True, logits_to_keep=1)

    def reduced() -> None:
        with reducer, reducer.forward_state(segments, mask):
            forward()

    with torch.inference_mode():
        return engine_ops(count_ops(reduced, blocks), count_ops(forward, blocks), sorted(reducer.reducing))


def padded_llm_prompt(model, audio: int, text: int, seed: int, pad: int) -> tuple[torch.Tensor, ...]:
    """A left-padded batch of two speech-LLM prompts: the second row's first ``pad``
    tokens are padding (its leading text and part of its audio), so the rows hold
    spans of different lengths at different places."""
    from .benchmarking import llm_prompts

    embeds, mask, segments = llm_prompts(model, 2, audio, text, seed)
    mask, segments = mask.clone(), segments.clone()
    mask[1, :pad], segments[1, :pad] = 0, -1
    return embeds, mask, segments


def op_count_rows(count: Callable[[Any, bool], dict], methods: dict[str, Any]) -> list[dict]:
    """One row per (method, batch 1 | padded batch) on a GPU's path: the engine's
    operators per reducing layer (max and mean over the reducing layers) and their
    split by category (summed over the reducing layers, divided by their number).
    ``count(method, padded)`` returns :func:`engine_ops`' report."""
    rows = []
    for name, method in methods.items():
        for padded in (False, True):
            with gpu_path():
                report = count(method, padded)
            n = max(1, len(report["layers"]))
            split = {c: sum(r[c] for r in report["layers"]) / n for c in ("stock", *ENGINE_CATEGORIES)}
            rows.append({"variant": name, "batch": "2, padded" if padded else "1", "engine_max": report["engine_max"],
                         "engine_mean": report["engine_mean"], "stock_layer": report["layers"][0]["stock_layer"],
                         **split, "per_forward": report["per_forward"], "layers": report["layers"]})
    return rows


#: the columns :func:`op_count_rows`' tables print (key -> header)
OP_COUNT_COLUMNS = {"variant": "variant", "batch": "batch", "engine_max": "engine ops / reducing layer (max)",
                    "engine_mean": "mean", "stock_layer": "stock layer ops", "matching": "matching",
                    "merge": "merge", "bookkeeping": "bookkeeping", "mass": "mass", "attention": "attention glue",
                    "per_forward": "per forward"}
