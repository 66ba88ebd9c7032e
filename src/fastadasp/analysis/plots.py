"""Plots (matplotlib, Agg): metric vs realised FLOPs reduction, long-audio costs vs FLOPs
target, and the Transfer-Entropy curve per layer."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from .tables import Table  # noqa: E402

__all__ = ["plot_all", "plot_long_audio", "plot_metric_vs_flops", "plot_transfer_entropy"]


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_metric_vs_flops(table: Table, out_dir: str | Path) -> Path:
    """Headline metric vs mean *realised* FLOPs reduction, one line per method row; error
    bars are the std over a cell's runs (seeds); the full-token value is a dashed line."""
    points = table.provenance_cells
    if points is None or points.empty:
        raise ValueError(f"table {table.name} has no cells to plot")
    metric, higher = table.meta["metric"], table.meta["higher_is_better"]
    fig, ax = plt.subplots(figsize=(9.0, 4.2))
    base = points[points["method"] == "none"]
    if not base.empty:
        ax.axhline(base["value_mean"].mean(), color="grey", linestyle="--", label="Full-token baseline")
    for row, sub in points[points["method"] != "none"].groupby("row", sort=False):
        sub = sub.sort_values("realised_mean")
        ax.errorbar(sub["realised_mean"] * 100, sub["value_mean"], xerr=sub["realised_std"] * 100,
                    yerr=sub["value_std"], marker="o", capsize=3, label=row)
    ax.set_xlabel("realised FLOPs reduction (%, mean over samples and runs)")
    ax.set_ylabel(f"{metric} ({'higher' if higher else 'lower'} is better)")
    ax.set_title(table.title, fontsize=8, wrap=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, Path(out_dir) / f"{table.name}.png")


def plot_long_audio(table: Table, out_dir: str | Path) -> Path:
    """Prefill time, decode time and KV-cache size vs FLOPs target; one line per
    (method, beam, audio length), the full-token row at 0 on every line."""
    rows: pd.DataFrame = table.meta["rows"]
    panels = [("prefill_s", "prefill (s)", 1.0), ("decode_s", "decode (s)", 1.0), ("kv_bytes", "KV cache (MiB)", 1 / 2**20)]
    panels = [p for p in panels if p[0] in rows and rows[p[0]].notna().any()]
    if not panels:
        raise ValueError(f"table {table.name}: the benchmark rows have none of prefill_s, decode_s, kv_bytes")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    means = rows.groupby(["audio_s", "beam", "method", "flops_target"], as_index=False)[[p[0] for p in panels]].mean()
    full = means[means["method"] == "none"]
    for ax, (col, label, scale) in zip(axes[0], panels):
        for (method, beam, audio), sub in means[means["method"] != "none"].groupby(["method", "beam", "audio_s"]):
            ref = full[(full["beam"] == beam) & (full["audio_s"] == audio)]
            line = pd.concat([ref, sub]).sort_values("flops_target")
            ax.plot(line["flops_target"] * 100, line[col] * scale, marker="o", label=f"{method} beam {beam}, {audio:g}s")
        ax.set_xlabel("FLOPs-reduction target (%)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(table.title, fontsize=8)
    return _save(fig, Path(out_dir) / f"{table.name}.png")


def plot_transfer_entropy(te: dict, out_dir: str | Path) -> Path:
    """TE per layer (low = merging there changes the final representation least), the
    selected layer highlighted, ranks written above the points."""
    curve = te["curve"]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot(curve["layer"], curve["te"], marker="o")
    for layer, value, rank in curve[["layer", "te", "rank"]].dropna().itertuples(index=False):
        ax.annotate(str(int(rank)), (layer, value), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=7)
    selected = te.get("selected_layer")
    if selected is not None and selected in set(curve["layer"]):
        ax.scatter([selected], curve.loc[curve["layer"] == selected, "te"], s=140, facecolors="none",
                   edgecolors="red", label=f"selected layer {selected}")
        ax.legend(fontsize=7)
    ax.set_xlabel("layer of the single ratio-0.5 merge")
    ax.set_ylabel("TE (|H(ref) - H(merge)|)")
    who = " / ".join(str(te[k]) for k in ("model", "task") if te.get(k))
    ax.set_title(f"Transfer entropy per layer {who}".strip(), fontsize=9)
    ax.grid(alpha=0.3)
    stem = re.sub(r"[^A-Za-z0-9.]+", "_", f"te_{who}" if who else f"te_{Path(te['file']).parent.name}").strip("_")
    return _save(fig, Path(out_dir) / f"{stem}.png")


def plot_all(tables: Iterable[Table], te_files: Iterable[dict], out_dir: str | Path) -> list[Path]:
    """Every plot into ``out_dir`` (earlier PNGs there are removed: the folder is generated)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.png"):
        stale.unlink()
    paths = []
    for table in tables:
        if table.kind == "methods" and table.provenance_cells is not None and not table.provenance_cells.empty:
            paths.append(plot_metric_vs_flops(table, out))
        elif table.kind == "long_audio":
            paths.append(plot_long_audio(table, out))
    for te in te_files:
        paths.append(plot_transfer_entropy(te, out))
    return paths
