"""A task is data: prompts per model family, the sample field that holds the
reference, the fields the dataset must provide, an answer parser and a metric.

Everything task-specific lives in ``configs/task/<name>.yaml``; this class
only applies it: it fills a prompt template with a sample's fields, checks a
dataset before any model loads, parses a free-text prediction into an answer
and scores answers against references.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

__all__ = ["Task", "TaskDataError", "sample_fields"]


class TaskDataError(ValueError):
    """A dataset lacks what the task needs (a field, a non-empty reference)."""


def sample_fields(sample) -> dict[str, Any]:
    """A sample's fields by canonical name (``text`` and every extra field),
    plus ``choices_text`` (SQA choices as ``A. ...`` lines) and ``labels_text``
    (the label set, comma-separated) for prompts."""
    fields = {"id": sample.id, "audio_path": str(sample.audio_path), "text": sample.text, **sample.extra}
    if isinstance(fields.get("labels"), (list, tuple)):
        fields["labels_text"] = ", ".join(fields["labels"])
    choices = fields.get("choices")
    if isinstance(choices, (list, tuple)):
        fields["choices_text"] = "\n".join(f"{chr(65 + i)}. {c}" for i, c in enumerate(choices))
    return fields


#: fields every sample offers to prompts (derived from its own fields)
_DERIVED = {"id", "audio_path", "choices_text", "labels_text"}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, (str, list, tuple, dict)) and len(value) == 0)


def _template_fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def _identity(prediction: str, sample: Any) -> str:
    return prediction.strip()


@dataclass
class Task:
    """One evaluation task (see ``configs/task/``).

    ``prompts``: template per model family; ``{field}`` is filled from the
    sample (``{question}``, ``{choices_text}``) or ``variables``
    (``{target_language}``); literal braces are doubled. ``reference``: the
    sample field scored against. ``requires``: fields every sample must carry
    (checked before the model loads). ``parser(prediction, sample)`` maps the
    generated text to an answer (``None`` = unparsed); ``metric(refs, answers)``
    returns a dict whose first numeric entry is the headline number.
    """

    name: str
    prompts: dict[str, str]
    metric: Callable[[list, list], dict]
    max_new_tokens: int
    reference: str = "text"
    requires: Sequence[str] = ()
    parser: Callable[[str, Any], Any] | None = None
    primary_metric: str | None = None
    higher_is_better: bool | None = None
    variables: dict[str, Any] = field(default_factory=dict)

    @property
    def required_fields(self) -> list[str]:
        return list(dict.fromkeys([self.reference, *self.requires]))

    def template(self, family: str) -> str:
        """The prompt template for a model family; a clear error when the task has none."""
        if family not in self.prompts:
            raise ValueError(
                f"task {self.name!r} has no prompt for model family {family!r}; "
                f"it has prompts for {sorted(self.prompts)}"
            )
        template = self.prompts[family]
        unknown = _template_fields(template) - set(self.required_fields) - set(self.variables) - _DERIVED
        if unknown:
            raise ValueError(
                f"task {self.name!r}: the {family} prompt uses {sorted(unknown)}, which are neither sample "
                f"fields the task requires ({self.required_fields}) nor task variables ({sorted(self.variables)})"
            )
        return template

    def prompt_for(self, model) -> str:
        """The template for ``model.family`` (kept for callers of the first runner)."""
        return self.template(model.family)

    def prompt(self, family: str, sample) -> str:
        template = self.template(family)
        if not _template_fields(template):
            return template
        return template.format_map({**sample_fields(sample), **self.variables})  # the config names the language

    def reference_of(self, sample) -> Any:
        return sample_fields(sample).get(self.reference)

    def check_dataset(self, samples: Sequence, dataset: str) -> None:
        """Fail before any model loads when samples lack a required field or
        have an empty reference; the message names the field and examples."""
        for name in self.required_fields:
            bad = [s.id for s in samples if _missing(sample_fields(s).get(name))]
            if bad:
                what = "an empty reference" if name == self.reference else "no value"
                raise TaskDataError(
                    f"task {self.name!r} needs field {name!r} but {len(bad)} of {len(samples)} samples of dataset "
                    f"{dataset!r} have {what} (e.g. {', '.join(map(repr, bad[:3]))}); "
                    f"choose a dataset that provides {name!r} (dataset=...)"
                )

    def answer(self, prediction: str, sample) -> Any:
        return (self.parser or _identity)(prediction, sample)

    def score(self, references: list, answers: list) -> dict:
        scores = dict(self.metric(references, answers))
        return scores

    def headline(self, scores: Mapping[str, Any]) -> tuple[str | None, Any]:
        """The primary metric's name and value."""
        if self.primary_metric:
            return self.primary_metric, scores.get(self.primary_metric)
        for key, value in scores.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return key, value
        return None, None

    @classmethod
    def from_config(cls, node: Mapping[str, Any], instantiate: Callable[[Any], Any]) -> "Task":
        """Build from a ``configs/task/*.yaml`` node (metric and parser instantiated)."""
        from omegaconf import OmegaConf

        def plain(key: str, default: Any) -> Any:
            value = node.get(key, default)
            return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value

        parser = node.get("parser")
        return cls(
            name=node["name"],
            prompts=plain("prompts", {}),
            metric=instantiate(node["metric"]),
            max_new_tokens=int(node["max_new_tokens"]),
            reference=node.get("reference", "text"),
            requires=list(plain("requires", [])),
            parser=instantiate(parser) if parser is not None else None,
            primary_metric=node.get("primary_metric"),
            higher_is_better=node.get("higher_is_better"),
            variables=plain("variables", {}),
        )
