"""Applies reduction methods inside the blocks of unmodified HF models."""

from .attention import attention_with_received
from .policies import BidirectionalPolicy, CausalPolicy
from .reducer import BlockLayout, Budget, CostReport, TokenReducer
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
]
