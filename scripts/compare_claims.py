"""Every paired comparison that results/README.md cites, computed from the shipped run folders.

    python scripts/compare_claims.py [--results results] [--out results/comparisons.md]

Each claim names two runs by what they recorded (model config, dataset, task, cost model,
method and its settings, FLOPs target, seed), never by folder name; both must exist and hold
the same samples. For each it prints B - A with the paired 95% bootstrap interval
(:func:`fastadasp.analysis.compare.compare_runs`: 1000 resamples, seed 12345; sacreBLEU's own
paired bootstrap for BLEU) and writes the table to ``--out``. A claim whose runs are not
there (a sweep not yet run) is listed as missing, never dropped silently.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fastadasp.analysis.compare import ComparisonError, compare_runs
from fastadasp.analysis.runs import collect_runs

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Run:
    """Which run: the recorded method, FLOPs target and settings (a subset of method_settings)."""

    method: str
    flops: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None

    def label(self) -> str:
        if self.method == "none":
            return "full tokens"
        name = NAMES.get(self.method, self.method)
        if self.method == "fastadasp_dense":
            name += f" {self.settings['schedule']}"
            if self.settings.get("max_group_size"):
                name += f", max group {self.settings['max_group_size']}"
            if self.settings.get("weighted") is False:
                name += ", plain mean"
        return f"{name} {self.flops:.0%}"


NAMES = {"fastadasp_dense": "FastAdaSP dense", "fastadasp_sparse": "FastAdaSP sparse", "atome": "A-ToMe",
         "fastv": "FastV", "random_merge": "random merge", "random_evict": "random evict", "h2o": "H2O"}


@dataclass(frozen=True)
class Claim:
    group: str  # model config, dataset, task and cost model: "whisper_tiny_en demo_dense_large asr analytic"
    a: Run
    b: Run


FULL = Run("none")
CONSTANT = {"schedule": "constant", "weighted": True, "max_group_size": None}
DECAY = {"schedule": "decay", "weighted": True, "max_group_size": None}


def dense(flops: float, **settings: Any) -> Run:
    return Run("fastadasp_dense", flops, {**CONSTANT, **settings})


def decay(flops: float) -> Run:
    return Run("fastadasp_dense", flops, DECAY)


def atome(flops: float) -> Run:
    return Run("atome", flops)


def single(method: str, flops: float) -> Run:
    return Run(method, flops, seed=0 if method.startswith("random") else None)


def method_sweep(group: str, budgets: tuple[float, ...]) -> list[Claim]:
    """Every method at each budget against full tokens, and constant vs decay, A-ToMe vs both."""
    claims = []
    for f in budgets:
        claims += [Claim(group, FULL, b) for b in (dense(f), decay(f), atome(f), single("fastadasp_sparse", f),
                                                   single("fastv", f), single("random_merge", f),
                                                   single("random_evict", f))]
        claims += [Claim(group, dense(f), decay(f)), Claim(group, dense(f), atome(f)), Claim(group, decay(f), atome(f))]
    return claims


TINY = "whisper_tiny_en demo_dense_large asr analytic"
CLAIMS: list[Claim] = [
    *method_sweep(TINY, (0.1, 0.2, 0.3, 0.4, 0.5)),
    # the chaining explanation: at most k tokens per group and layer, against the unbounded merge
    *[Claim(TINY, dense(f), dense(f, max_group_size=k)) for f in (0.3, 0.4, 0.5) for k in (2, 4, 8)],
    *[Claim(TINY, FULL, dense(f, max_group_size=k)) for f in (0.3, 0.4, 0.5) for k in (2, 4, 8)],
    *[Claim(TINY, atome(f), dense(f, max_group_size=2)) for f in (0.3, 0.4, 0.5)],
    # the attention-weighted average against a plain mean with the same selection (merge_ave)
    Claim(TINY, dense(0.5), dense(0.5, weighted=False)),
    Claim("whisper_base demo_dense_large asr analytic", dense(0.5), dense(0.5, weighted=False)),
    *method_sweep("whisper_tiny_en demo_dense_large_noisy asr analytic", (0.3, 0.5)),
    # the earlier 16-clip set, where the shipped claims came from
    *method_sweep("whisper_tiny_en demo_dense asr analytic", (0.3, 0.4, 0.5)),
    *method_sweep("whisper_base demo_dense_large asr analytic", (0.1, 0.3, 0.5)),
    *method_sweep("whisper_base demo_multilingual:es st analytic", (0.3, 0.5)),
    *method_sweep("whisper_base demo_lid lid analytic", (0.3, 0.5)),
]


def find(runs: pd.DataFrame, group: str, run: Run) -> pd.Series | None:
    model, dataset, task, cost = group.split()  # dataset[:split]
    dataset, _, split = dataset.partition(":")  # demo_multilingual:es = its Spanish part
    sel = runs[(runs["model_config"] == model) & (runs["dataset"] == dataset) & (runs["task"] == task)
               & ((runs["dataset_split"] == split) if split else True)
               & (runs["method"] == run.method) & ((runs["flops_target"] - run.flops).abs() < 1e-9)]
    if run.method != "none":
        sel = sel[sel["budget_model"] == cost]
    for key, value in run.settings.items():
        if sel.empty:
            return None
        sel = sel[sel["settings"].map(lambda s, k=key, v=value: s.get(k) == v).astype(bool)]
    if run.seed is not None:
        sel = sel[sel["seed"] == run.seed]
    return None if sel.empty else sel.sort_values("run_dir").iloc[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=REPO / "results")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "comparisons.md")
    args = parser.parse_args(argv)
    runs = collect_runs([args.results / "runs"])
    groups: dict[str, list[str]] = {}  # in the order of each group's first claim
    missing: list[str] = []
    for claim in CLAIMS:
        a, b = find(runs, claim.group, claim.a), find(runs, claim.group, claim.b)
        if a is None or b is None:
            missing.append(f"{claim.group}: {claim.b.label()} vs {claim.a.label()}")
            continue
        lines = groups.setdefault(claim.group, ["| B | A | metric | A | B | B - A [95% paired interval] | verdict |",
                                                "|---|---|---|---|---|---|---|"])
        try:
            result = compare_runs(a["run_dir"], b["run_dir"])
        except (ComparisonError, ValueError) as exc:
            missing.append(f"{claim.group}: {claim.b.label()} vs {claim.a.label()}: {exc}")
            continue
        c = result["comparison"]
        low, high = c["interval"]
        verdict = "differ" if low > 0 or high < 0 else "cannot tell apart"
        lines.append(f"| {claim.b.label()} | {claim.a.label()} | {c['metric']} | {c['a']:.2f} | {c['b']:.2f} | "
                     f"{c['difference']:+.2f} [{low:+.2f}, {high:+.2f}] | {verdict} |")
    text = ["# Paired comparisons cited in results/README.md", "",
            "`python scripts/compare_claims.py` (paired percentile bootstrap over the samples both runs share, "
            "1000 resamples, seed 12345; BLEU: sacreBLEU's paired bootstrap). Random baselines: seed 0. "
            "\"differ\" = the 95% interval of B - A excludes 0."]
    for group, lines in groups.items():
        text += ["", f"### {group}", "", *lines]
    if missing:
        text += ["", "## Not available", "", *[f"- {m}" for m in missing]]
    args.out.write_text("\n".join(text) + "\n")
    print("\n".join(text))
    print(f"\nwrote {args.out} ({len(CLAIMS) - len(missing)} comparisons, {len(missing)} not available)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
