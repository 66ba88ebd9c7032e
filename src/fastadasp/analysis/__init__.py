"""Results analysis: run folders -> tables in the paper's layouts, plots, W&B.

``collect_runs(paths)`` reads every ``metrics.json`` into a DataFrame (one row per
run); ``build_tables(runs, benchmarks, te)`` turns it into :class:`Table` objects, whose cells
carry 95% bootstrap intervals, paired-difference marks and collapse counts computed from each
run's ``predictions.jsonl`` (:mod:`.intervals`, :mod:`.samples`); ``write_tables`` /
``plot_all`` / ``log_wandb`` write them. ``compare_runs`` (``python -m fastadasp.compare``)
compares two run folders sample by sample. Reads files only (never
the engine), so it runs anywhere the results are. File names come from the config names
a user typed (:mod:`.names`); the paper's numbers from ``paper_numbers.yaml``
(:func:`load_paper_numbers`).
"""

from .compare import ComparisonError, compare_runs
from .intervals import IntervalSettings, TableStatistics
from .names import cost_model_name
from .paper_numbers import load_paper_numbers
from .plots import plot_all, plot_long_audio, plot_metric_vs_flops, plot_transfer_entropy
from .render import log_wandb, table_to_latex, table_to_markdown, write_tables
from .runs import RunFileError, collect_benchmarks, collect_runs, collect_transfer_entropy
from .samples import RunSamples, SamplesUnavailable, load_run_samples
from .tables import MISSING, NOT_APPLICABLE, Table, TableError, build_tables, paper_tables

__all__ = [
    "ComparisonError",
    "IntervalSettings",
    "MISSING",
    "NOT_APPLICABLE",
    "RunFileError",
    "RunSamples",
    "SamplesUnavailable",
    "Table",
    "TableError",
    "TableStatistics",
    "build_tables",
    "collect_benchmarks",
    "collect_runs",
    "collect_transfer_entropy",
    "compare_runs",
    "cost_model_name",
    "load_paper_numbers",
    "load_run_samples",
    "log_wandb",
    "paper_tables",
    "plot_all",
    "plot_long_audio",
    "plot_metric_vs_flops",
    "plot_transfer_entropy",
    "table_to_latex",
    "table_to_markdown",
    "write_tables",
]
