# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # FastAdaSP results: tables and plots
#
# This notebook shows what `make tables` writes to `results/tables/` and `results/plots/`,
# built here from the same run folders with `fastadasp.analysis`. It computes nothing of
# its own: every number comes from a run's `metrics.json` and `predictions.jsonl` (intervals,
# paired comparisons and collapse counts are recomputed from the per-sample rows), a
# long-audio benchmark file or a `transfer_entropy.json`.
#
# Open it with `jupytext --to notebook notebooks/analysis.py` (or Jupyter with the jupytext
# extension). It reads the folder in `$FASTADASP_RESULTS`, else `results/` of the repository.

# %%
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd
from IPython.display import Image, Markdown, display

from fastadasp.analysis import (
    build_tables,
    compare_runs,
    collect_benchmarks,
    collect_runs,
    collect_transfer_entropy,
    plot_all,
    table_to_markdown,
)


def results_folder() -> Path:
    """$FASTADASP_RESULTS, else results/ seen from the repository root or from notebooks/."""
    if os.environ.get("FASTADASP_RESULTS"):
        return Path(os.environ["FASTADASP_RESULTS"])
    for candidate in (Path("results"), Path("..") / "results"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("no results/ folder here or one level up; set FASTADASP_RESULTS")


RESULTS = results_folder()
print(f"python: {sys.executable}")
print(f"results: {RESULTS.resolve()}")

# %% [markdown]
# ## The runs
#
# One row per run folder. A run is placed in a table **only by what it recorded**: model,
# task, dataset (name, split, fingerprint, limit), method and its settings (schedule,
# layer, weighted, ...), cost model and FLOPs target. Folder names are never read.
# `model_config` is the model's config name (`model=...`), which names the table files;
# `budget_model` is the cost model, old runs' `flops` / `paper` read as `analytic` / `token_layer`.

# %%
runs = collect_runs([RESULTS])
benchmarks = collect_benchmarks([RESULTS])
te_files = collect_transfer_entropy([RESULTS])
print(f"{len(runs)} runs, {len(benchmarks)} long-audio benchmark rows, {len(te_files)} transfer-entropy files")
if not runs.empty:
    display(runs.groupby(["model_config", "task", "dataset", "budget_model", "method"]).size().rename("runs").to_frame())

# %% [markdown]
# ## How to read a table
#
# - **Rows** are methods (FastAdaSP dense with its schedule, FastAdaSP sparse, baselines);
#   when two runs of one method differ in a setting (e.g. `start_layer`), the row label
#   names it. **Columns** are FLOPs-reduction *targets*; `full` is the full-token
#   baseline (target 0), which appears in every cost-model table of its model, task and
#   dataset.
# - **A cell** holds the headline metric of the task (`primary_metric` in `metrics.json`:
#   WER for ASR, BLEU for ST, accuracy for ER/SQA, CIDEr / SPICE / SPIDEr for captions).
#   One run shows its value; several runs with identical settings except `seed` show
#   `mean ± std (n=k)` (sample standard deviation over seeds).
# - **How sure a cell is**: after the value, `[low, high]` is its 95% bootstrap interval over
#   samples (1000 resamples of the sample ids, the corpus metric recomputed on each: corpus WER
#   from summed edits and reference words, BLEU from sacreBLEU's sentence statistics). For
#   several seeds it is the interval of the seeds' mean (every seed resampled alike), so the
#   spread over seeds (`± std`) and the sampling interval stay apart. `†` marks a cell whose
#   *paired* difference from the full-token baseline (same samples, same resamples) has a 95%
#   interval that excludes 0; `‡` the same against the column's best (bold) cell. No mark: the
#   samples cannot tell the two apart. The differences themselves (B - A [95%], and the share of
#   resamples whose sign flips) are in the provenance under each table.
# - **Collapses**: `c=k` counts the samples whose output collapsed (empty, stopped at the token
#   limit, a repetition loop, or a WER above 90% on that sample), summed over a cell's runs. A
#   few collapses can dominate a corpus WER: `metrics.json` also records `wer_without_collapses`
#   and the collapsed ids (`collapses`).
# - `—` means *no run* for that cell (never 0); a blank cell cannot exist (the baseline at a
#   reduced budget).
# - **Bold** marks the best value of a reduced-budget column; the direction comes from the
#   runs' `higher_is_better` (WER: lower is better).
# - **Target vs realised FLOPs**: the column is the target. What was actually saved is
#   recorded per run (`flops_realized`, a mean over samples); the provenance under each
#   table gives the realised range of every cell. With the `analytic` cost model (analytic
#   FLOPs; `flops` in runs made before the rename) the realised value meets the target per
#   sample; with `token_layer` (the authors' token-layer cost model; `paper` in older runs)
#   the realised analytic FLOPs can differ noticeably.
# - **Provenance** under each table lists the run folders, model, dataset and its
#   fingerprint, the **normaliser** the metric used (`metrics.normalizer`: e.g.
#   `whisper_en` = Whisper's English normaliser; the paper used its own simpler one, so WERs
#   are not directly comparable), the cost model, git commits and the number of runs.
# - Below tables that the paper also reports come **the paper's own numbers** in the same
#   layout (WavLLM Tables 1-2, 4; talk Tables 6, 8-10, 12). They were measured on
#   WavLLM / Qwen-Audio with LibriSpeech, CoVoST 2, MELD, Clotho: compare trends, not
#   values, when ours come from another model or dataset.

# %% [markdown]
# A table's `name` is its file name under `results/tables/` (`.md`, `.tex`): the config names
# a user typed (model, task, dataset, cost model); the title keeps the model's description.

# %%
tables = build_tables(runs, benchmarks, te_files, include_paper=False)
display(pd.DataFrame([(t.kind, t.name, t.title) for t in tables], columns=["kind", "name", "title"]))

# %% [markdown]
# ## Tables (ours, with the paper's numbers beside)

# %%
for table in tables:
    display(Markdown(table_to_markdown(table)))

# %% [markdown]
# ## Realised vs target FLOPs reduction
#
# Mean realised reduction per (method, cost model, target): a method whose realised
# value falls short of its target (e.g. one that reduces at a single late layer, or H2O,
# which leaves prefill unchanged and is budgeted on the KV cache) is not comparable at the
# same column without this.

# %%
if not runs.empty:
    reduced = runs[runs["flops_target"] > 0]
    display(reduced.pivot_table(index=["task", "method", "budget_model"], columns="flops_target",
                                values="flops_realized", aggfunc="mean").round(3))

# %% [markdown]
# ## Seeds and normalisers
#
# Random methods are run with several seeds; a cell's `n` is the number of runs averaged.
# The normaliser column says how the text was normalised before scoring.

# %%
if not runs.empty:
    display(runs.assign(seed=runs["seed"].astype("string"))
            .groupby(["task", "method", "flops_target"])
            .agg(n=("run_dir", "size"), seeds=("seed", lambda s: ",".join(sorted(set(s.dropna())))),
                 normalizer=("normalizer", lambda s: ",".join(sorted(set(s.dropna().astype(str)))))))

# %% [markdown]
# ## Plots
#
# - metric vs **realised** FLOPs reduction (x = mean over samples and seeds; thin error bars =
#   the 95% bootstrap interval over samples; thick pale bars = ± std over seeds, drawn apart),
#   one line per method / schedule, the full-token value dashed inside a band (its bootstrap
#   interval; its std over runs where no per-sample record exists). When a method collapses, the
#   y axis stops at 3x the full-token value (1/3 of it when higher is better), so the region
#   where methods differ by a few points stays readable; points beyond are triangles on the
#   edge with their value written;
# - long-audio benchmark: prefill time, decode time and KV-cache size vs FLOPs target;
# - transfer entropy per layer: low TE = merging at that layer changes the final
#   representation least; the selected layer is circled, ranks written above the points.

# %%
plot_dir = Path(os.environ.get("FASTADASP_PLOTS") or tempfile.mkdtemp(prefix="fastadasp_plots_"))
for path in plot_all(tables, te_files, plot_dir):
    display(Markdown(f"**{path.name}**"))
    display(Image(filename=str(path)))

# %% [markdown]
# ## Comparing two runs sample by sample
#
# `python -m fastadasp.compare RUN_A RUN_B` (here `compare_runs`) resamples the samples both runs
# share and reports B - A with its 95% paired interval and how often the sign flips; it refuses
# runs on different samples or scored with other settings. Below: each reduced run of the
# first table against its full-token baseline, where both have `predictions.jsonl`.

# %%
methods = [t for t in tables if t.kind == "methods"]
if methods:
    table_runs = methods[0].meta["runs"]
    base = table_runs[table_runs["method"] == "none"]["run_dir"]
    rows = []
    for run_dir in table_runs[table_runs["method"] != "none"]["run_dir"][:5]:
        if base.empty or not (Path(run_dir) / "predictions.jsonl").is_file():
            continue
        c = compare_runs(base.iloc[0], run_dir)["comparison"]
        rows.append({"run": Path(run_dir).name, "B - A": round(c["difference"], 2),
                     "95% interval": [round(x, 2) for x in c["interval"]], "sign flips": c["sign_flips"]})
    display(pd.DataFrame(rows) if rows else Markdown("No run here has its predictions.jsonl."))
