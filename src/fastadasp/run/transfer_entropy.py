"""Transfer-Entropy layer selection for FastAdaSP-Sparse (SPEC section 6).

For each candidate layer ``l`` the calibration set runs once with a single
weighted merge at ``l`` (ratio 0.5 by default), and once with the merge at the
last layer (the reference). The last block's output over the audio span gives
an entropy proxy per utterance, ``sum_t log std(h_t)`` (std across features),
averaged over utterances; ``TE(l) = |H(reference) - H(l)|``: a low TE means
merging at ``l`` changes the final representation least. Every run removes
the same ``floor(n * r)`` audio tokens, so the proxies sum over equally many
tokens and the reference's TE is 0 by construction.

Decisions (the paper does not publish them):

* Hidden states: the last block's output, before the stack's final norm (a
  final LayerNorm would rescale every token to its gain and flatten the proxy).
  The same for Whisper's encoder and the speech LMs' decoder, read with a
  forward hook on the last block; the audio positions after reduction come
  from the adapter's ``prefill`` (the reducer state's spans).
* ``std`` is torch's default (unbiased, ``correction=1``).
* The ratio is applied directly (:class:`~fastadasp.reduction.FixedRatio`),
  not through a FLOPs budget: no cost model can ask for a merge at the last
  layer (the token-layer model's largest reduction there is 0), and TE
  compares equal merges.
* The selection rule is ours (:func:`select_layer`): the lowest-TE layer
  (``min_te``) or the first local minimum of the curve (``first_local_min``)
  among layers at or after ``min_layer`` that can reach the evaluation target
  ``max_flops`` under the chosen cost model, ``rule.budget_model``
  (:func:`max_feasible_flops`).
  The reference layer is never selected: its TE of 0 is a definition.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from ..data.manifest import Sample, read_audios
from .instantiate import instantiate as _instantiate
from ..reduction import (
    FastAdaSPSparse,
    FixedRatio,
    StackSpec,
    TokenLayout,
    flops_reduction,
    layer_ratios,
    simulate_tokens,
)
from ..reduction.budget import COST_MODEL_NAMES, cost_model_name
from ..reduction.ops import segment_lengths

__all__ = [
    "RULES",
    "BUDGET_MODELS",
    "CalibrationOverlapError",
    "FixedRatio",
    "LayerTE",
    "entropy_proxy",
    "ids_fingerprint",
    "check_no_overlap",
    "max_feasible_flops",
    "final_entropies",
    "transfer_entropy_curve",
    "select_layer",
    "write_outputs",
    "main",
]

RULES = ("min_te", "first_local_min")
#: the values of ``rule.budget_model``: the cost models (``flops`` / ``paper`` are their deprecated names)
BUDGET_MODELS = COST_MODEL_NAMES
#: the largest base ratio the FLOPs solver tries (``floor(n * r) = n - 1`` per span)
_R_MAX = 1.0 - 1e-9


class CalibrationOverlapError(ValueError):
    """Calibration utterances that are also evaluation utterances."""


def entropy_proxy(hidden: Tensor, mask: Tensor) -> Tensor:
    """Per utterance, the sum over the masked tokens of ``log std`` of each
    token's hidden vector across features: ``(B, T, d), (B, T) -> (B,)``."""
    log_std = hidden.float().std(dim=-1).log()
    return torch.where(mask, log_std, torch.zeros_like(log_std)).sum(dim=1)


def ids_fingerprint(samples: Sequence[Sample]) -> str:
    """Order-free fingerprint of the utterance ids (which calibration set)."""
    return hashlib.sha256("\n".join(sorted(s.id for s in samples)).encode()).hexdigest()[:16]


def check_no_overlap(calibration: Sequence[Sample], evaluation: Sequence[Sample], show: int = 5) -> None:
    """Refuse calibration data that shares ids or audio files with the evaluation data."""
    ids = sorted({s.id for s in calibration} & {s.id for s in evaluation})
    paths = sorted({Path(s.audio_path).resolve() for s in calibration} & {Path(s.audio_path).resolve() for s in evaluation})
    if ids or paths:
        raise CalibrationOverlapError(
            f"calibration and evaluation data overlap: {len(ids)} shared ids {ids[:show]} and "
            f"{len(paths)} shared audio files {[str(p) for p in paths[:show]]}; calibrate on a held-out split"
        )


def max_feasible_flops(
    layer: int, spec: StackSpec, budget_model: str, layouts: Sequence[TokenLayout] = ()
) -> float:
    """The largest FLOPs reduction a single merge at ``layer`` can reach under the
    cost model ``budget_model``.

    ``token_layer``: the bound ``1 - (L+1)/N`` (exclusive: the solver needs
    ``m < bound``). ``analytic``: the analytic count with every span merged
    down to one token, for the least favourable calibration utterance (the
    solver runs per sample, and one infeasible sample fails a run)."""
    n = spec.num_layers
    budget_model = cost_model_name(budget_model, "rule.budget_model")
    if budget_model == "token_layer":
        return 1 - (layer + 1) / n
    if not layouts:
        raise ValueError("the analytic cost model needs the calibration utterances' token layouts")
    ratios = layer_ratios("single", n, layer, _R_MAX)
    return min(flops_reduction(spec, simulate_tokens(t, ratios), t.total) for t in layouts)


def _feasible(max_flops: float, bound: float, budget_model: str) -> bool:
    return max_flops < bound if budget_model == "token_layer" else max_flops <= bound


@dataclass
class LayerTE:
    """One point of the TE curve."""

    layer: int
    te: float
    entropy: float
    max_feasible_flops: float
    feasible: bool
    reference: bool = False
    rank: int | None = None


def _layouts(state: Any) -> list[TokenLayout]:
    spans = segment_lengths(state.segments)
    fixed = state.valid.sum(1) - spans.sum(1)
    return [TokenLayout(int(f), tuple(int(n) for n in row if n > 0)) for f, row in zip(fixed.tolist(), spans.tolist())]


def final_entropies(
    model: Any,
    audios: Sequence[Any],
    prompts: Sequence[str],
    keys: Sequence[str],
    layer: int,
    ratio: float,
    batch_size: int,
    layouts: list[TokenLayout] | None = None,
) -> list[float]:
    """Entropy proxy per utterance of the last block's audio output, with one
    weighted merge at ``layer``. ``layouts``, if given, receives each
    utterance's token layout before any reduction."""
    method = FastAdaSPSparse(layer=layer, weighted=True)
    out: list[float] = []
    with model.reducer(method, FixedRatio(ratio=ratio)) as reducer:
        captured: list[Tensor] = []

        def keep_output(module, args, output) -> None:
            captured.append(output[0] if isinstance(output, tuple) else output)

        def keep_layout(module, args) -> None:
            if layouts is not None:
                layouts.extend(_layouts(reducer.state))

        hooks = [reducer.blocks[-1].register_forward_hook(keep_output),
                 reducer.blocks[0].register_forward_pre_hook(keep_layout)]
        try:
            for i in range(0, len(audios), batch_size):
                captured.clear()
                sl = slice(i, i + batch_size)
                mask = model.prefill(list(audios[sl]), list(prompts[sl]), reducer, list(keys[sl]))
                if len(captured) != 1 or captured[0].shape[:2] != mask.shape:
                    raise RuntimeError(
                        f"the last block ran {len(captured)} times or its output does not match the audio mask "
                        f"{tuple(mask.shape)}: the adapter's prefill must run the reduced stack exactly once"
                    )
                out.extend(entropy_proxy(captured[0], mask).tolist())
        finally:
            for h in hooks:
                h.remove()
    return out


def transfer_entropy_curve(
    model: Any,
    audios: Sequence[Any],
    prompts: Sequence[str],
    keys: Sequence[str],
    layers: Sequence[int] | None,
    ratio: float,
    batch_size: int,
    budget_model: str,
    max_flops: float,
    log: Callable[[str], None] = print,
) -> tuple[list[LayerTE], float]:
    """TE of every candidate layer and the reference entropy."""
    budget_model = cost_model_name(budget_model, "rule.budget_model")
    spec: StackSpec = model.stack_spec
    n = spec.num_layers
    candidates = sorted(set(range(n) if layers is None else layers))
    bad = [l for l in candidates if not 0 <= l < n]
    if bad:
        raise ValueError(f"candidate layers {bad} outside the model's {n}-layer stack")
    reference = n - 1
    layouts: list[TokenLayout] = []
    start = time.perf_counter()
    ref = final_entropies(model, audios, prompts, keys, reference, ratio, batch_size, layouts)
    h_ref = sum(ref) / len(ref)
    log(f"reference (merge at layer {reference}): H = {h_ref:.4f} ({time.perf_counter() - start:.1f} s)")
    curve = []
    for layer in candidates:
        start = time.perf_counter()
        if layer == reference:
            h = h_ref
        else:
            values = final_entropies(model, audios, prompts, keys, layer, ratio, batch_size)
            h = sum(values) / len(values)
        bound = max_feasible_flops(layer, spec, budget_model, layouts)
        point = LayerTE(layer, abs(h_ref - h), h, bound, _feasible(max_flops, bound, budget_model), layer == reference)
        curve.append(point)
        log(f"layer {layer}: H = {h:.4f}, TE = {point.te:.4f}, max feasible flops {bound:.4f} "
            f"({time.perf_counter() - start:.1f} s)")
    ranked = sorted((p for p in curve if not p.reference), key=lambda p: p.te)
    for p in ranked:
        p.rank = 1 + sum(q.te < p.te for q in ranked)
    return curve, h_ref


def select_layer(curve: Sequence[LayerTE], rule: str = "min_te", min_layer: int = 0) -> tuple[int | None, dict]:
    """The layer the rule picks (``None`` if no layer qualifies) and how.

    Eligible: feasible for the target, ``layer >= min_layer``, not the
    reference. ``min_te``: the lowest TE (ties: the earlier layer).
    ``first_local_min``: the earliest eligible layer whose TE is not above its
    neighbours on the curve (reference excluded); ``min_te`` if none is."""
    if rule not in RULES:
        raise ValueError(f"unknown TE rule {rule!r}; expected one of {RULES}")
    eligible = [p for p in curve if p.feasible and p.layer >= min_layer and not p.reference]
    how: dict[str, Any] = {"eligible_layers": [p.layer for p in eligible]}
    if not eligible:
        return None, how
    if rule == "first_local_min":
        points = sorted((p for p in curve if not p.reference), key=lambda p: p.layer)
        minima = {
            p.layer
            for i, p in enumerate(points)
            if (i == 0 or p.te <= points[i - 1].te) and (i == len(points) - 1 or p.te <= points[i + 1].te)
        }
        how["local_minima"] = sorted(minima)
        local = [p for p in sorted(eligible, key=lambda p: p.layer) if p.layer in minima]
        if local:
            return local[0].layer, how
        how["fallback"] = "min_te"
    return min(eligible, key=lambda p: (p.te, p.layer)).layer, how


def write_outputs(out_dir: Path, record: dict) -> None:
    """``transfer_entropy.json``, ``te_curve.png`` and ``te_table.md``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "transfer_entropy.json").write_text(json.dumps(record, indent=1))
    layers = record["layers"]
    selected = record["selected_layer"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    xs = [p["layer"] for p in layers]
    ax.plot(xs, [p["te"] for p in layers], marker="o", color="tab:blue", label="TE")
    off = [p for p in layers if not p["feasible"] and not p["reference"]]
    if off:
        ax.scatter([p["layer"] for p in off], [p["te"] for p in off], marker="x", s=60, color="tab:red", zorder=3,
                   label=f"cannot reach flops={record['rule']['max_flops']:g} ({record['rule']['budget_model']})")
    ref = [p for p in layers if p["reference"]]
    if ref:
        ax.scatter([p["layer"] for p in ref], [p["te"] for p in ref], marker="s", color="gray", zorder=3,
                   label="reference (TE 0 by definition)")
    if selected is not None:
        ax.axvline(selected, color="tab:green", linestyle="--", label=f"selected layer {selected} ({record['rule']['name']})")
    ax.set_xticks(xs)
    ax.set_xlabel("merge layer")
    ax.set_ylabel("TE = |H(ref) - H(layer)|")
    ax.set_title(f"{record['model']}\n{record['task']}, {record['calibration']['num_utterances']} utterances, "
                 f"ratio {record['ratio']:g}", fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "te_curve.png", dpi=120)
    plt.close(fig)
    table = pd.DataFrame(
        {
            "Layer": [f"Layer {p['layer']}" + (" (Selected)" if p["layer"] == selected else "")
                      + (" (reference)" if p["reference"] else "") for p in layers],
            "TE": [round(p["te"], 4) for p in layers],
            "TE Rank": [p["rank"] if p["rank"] is not None else "-" for p in layers],
            f"max FLOPs reduce ({record['rule']['budget_model']})": [round(p["max_feasible_flops"], 4) for p in layers],
        }
    )
    (out_dir / "te_table.md").write_text(
        f"Transfer entropy, {record['model']} on {record['task']} "
        f"({record['calibration']['num_utterances']} calibration utterances, ratio {record['ratio']:g}); "
        f"rule {record['rule']['name']}, max_flops {record['rule']['max_flops']:g}\n\n"
        + table.to_markdown(index=False) + "\n"
    )


def _plain(node: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node




def _evaluation_samples(node: Any) -> list[Sample] | None:
    """The evaluation set to check against: a dataset node (``_target_``), a
    manifest path, or nothing. Always the whole set (no limit)."""
    node = _plain(node) or {}
    if node.get("_target_"):
        from .datasets import load_dataset

        node = {k: v for k, v in node.items() if not (k == "path" and v is None)}
        if "limit" in node:
            node["limit"] = None
        return load_dataset(node)[0]
    if node.get("path"):
        from ..data.manifest import load_manifest

        return load_manifest(node["path"], require_text=False)
    return None


def _choice(group: str) -> str | None:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.choices.get(group) if HydraConfig.initialized() else None


def _command() -> str | None:
    """How to rerun this analysis (the command line's overrides), when run by Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return " ".join(["python scripts/transfer_entropy.py", *HydraConfig.get().overrides.task])


def main(cfg: Any, log: Callable[[str], None] = print) -> dict:
    """Entry point behind ``scripts/transfer_entropy.py``."""
    from ..tasks.definition import Task

    rule = _plain(cfg.rule)
    if rule["name"] not in RULES:
        raise ValueError(f"rule.name={rule['name']!r}: expected one of {RULES}")
    given = rule["budget_model"]
    rule["budget_model"] = cost_model_name(given, "rule.budget_model")
    if given != rule["budget_model"]:
        log(f"warning: rule.budget_model={given} is deprecated: use rule.budget_model={rule['budget_model']}")
    if not 0 <= rule["max_flops"] < 1:
        raise ValueError(f"rule.max_flops must be in [0, 1), got {rule['max_flops']}")
    if not 0 < cfg.ratio < 1:
        raise ValueError(f"ratio must be in (0, 1), got {cfg.ratio}")
    start = time.perf_counter()
    from .datasets import load_dataset

    samples, dataset_info = load_dataset(cfg.dataset, default_name=_choice("dataset"))
    dataset_name = dataset_info["name"]
    if not samples:
        raise ValueError(f"the calibration dataset {dataset_name!r} has no samples")
    evaluation = _evaluation_samples(cfg.get("eval_dataset"))
    if evaluation is not None:
        check_no_overlap(samples, evaluation)
    else:
        log("no eval_dataset given: calibration/evaluation overlap NOT checked")
    task = Task.from_config(cfg.task, _instantiate)
    model = _instantiate(cfg.model)
    if not callable(getattr(model, "prefill", None)):
        raise TypeError(f"{type(model).__name__} has no prefill(audios, prompt, reducer, keys): TE cannot run it")
    used, audios, failures = read_audios(samples)
    for failure in failures:
        log(f"skipped {failure['id']}: {failure['error']}")
    if not used:
        raise RuntimeError(f"no calibration utterance could be read; failures: {failures[:5]}")
    prompts = [task.prompt(model.family, s, model.uses_default_prompt) for s in used]
    layers = None if cfg.layers is None else [int(l) for l in cfg.layers]
    curve, h_ref = transfer_entropy_curve(
        model, audios, prompts, [s.id for s in used], layers, float(cfg.ratio), int(cfg.batch_size),
        rule["budget_model"], float(rule["max_flops"]), log,
    )
    selected, how = select_layer(curve, rule["name"], int(rule["min_layer"]))
    from .folder import dataset_fingerprint

    dataset = {k: v for k, v in dataset_info.items() if k in ("path", "root", "split")}
    record = {
        "model": model.name,
        "model_family": model.family,
        "num_layers": model.stack_spec.num_layers,
        "task": task.name,
        "dataset": {"name": dataset_name, **dataset, "fingerprint": dataset_fingerprint(samples)},
        "calibration": {
            "num_utterances": len(used),
            "ids_fingerprint": ids_fingerprint(used),
            "limit": cfg.get("calibration_limit"),
            "failures": failures,
            "overlap_checked": evaluation is not None,
            "eval_dataset": None if evaluation is None else {
                "num_utterances": len(evaluation), "ids_fingerprint": ids_fingerprint(evaluation)},
        },
        "ratio": float(cfg.ratio),
        "method": {"name": FastAdaSPSparse.name, "weighted": True, "single_layer": True},
        "entropy": "mean over utterances of sum over audio tokens of log(std over features, unbiased) "
                   "of the last block's output (before the final norm)",
        "layers": [{k: v for k, v in asdict(p).items()} for p in curve],
        "reference_layer": model.stack_spec.num_layers - 1,
        "reference_entropy": h_ref,
        "selected_layer": selected,
        "rule": {"name": rule["name"], "max_flops": float(rule["max_flops"]), "budget_model": rule["budget_model"],
                 "min_layer": int(rule["min_layer"]), "feasibility": (
                     "max_flops < 1 - (L+1)/N (the authors' token-layer model)"
                     if rule["budget_model"] == "token_layer" else
                     "max_flops <= analytic FLOPs reduction with every span merged to one token at L, "
                     "least favourable calibration utterance"), **how},
        "command": _command(),
        "wall_s": time.perf_counter() - start,
    }
    out_dir = Path(cfg.output_dir)
    write_outputs(out_dir, record)
    log(f"TE curve written to {out_dir}; selected layer {selected}")
    if selected is None:
        raise ValueError(
            f"no candidate layer can reach max_flops={rule['max_flops']} under the {rule['budget_model']} budget "
            f"model at or after min_layer={rule['min_layer']} (largest feasible: "
            f"{max((p.max_feasible_flops for p in curve if not p.reference), default=math.nan):.4f}); "
            f"the curve is in {out_dir}, selected_layer is null"
        )
    return record
