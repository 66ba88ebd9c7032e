"""Applies reduction methods inside the blocks of unmodified HF models."""

from .attention import attention_with_received
from .compiled import compile_model
from .policies import BidirectionalPolicy, CausalPolicy
from ..reduction import Budget, CostReport  # kept here for `from fastadasp.engine import Budget` (README)
from .reducer import BlockLayout, TokenReducer
from .state import ReductionState

__all__ = [
    "BidirectionalPolicy",
    "BlockLayout",
    "Budget",
    "CausalPolicy",
    "CostReport",
    "ReductionState",
    "TokenReducer",
    "attention_with_received",
    "compile_model",
]
