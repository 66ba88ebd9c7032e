"""Hydra entry point: `python run.py method=fastadasp_dense flops=0.3` (see configs/)."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def run(cfg: DictConfig) -> float:
    from fastadasp.runner import main

    metrics = main(cfg)
    return next(v for v in metrics["metrics"].values() if isinstance(v, (int, float)))


if __name__ == "__main__":
    run()
