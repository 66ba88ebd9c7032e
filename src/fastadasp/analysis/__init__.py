"""Results analysis: run folders -> tables in the paper's layouts, plots, W&B.

``collect_runs(paths)`` reads every ``metrics.json`` into a DataFrame (one row per
run); ``build_tables(runs, benchmarks, te)`` turns it into :class:`Table` objects;
``write_tables`` / ``plot_all`` / ``log_wandb`` write them. Reads files only (never
the engine), so it runs anywhere the results are.
"""

from .plots import plot_all, plot_long_audio, plot_metric_vs_flops, plot_transfer_entropy
from .render import log_wandb, table_to_latex, table_to_markdown, write_tables
from .runs import RunFileError, collect_benchmarks, collect_runs, collect_transfer_entropy
from .tables import MISSING, NOT_APPLICABLE, Table, TableError, build_tables, paper_tables

__all__ = [
    "MISSING",
    "NOT_APPLICABLE",
    "RunFileError",
    "Table",
    "TableError",
    "build_tables",
    "collect_benchmarks",
    "collect_runs",
    "collect_transfer_entropy",
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
