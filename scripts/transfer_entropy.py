"""Transfer-Entropy layer selection (SPEC s.6) for FastAdaSP-Sparse.

    python scripts/transfer_entropy.py model=whisper_tiny_en dataset=manifest dataset.path=CAL.jsonl \
        eval_dataset.path=TEST.jsonl calibration_limit=200 rule.name=min_te rule.max_flops=0.5

Writes transfer_entropy.json, te_curve.png and te_table.md in the run folder; use the result with
`python run.py method=fastadasp_sparse method.layer=auto method.te_file=<folder>/transfer_entropy.json`.
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="../configs", config_name="transfer_entropy")
def transfer_entropy(cfg: DictConfig) -> None:
    from fastadasp.run.transfer_entropy import main

    main(cfg)


if __name__ == "__main__":
    transfer_entropy()
