"""Paired comparison of two run folders on the same samples.

    python -m fastadasp.compare RUN_A RUN_B [--resamples N] [--seed S] [--metric NAME]
                                [--collapse-threshold PERCENT] [--json]

Prints each run's metric with its 95% bootstrap interval and collapsed samples, and the
difference B - A with its 95% paired-bootstrap interval and the fraction of resamples whose
sign flips (:mod:`fastadasp.metrics.uncertainty`); for BLEU also sacreBLEU's paired bootstrap
test. Reads ``settings.json`` and ``predictions.jsonl`` only, so it needs no model or dataset.

Refused, in one line: runs of different tasks or metric settings (another normaliser, tokenizer,
parser), runs on different samples (the message counts the ids that differ and names some),
runs whose references for one id differ.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..metrics.uncertainty import DEFAULT_RESAMPLES, DEFAULT_SEED, paired_difference
from .samples import RunSamples, default_cache_dir, load_run_samples, scoring_settings

__all__ = ["ComparisonError", "compare_runs", "format_comparison", "main"]


class ComparisonError(ValueError):
    """Two runs that cannot be compared sample by sample; the message says why in one line."""


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _differences(a: Any, b: Any, prefix: str) -> list[tuple[str, Any, Any]]:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return [d for k in sorted(set(a) | set(b), key=str) for d in _differences(a.get(k), b.get(k), f"{prefix}.{k}")]
    return [] if a == b else [(prefix, a, b)]


def _examples(ids: Sequence[str], shown: int = 3) -> str:
    listed = ", ".join(repr(i) for i in sorted(ids)[:shown])
    return listed + (", ..." if len(ids) > shown else "")


def _load(run: Path, metric: str | None) -> tuple[dict, dict | None, str]:
    settings = _read_json(run / "settings.json")
    if settings is None:
        raise ComparisonError(f"{run} is not a run folder: settings.json is missing")
    metrics = _read_json(run / "metrics.json")
    primary = (metrics or {}).get("primary_metric") or (settings.get("task") or {}).get("primary_metric")
    name = metric or primary
    if name is None:
        raise ComparisonError(f"{run} records no headline metric; name one with --metric")
    return settings, metrics, name


def _task_name(settings: dict) -> str:
    task = settings.get("task")
    return str(task.get("name") if isinstance(task, dict) else task)


def _check_samples(a: RunSamples, b: RunSamples, run_a: Path, run_b: Path) -> None:
    only_a, only_b = sorted(set(a.ids) - set(b.ids)), sorted(set(b.ids) - set(a.ids))
    if only_a or only_b:
        raise ComparisonError(
            f"{run_a} and {run_b} are not on the same samples: {len(only_a) + len(only_b)} ids differ "
            f"({len(only_a)} only in A{': ' + _examples(only_a) if only_a else ''}; {len(only_b)} only in B"
            f"{': ' + _examples(only_b) if only_b else ''}); compare runs of one dataset and sample subset")
    b_digest = dict(zip(b.ids, b.reference_digests))
    differ = [i for i, d in zip(a.ids, a.reference_digests) if b_digest[i] != d]
    if differ:
        raise ComparisonError(f"{run_a} and {run_b} have different references for {len(differ)} of {len(a.ids)} "
                              f"ids (e.g. {_examples(differ)}): they were scored on different data")


def compare_runs(run_a: str | Path, run_b: str | Path, *, metric: str | None = None,
                 resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED, threshold: float | None = None,
                 cache_dir: str | Path | None = None) -> dict[str, Any]:
    """The paired comparison of B against A (module docstring) as a JSON-ready dict; raises
    :class:`ComparisonError` (or :class:`~fastadasp.analysis.samples.SamplesUnavailable`) in one line."""
    run_a, run_b = Path(run_a), Path(run_b)
    settings_a, metrics_a, name_a = _load(run_a, metric)
    settings_b, metrics_b, name_b = _load(run_b, metric)
    task_a, task_b = (_task_name(settings) for settings in (settings_a, settings_b))
    if task_a != task_b:
        raise ComparisonError(f"{run_a} is a {task_a} run and {run_b} a {task_b} run; compare runs of one task")
    differ = _differences(scoring_settings(settings_a), scoring_settings(settings_b), "task")
    if differ:
        key, va, vb = differ[0]
        more = f" (and {len(differ) - 1} more)" if len(differ) > 1 else ""
        raise ComparisonError(f"{run_a} and {run_b} are scored differently: {key}: {va!r} (A) != {vb!r} (B){more}; "
                              "compare runs of one task and metric setting (re-score one with python -m "
                              "fastadasp.run.score RUN task.metric...=... to see it under the other's)")
    if name_a != name_b:
        raise ComparisonError(f"{run_a} reports {name_a} but {run_b} reports {name_b}; choose one with --metric")

    def expected(metrics: dict | None) -> float | None:
        if metric is not None or metrics is None:
            return None
        return (metrics.get("metrics") or {}).get(name_a)

    a = load_run_samples(run_a, name_a, expected=expected(metrics_a), cache_dir=cache_dir)
    b = load_run_samples(run_b, name_a, expected=expected(metrics_b), cache_dir=cache_dir)
    _check_samples(a, b, run_a, run_b)
    b = b.subset(a.ids)
    result = paired_difference(a.stats, b.stats, resamples, seed)
    collapsed_a, collapsed_b = a.collapses(threshold), b.collapses(threshold)
    return {
        "a": {"run_dir": str(run_a), "collapses": collapsed_a},
        "b": {"run_dir": str(run_b), "collapses": collapsed_b},
        "comparison": result.to_dict(),
        "verdict": result.verdict,
        "collapsed_only_in_a": sorted(set(collapsed_a["ids"]) - set(collapsed_b["ids"])),
        "collapsed_only_in_b": sorted(set(collapsed_b["ids"]) - set(collapsed_a["ids"])),
    }


def _collapse_line(collapses: Mapping[str, Any]) -> str:
    if not collapses["count"]:
        return "no collapsed samples"
    kinds = ", ".join(f"{k} {n}" for k, n in collapses["by_kind"].items() if n)
    return f"{collapses['count']} collapsed ({kinds}): {_examples(collapses['ids'], 5)}"


def format_comparison(result: Mapping[str, Any]) -> str:
    """The comparison in a few lines of text."""
    c = result["comparison"]
    metric, arrow = c["metric"], "↑" if c["higher_is_better"] else "↓"
    lines = []
    for side in ("a", "b"):
        low, high = c[f"{side}_interval"]
        lines.append(f"{side.upper()}: {c[side]:.2f} [{low:.2f}, {high:.2f}] {metric} {arrow}; "
                     f"{_collapse_line(result[side]['collapses'])}  ({result[side]['run_dir']})")
    low, high = c["interval"]
    flips = "-" if c["sign_flips"] is None else f"{100 * c['sign_flips']:.1f}%"
    lines.append(f"B - A: {c['difference']:+.2f} [{low:+.2f}, {high:+.2f}]; sign flips in {flips} of resamples; "
                 f"{result['verdict']}")
    lines.append(f"  95% paired percentile bootstrap over {c['samples']} samples, {c['resamples']} resamples, "
                 f"seed {c['seed']}")
    test = c.get("test")
    if test:
        lines.append(f"  {test['name']}: p = {test['p_value']:.4f}; A {test['a']['mean']:.2f} ± {test['a']['ci']:.2f}, "
                     f"B {test['b']['mean']:.2f} ± {test['b']['ci']:.2f} ({test['signature']})")
    for side in ("a", "b"):
        only = result[f"collapsed_only_in_{side}"]
        if only:
            lines.append(f"  collapsed only in {side.upper()}: {_examples(only, 8)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastadasp.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_a", type=Path, help="run folder A (the reference, e.g. full tokens)")
    parser.add_argument("run_b", type=Path, help="run folder B; the difference is B - A")
    parser.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES, help="bootstrap resamples (default %(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="bootstrap seed (default %(default)s)")
    parser.add_argument("--metric", help="the metric to compare (default: the runs' headline metric)")
    parser.add_argument("--collapse-threshold", type=float, default=None,
                        help="percent error rate above which a sample collapsed (default 90)")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the per-sample cache")
    args = parser.parse_args(argv)
    try:
        result = compare_runs(args.run_a, args.run_b, metric=args.metric, resamples=args.resamples, seed=args.seed,
                              threshold=args.collapse_threshold,
                              cache_dir=None if args.no_cache else default_cache_dir())
    except ValueError as exc:  # ComparisonError, SamplesUnavailable, bad --resamples/--seed: one line each
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1) if args.json else format_comparison(result))
    return 0
