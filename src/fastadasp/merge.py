"""Combine the shard folders of one evaluation into one result.

    python -m fastadasp.merge SHARD_DIR [SHARD_DIR ...] --out DIR

The shards (``shard=i num_shards=n``, e.g. SLURM array jobs) must share every
setting except the shard index and cover every shard exactly once; their
predictions are concatenated in dataset order and scored once, so the merged
``metrics.json`` equals a single-process run's (timings aside).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from .rescoring import load_run, task_from_settings
from .run_folder import RunFolderError, identity_diff, write_json_atomic

__all__ = ["merge_shards", "main"]

#: metrics.json keys that describe one process, not the evaluation
_PER_PROCESS = {"wall_s", "timed_samples", "samples_per_s", "shard", "failures", "num_failed", "metrics", "config"}


def merge_shards(shard_dirs: Sequence[str | Path], out_dir: str | Path) -> dict:
    """Check, concatenate and score the shards; write the merged run folder."""
    from .runner import summarize

    loaded = [(Path(d), *load_run(d)) for d in shard_dirs]
    if not loaded:
        raise RunFolderError("no shard folders given")
    ref_dir, ref_settings, _, _ = loaded[0]
    count = ref_settings["subset"]["num_shards"]
    seen: dict[int, Path] = {}
    for d, settings, _, metrics in loaded:
        if metrics is None:
            raise RunFolderError(f"{d} has no metrics.json: that shard has not finished (resume it with resume=true)")
        diff = [x for x in identity_diff(ref_settings, settings) if x[0] not in ("subset.shard", "subset.num_samples")]
        if diff:
            raise RunFolderError(f"{d} and {ref_dir} are not shards of one run: "
                                 + "; ".join(f"{k}: {a!r} != {b!r}" for k, a, b in diff[:10]))
        index = settings["subset"]["shard"]
        if index in seen:
            raise RunFolderError(f"shard {index} given twice: {seen[index]} and {d}")
        seen[index] = d
    missing = sorted(set(range(count)) - set(seen))
    if missing:
        raise RunFolderError(f"missing shard(s) {missing} of {count}")
    rows = sorted((r for _, _, rs, _ in loaded for r in rs), key=lambda r: r["index"])
    failures = [f for _, _, _, m in loaded for f in m["failures"]]
    task = task_from_settings(ref_settings)
    first = loaded[0][3]
    merged = {k: v for k, v in first.items() if k not in _PER_PROCESS}
    merged |= summarize(rows, failures, task)
    merged |= {
        "shard": {"index": None, "count": count, "merged_from": [str(d) for d in sorted(seen.values())]},
        "wall_s": sum(m["wall_s"] for _, _, _, m in loaded),  # machine time; the shards ran side by side
        "timed_samples": sum(m.get("timed_samples", 0) for _, _, _, m in loaded),
        "samples_per_s": None,
        "config": first.get("config"),
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = json.loads(json.dumps(ref_settings))
    settings["subset"].update({"shard": None, "num_samples": len(rows) + len(failures)})
    write_json_atomic(out / "settings.json", settings)
    (out / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    write_json_atomic(out / "metrics.json", merged)
    return merged


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m fastadasp.merge", description=__doc__.split("\n\n")[0])
    parser.add_argument("shards", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    return merge_shards(args.shards, args.out)


if __name__ == "__main__":
    try:
        m = main()
        print(json.dumps({k: m[k] for k in ("num_samples", "num_failed", "metrics")}, indent=1, default=str))
    except (RunFolderError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
