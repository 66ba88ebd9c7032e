"""Tasks: answer parsers (map a model's output to the answer a metric compares)."""

from .parsing import ChoiceAnswer, LabelAnswer, ShortAnswer, TextAnswer, YesNoAnswer

__all__ = ["ChoiceAnswer", "LabelAnswer", "ShortAnswer", "TextAnswer", "YesNoAnswer"]
