"""Evaluate one (model, task, dataset, method, budget) combination.

The runner knows no method and no model by name: Hydra instantiates them
from ``configs/`` and the runner only calls :meth:`SpeechModel.generate`.
A sample whose audio cannot be read is recorded in ``metrics.json`` with its
reason and left out of the metric; any other error stops the run (never an
empty prediction in its place). Predictions are written as they are produced
(``predictions.jsonl``), so an interrupted run loses no finished work and
``resume=true`` continues it.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from .data.audio import AudioError
from .data.manifest import Sample
from .engine import Budget
from .models.base import SpeechModel
from .reduction import ReductionMethod

__all__ = ["Task", "evaluate", "main"]


@dataclass
class Task:
    """A task is data: a prompt per model family, a metric, a decode limit."""

    name: str
    prompts: dict[str, str]
    metric: Callable[[list[str], list[str]], dict]
    max_new_tokens: int

    def prompt_for(self, model: SpeechModel) -> str:
        if model.family not in self.prompts:
            raise ValueError(
                f"task {self.name!r} has no prompt for model family {model.family!r}; "
                f"it has prompts for {sorted(self.prompts)}"
            )
        return self.prompts[model.family]


def _batches(items: Sequence[Sample], size: int) -> list[Sequence[Sample]]:
    if size < 1:
        raise ValueError(f"batch_size must be >= 1, got {size}")
    return [items[i : i + size] for i in range(0, len(items), size)]


def _read_done(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["id"]: r for r in rows}


def evaluate(
    model: SpeechModel,
    task: Task,
    samples: Sequence[Sample],
    method: ReductionMethod,
    budget: Budget,
    out_dir: str | Path,
    batch_size: int = 1,
    resume: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the samples, write ``predictions.jsonl`` and ``metrics.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pred_path = out / "predictions.jsonl"
    settings = {"method": method.describe(), "budget": vars(budget), "model": model.name, "task": task.name}
    done = _read_done(pred_path) if resume else {}
    if done and json.loads((out / "settings.json").read_text()) != settings:
        raise ValueError(f"cannot resume {out}: it was produced with other settings")
    (out / "settings.json").write_text(json.dumps(settings, indent=1, default=str))
    prompt = task.prompt_for(model)
    failures: list[dict] = []
    rows: list[dict] = list(done.values())
    todo = [s for s in samples if s.id not in done]
    start = time.perf_counter()
    with pred_path.open("a" if resume else "w") as fh:
        for batch in _batches(todo, batch_size):
            ready, audios = [], []
            for sample in batch:
                try:
                    audios.append(sample.load_audio(16000))
                    ready.append(sample)
                except AudioError as exc:
                    failures.append({"id": sample.id, "error": str(exc)})
                    log(f"skipped {sample.id}: {exc}")
            if not ready:
                continue
            gens = model.generate(audios, prompt, method, budget, task.max_new_tokens, [s.id for s in ready])
            for sample, gen in zip(ready, gens):
                row = {
                    "id": sample.id,
                    "prediction": gen.text,
                    "reference": sample.text,
                    "flops_realized": gen.flops_realized,
                    "tokens_per_layer": gen.tokens_per_layer,
                    "hit_max_new_tokens": gen.hit_max_new_tokens,
                    "repetition_loop": gen.repetition_loop,
                    **gen.extra,
                }
                fh.write(json.dumps(row) + "\n")
                fh.flush()
                rows.append(row)
    wall_s = time.perf_counter() - start
    if not rows:
        raise RuntimeError(f"no sample could be evaluated; failures: {failures}")
    scores = task.metric([r["reference"] for r in rows], [r["prediction"] for r in rows])
    realised = [r["flops_realized"] for r in rows]
    metrics = {
        "model": model.name,
        "task": task.name,
        "method": method.name,
        "method_settings": method.describe(),
        "budget_model": budget.model,
        "flops_target": budget.flops,
        "flops_realized": statistics.fmean(realised),
        "flops_realized_min": min(realised),
        "flops_realized_max": max(realised),
        "num_samples": len(rows),
        "num_failed": len(failures),
        "failures": failures,
        "repetition_loops": sum(r["repetition_loop"] for r in rows),
        "hit_max_new_tokens": sum(r["hit_max_new_tokens"] for r in rows),
        "metrics": scores,
        "wall_s": wall_s,
        # per-sample costs the adapter reported (timings, decode FLOPs, KV-cache reduction)
        **{f"mean_{k}": statistics.fmean(r[k] for r in rows)
           for k, v in rows[0].items() if isinstance(v, float) and k != "flops_realized"},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    main_metric = next(iter(k for k in scores if k not in ("normalizer",)), None)
    log(
        f"[{task.name}] {model.name} | {method.name} flops target {budget.flops:.2f} "
        f"realised {metrics['flops_realized']:.3f} | {main_metric}={scores.get(main_metric)} "
        f"| {len(rows)} samples, {len(failures)} failed, {metrics['repetition_loops']} loops | {out}"
    )
    return metrics


def _instantiate(node: Any) -> Any:
    """Hydra's instantiate, but the caller sees the target's own error (a bad
    manifest line, an unknown schedule), not Hydra's wrapper around it."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node)
    except InstantiationException as exc:
        if isinstance(exc.__cause__, (ValueError, FileNotFoundError, RuntimeError)):
            raise exc.__cause__ from exc
        raise


def main(cfg) -> dict[str, Any]:
    """Entry point behind ``run.py``: instantiate the config groups, evaluate, log."""
    from omegaconf import OmegaConf

    instantiate = _instantiate

    task = Task(
        name=cfg.task.name,
        prompts=OmegaConf.to_container(cfg.task.prompts),
        metric=instantiate(cfg.task.metric),
        max_new_tokens=cfg.task.max_new_tokens,
    )
    method = instantiate(cfg.method)
    budget = instantiate(cfg.budget)
    samples = instantiate(cfg.dataset)
    model = instantiate(cfg.model)
    metrics = evaluate(
        model, task, samples, method, budget, cfg.output_dir, cfg.batch_size, resume=cfg.get("resume", False)
    )
    if cfg.logger.get("wandb"):
        import wandb

        run = wandb.init(
            project=cfg.logger.project,
            entity=cfg.logger.get("entity"),
            mode=cfg.logger.get("mode", "online"),
            config=OmegaConf.to_container(cfg, resolve=True),
            dir=cfg.output_dir,
        )
        run.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))} | metrics["metrics"])
        run.finish()
    return metrics
