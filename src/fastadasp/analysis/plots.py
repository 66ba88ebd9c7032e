"""Plots (matplotlib, Agg): metric vs realised FLOPs reduction, long-audio costs vs FLOPs
target, and the Transfer-Entropy curve per layer.

The metric plot's y axis is linear and cut at :data:`CLIP_FACTOR` times the full-token value
(a :data:`CLIP_FACTOR`-th of it for higher-is-better metrics) when some point lies beyond: the
10-40% region, where methods differ by a few points, keeps the height of the plot, and a point
beyond the cut is drawn on the edge as a triangle with its value written. A log axis was not
chosen: it cannot show 0 (BLEU or accuracy of a collapsed run, WER of a perfect one), and it
shrinks the differences a reader compares (a few WER points near the baseline) to slivers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import pandas as pd  # noqa: E402

from .names import slug  # noqa: E402
from .tables import Table  # noqa: E402

__all__ = ["CLIP_FACTOR", "plot_all", "plot_long_audio", "plot_metric_vs_flops", "plot_transfer_entropy"]

#: the metric plot's y axis ends at this many times the full-token value (module docstring)
CLIP_FACTOR = 3.0


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _axis_cut(full: float, higher: bool, values: pd.Series) -> float | None:
    """Where the y axis ends: CLIP_FACTOR times the full-token value (divided, when higher is better);
    None when every value fits, or the full-token value is not positive (no scale to cut against)."""
    if not full > 0:
        return None
    cut = full / CLIP_FACTOR if higher else full * CLIP_FACTOR
    beyond = values < cut if higher else values > cut
    return cut if beyond.any() else None


def _full_token_band(ax: plt.Axes, value: float, interval: tuple[float, float], what: str) -> None:
    """The full-token value as a line inside a shaded band ``interval`` (low, high) that the legend
    names by ``what``; a zero-width interval (one deterministic run) shows as the line alone."""
    low, high = interval
    ax.axhspan(low, high, color="grey", alpha=0.25, linewidth=0)
    ax.axhline(value, color="grey", linestyle="--",
               label=f"Full-token baseline ({what})" if high > low else "Full-token baseline")


def _mark_beyond(ax: plt.Axes, points: list[tuple[float, float, str]], cut: float | None, higher: bool,
                 near: float) -> None:
    """A triangle on the axis edge for each point beyond the cut, its value written beside it;
    labels of points closer than ``near`` on the x axis are stacked, not overlaid."""
    written: list[float] = []
    for x, value, color in sorted(points):
        ax.plot([x], [cut], marker="v" if higher else "^", markersize=9, color=color, clip_on=False, zorder=5)
        level = sum(abs(x - other) < near for other in written)
        written.append(x)
        ax.annotate(f"{value:.1f}", (x, cut), textcoords="offset points", ha="right", va="center", fontsize=7,
                    xytext=(-8, (9 + 11 * level) * (1 if higher else -1)), color=color,
                    bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.85})


def _baseline_band(base: pd.DataFrame) -> tuple[float, tuple[float, float], str]:
    """The full-token value and its band: the 95% bootstrap interval over samples when known
    (one baseline cell), else ± the std over its runs."""
    full = float(base["value_mean"].mean())
    low, high = base["interval_low"].iloc[0], base["interval_high"].iloc[0]
    if len(base) == 1 and not (pd.isna(low) or pd.isna(high)):
        return full, (float(low), float(high)), "95% bootstrap interval over samples"
    spread = float(base["value_std"].max())
    runs = int(base["n"].sum())
    return full, (full - spread, full + spread), f"± std over {runs} run{'s' * (runs > 1)}"


def plot_metric_vs_flops(table: Table, out_dir: str | Path) -> Path:
    """Headline metric vs mean *realised* FLOPs reduction, one line per method row. Thin error
    bars: the cell's 95% bootstrap interval over samples (of the seeds' mean); thick pale bars:
    ± the std over a cell's seeds, drawn apart; x bars: the realised FLOPs' std over the runs.
    The full-token value is a band (its bootstrap interval, else its std over runs); the y axis
    is cut as the module docstring says, points beyond marked with their value."""
    points = table.provenance_cells
    if points is None or points.empty:
        raise ValueError(f"table {table.name} has no cells to plot")
    points = points.assign(**{c: points[c] if c in points else float("nan") for c in ("interval_low", "interval_high")})
    metric, higher = table.meta["metric"], table.meta["higher_is_better"]
    fig, ax = plt.subplots(figsize=(9.0, 4.6))
    base = points[points["method"] == "none"]
    reduced = points[points["method"] != "none"]
    cut = None
    if not base.empty:
        full, band, what = _baseline_band(base)
        _full_token_band(ax, full, band, what)
        cut = _axis_cut(full, higher, reduced["value_mean"])
    beyond_points: list[tuple[float, float, str]] = []  # (x, value, colour) of points beyond the cut
    for row, sub in reduced.groupby("row", sort=False):
        sub = sub.sort_values("realised_mean")
        x, y = sub["realised_mean"] * 100, sub["value_mean"]
        beyond = pd.Series(False, index=sub.index) if cut is None else (y < cut if higher else y > cut)
        drawn = y.where(~beyond, cut)
        below = (y - sub["interval_low"]).where(~beyond, 0.0).fillna(0.0).clip(lower=0.0)
        above = (sub["interval_high"] - y).where(~beyond, 0.0).fillna(0.0).clip(lower=0.0)
        bars = ax.errorbar(x, drawn, xerr=sub["realised_std"] * 100, yerr=[below, above], marker="o", capsize=3,
                           label=row)
        color = bars.lines[0].get_color()
        seeds = sub["n"] > 1
        if seeds.any():  # the spread over seeds, apart from the sampling interval
            ax.errorbar(x[seeds], drawn[seeds], yerr=sub["value_std"].where(~beyond, 0.0)[seeds], fmt="none",
                        elinewidth=5, alpha=0.3, color=color, capsize=0, label=f"_seeds: {row}")
        beyond_points += [(xi, yi, color) for xi, yi in zip(x[beyond], y[beyond])]
    x_span = (reduced["realised_mean"].max() - reduced["realised_mean"].min()) * 100
    _mark_beyond(ax, beyond_points, cut, higher, near=0.08 * x_span)
    ylabel = f"{metric} ({'higher' if higher else 'lower'} is better)"
    if cut is not None:
        ax.set_ylim(**({"bottom": cut * 0.97} if higher else {"top": cut * 1.03}))
        ylabel += f", axis cut at {'1/' if higher else ''}{CLIP_FACTOR:g}x full-token"
        ax.plot([], [], linestyle="none", marker="v" if higher else "^", color="black",
                label="beyond the axis cut (value written)")
    if reduced["interval_low"].notna().any():
        ax.plot([], [], color="black", linewidth=1, label="bars: 95% bootstrap interval over samples")
    if (reduced["n"] > 1).any():
        ax.plot([], [], color="black", linewidth=5, alpha=0.3, label="thick bars: ± std over seeds")
    ax.set_xlabel("realised FLOPs reduction (%, mean over samples and runs)")
    ax.set_ylabel(ylabel, fontsize=9)
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


def plot_transfer_entropy(te: dict, out_dir: str | Path, name: str | None = None) -> Path:
    """TE per layer (low = merging there changes the final representation least), the
    selected layer highlighted, ranks written above the points. ``name``: the file's stem
    (default ``te_<model config>_<task>``)."""
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
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    who = " / ".join(str(te[k]) for k in ("model_config", "task") if te.get(k))
    described = f"\n{te['model']}" if te.get("model") and slug(te["model"]) != te.get("model_config") else ""
    ax.set_title(f"Transfer entropy per layer, {who}{described}", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, Path(out_dir) / f"{name or _te_name(te)}.png")


def _te_name(te: dict) -> str:
    return slug("te", te.get("model_config"), te.get("task"))


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
    used = {p.stem for p in paths}
    for te in te_files:
        name = _te_name(te)
        name = next(n for n in (name, *(f"{name}_{i}" for i in range(2, len(used) + 3))) if n not in used)
        used.add(name)  # two TE files of one model and task: both kept, the second numbered
        paths.append(plot_transfer_entropy(te, out, name))
    return paths
