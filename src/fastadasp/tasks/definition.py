"""A task is data: prompts per model family, the sample field that holds the
reference, the fields the dataset must provide, an answer parser and a metric.

Everything task-specific lives in ``configs/task/<name>.yaml``; this class
only applies it: it fills a prompt template with a sample's fields, checks the
task's settings and a dataset before any model loads, parses a free-text
prediction into an answer and scores answers against references.

Generic task keys besides the basic ones (each optional; see ``configs/task/st.yaml``
and ``aqa.yaml`` for uses):

- ``choices: {setting: [table, ...]}``: ``task.<setting>`` must be a key of one
  of these tables (dotted paths inside the task); anything else is refused in
  one line listing the first table's keys, before any interpolation that
  indexes a table with the setting resolves.
- ``prompt_style`` with a prompt given as ``{style: template}``: the style picks
  the template (families with a single template ignore it).
- ``prompt_conditions: {family: {when: {variable: value}, why: text}}``: the
  family's prompt only runs where the task variables hold these values.
- ``dataset_agreement: {fields: {variable: sample field}, fix: text, unset: [values]}``:
  a task variable and a sample field that both say the same thing (a language) must
  agree, for every sample that has the field; a variable holding one of ``unset``
  (default: null) names nothing and agrees with every sample.
- ``extra_references: {metric keyword: sample field}``: more reference fields,
  recorded in each prediction row and handed to the metric by keyword.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from ..errors import ConfigError

__all__ = ["DEFAULT_PROMPT", "Task", "TaskConfigError", "TaskDataError", "sample_fields"]


class TaskDataError(ValueError):
    """A dataset lacks what the task needs (a field, a non-empty reference) or contradicts a task setting."""


class TaskConfigError(ConfigError):
    """A task setting is unknown or cannot run with this model family (one line, before any model loads)."""


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


#: the ``prompts`` key of the family-independent fallback: a plain instruction without any model's tokens
DEFAULT_PROMPT = "default"

#: fields every sample offers to prompts (derived from its own fields)
_DERIVED = {"id", "audio_path", "choices_text", "labels_text"}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, (str, list, tuple, dict)) and len(value) == 0)


def _template_fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def _identity(prediction: str, sample: Any) -> str:
    return prediction.strip()


def _same_language(a: Any, b: Any) -> bool:
    """Language tags agree: case-insensitive, primary subtag only ("zh-CN" = "zh" = "ZH_cn")."""
    def primary(tag: Any) -> str:
        return str(tag).strip().casefold().replace("_", "-").split("-")[0]

    return primary(a) == primary(b)


def _table_keys(node: Any, path: str) -> list[str]:
    """The keys of the table at a dotted ``path`` inside a task node (none if it is not a table)."""
    from omegaconf import OmegaConf

    table: Any = node
    for part in path.split("."):
        table = table.get(part) if isinstance(table, Mapping) or OmegaConf.is_dict(table) else None
    return [str(k) for k in table.keys()] if isinstance(table, Mapping) or OmegaConf.is_dict(table) else []


def check_choices(node: Mapping[str, Any]) -> None:
    """Refuse a task setting that names no row of its tables (``choices`` key), in one line.

    Runs before anything resolves the interpolations that index a table with the
    setting, which would otherwise end in an OmegaConf traceback.
    """
    name = node.get("name", "?")
    for setting, tables in (node.get("choices") or {}).items():
        tables = [tables] if isinstance(tables, str) else list(tables)
        value = node.get(setting)
        known = [_table_keys(node, table) for table in tables]
        if not any(str(value) in keys for keys in known):
            also = sorted({k for keys in known[1:] for k in keys})
            aliases = f" (also accepted: {', '.join(also)})" if also else ""
            raise TaskConfigError(
                f"task {name!r}: unknown {setting} {value!r}; known: {', '.join(known[0])}{aliases}; "
                f"set task.{setting}=ONE_OF_THEM"
            )


@dataclass
class Task:
    """One evaluation task (see ``configs/task/``).

    ``prompts``: template per model family (or ``{style: template}``, picked by
    ``prompt_style``), and ``default``: the family-independent fallback, a plain
    instruction without any model's tokens, for the families that have no prompt
    of their own and whose adapter formats an instruction itself
    (``SpeechModel.uses_default_prompt``); ``{field}`` is filled from the sample (``{question}``,
    ``{choices_text}``) or ``variables`` (``{target_language}``; a variable wins
    over a sample field of the same name); literal braces are doubled.
    ``reference``: the sample field scored against. ``requires``: fields every
    sample must carry (checked before the model loads). ``parser(prediction,
    sample)`` maps the generated text to an answer (``None`` = unparsed);
    ``metric(refs, answers, **extra_references)`` returns a dict whose first
    numeric entry is the headline number. The other keys: module docstring.
    """

    name: str
    prompts: dict[str, str | dict[str, str]]
    metric: Callable[..., dict]
    max_new_tokens: int
    reference: str = "text"
    requires: Sequence[str] = ()
    parser: Callable[[str, Any], Any] | None = None
    primary_metric: str | None = None
    higher_is_better: bool | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    #: picks the template of a family whose prompt is given per style ({style: template})
    prompt_style: str | None = None
    #: family -> {"when": {variable: value}, "why": what to do otherwise}
    prompt_conditions: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: task variable -> sample field that must agree with it (language tags), and the fix to name
    agreement_fields: dict[str, str] = field(default_factory=dict)
    agreement_fix: str = ""
    #: values of an agreement variable that name nothing (e.g. null, "auto"): no sample contradicts them
    agreement_unset: tuple = (None,)
    #: metric keyword -> sample field: more references the metric reads (recorded in each row)
    extra_references: dict[str, str] = field(default_factory=dict)
    #: the task settings that ``choices`` checks, named in messages (e.g. {"pair": "en_de"})
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def required_fields(self) -> list[str]:
        return list(dict.fromkeys([self.reference, *self.requires]))

    @property
    def recorded_fields(self) -> list[str]:
        """Fields a prediction row keeps besides its reference: what the parser looked at
        (``requires``) and the extra references, so a run can be re-scored from its rows."""
        fields = [*self.requires, *self.extra_references.values()]
        return [f for f in dict.fromkeys(fields) if f != self.reference]

    def row_fields(self, sample) -> dict[str, Any]:
        """The ``fields`` of a prediction row for ``sample`` (those of ``recorded_fields`` it has)."""
        fields = sample_fields(sample)
        return {k: fields[k] for k in self.recorded_fields if k in fields}

    def _styled(self, key: str) -> str:
        """The template under ``key`` (a family or ``default``): its only one, or the one of ``prompt_style``."""
        entry = self.prompts[key]
        if isinstance(entry, str):
            return entry
        if self.prompt_style not in entry:
            raise TaskConfigError(
                f"task {self.name!r}: the {key} prompt has styles {sorted(entry)}, not {self.prompt_style!r}; "
                f"set task.prompt_style=ONE_OF_THEM"
            )
        return entry[self.prompt_style]

    def _check_conditions(self, family: str) -> None:
        """Refuse a family whose prompt only runs for other task variables (Whisper: X->en only)."""
        condition = self.prompt_conditions.get(family) or {}
        for variable, wanted in (condition.get("when") or {}).items():
            actual = self.variables.get(variable)
            if actual != wanted:
                settings = ", ".join(f"task.{k}={v}" for k, v in self.settings.items()) or "the task"
                fix = condition.get("why") or "change the task settings"
                raise TaskConfigError(
                    f"task {self.name!r}: the {family} prompt needs {variable}={wanted!r}, but "
                    f"{settings} gives {variable}={actual!r}; {fix}"
                )

    def prompt_key(self, family: str, uses_default: bool = False) -> str:
        """Which entry of ``prompts`` a family gets: its own, else ``default`` when its
        adapter formats a plain instruction itself (``uses_default``); a clear error otherwise."""
        if family in self.prompts:
            return family
        if uses_default and DEFAULT_PROMPT in self.prompts:
            return DEFAULT_PROMPT
        families = sorted(k for k in self.prompts if k != DEFAULT_PROMPT)
        fallback = ("and a default prompt (a plain instruction), which this family's adapter does not take "
                    "(its uses_default_prompt is False)" if DEFAULT_PROMPT in self.prompts else "and no default prompt")
        raise TaskConfigError(
            f"task {self.name!r} has no prompt for model family {family!r}; it has prompts for {families} {fallback}"
        )

    def template(self, family: str, uses_default: bool = False) -> str:
        """The prompt template for a model family (see :meth:`prompt_key`); a clear error when the task has none."""
        key = self.prompt_key(family, uses_default)
        template = self._styled(key)
        self._check_conditions(key)
        unknown = _template_fields(template) - set(self.required_fields) - set(self.variables) - _DERIVED
        if unknown:
            raise TaskConfigError(
                f"task {self.name!r}: the {key} prompt uses {sorted(unknown)}, which are neither sample "
                f"fields the task requires ({self.required_fields}) nor task variables ({sorted(self.variables)})"
            )
        return template

    def prompt_for(self, model) -> str:
        """The template for ``model.family`` (kept for callers of the first runner)."""
        return self.template(model.family, model.uses_default_prompt)

    def prompt(self, family: str, sample, uses_default: bool = False) -> str:
        """``sample``'s prompt for a model family; ``uses_default``: the adapter's
        ``uses_default_prompt`` (a family without its own prompt then gets ``default``)."""
        template = self.template(family, uses_default)
        if not _template_fields(template):
            return template
        return template.format_map({**sample_fields(sample), **self.variables})  # the config names the language

    def reference_of(self, sample) -> Any:
        return sample_fields(sample).get(self.reference)

    def check_dataset(self, samples: Sequence, dataset: str) -> None:
        """Fail before any model loads when samples lack a required field, have an
        empty reference, or contradict a task variable (``dataset_agreement``);
        the message names the field, both values and examples."""
        for variable, field_name in self.agreement_fields.items():
            wanted = self.variables.get(variable)
            if wanted in self.agreement_unset:
                continue
            bad = [(s.id, value) for s in samples
                   if (value := sample_fields(s).get(field_name)) is not None and not _same_language(value, wanted)]
            if bad:
                settings = ", ".join(f"task.{k}={v}" for k, v in self.settings.items()) or f"task {self.name!r}"
                found = sorted({str(v) for _, v in bad})
                raise TaskDataError(
                    f"{settings} gives {variable}={wanted!r}, but {len(bad)} of {len(samples)} samples of dataset "
                    f"{dataset!r} have {field_name}={'/'.join(map(repr, found))} (e.g. {bad[0][0]!r}); "
                    f"{self.agreement_fix or 'make the task and the dataset agree'}"
                )
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

    def score(self, references: list, answers: list, fields: Sequence[Mapping[str, Any]] | None = None) -> dict:
        """The metric's dict. ``fields``: per sample, the row's ``fields`` (see ``row_fields``);
        each ``extra_references`` field found there reaches the metric by its keyword
        (a sample without it gives None). Without ``fields`` the metric gets none of them."""
        extra: dict[str, list] = {}
        if fields is not None:
            if len(fields) != len(references):
                raise ValueError(f"{len(references)} references but {len(fields)} field records")
            for keyword, field_name in self.extra_references.items():
                values = [(f or {}).get(field_name) for f in fields]
                if any(v is not None for v in values):
                    extra[keyword] = values
        return dict(self.metric(references, answers, **extra))

    def score_rows(self, rows: Sequence[Mapping[str, Any]]) -> dict:
        """Score prediction rows (``reference``, ``answer`` or ``prediction``, ``fields``) in their order."""
        answers = [r["answer"] if "answer" in r else r["prediction"] for r in rows]
        return self.score([r["reference"] for r in rows], answers, [r.get("fields") or {} for r in rows])

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

        check_choices(node)  # an unknown task.pair is one line, not an interpolation traceback
        parser = node.get("parser")
        agreement = plain("dataset_agreement", {}) or {}
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
            prompt_style=node.get("prompt_style"),
            prompt_conditions=plain("prompt_conditions", {}) or {},
            agreement_fields=dict(agreement.get("fields") or {}),
            agreement_fix=agreement.get("fix") or "",
            agreement_unset=tuple(agreement.get("unset", [None])),
            extra_references=plain("extra_references", {}) or {},
            settings={k: node.get(k) for k in (plain("choices", {}) or {})},
        )
