"""How sure a corpus metric is: bootstrap intervals over samples and paired differences.

Rule (one for every metric): draw ``resamples`` resamples of the sample ids with replacement
(``numpy.random.default_rng(seed).choice(n, (resamples, n))``, the draw sacreBLEU's paired
bootstrap makes), recompute the *corpus* metric of each from the per-sample statistics
(:mod:`fastadasp.metrics.samplewise`), and take the 95% percentile interval: the
``resamples // 40``-th lowest and highest of the sorted values (sacreBLEU's ``estimate_ci``
rule; 25th and 975th of 1000).

- One run: its metric's interval (:func:`bootstrap_interval`).
- Two runs on the same samples (:func:`paired_difference`): the *same* resamples recompute both
  runs, and the difference B - A of each resample gives the difference's interval and the
  fraction of resamples whose difference is zero or of the other sign than the observed one
  (``sign_flips``). A side may be several runs (the seeds of a random method): each resample
  then takes their mean, so the interval is that of the seeds' mean on these samples; the
  spread over seeds is reported apart, never folded in.
- BLEU: sacreBLEU's own paired bootstrap (``sacrebleu.significance.PairedTest``, ``paired_bs``)
  runs as well and its p-value and per-system mean and CI are reported beside the interval.
  With the same seed it draws the same resamples, so its CI half-widths are those of the
  intervals here (a test checks it).

The default seed is sacreBLEU's default (``SACREBLEU_SEED`` = 12345), so BLEU's paired test and
these intervals agree without setting anything; sacreBLEU reads seed 0 as "no seed", so BLEU
comparisons refuse it.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from .collapses import collapse_flags, collapse_summary
from .samplewise import SampleStats, reference_streams

__all__ = ["DEFAULT_RESAMPLES", "DEFAULT_SEED", "INTERVAL_METHOD", "PairedDifference", "bootstrap_interval",
           "paired_difference", "percentile_interval", "resample_counts", "run_statistics"]

DEFAULT_RESAMPLES = 1000
#: sacreBLEU's default SACREBLEU_SEED: BLEU's paired test draws the same resamples as ours
DEFAULT_SEED = 12345
LEVEL = 0.95
INTERVAL_METHOD = "percentile bootstrap over samples"


def _check(resamples: int, seed: int) -> None:
    if not isinstance(resamples, (int, np.integer)) or resamples < 40:
        raise ValueError(f"resamples must be an integer >= 40 for a 95% interval, got {resamples!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


@lru_cache(maxsize=16)
def _counts(n: int, resamples: int, seed: int) -> np.ndarray:
    idxs = np.random.default_rng(seed).choice(n, size=(resamples, n), replace=True)  # sacreBLEU's draw
    idxs += n * np.arange(resamples)[:, None]  # in place: a large set holds two (resamples, n) arrays at most
    counts = np.bincount(idxs.ravel(), minlength=resamples * n).reshape(resamples, n).astype(np.int32)
    counts.setflags(write=False)
    return counts


def resample_counts(n: int, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> np.ndarray:
    """(resamples, n): how often each of the n samples is drawn in each resample (read-only)."""
    _check(resamples, seed)
    if n < 1:
        raise ValueError("no samples to resample")
    return _counts(int(n), int(resamples), int(seed))


def percentile_interval(values: np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval of resampled values (module docstring); NaN values (a
    resample where the metric is undefined) are left out."""
    finite = np.sort(np.asarray(values, dtype=float)[~np.isnan(values)])
    if finite.size < 40:
        return (float("nan"), float("nan"))
    low = finite.size // 40
    return float(finite[low]), float(finite[finite.size - low - 1])


def _side(runs: SampleStats | Sequence[SampleStats]) -> list[SampleStats]:
    runs = [runs] if isinstance(runs, SampleStats) else list(runs)
    if not runs:
        raise ValueError("no runs given")
    first = runs[0]
    for other in runs[1:]:
        _same_samples(first, other)
    return runs


def _same_samples(a: SampleStats, b: SampleStats) -> None:
    if a.name != b.name or a.combine != b.combine or a.columns != b.columns:
        raise ValueError(f"different metrics: {a.name} ({a.combine}) and {b.name} ({b.combine})")
    if dict(a.settings) != dict(b.settings):
        differ = sorted(k for k in set(a.settings) | set(b.settings) if a.settings.get(k) != b.settings.get(k))
        raise ValueError(f"{a.name} computed with different settings: "
                         + "; ".join(f"{k}: {a.settings.get(k)!r} != {b.settings.get(k)!r}" for k in differ))
    if a.ids != b.ids:
        only_a, only_b = set(a.ids) - set(b.ids), set(b.ids) - set(a.ids)
        if not only_a and not only_b:
            raise ValueError("the same samples in another order; align them first (SampleStats.subset)")
        raise ValueError(f"different samples: {len(only_a)} only in A, {len(only_b)} only in B")


def _mean_values(runs: list[SampleStats], counts: np.ndarray | None) -> np.ndarray | float:
    values = [r.value(counts) for r in runs]
    return float(np.mean(values)) if counts is None else np.mean(values, axis=0)


def bootstrap_interval(runs: SampleStats | Sequence[SampleStats], resamples: int = DEFAULT_RESAMPLES,
                       seed: int = DEFAULT_SEED) -> tuple[float, float]:
    """The 95% interval of the metric (of the runs' mean, for several runs on the same samples)."""
    runs = _side(runs)
    return percentile_interval(_mean_values(runs, resample_counts(len(runs[0]), resamples, seed)))


@dataclass(frozen=True)
class PairedDifference:
    """B - A on the same samples, with its 95% paired-bootstrap interval."""

    metric: str
    higher_is_better: bool
    samples: int
    a: float
    b: float
    a_interval: tuple[float, float]
    b_interval: tuple[float, float]
    difference: float
    interval: tuple[float, float]
    #: fraction of resamples whose difference is 0 or of the other sign (None: observed 0)
    sign_flips: float | None
    resamples: int
    seed: int
    a_runs: int = 1
    b_runs: int = 1
    #: sacreBLEU's paired bootstrap (BLEU only): p-value, each system's bootstrap mean and CI half-width
    test: Mapping[str, Any] | None = field(default=None)

    @property
    def excludes_zero(self) -> bool:
        low, high = self.interval
        return bool(low > 0 or high < 0)

    @property
    def verdict(self) -> str:
        """B better / worse than A, or no difference the interval can tell, in words."""
        if not self.excludes_zero:
            return "no difference the 95% interval can tell (it includes 0)"
        better = (self.difference > 0) == self.higher_is_better
        return f"B is {'better' if better else 'worse'} than A (the 95% interval excludes 0)"

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "higher_is_better": self.higher_is_better, "samples": self.samples,
                "a": self.a, "b": self.b, "a_interval": list(self.a_interval), "b_interval": list(self.b_interval),
                "difference": self.difference, "interval": list(self.interval), "sign_flips": self.sign_flips,
                "excludes_zero": self.excludes_zero, "method": f"paired {INTERVAL_METHOD}", "level": LEVEL,
                "resamples": self.resamples, "seed": self.seed, "a_runs": self.a_runs, "b_runs": self.b_runs,
                "test": None if self.test is None else dict(self.test)}


def _sign_flips(observed: float, differences: np.ndarray) -> float | None:
    if observed == 0:
        return None
    flipped = differences <= 0 if observed > 0 else differences >= 0
    return float(np.mean(flipped[~np.isnan(differences)]))


def paired_difference(a: SampleStats | Sequence[SampleStats], b: SampleStats | Sequence[SampleStats],
                      resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> PairedDifference:
    """B - A over the same resamples of the same samples (module docstring). Each side is one run
    or several runs (seeds) on the same samples; statistics must share metric, settings and ids
    in one order (align with :meth:`SampleStats.subset`), else ValueError."""
    a_runs, b_runs = _side(a), _side(b)
    _same_samples(a_runs[0], b_runs[0])
    counts = resample_counts(len(a_runs[0]), resamples, seed)
    a_values, b_values = _mean_values(a_runs, counts), _mean_values(b_runs, counts)
    a_value, b_value = _mean_values(a_runs, None), _mean_values(b_runs, None)
    differences = b_values - a_values
    first = a_runs[0]
    test = None
    if first.combine == "bleu" and len(a_runs) == len(b_runs) == 1:
        test = sacrebleu_paired_test(first, b_runs[0], resamples, seed)
    return PairedDifference(
        metric=first.name, higher_is_better=first.higher_is_better, samples=len(first), a=a_value, b=b_value,
        a_interval=percentile_interval(a_values), b_interval=percentile_interval(b_values),
        difference=b_value - a_value, interval=percentile_interval(differences),
        sign_flips=_sign_flips(b_value - a_value, differences), resamples=int(resamples), seed=int(seed),
        a_runs=len(a_runs), b_runs=len(b_runs), test=test)


@contextmanager
def _sacrebleu_seed(seed: int) -> Iterator[None]:
    """sacreBLEU takes its seed from the environment only (SACREBLEU_SEED)."""
    before = os.environ.get("SACREBLEU_SEED")
    os.environ["SACREBLEU_SEED"] = str(seed)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("SACREBLEU_SEED", None)
        else:
            os.environ["SACREBLEU_SEED"] = before


def sacrebleu_paired_test(a: SampleStats, b: SampleStats, resamples: int = DEFAULT_RESAMPLES,
                          seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """sacreBLEU's paired bootstrap (``PairedTest``, ``bs``) of B against baseline A, from the
    texts the BLEU statistics keep: its p-value, each system's bootstrap mean and 95% CI half-width."""
    import sacrebleu
    from sacrebleu.significance import PairedTest

    if seed == 0:
        raise ValueError("sacreBLEU reads seed 0 as 'no seed' (its paired test would not be reproducible); "
                         "use a seed >= 1")
    if a.texts is None or b.texts is None:
        raise ValueError("BLEU statistics without their texts: sacreBLEU's paired test needs them")
    if a.texts["references"] != b.texts["references"]:
        raise ValueError("the two runs' references differ")
    metric = sacrebleu.BLEU(tokenize=a.settings["tokenize"])
    with _sacrebleu_seed(seed):
        test = PairedTest([("A", a.texts["hypotheses"]), ("B", b.texts["hypotheses"])], {"BLEU": metric},
                          references=reference_streams(a.texts["references"]), test_type="bs",
                          n_samples=resamples)
        signature, results = test()
    base, system = results["BLEU"]
    return {"name": "sacreBLEU paired bootstrap (PairedTest, paired_bs)", "p_value": system.p_value,
            "a": {"score": base.score, "mean": base.mean, "ci": base.ci},
            "b": {"score": system.score, "mean": system.mean, "ci": system.ci},
            "signature": str(signature["BLEU"])}


def run_statistics(stats: SampleStats | None, flags: Mapping[str, np.ndarray], ids: Sequence[str],
                   resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED, threshold: float | None = None,
                   unavailable: str | None = None) -> dict[str, Any]:
    """The per-run keys of ``metrics.json``: ``metrics_interval`` (the metric's 95% interval),
    ``collapses`` (:mod:`.collapses`) and ``<metric>_without_collapses`` (the corpus metric
    over the samples that did not collapse; None when all did). Without per-sample statistics
    (``stats`` None, ``unavailable`` says why) the interval is that reason and collapses are
    counted from the rows' flags alone."""
    out: dict[str, Any] = {}
    kinds = collapse_flags(flags, stats, threshold)
    out["collapses"] = collapse_summary(ids, kinds, stats, threshold)
    if stats is None:
        out["metrics_interval"] = {"unavailable": unavailable or "no per-sample statistics"}
        return out
    low, high = bootstrap_interval(stats, resamples, seed)
    out["metrics_interval"] = {stats.name: [low, high], "method": INTERVAL_METHOD, "level": LEVEL,
                               "resamples": int(resamples), "seed": int(seed)}
    kept = ~np.any(np.column_stack(list(kinds.values())), axis=1) if kinds else np.ones(len(stats), bool)
    value = stats.value(kept.astype(float)) if kept.any() else None
    out[f"{stats.name}_without_collapses"] = None if value is None or np.isnan(value) else value
    return out
