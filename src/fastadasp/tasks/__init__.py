"""Tasks: a task is data (``configs/task/*.yaml``) applied by :class:`Task`, plus the answer
parsers that map a model's output to the answer a metric compares."""

from .definition import Task, TaskDataError
from .parsing import ChoiceAnswer, LabelAnswer, ShortAnswer, TextAnswer, YesNoAnswer

__all__ = ["Task", "TaskDataError", "ChoiceAnswer", "LabelAnswer", "ShortAnswer", "TextAnswer", "YesNoAnswer"]
