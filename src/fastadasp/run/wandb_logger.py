"""Weights & Biases logging of a finished run (offline unless configured online).

The local run folder is the record: this runs after ``metrics.json`` is
written, and a W&B failure (no network, bad credentials) is logged as a
warning, never lost work.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

__all__ = ["log_run"]

log = logging.getLogger(__name__)

_TABLE_COLUMNS = ("id", "reference", "prediction", "answer", "flops_realized", "audio_tokens_kept")


def _group(cfg: Any) -> str | None:
    """Jobs of one multirun share a group: the sweep folder's name."""
    if cfg.logger.get("group"):
        return str(cfg.logger.group)
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized() and HydraConfig.get().mode.name == "MULTIRUN":
        return Path(HydraConfig.get().sweep.dir).name
    return None


def _rows(out_dir: Path) -> list[list]:
    rows = []
    path = out_dir / "predictions.jsonl"
    for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
        r = json.loads(line)
        t = r.get("tokens_per_layer") or [0]
        rows.append([r["id"], json.dumps(r.get("reference")) if not isinstance(r.get("reference"), str) else r["reference"],
                     r["prediction"], str(r.get("answer")), r["flops_realized"], t[-1]])
    return rows


def log_run(cfg: Any, metrics: dict, out_dir: Path, name: str) -> str | None:
    """Log config, metrics, realised FLOPs and a predictions table; returns the
    W&B run folder (``None`` when logging failed)."""
    from omegaconf import OmegaConf

    try:
        import wandb

        run = wandb.init(
            project=cfg.logger.project,
            entity=cfg.logger.get("entity"),
            mode=cfg.logger.get("mode", "offline"),
            group=_group(cfg),
            name=name,
            config=metrics.get("config") or OmegaConf.to_container(cfg, resolve=False),
            dir=str(out_dir),
            reinit="finish_previous",
        )
        scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        scalars |= {f"metrics/{k}": v for k, v in metrics["metrics"].items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)}
        run.log(scalars | {"predictions": wandb.Table(columns=list(_TABLE_COLUMNS), data=_rows(out_dir))})
        run.summary.update(scalars)
        folder = run.dir
        run.finish()
        return str(Path(folder).parent)
    except Exception as exc:  # noqa: BLE001 -- W&B is a mirror of the local results, never a reason to lose them
        log.warning("W&B logging failed (%s: %s); the local results in %s are complete", type(exc).__name__, exc, out_dir)
        return None
