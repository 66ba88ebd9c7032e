"""Tables in the paper's layouts from collected runs (pandas throughout).

How a table is read:
- a cell is every run with the same recorded settings except ``seed``; one run
  shows its value, several show ``mean ± std (n=k)`` (sample std over seeds);
- where the runs' ``predictions.jsonl`` are there (or metrics.json recorded it), the value is
  followed by its 95% bootstrap interval over samples, ``[low, high]`` (of the seeds' mean for
  several seeds: the seeds' spread stays in ``± std``), then the marks ``†`` (the paired 95%
  interval of the difference from the full-token baseline excludes 0) and ``‡`` (the same
  against the column's best cell), then ``c=k`` (k collapsed samples, summed over the cell's
  runs); :mod:`.intervals`, :mod:`fastadasp.metrics.uncertainty`;
- ``—`` marks a cell with no run (never 0); a blank cell is one that cannot
  exist: the full-token row at a reduced budget, a reduction method at 0 %;
- the best value of each reduced-budget column is bold, the direction taken
  from the runs' ``higher_is_better`` (else: WER-like lower, all else higher);
- column ``full`` holds FLOPs target 0; other columns are FLOPs *targets*, the
  realised FLOPs of each cell are in the provenance under the table;
- a table the paper also reports is followed by the paper's numbers in the same
  layout (a second table directly below, "Paper: ..."), then the provenance.

Table kinds: ``methods`` (one per model x task x dataset x cost model), ``paper_layout``
(WavLLM Tables 1-2, talk Tables 8-10 per model x cost model, tasks as column groups),
``layers`` (talk Table 6), ``long_audio`` (talk Table 12 / WavLLM Tables 3-4), ``paper``.
Table names (the file names) are the config names a user typed (:mod:`.names`); captions
keep the model's source description.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterable

import pandas as pd

from .intervals import IntervalSettings, TableStatistics
from .names import cost_model_label, slug
from .paper_numbers import BUDGETS, LONG_AUDIO_TABLES, PAPER_TABLES, LongAudioPaperTable, PaperTable
from .runs import METHOD_LABELS

__all__ = ["DIFFERS_FROM_BEST", "DIFFERS_FROM_FULL", "MISSING", "NOT_APPLICABLE", "Cell", "IntervalSettings", "Table",
           "TableError", "build_tables", "format_cell", "paper_tables"]

MISSING = "—"
NOT_APPLICABLE = ""
#: the paired 95% interval of the difference from the full-token baseline excludes 0
DIFFERS_FROM_FULL = "†"
#: the paired 95% interval of the difference from the column's best cell excludes 0
DIFFERS_FROM_BEST = "‡"
FULL = "full"
#: metrics shown together in one cell when a run records all of them (Clotho captions)
TRIPLES = (("cider", "spice", "spider"),)
#: dataset identity: runs differing in any of these never share a table
DATASET_KEYS = ["dataset", "dataset_split", "dataset_fingerprint", "limit", "shard"]
GROUP_KEYS = ["model", "task", *DATASET_KEYS]


class TableError(ValueError):
    """The runs of one table contradict each other (e.g. two headline metrics in one cell group)."""


def _refused(exc: TableError, skipped: list[str] | None) -> None:
    """One table is not built; the others still are when the caller collects the refusals."""
    if skipped is None:
        raise exc
    skipped.append(str(exc))


@dataclass
class Table:
    """One generated table: display cells, numeric means, and where they came from."""

    name: str
    title: str
    kind: str  # "methods" | "paper_layout" | "layers" | "long_audio" | "paper"
    cells: pd.DataFrame  # display strings (bold marked with "**...**")
    values: pd.DataFrame  # numeric mean of the headline metric, NaN where missing
    notes: list[str] = field(default_factory=list)
    provenance: list[str] = field(default_factory=list)
    provenance_cells: pd.DataFrame | None = None
    paper: list["Table"] = field(default_factory=list)
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RowSpec:
    """A named table row: runs of ``method`` whose settings include ``settings``."""

    label: str
    method: str
    settings: dict = field(default_factory=dict)


DEFAULT_ROWS = (
    RowSpec(METHOD_LABELS["none"], "none"),
    RowSpec("H2O", "h2o"),
    RowSpec("Random Merge", "random_merge"),
    RowSpec("Random Evict", "random_evict"),
    RowSpec("A-ToMe", "atome"),
    RowSpec("FastV", "fastv"),
    RowSpec("FastAdaSP-Dense decay", "fastadasp_dense", {"schedule": "decay", "weighted": True}),
    RowSpec("FastAdaSP-Dense constant", "fastadasp_dense", {"schedule": "constant", "weighted": True}),
    RowSpec("FastAdaSP-Sparse", "fastadasp_sparse", {"weighted": True}),
)


# ---------------------------------------------------------------------------- cells


def _num(x: float, decimals: int = 2) -> str:
    return f"{x:.{decimals}f}"


def format_cell(means: list[float | None], stds: list[float | None], n: int, decimals: int = 2) -> str:
    """``2.25`` for one run, ``2.25 ± 0.10 (n=3)`` for several; triples joined by `` / ``;
    a component no run could compute (None, e.g. SPICE without Java) shows as missing."""
    if n > 1:
        body = " / ".join(MISSING if m is None else f"{_num(m, decimals)} ± {_num(s, decimals)}"
                          for m, s in zip(means, stds))
        return f"{body} (n={n})"
    return " / ".join(MISSING if m is None else _num(m, decimals) for m in means)


@dataclass(frozen=True)
class Cell:
    """One result cell before it is written: per metric shown, the mean and the sample std over
    ``n`` runs (seeds), whether it is the best of its column, the headline metric's 95% bootstrap
    interval over samples, the marks of paired differences that exclude 0 and the number of
    collapsed samples (None: not known). Text: ``**15.70** [12.10, 20.30] †‡ c=2``."""

    means: tuple[float | None, ...]
    stds: tuple[float | None, ...]
    n: int
    decimals: int = 2
    best: bool = False
    interval: tuple[float, float] | None = None
    marks: str = ""
    collapses: int | None = None

    def text(self) -> str:
        body = format_cell(list(self.means), list(self.stds), self.n, self.decimals)
        parts = [f"**{body}**" if self.best else body]
        if self.interval is not None and not any(math.isnan(x) for x in self.interval):
            parts.append(f"[{_num(self.interval[0], self.decimals)}, {_num(self.interval[1], self.decimals)}]")
        if self.marks:
            parts.append(self.marks)
        if self.collapses:
            parts.append(f"c={self.collapses}")
        return " ".join(parts)


def _shown(entry: Cell | str) -> str:
    """A grid entry as written: a cell's text, or the marker of a cell without runs."""
    return entry.text() if isinstance(entry, Cell) else entry


def _cell_metrics(runs: pd.DataFrame) -> list[str]:
    """The metric(s) one cell shows: the headline metric, or a caption triple when recorded."""
    primary = runs["primary_metric"].iloc[0]
    for triple in TRIPLES:
        if primary in triple and all(all(m in r for m in triple) for r in runs["metrics"]):
            return list(triple)
    return [primary]


def _check_one_metric(runs: pd.DataFrame, what: str) -> tuple[str, bool]:
    metrics = runs[["primary_metric", "higher_is_better"]].drop_duplicates()
    if len(metrics) != 1:
        raise TableError(
            f"{what}: runs disagree on the headline metric {metrics.to_dict('records')}; e.g. "
            f"{runs['run_dir'].iloc[0]} vs {runs['run_dir'].iloc[-1]}"
        )
    return metrics["primary_metric"].iloc[0], bool(metrics["higher_is_better"].iloc[0])


def _aggregate(runs: pd.DataFrame, shown: list[str], statistics: TableStatistics | None = None) -> dict:
    """Statistics of one cell's runs (with ``statistics``: its interval and collapses too)."""
    per_metric = [[m.get(name) for m in runs["metrics"]] for name in shown]
    series = [None if any(v is None for v in vals) else pd.Series(vals, dtype=float) for vals in per_metric]
    n = len(runs)
    realised = runs["flops_realized"].astype(float)
    seeds = sorted({int(s) if float(s).is_integer() else s for s in runs["seed"]
                    if s is not None and not (isinstance(s, float) and math.isnan(s))})
    sampling = statistics.cell(runs) if statistics is not None else None
    return {
        "mean": float(pd.Series(runs["value"].astype(float)).mean()),
        "cell": Cell(tuple(None if s is None else s.mean() for s in series),
                     tuple(None if s is None else (s.std(ddof=1) if n > 1 else 0.0) for s in series), n,
                     interval=sampling.interval if sampling else None,
                     collapses=sampling.collapses if sampling else None),
        "sampling": sampling,
        "n": n,
        "seeds": seeds,
        "realised_min": realised.min(),
        "realised_max": realised.max(),
        "run_dirs": sorted(runs["run_dir"]),
    }


# ---------------------------------------------------------------------------- rows


def _setting(settings: dict, key: str) -> Any:
    if key == "layer" and "layer" not in settings:
        return settings.get("start_layer")
    return settings.get(key)


def _closest_spec(method: str, settings: dict, specs: list[RowSpec]) -> tuple[int, RowSpec, list[str]]:
    """The spec of ``method`` whose settings agree most with the run's (an exact match
    first), its position, and the setting keys in which the run differs from it. Methods
    without a spec in ``specs`` fall back to :data:`DEFAULT_ROWS`, placed after them; unknown
    methods come last."""
    candidates = [(i, s) for i, s in enumerate(specs) if s.method == method] or \
        [(len(specs) + i, s) for i, s in enumerate(DEFAULT_ROWS) if s.method == method] or \
        [(2000, RowSpec(METHOD_LABELS.get(method, method), method))]

    def differing(spec: RowSpec) -> list[str]:
        return [k for k, v in spec.settings.items() if _setting(settings, k) != v]

    order, spec = min(candidates, key=lambda c: (len(differing(c[1])), c[0]))
    return order, spec, differing(spec)


def _row_labels(variants: pd.DataFrame, specs: Iterable[RowSpec]) -> dict[tuple, tuple[int, str]]:
    """(method, settings_key) -> (order, label). A run takes the label of the spec it matches;
    one that matches none takes the closest spec's label plus the settings that differ
    (e.g. "FastAdaSP-Dense constant (weighted=False)"), placed after the exact rows; runs
    sharing a label get the settings that tell them apart (e.g. "(start_layer=2)")."""
    specs = list(specs)
    placed: dict[tuple, tuple[int, RowSpec, list[str]]] = {}
    settings_of: dict[tuple, dict] = {}
    for method, key, settings in variants[["method", "settings_key", "settings"]].itertuples(index=False):
        order, spec, differ = _closest_spec(method, settings, specs)
        placed[(method, key)] = (order + (1000 if differ else 0), spec, differ)
        settings_of[(method, key)] = settings
    by_label: dict[str, list[tuple]] = {}
    for row_key, (_, spec, differ) in placed.items():
        by_label.setdefault(spec.label + repr(differ), []).append(row_key)
    labels: dict[tuple, tuple[int, str]] = {}
    for keys in by_label.values():
        all_keys = sorted({k for rk in keys for k in settings_of[rk]})
        varying = [k for k in all_keys if len({repr(settings_of[rk].get(k)) for rk in keys}) > 1]
        for rk in keys:
            order, spec, differ = placed[rk]
            settings = settings_of[rk]
            shown = [(k, _setting(settings, k)) for k in differ]
            shown += [(k, settings.get(k)) for k in varying if k not in spec.settings and k not in differ]
            suffix = ", ".join(f"{k}={v}" for k, v in shown)
            labels[rk] = (order, f"{spec.label} ({suffix})" if suffix else spec.label)
    names = [label for _, label in labels.values()]
    for rk, (order, label) in list(labels.items()):
        if names.count(label) > 1:  # should not happen; never let two settings share a row silently
            labels[rk] = (order, f"{label} [{', '.join(f'{k}={v}' for k, v in sorted(settings_of[rk].items()))}]")
    return labels


def _budget_label(target: float) -> str:
    return FULL if target == 0 else f"{target * 100:g}%"


def _direction_arrow(higher: bool) -> str:
    return "↑" if higher else "↓"


# ---------------------------------------------------------------------------- method tables


@dataclass
class _ColumnGroup:
    label: str | None
    runs: pd.DataFrame
    metric: str
    higher: bool
    #: the full-token runs the cells are compared with (default: the group's own method ``none`` runs)
    baseline: pd.DataFrame | None = None


def _method_matrix(groups: list[_ColumnGroup], specs: Iterable[RowSpec], budgets: Iterable[float] = (),
                   statistics: TableStatistics | None = None) -> dict:
    """Cells, numeric values and provenance of a methods x (group, budget) table; with
    ``statistics``, intervals, collapse counts and the marks of paired differences."""
    all_runs = pd.concat([g.runs for g in groups], ignore_index=True)
    variants = all_runs.drop_duplicates(["method", "settings_key"])
    labels = _row_labels(variants, specs)
    ordered = sorted(labels.items(), key=lambda kv: (kv[1][0], kv[1][1]))
    row_names = [lab for _, (_, lab) in ordered]
    columns, grid, value, prov = [], {}, {}, []
    cell_runs_of, prov_of = {}, {}
    for g in groups:
        targets = sorted(set(budgets) | set(g.runs["flops_target"]))
        reduced_cols = []
        for target in targets:
            col = (g.label, _budget_label(target)) if g.label is not None else _budget_label(target)
            columns.append(col)
            if target > 0:
                reduced_cols.append(col)
            cell_runs = g.runs[g.runs["flops_target"] == target]
            for (method, key), (_, row) in ordered:
                runs = cell_runs[(cell_runs["method"] == method) & (cell_runs["settings_key"] == key)]
                if runs.empty:
                    cannot_exist = (method == "none") != (target == 0)
                    grid[(row, col)] = NOT_APPLICABLE if cannot_exist else MISSING
                    value[(row, col)] = math.nan
                    continue
                agg = _aggregate(runs, _cell_metrics(runs), statistics)
                grid[(row, col)], value[(row, col)] = agg["cell"], agg["mean"]
                cell_runs_of[(row, col)] = runs
                realised, scores = runs["flops_realized"].astype(float), runs["value"].astype(float)
                interval = agg["cell"].interval or (math.nan, math.nan)
                prov_of[(row, col)] = len(prov)
                prov.append({
                    "row": row, "column": g.label or "", "flops_target": target, "n": agg["n"],
                    "seeds": ",".join(map(str, agg["seeds"])) or "-",
                    "flops_realized": f"{agg['realised_min']:.4f}-{agg['realised_max']:.4f}",
                    "run_dirs": ", ".join(_short(d) for d in agg["run_dirs"]),
                    # numeric, for plots
                    "method": method,
                    "realised_mean": realised.mean(), "realised_std": realised.std(ddof=1) if len(runs) > 1 else 0.0,
                    "value_mean": scores.mean(), "value_std": scores.std(ddof=1) if len(runs) > 1 else 0.0,
                    "interval_low": interval[0], "interval_high": interval[1],
                    "interval": _interval_text(agg["cell"].interval),
                    "collapses": MISSING if agg["cell"].collapses is None else str(agg["cell"].collapses),
                    "vs_full": "", "vs_best": "",
                })
        _mark_best(grid, value, row_names, reduced_cols, g.higher)
        if statistics is not None:
            baseline = g.baseline if g.baseline is not None else g.runs[
                (g.runs["method"] == "none") & (g.runs["flops_target"] == 0)]
            _mark_differences(grid, prov, prov_of, cell_runs_of, baseline, row_names, reduced_cols, statistics)
    index = pd.Index(row_names, name="method")
    col_index = pd.MultiIndex.from_tuples(columns) if groups[0].label is not None else pd.Index(columns)
    cells = pd.DataFrame([[_shown(grid[(r, c)]) for c in columns] for r in row_names], index=index, columns=col_index)
    values = pd.DataFrame([[value[(r, c)] for c in columns] for r in row_names], index=index, columns=col_index)
    return {"cells": cells, "values": values, "provenance": pd.DataFrame(prov)}


def _interval_text(interval: tuple[float, float] | None, decimals: int = 2) -> str:
    if interval is None or any(math.isnan(x) for x in interval):
        return MISSING
    return f"[{_num(interval[0], decimals)}, {_num(interval[1], decimals)}]"


def _difference_text(result, reason: str | None) -> str:
    """``+3.10 [0.52, 6.20], flips 0.2%`` (B - A, its paired interval, sign flips), or why there is none."""
    if result is None:
        return f"— ({reason})" if reason else MISSING
    low, high = result.interval
    flips = "-" if result.sign_flips is None else f"{100 * result.sign_flips:.1f}%"
    shared = f", {result.samples} shared samples" if result.samples else ""
    p_value = f", sacreBLEU p={result.test['p_value']:.3f}" if result.test else ""
    return f"{result.difference:+.2f} [{low:+.2f}, {high:+.2f}], flips {flips}{shared}{p_value}"


def _mark_differences(grid: dict, prov: list[dict], prov_of: dict, cell_runs_of: dict, baseline: pd.DataFrame,
                      rows: list[str], columns: list, statistics: TableStatistics) -> None:
    """Mark each reduced cell whose paired difference from the full-token baseline (†) or from the
    column's best cell (‡) has a 95% interval excluding 0; the differences go to the provenance."""
    for col in columns:
        present = [r for r in rows if isinstance(grid.get((r, col)), Cell)]
        best_rows = [r for r in present if grid[(r, col)].best]
        best_runs = cell_runs_of[(best_rows[0], col)] if best_rows else None
        for r in present:
            runs, marks = cell_runs_of[(r, col)], ""
            entry = prov[prov_of[(r, col)]]
            if not baseline.empty:
                result, reason = statistics.paired(baseline, runs)
                entry["vs_full"] = _difference_text(result, reason)
                marks += DIFFERS_FROM_FULL if result is not None and result.excludes_zero else ""
            if best_runs is not None and r not in best_rows:
                result, reason = statistics.paired(best_runs, runs)
                entry["vs_best"] = _difference_text(result, reason)
                marks += DIFFERS_FROM_BEST if result is not None and result.excludes_zero else ""
            grid[(r, col)] = replace(grid[(r, col)], marks=marks)


def _mark_best(grid: dict, value: dict, rows: list[str], columns: list, higher: bool) -> None:
    """Flag the best cell(s) of each column (every cell with a value is a :class:`Cell`)."""
    for col in columns:
        vals = pd.Series({r: value[(r, col)] for r in rows}, dtype=float).dropna()
        if vals.empty:
            continue
        best = vals.max() if higher else vals.min()
        for r in vals.index[vals == best]:
            grid[(r, col)] = replace(grid[(r, col)], best=True)


def _short(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _model_name(runs: pd.DataFrame) -> str:
    """The model part of a table's file name: the config name the runs were composed from."""
    return "+".join(sorted(set(runs["model_config"])))


def _model_caption(description: str, runs: pd.DataFrame) -> str:
    """The model as captions name it: its source description, and the config name when that says more."""
    name = _model_name(runs)
    return description if name == slug(description) else f"model {name} = {description}"


def _dataset_label(row: pd.Series | dict) -> str:
    label = str(row["dataset"])
    if row.get("dataset_split"):
        label += f"/{row['dataset_split']}"
    if row.get("limit") is not None and not (isinstance(row["limit"], float) and math.isnan(row["limit"])):
        label += f" (first {int(row['limit'])})"
    if row.get("shard"):
        label += f" shard {row['shard']}"
    return label


def _provenance_lines(runs: pd.DataFrame, cost_model: str | None) -> list[str]:
    def distinct(col: str) -> str:
        vals = sorted({str(v) for v in runs[col] if v is not None and not (isinstance(v, float) and math.isnan(v))})
        return ", ".join(vals) if vals else "not recorded"

    fingerprints = distinct("dataset_fingerprint")
    realised = runs.loc[runs["flops_target"] > 0, "flops_realized"].astype(float)
    lines = [
        f"model: {distinct('model')} (config: {distinct('model_config')})",
        "dataset: " + "; ".join(sorted({_dataset_label(r) for _, r in runs.iterrows()}))
        + f" (fingerprint: {fingerprints})",
        f"normaliser (metrics.normalizer): {distinct('normalizer')}",
        f"cost model: {cost_model_label(cost_model) if cost_model else distinct('budget_model')}"
        + ("" if cost_model is None else f" (full-token runs recorded under: {distinct('budget_model')})"),
        "realised FLOPs reduction over reduced runs: "
        + (f"{realised.min():.4f}-{realised.max():.4f}" if not realised.empty else "none"),
        f"runs: {len(runs)} (samples per run: {distinct('num_samples')}; failed samples: {distinct('num_failed')})",
        f"git commits: {distinct('git_commit')}",
    ]
    return lines


# ---------------------------------------------------------------------------- grouping


def _group_key(row: pd.Series) -> tuple:
    return tuple(None if (isinstance(row[k], float) and math.isnan(row[k])) else row[k] for k in GROUP_KEYS)


def _budget_groups(runs: pd.DataFrame) -> list[tuple[dict, str, pd.DataFrame]]:
    """(identity, cost model, runs) per (model, task, dataset) and cost model. Full-token
    runs join every cost-model group of their (model, task, dataset); runs recorded with the
    group's cost model are preferred when there are such."""
    if runs.empty:
        return []
    runs = runs.assign(_gk=runs.apply(_group_key, axis=1))
    out = []
    for gk, sub in runs.groupby("_gk", sort=True):
        identity = dict(zip(GROUP_KEYS, gk))
        base = sub[sub["method"] == "none"]
        reduced = sub[sub["method"] != "none"]
        models = sorted(set(reduced["budget_model"])) or sorted(set(base["budget_model"]))
        for bm in models:
            own = base[base["budget_model"] == bm]
            chosen = pd.concat([own if not own.empty else base, reduced[reduced["budget_model"] == bm]])
            out.append((identity, bm, chosen.drop(columns="_gk")))
    return out


# ---------------------------------------------------------------------------- paper blocks


def _paper_method_table(paper: PaperTable, tasks: Iterable[str] | None = None) -> Table:
    """The paper's numbers as a Table in the same layout as ours."""
    tasks = [t for t in paper.tasks if tasks is None or t in tasks]
    rows = [("Full-token baseline", None, {})] + [(r.label, r.values, r.extra) for r in paper.rows]
    grid, value, columns = {}, {}, []
    extra_cols = ["TE", "TE rank"] if paper.layout == "layers" else []
    for col in extra_cols:
        columns.append(("", col))
        key = {"TE": "te", "TE rank": "te_rank"}[col]
        for label, _, extra in rows:
            v = extra.get(key)
            grid[(label, ("", col))] = MISSING if v is None else (f"{v:.2f}" if key == "te" else str(v))
            value[(label, ("", col))] = math.nan if v is None else float(v)
    for task in tasks:
        metric, higher = paper.tasks[task]
        names = " / ".join(metric) if isinstance(metric, tuple) else metric
        group = f"{task.upper()} ({names} {_direction_arrow(higher)})"
        for target in (0.0, *BUDGETS):
            col = (group, _budget_label(target))
            columns.append(col)
            for label, vals, _ in rows:
                v = paper.baseline[task] if vals is None and target == 0 else (
                    None if vals is None or target == 0 else vals[task][BUDGETS.index(target)])
                if v is None:
                    grid[(label, col)] = NOT_APPLICABLE if (vals is None) != (target == 0) else MISSING
                    value[(label, col)] = math.nan
                    continue
                triple = isinstance(v, tuple)
                grid[(label, col)] = Cell(tuple(v) if triple else (v,), (0.0,) * (3 if triple else 1), 1)
                value[(label, col)] = float(v[0] if triple else v)
        reduced = [c for c in columns if c[0] == group and c[1] != FULL]
        _mark_best(grid, value, [r[0] for r in rows[1:]], reduced, higher)
    labels = [r[0] for r in rows]
    if paper.layout == "layers":  # the paper puts the baseline in the caption
        labels = labels[1:]
        columns = [c for c in columns if c[1] != FULL]
    idx = pd.Index(labels, name="method" if paper.layout == "methods" else "layer")
    cols = pd.MultiIndex.from_tuples(columns)
    return Table(
        name=f"paper_{paper.id}",
        title=f"Paper: {paper.title}",
        kind="paper",
        cells=pd.DataFrame([[_shown(grid[(r, c)]) for c in columns] for r in labels], index=idx, columns=cols),
        values=pd.DataFrame([[value[(r, c)] for c in columns] for r in labels], index=idx, columns=cols),
        notes=[f"Model: {paper.model}. Source: {paper.source}. Bold = best per column by the same rule as ours "
               "(not copied from the paper)."]
        + ([f"Full-token baseline: {paper.baseline}."] if paper.layout == "layers" else []) + list(paper.notes),
        meta={"paper_id": paper.id, "model": paper.model},
    )


def _paper_long_audio_table(paper: LongAudioPaperTable) -> Table:
    cols = ["Beam", "Audio (s)", "Token reduce %", "FLOPs reduction %", "RTF", "Prefill (s)", "Decode (s)",
            "Throughput (tok/s)"]
    text, values = [], []
    for beam, audio, red, flops, rtf, pre, dec, thr, speed in paper.rows:
        text.append([str(beam), str(audio), "Full Token" if red is None else f"{red:g}", f"{flops:.2f}", f"{rtf:.3f}",
                     f"{pre:.2f}", f"{dec:.2f}", f"{thr:.2f}" + ("" if speed is None else f" ({speed:.2f}x)")])
        values.append([beam, audio, 0 if red is None else red, flops, rtf, pre, dec, thr])
    return Table(
        name=f"paper_{paper.id}", title=f"Paper: {paper.title}", kind="paper",
        cells=pd.DataFrame(text, columns=cols), values=pd.DataFrame(values, columns=cols),
        notes=[f"Model: {paper.model}, device: {paper.device}. Source: {paper.source}."],
        meta={"paper_id": paper.id},
    )


def paper_tables() -> list[Table]:
    """Every paper table on its own, for reference."""
    return [_paper_method_table(p) for p in PAPER_TABLES.values()] + [
        _paper_long_audio_table(p) for p in LONG_AUDIO_TABLES.values()]


# ---------------------------------------------------------------------------- our tables


def _legend(provenance: pd.DataFrame, statistics: TableStatistics | None) -> list[str]:
    """What the intervals, marks and collapse counts in a table's cells mean (none: no legend)."""
    if statistics is None or provenance.empty or (provenance["interval"] == MISSING).all():
        return []
    settings = statistics.settings
    threshold = 90.0 if settings.collapse_threshold is None else settings.collapse_threshold
    return [
        f"Cells: value [95% bootstrap interval over samples] (percentile bootstrap, {settings.resamples} resamples, "
        f"seed {settings.seed}); several seeds: mean ± std over the seeds (n=k) [95% interval of the seeds' mean, "
        "every seed resampled alike], so the seeds' spread and the sampling interval stay apart. "
        f"{DIFFERS_FROM_FULL} = the paired 95% interval of the difference from the full-token baseline (same "
        f"samples, same resamples) excludes 0; {DIFFERS_FROM_BEST} = the same against the column's best (bold) cell; "
        "no mark = no difference the interval can tell. c=k: k collapsed samples (empty output, max new tokens "
        f"reached, repetition loop, or for WER/CER a sample above {threshold:g}%), summed over the cell's runs; "
        "no c = none. The differences (B - A [95% interval], share of resamples whose sign flips) are in the "
        "provenance below."]


def _sampling_lines(runs: pd.DataFrame, statistics: TableStatistics | None) -> list[str]:
    """How many runs have a per-sample record, and why the others have none."""
    if statistics is None:
        return []
    missing = [d for d in runs["run_dir"] if d in statistics.unavailable]
    line = f"per-sample records (intervals, paired differences, collapses): {len(runs) - len(missing)} of {len(runs)} runs"
    if missing:
        reasons = sorted({statistics.unavailable[d] for d in missing})
        line += f"; without: {len(missing)} ({'; '.join(reasons[:3])}{'; ...' if len(reasons) > 3 else ''})"
    return [line]


def _generic_tables(runs: pd.DataFrame, skipped: list[str] | None = None,
                    statistics: TableStatistics | None = None) -> list[Table]:
    tables = []
    for identity, bm, sub in _budget_groups(runs):
        what = f"{identity['model']} / {identity['task']} / {_dataset_label(identity)} / cost_model={bm}"
        try:
            metric, higher = _check_one_metric(sub, what)
        except TableError as exc:
            _refused(exc, skipped)
            continue
        shown = _cell_metrics(sub)
        m = _method_matrix([_ColumnGroup(None, sub, metric, higher)], DEFAULT_ROWS, BUDGETS, statistics)
        papers = [_paper_method_table(p, [identity["task"]]) for p in PAPER_TABLES.values()
                  if identity["task"] in p.tasks and p.layout == "methods" and p.id != "talk_table8"]
        tables.append(Table(
            name=slug("methods", _model_name(sub), identity["task"], identity["dataset"], identity["dataset_split"],
                      f"limit{identity['limit']}" if identity["limit"] is not None else None, identity["shard"], bm),
            title=f"{identity['task'].upper()} on {_dataset_label(identity)}, {_model_caption(identity['model'], sub)}, "
                  f"cost model {cost_model_label(bm)}: {' / '.join(shown)} ({_direction_arrow(higher)}) "
                  "per FLOPs-reduction target",
            kind="methods", cells=m["cells"], values=m["values"], notes=_legend(m["provenance"], statistics),
            provenance=_provenance_lines(sub, bm) + _sampling_lines(sub, statistics),
            provenance_cells=m["provenance"], paper=papers,
            meta={**identity, "budget_model": bm, "metric": metric, "higher_is_better": higher, "runs": sub},
        ))
    return tables


def _paper_layout_tables(runs: pd.DataFrame, skipped: list[str] | None = None,
                         statistics: TableStatistics | None = None) -> list[Table]:
    tables = []
    groups = _budget_groups(runs)
    for paper in PAPER_TABLES.values():
        if paper.layout != "methods":
            continue
        methods = {r.method for r in paper.rows} | {"none"}
        by_model: dict[tuple, list] = {}
        for identity, bm, sub in groups:
            if identity["task"] in paper.tasks:
                sub = sub[sub["method"].isin(methods)]
                if (sub["method"] != "none").any():
                    by_model.setdefault((identity["model"], bm), []).append((identity, sub))
        for (model, bm), members in sorted(by_model.items()):
            members.sort(key=lambda m: (list(paper.tasks).index(m[0]["task"]), _dataset_label(m[0])))
            col_groups = []
            try:
                for identity, sub in members:
                    metric, higher = _check_one_metric(sub, f"{model} / {identity['task']} / {_dataset_label(identity)}")
                    names = " / ".join(_cell_metrics(sub))
                    label = f"{identity['task'].upper()} {_dataset_label(identity)} ({names} {_direction_arrow(higher)})"
                    col_groups.append(_ColumnGroup(label, sub, metric, higher))
            except TableError as exc:
                _refused(exc, skipped)
                continue
            specs = [RowSpec(METHOD_LABELS["none"], "none")]
            specs += [RowSpec(r.label, r.method, r.settings) for r in paper.rows]
            m = _method_matrix(col_groups, specs, BUDGETS, statistics)
            present = {i["task"] for i, _ in members}
            absent = [t.upper() for t in paper.tasks if t not in present]
            all_runs = pd.concat([s for _, s in members])
            tables.append(Table(
                name=slug(paper.id, _model_name(all_runs), bm),
                title=f"{paper.title.split(':')[0]} layout, ours: {_model_caption(model, all_runs)}, "
                      f"cost model {cost_model_label(bm)}",
                kind="paper_layout", cells=m["cells"], values=m["values"],
                notes=([f"Tasks of the paper table without runs here: {', '.join(absent)}."] if absent else [])
                + list(paper.notes) + _legend(m["provenance"], statistics),
                provenance=_provenance_lines(all_runs, bm) + _sampling_lines(all_runs, statistics),
                provenance_cells=m["provenance"],
                paper=[_paper_method_table(paper)],
                meta={"paper_id": paper.id, "model": model, "budget_model": bm, "runs": all_runs},
            ))
    return tables


def _te_for(te_files: list[dict], identity: dict) -> dict | None:
    """The first TE file of this model and task (calibration data is a held-out split, so the
    dataset is not matched); a file that does not name its model or task matches any."""
    for te in te_files:
        if all(te.get(k) in (None, identity[k]) for k in ("model", "task")):
            return te
    return None


def _te_columns(te: dict | None, layers: list[int]) -> pd.DataFrame:
    """TE and its rank for each layer, NaN where the TE file has none (or there is no file)."""
    if te is None:
        return pd.DataFrame({"TE": math.nan, "TE rank": math.nan}, index=layers)
    curve = te["curve"].set_index("layer")
    return pd.DataFrame({"TE": curve["te"].astype(float), "TE rank": curve["rank"].astype(float)}).reindex(layers)


def _layer_tables(runs: pd.DataFrame, te_files: list[dict], skipped: list[str] | None = None,
                  statistics: TableStatistics | None = None) -> list[Table]:
    """Talk Table 6 layout: FastAdaSP-Sparse per layer, with TE and its rank where known."""
    tables = []
    for identity, bm, sub in _budget_groups(runs):
        sparse = sub[sub["method"] == "fastadasp_sparse"]
        te = _te_for(te_files, identity)
        if sparse.empty or (sparse["layer"].nunique() < 2 and te is None):
            continue
        try:
            metric, higher = _check_one_metric(sparse, f"layer selection {identity}")
        except TableError as exc:
            _refused(exc, skipped)
            continue
        layers = sorted(set(sparse["layer"].dropna().astype(int)) | (set(te["curve"]["layer"]) if te else set()))
        specs = [RowSpec(f"Layer {layer}", "fastadasp_sparse", {"layer": layer}) for layer in layers]
        base = sub[sub["method"] == "none"]
        m = _method_matrix([_ColumnGroup(None, sparse, metric, higher, baseline=base)], specs, BUDGETS, statistics)
        cells, values = m["cells"], m["values"]
        present = {int(re.match(r"Layer (\d+)", r).group(1)) for r in cells.index}
        missing_layers = [layer for layer in layers if layer not in present]
        if missing_layers:  # TE known, no runs: show the row with missing cells
            extra = pd.DataFrame(MISSING, index=[f"Layer {layer}" for layer in missing_layers], columns=cells.columns)
            cells = pd.concat([cells, extra])
            values = pd.concat([values, pd.DataFrame(math.nan, index=extra.index, columns=values.columns)])
        layer_of = {r: int(re.match(r"Layer (\d+)", r).group(1)) for r in cells.index}
        te_cols = _te_columns(te, [layer_of[r] for r in cells.index]).set_axis(cells.index)
        cells.insert(0, "TE rank", te_cols["TE rank"].map(lambda v: MISSING if pd.isna(v) else str(int(v))))
        cells.insert(0, "TE", te_cols["TE"].map(lambda v: MISSING if pd.isna(v) else f"{v:.4g}"))
        values.insert(0, "TE rank", te_cols["TE rank"])
        values.insert(0, "TE", te_cols["TE"])
        selected = te.get("selected_layer") if te else None
        order = sorted(cells.index, key=lambda r: (layer_of[r] == selected, layer_of[r]))
        rename = {r: f"{r} (selected)" for r in cells.index if layer_of[r] == selected}
        cells, values = cells.loc[order].rename(index=rename), values.loc[order].rename(index=rename)
        cells.index.name = values.index.name = "layer"
        base_text = _aggregate(base, _cell_metrics(base), statistics)["cell"].text() if not base.empty else MISSING
        notes = [f"Full-token baseline {metric}: {base_text}."]
        if te:
            notes.append(f"TE from {_short(te['file'])}; selected layer {selected}; "
                         f"rule: {te.get('rule', 'not recorded')}.")
        else:
            notes.append("No transfer_entropy.json matches this model/task: TE columns are missing.")
        shown_runs = pd.concat([base, sparse])
        tables.append(Table(
            name=slug("layers", _model_name(shown_runs), identity["task"], identity["dataset"],
                      identity["dataset_split"], bm),
            title=f"Talk Table 6 layout (layer selection), ours: FastAdaSP-Sparse on {identity['task'].upper()} "
                  f"{_dataset_label(identity)}, {_model_caption(identity['model'], shown_runs)}, cost model "
                  f"{cost_model_label(bm)} ({metric} {_direction_arrow(higher)})",
            kind="layers", cells=cells, values=values, notes=notes + _legend(m["provenance"], statistics),
            provenance=_provenance_lines(shown_runs, bm) + _sampling_lines(shown_runs, statistics),
            provenance_cells=m["provenance"],
            paper=[_paper_method_table(PAPER_TABLES["talk_table6"])] if identity["task"] == "er" else [],
            meta={**identity, "budget_model": bm, "te_file": te["file"] if te else None},
        ))
    return tables


def _long_audio_tables(bench: pd.DataFrame) -> list[Table]:
    """Talk Table 12 / WavLLM Tables 3-4 layout from long_audio_benchmark files."""
    if bench.empty:
        return []
    tables = []
    bench = bench.assign(dtype=bench["dtype"].fillna("-"))
    for (model, device, dtype), sub in bench.groupby(["model", "device", "dtype"], sort=True):
        keys = ["audio_s", "beam", "method", "flops_target"]
        rows_text, rows_val = [], []
        full_thr = {}
        agg = sub.groupby(keys, sort=False)
        ordered = sorted(agg.groups, key=lambda k: (k[0], k[1], k[2] != "none", k[3], k[2]))
        for key in ordered:
            runs = agg.get_group(key)
            if key[2] == "none":
                full_thr[(key[0], key[1])] = runs["throughput_tok_s"].astype(float).mean() if "throughput_tok_s" in runs else math.nan
        for audio, beam, method, target in ordered:
            runs = agg.get_group((audio, beam, method, target))

            def stat(col: str, scale: float = 1.0, decimals: int = 2) -> tuple[str, float]:
                if col not in runs or runs[col].isna().all():
                    return MISSING, math.nan
                v = runs[col].dropna().astype(float) * scale
                return Cell((v.mean(),), (v.std(ddof=1) if len(v) > 1 else 0.0,), len(v), decimals).text(), v.mean()

            thr_text, thr = stat("throughput_tok_s")
            full = full_thr.get((audio, beam), math.nan)
            if method != "none" and not math.isnan(thr) and full and not math.isnan(full):
                thr_text += f" ({thr / full:.2f}x)"
            kv_text, kv = stat("kv_bytes", 1 / 2**20)
            kv_ratio = math.nan
            if {"kv_bytes", "kv_bytes_full"} <= set(runs):
                full_kv = runs["kv_bytes_full"].astype(float)
                kv_ratio = (runs["kv_bytes"].astype(float) / full_kv.where(full_kv > 0)).mean()
            cols = {
                "Method": (METHOD_LABELS.get(method, method) if method != "none" else "Full Token", math.nan),
                "Beam": (str(beam), beam), "Audio (s)": (f"{audio:g}", audio),
                "FLOPs target %": (f"{target * 100:g}", target * 100),
                "Token reduce %": stat("token_reduction", 100) if method != "none" else ("Full Token", 0.0),
                "FLOPs reduction %": stat("flops_realized", 100),
                "RTF": stat("rtf", 1, 3), "Prefill (s)": stat("prefill_s", 1, 3), "Decode (s)": stat("decode_s", 1, 3),
                "Throughput (tok/s)": (thr_text, thr), "KV cache (MiB)": (kv_text, kv),
                "KV vs full": (MISSING if math.isnan(kv_ratio) else f"{kv_ratio:.3f}", kv_ratio),
                "Peak mem (MiB)": stat("peak_mem_bytes", 1 / 2**20, 1),
                "Repeats": (str(int(runs["repeats"].sum())) if "repeats" in runs else MISSING,
                            float(runs["repeats"].sum()) if "repeats" in runs else math.nan),
            }
            # the decode speed-up over its memory-traffic ideal (W + 3C_full) / (W + 3C_reduced): the engine's
            # share of the gap, apart from the method's limit; only for benchmarks that record it (issue 19)
            if "decode_fraction_of_ideal" in sub:
                cols["Decode of ideal"] = (stat("decode_fraction_of_ideal", 1, 2) if method != "none"
                                           else (MISSING, math.nan))
            rows_text.append({k: v[0] for k, v in cols.items()})
            rows_val.append({k: v[1] for k, v in cols.items()})
        files = sorted(set(sub["file"]))
        commands = sorted({c for c in sub["command"].dropna()})
        tables.append(Table(
            # the benchmark's own arguments (model config, source, device, dtype); files without them: the descriptions
            name=slug("long_audio", *(sorted(set(sub["name"].dropna())) or [model, device, dtype])),
            title=f"Talk Table 12 / WavLLM Tables 3-4 layout, ours: {model} on {device} ({dtype})",
            kind="long_audio", cells=pd.DataFrame(rows_text), values=pd.DataFrame(rows_val),
            notes=["FLOPs target % is what the run asked for; Token reduce % and FLOPs reduction % are what the "
                   "benchmark measured (token_reduction; flops_realized, our analytic FLOPs model). The paper's "
                   "Token reduce column is its setting and its FLOPs formula is not published. Throughput (Nx) = "
                   "relative to the full-token row of the same beam and audio length. Decode of ideal = the decode "
                   "speed-up as a fraction of its memory-traffic ideal (W + 3C_full) / (W + 3C_reduced) (W: weight "
                   "bytes, C: KV-cache bytes; 1 C for greedy). Cells with several rows: "
                   "mean ± std (n)."],
            provenance=[f"files: {', '.join(_short(f) for f in files)}", f"device: {device}", f"dtype: {dtype}",
                        f"model: {model}", "command: " + (" | ".join(commands) if commands else "not recorded")],
            paper=[_paper_long_audio_table(p) for p in LONG_AUDIO_TABLES.values()],
            meta={"model": model, "device": device, "dtype": dtype, "rows": sub},
        ))
    return tables


def build_tables(runs: pd.DataFrame, benchmarks: pd.DataFrame | None = None,
                 te_files: list[dict] | None = None, include_paper: bool = True,
                 *, skipped: list[str] | None = None, intervals: bool | IntervalSettings = True) -> list[Table]:
    """All tables: one per (model, task, dataset, cost model); the paper's multi-task layouts
    (WavLLM 1-2, talk 8-10) per (model, cost model); layer selection (talk 6); long audio
    (talk 12); and, with ``include_paper``, the paper's tables on their own. Runs of a single
    shard (``shard`` set) are left out: merge them with ``python -m fastadasp.run.merge`` first.

    A table whose runs contradict each other raises :class:`TableError`; with a ``skipped``
    list its one-line reason is appended there instead and every other table is built.

    ``intervals``: True (default settings), an :class:`IntervalSettings`, or False (no intervals,
    marks or collapse counts): cells show them where the runs' predictions.jsonl are there."""
    runs = runs[runs["shard"].isna()]  # a shard alone is a partial evaluation: merge shards first
    statistics = None if intervals is False else TableStatistics(intervals if isinstance(intervals, IntervalSettings)
                                                                  else None)
    tables = (_generic_tables(runs, skipped, statistics) + _paper_layout_tables(runs, skipped, statistics)
              + _layer_tables(runs, te_files or [], skipped, statistics))
    tables += _long_audio_tables(benchmarks if benchmarks is not None else pd.DataFrame())
    if include_paper:
        tables += paper_tables()
    names = [t.name for t in tables]
    dupes = {n for n in names if names.count(n) > 1}
    for name in dupes:  # distinct groups that slug alike (e.g. fingerprints differ): number them
        for i, t in enumerate([t for t in tables if t.name == name]):
            t.name = f"{name}_{i + 1}"
    return tables
