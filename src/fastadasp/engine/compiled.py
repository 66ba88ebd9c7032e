"""``model.compile=true``: a model's forward compiled with the reduction hooks inside.

``torch.compile`` traces through the engine's block wrappers, the attention
probe, the matching, the merge and the bookkeeping: a reducing layer holds no
graph break (the one device read of a forward, the check of the host plan, is
left for when the forward state closes). What changes with the audio length
is kept symbolic, so that one graph serves every length: the sequence length
(``dynamic=True``) and the per-layer sizes the engine plans on the host (span
bounds, tokens removed, output lengths), which enter the compiled function as
integer arguments (:meth:`~.state.ReductionState.plan_sizes`) instead of
constants. Lengths are not bucketed: bucketing would pad every input and move
a batch of one off its short path, while symbolic sizes cost nothing at run
time. A new graph comes only with a new structure: another batch size, another
set of reducing layers, a batch that is padded where the last was not.

On CUDA ``mode="reduce-overhead"`` replays the forward as CUDA graphs (one per
set of shapes; the host plan makes every layer's shapes known before the
forward starts). A replay's outputs live in memory the next replay reuses, so
use it for forwards whose outputs are consumed before the next call (an encoder
stack, a timed prefill), not for ``generate`` with its growing cache.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from .state import ReductionState

__all__ = ["compile_model", "active_state", "COMPILE_OPTIONS"]

#: extra ``torch.compile`` options for every :func:`compile_model` (tests trace with ``backend="eager"``)
COMPILE_OPTIONS: dict[str, Any] = {}


def active_state(model: nn.Module) -> ReductionState | None:
    """The forward state of the reducer installed on ``model``'s blocks, if one is active."""
    for module in model.modules():
        reducer = vars(module).get("_fastadasp_reducer")
        if reducer is not None:
            return reducer.state
    return None


def compile_model(model: nn.Module, mode: str | None = None, **options: Any) -> Callable[..., Any]:
    """``model``'s forward compiled (``torch.compile``, dynamic shapes), called like
    the model; reduction hooks installed on its blocks are traced into it. The
    result may replace ``model.forward`` (it calls the forward taken here).
    ``mode``: ``torch.compile``'s (e.g. ``"reduce-overhead"`` for CUDA graphs)."""
    target = model.forward

    def forward(plan: list[int], state: ReductionState | None, args: tuple, kwargs: dict) -> Any:
        if state is not None:
            state.use_plan_sizes(plan)  # symbols from here on: no constant per length
        return target(*args, **kwargs)

    compiled = torch.compile(forward, dynamic=True, mode=mode, **{**COMPILE_OPTIONS, **options})

    def call(*args: Any, **kwargs: Any) -> Any:
        state = active_state(model)
        if mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        return compiled(state.plan_sizes() if state is not None else [], state, args, kwargs)

    call.__wrapped__ = model  # type: ignore[attr-defined]
    return call
