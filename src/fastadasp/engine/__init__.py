"""Applies reduction methods inside the blocks of unmodified HF models."""

from .attention import attention_with_received
from .reducer import BlockLayout, Budget, ReductionState, TokenReducer

__all__ = ["BlockLayout", "Budget", "ReductionState", "TokenReducer", "attention_with_received"]
