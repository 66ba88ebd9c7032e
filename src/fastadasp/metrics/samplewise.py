"""Per-sample statistics of the corpus metrics, so a corpus metric can be recomputed on any
resample of the samples (bootstrap intervals, paired comparisons: `fastadasp.metrics.uncertainty`).

A corpus metric is not a mean of per-sample scores (corpus WER is summed edits over summed
reference words), so each metric gives per-sample *sufficient statistics* that add up, and a
rule that turns their sums into the metric:

- WER / CER (`corpus_wer`): edits and reference units per sample, from the metric itself
  (`corpus_wer(..., per_sample=True)`: the same normaliser, languages and units);
  the metric is 100 * sum(edits) / sum(reference units).
- accuracy-type (`accuracy`, `classification_accuracy`, `exact_match`, `answer_accuracy`):
  whether each sample is right, from the metric called on that sample alone (the same
  comparison rule); the metric is 100 * sum(right) / sum(counted). `answer_accuracy` also gives
  `accuracy_any_annotator`, `accuracy_yes_no` and `accuracy_open` (a sample outside the subset
  counts 0 of 0). Not `unweighted_accuracy`: a mean of per-class recalls does not add up.
- BLEU (`corpus_bleu`): sacreBLEU's sufficient statistics per sentence (hypothesis and
  reference length, n-gram matches and totals; sacreBLEU's public `corpus_score` on each
  sentence, with the run's tokenizer); the metric is sacreBLEU's `BLEU.compute_bleu` on their
  sums, with the metric's smoothing. The texts are kept for sacreBLEU's own paired test.
- CIDEr-D (`caption_scores`): each caption's CIDEr-D with the document frequencies of the whole
  test set fixed (what pycocoevalcap averages into the corpus score); the metric is their mean.
  A resample therefore does not recompute the document frequencies: an approximation that
  keeps the IDF weights of the set actually evaluated.

`sample_stats(metric, references, hypotheses, ids)` dispatches on the metric function (the
function behind a Hydra partial), through :data:`SAMPLEWISE`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .accuracy import accuracy, answer_accuracy, classification_accuracy, exact_match
from .bleu import corpus_bleu
from .captions import caption_scores
from .wer import corpus_wer

__all__ = ["SAMPLEWISE", "SampleStats", "metric_function", "reference_streams", "row_inputs", "sample_stats",
           "stats_from_rows", "unsupported_reason"]


@dataclass(frozen=True, eq=False)
class SampleStats:
    """One run's per-sample sufficient statistics for one metric, in sample order.

    ``stats[i, j]`` is statistic ``columns[j]`` of sample ``ids[i]``; the metric of a resample
    drawing sample i ``w[i]`` times is ``combine(w @ stats)``. ``settings``: what must agree
    for two runs to be compared (normaliser, unit, tokenizer, ...). ``texts``: what
    sacreBLEU's paired test needs (BLEU only): per sample, ``hypotheses`` and ``references``."""

    name: str
    ids: tuple[str, ...]
    columns: tuple[str, ...]
    stats: np.ndarray
    combine: str  # "ratio" (scale * sum(col 0) / sum(col 1)) | "bleu"
    higher_is_better: bool
    scale: float = 100.0
    settings: Mapping[str, Any] = field(default_factory=dict)
    texts: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.stats.shape != (len(self.ids), len(self.columns)):
            raise ValueError(f"{self.name}: statistics of shape {self.stats.shape} for {len(self.ids)} samples "
                             f"and columns {self.columns}")
        if len(set(self.ids)) != len(self.ids):
            raise ValueError(f"{self.name}: sample ids repeat; each sample must appear once")

    def __len__(self) -> int:
        return len(self.ids)

    def value(self, weights: np.ndarray | None = None) -> np.ndarray | float:
        """The metric on the samples weighted by ``weights`` ((n,) or (resamples, n): how often
        each sample is drawn); all samples once when None. NaN where it is undefined (no
        reference words drawn)."""
        w = np.ones(len(self)) if weights is None else np.asarray(weights, dtype=float)
        values = COMBINERS[self.combine](self, w @ self.stats)
        return float(values) if weights is None or w.ndim == 1 else values

    def per_sample(self) -> np.ndarray:
        """Each sample's own value (scale * col 0 / col 1: a sample's WER, 100/0 for right/wrong);
        inf where a sample has errors but no reference words, NaN where it has neither."""
        if self.combine != "ratio":
            raise ValueError(f"{self.name} has no per-sample value (its statistics combine as {self.combine})")
        num, den = self.stats[:, 0], self.stats[:, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.scale * num / den

    def subset(self, ids: Sequence[str]) -> SampleStats:
        """These statistics for ``ids`` (in that order); every id must be present."""
        index = {k: i for i, k in enumerate(self.ids)}
        missing = [k for k in ids if k not in index]
        if missing:
            raise KeyError(f"{len(missing)} id(s) not in these statistics, e.g. {missing[:3]}")
        rows = np.array([index[k] for k in ids], dtype=int)
        texts = None if self.texts is None else {k: [v[i] for i in rows] for k, v in self.texts.items()}
        return SampleStats(self.name, tuple(ids), self.columns, self.stats[rows], self.combine,
                           self.higher_is_better, self.scale, dict(self.settings), texts)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (caches); :meth:`from_dict` reads it back."""
        return {"name": self.name, "ids": list(self.ids), "columns": list(self.columns),
                "stats": self.stats.tolist(), "combine": self.combine, "higher_is_better": self.higher_is_better,
                "scale": self.scale, "settings": dict(self.settings), "texts": self.texts}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SampleStats:
        stats = np.asarray(data["stats"], dtype=float).reshape(len(data["ids"]), len(data["columns"]))
        return cls(data["name"], tuple(data["ids"]), tuple(data["columns"]), stats, data["combine"],
                   bool(data["higher_is_better"]), float(data["scale"]), dict(data["settings"]), data.get("texts"))


# ---------------------------------------------------------------------------- combining sums


def _ratio(stats: SampleStats, sums: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sums[..., 1] > 0, stats.scale * sums[..., 0] / np.where(sums[..., 1] > 0, sums[..., 1], 1),
                        np.nan)


def _bleu(stats: SampleStats, sums: np.ndarray) -> np.ndarray:
    """sacreBLEU's own formula (`BLEU.compute_bleu`) on summed sentence statistics, as its
    paired bootstrap recomputes each resample."""
    import sacrebleu

    order = int(stats.settings["max_ngram_order"])
    kwargs = {"smooth_method": stats.settings["smooth_method"], "smooth_value": stats.settings["smooth_value"],
              "effective_order": stats.settings["effective_order"], "max_ngram_order": order}

    def one(row: np.ndarray) -> float:
        return sacrebleu.BLEU.compute_bleu(correct=row[2:2 + order], total=row[2 + order:], sys_len=int(row[0]),
                                           ref_len=int(row[1]), **kwargs).score

    flat = np.atleast_2d(sums)
    values = np.array([one(row) for row in flat])
    return values.reshape(sums.shape[:-1])


#: how summed statistics become the metric
COMBINERS: dict[str, Callable[[SampleStats, np.ndarray], np.ndarray]] = {"ratio": _ratio, "bleu": _bleu}


# ---------------------------------------------------------------------------- per metric


def _keywords(metric: Callable) -> dict[str, Any]:
    return dict(getattr(metric, "keywords", None) or {})


def _wer(metric: Callable, name: str, refs: Sequence, hyps: Sequence, ids: Sequence[str], extra: dict) -> SampleStats:
    result = metric(list(refs), list(hyps), per_sample=True, **extra)
    counts = result["per_sample"]
    stats = np.column_stack([counts["edits"], counts["ref_words"]]).astype(float).reshape(len(ids), 2)
    settings = {k: result[k] for k in ("normalizer", "unit", "normalizer_setting", "unit_setting") if k in result}
    return SampleStats(name, tuple(ids), ("edits", "ref_words"), stats, "ratio", False, 100.0, settings)


def _right(metric: Callable, name: str, refs: Sequence, hyps: Sequence, ids: Sequence[str], extra: dict) -> SampleStats:
    """The metric on each sample alone: 100 (right), 0 (wrong) or None (outside the subset)."""
    stats = np.zeros((len(ids), 2))
    for i, (ref, hyp) in enumerate(zip(refs, hyps)):
        value = metric([ref], [hyp], **{k: [v[i]] for k, v in extra.items()})[name]
        if value is not None:
            stats[i] = (value / 100.0, 1.0)
    settings = {k: v for k, v in _keywords(metric).items() if isinstance(v, (str, int, float, bool, type(None)))}
    return SampleStats(name, tuple(ids), ("right", "counted"), stats, "ratio", True, 100.0, settings)


def _answer_right(metric: Callable, name: str, refs: Sequence, hyps: Sequence, ids: Sequence[str],
                  extra: dict) -> SampleStats:
    """`answer_accuracy`: a sample without annotator answers counts against its majority answer
    only, which is what giving it that answer as its one annotator answer does when scored alone."""
    given = extra.get("annotator_answers")
    if name == "accuracy_any_annotator" and not any(given or ()):
        raise ValueError("accuracy_any_annotator needs annotator answers, and no sample has any")
    if given is not None:
        extra = {**extra, "annotator_answers": [a if a else [r] for a, r in zip(given, refs)]}
    return _right(metric, name, refs, hyps, ids, extra)


def _per_sentence(references: Sequence[str | Sequence[str]]) -> list[list[str]]:
    """Each sentence's references as a list (one str per sentence, or a list of refs each)."""
    return [[r] if isinstance(r, str) else list(r) for r in references]


def reference_streams(per_sentence: Sequence[Sequence[str]]) -> list[list[str]]:
    """sacreBLEU's layout: one stream per reference set."""
    return [[refs[k] for refs in per_sentence] for k in range(len(per_sentence[0]))] if per_sentence else [[]]


def _bleu_stats(metric: Callable, name: str, refs: Sequence, hyps: Sequence, ids: Sequence[str],
                extra: dict) -> SampleStats:
    import sacrebleu

    result = metric(list(refs), list(hyps), **extra)  # the run's tokenizer, its checks on the references
    bleu = sacrebleu.BLEU(tokenize=result["tokenize"])
    texts = ["" if h is None else str(h) for h in hyps]
    per_sentence = _per_sentence(refs)
    order = bleu.max_ngram_order
    rows = []
    for hyp, sentence_refs in zip(texts, per_sentence):
        score = bleu.corpus_score([hyp], [[r] for r in sentence_refs])
        rows.append([score.sys_len, score.ref_len, *score.counts[:order], *score.totals[:order]])
    columns = ("sys_len", "ref_len", *(f"matches_{n + 1}" for n in range(order)), *(f"total_{n + 1}" for n in range(order)))
    settings = {"tokenize": result["tokenize"], "signature": result["signature"], "smooth_method": bleu.smooth_method,
                "smooth_value": bleu.smooth_value, "effective_order": bleu.effective_order, "max_ngram_order": order}
    return SampleStats(name, tuple(ids), columns, np.asarray(rows, dtype=float).reshape(len(ids), len(columns)), "bleu",
                       True, 1.0, settings, {"hypotheses": texts, "references": per_sentence})


def _cider(metric: Callable, name: str, refs: Sequence, hyps: Sequence, ids: Sequence[str], extra: dict) -> SampleStats:
    result = metric(list(refs), list(hyps), spice=False, per_sample=True, **extra)
    scores = np.asarray(result["per_sample"]["cider"], dtype=float)
    stats = np.column_stack([scores, np.ones_like(scores)]).reshape(len(ids), 2)
    settings = {"cider_variant": result["cider_variant"], "tokenizer": result["tokenizer"],
                "document_frequencies": "of the whole evaluated set, fixed under resampling"}
    return SampleStats(name, tuple(ids), ("cider", "count"), stats, "ratio", True, 1.0, settings)


_ACCURACY_NAMES = ("accuracy",)
#: metric function -> (per-sample extractor, the metric names it reproduces)
SAMPLEWISE: dict[Callable, tuple[Callable[..., SampleStats], tuple[str, ...]]] = {
    corpus_wer: (_wer, ("wer",)),
    corpus_bleu: (_bleu_stats, ("bleu",)),
    caption_scores: (_cider, ("cider",)),
    accuracy: (_right, _ACCURACY_NAMES),
    classification_accuracy: (_right, _ACCURACY_NAMES),
    exact_match: (_right, _ACCURACY_NAMES),
    answer_accuracy: (_answer_right, ("accuracy", "accuracy_any_annotator", "accuracy_yes_no", "accuracy_open")),
}


def metric_function(metric: Callable) -> Callable:
    """The function behind a metric callable (a Hydra partial's ``func``)."""
    return getattr(metric, "func", metric)


def unsupported_reason(metric: Callable, name: str) -> str | None:
    """Why ``name`` of ``metric`` has no per-sample statistics (None when it has)."""
    function = metric_function(metric)
    entry = SAMPLEWISE.get(function)
    label = getattr(function, "__qualname__", repr(function))
    if entry is None:
        return f"metric {label} has no per-sample form (fastadasp.metrics.samplewise.SAMPLEWISE)"
    if name not in entry[1]:
        return f"{label} gives per-sample statistics for {list(entry[1])}, not {name!r}"
    return None


def sample_stats(metric: Callable, references: Sequence, hypotheses: Sequence, ids: Sequence[str],
                 name: str, **extra: Sequence) -> SampleStats:
    """Per-sample statistics of metric ``name`` (a key of ``metric``'s result) for these samples;
    ``extra``: the metric's extra references (one value per sample), as the task passes them."""
    reason = unsupported_reason(metric, name)
    if reason is not None:
        raise ValueError(reason)
    if not len(references) == len(hypotheses) == len(ids):
        raise ValueError(f"{len(references)} references, {len(hypotheses)} hypotheses and {len(ids)} ids")
    extractor, _ = SAMPLEWISE[metric_function(metric)]
    return extractor(metric, name, references, hypotheses, [str(i) for i in ids], extra)


def row_inputs(rows: Sequence[Mapping[str, Any]], extra_references: Mapping[str, str]
               ) -> tuple[list, list, list[str], dict[str, list]]:
    """References, hypotheses, ids and extra references of prediction rows, as
    ``Task.score_rows`` hands them to the metric (the parsed ``answer``, else the raw
    ``prediction``; an extra reference only when some row has it)."""
    refs = [r["reference"] for r in rows]
    hyps = [r["answer"] if "answer" in r else r["prediction"] for r in rows]
    ids = [str(r["id"]) for r in rows]
    extra = {}
    for keyword, field_name in extra_references.items():
        values = [(r.get("fields") or {}).get(field_name) for r in rows]
        if any(v is not None for v in values):
            extra[keyword] = values
    return refs, hyps, ids, extra


def stats_from_rows(rows: Sequence[Mapping[str, Any]], metric: Callable, name: str,
                    extra_references: Mapping[str, str] | None = None) -> SampleStats:
    """:func:`sample_stats` of a run's prediction rows (in the given order)."""
    refs, hyps, ids, extra = row_inputs(rows, extra_references or {})
    return sample_stats(metric, refs, hyps, ids, name, **extra)
