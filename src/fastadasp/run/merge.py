"""Combine the shard folders of one evaluation into one result.

    python -m fastadasp.run.merge SHARD_DIR [SHARD_DIR ...] --out DIR [--overwrite]

The shards (``shard=i num_shards=n``, e.g. SLURM array jobs) must share every
setting except the shard index and cover every shard exactly once, each
finished and none still being written; their predictions are concatenated in
dataset order and scored once, so the merged ``metrics.json`` equals a
single-process run's (timings aside).

The output folder is locked for the merge like a run folder. It may not be one
of the shards (however it is spelt: relative path, symlink), and one that
already holds results is refused unless ``--overwrite``, which keeps the old
results aside until the merged ``metrics.json`` is written
(:mod:`fastadasp.run.folder`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

from .rescoring import load_run, task_from_settings
from .folder import RunFolder, RunFolderError, identity_diff, lock_holder, unique_rows

__all__ = ["merge_shards", "main"]

#: metrics.json keys that describe one process, not the evaluation
_PER_PROCESS = {"wall_s", "timed_samples", "samples_per_s", "shard", "failures", "num_failed", "metrics", "config"}


def _same_folder(a: Path, b: Path) -> bool:
    """One folder, however each is spelt (relative, through a symlink, a bind mount)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


def merge_shards(shard_dirs: Sequence[str | Path], out_dir: str | Path, overwrite: bool = False) -> dict:
    """Check, concatenate and score the shards; write the merged run folder."""
    from .runner import summarize

    if not shard_dirs:
        raise RunFolderError("no shard folders given")
    out = Path(out_dir)
    for d in map(Path, shard_dirs):
        if _same_folder(d, out):
            raise RunFolderError(f"--out {out} is the input shard {d}: the merge would overwrite it; "
                                 "choose a new output folder")
        holder = lock_holder(d)
        if holder:
            raise RunFolderError(f"shard {d} is still being written ({holder}): merge once that run has finished")
    remedy = "add --overwrite to replace them, or choose another --out folder"
    if not overwrite and RunFolder(out).holds_results():  # early and read-only; check() decides under the lock
        raise RunFolderError(f"{out} already holds results; {remedy}")
    loaded = []
    for d in map(Path, shard_dirs):
        settings, rows, metrics = load_run(d)
        loaded.append((d, settings, unique_rows(rows, d / "predictions.jsonl"), metrics))
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
    settings = json.loads(json.dumps(ref_settings))
    settings["subset"].update({"shard": None, "num_samples": len(rows) + len(failures)})
    with RunFolder(out, remedy=remedy) as folder:  # locked until the merged metrics.json is written
        folder.check(settings, resume=False, overwrite=overwrite)
        folder.start(settings, rows)
        folder.finish(merged)
    return merged


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m fastadasp.run.merge", description=__doc__.split("\n\n")[0])
    parser.add_argument("shards", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="a new folder (or an empty one)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results already in --out (kept aside until the merge is written)")
    args = parser.parse_args(argv)
    return merge_shards(args.shards, args.out, overwrite=args.overwrite)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=sys.stderr)
    try:
        m = main()
        print(json.dumps({k: m[k] for k in ("num_samples", "num_failed", "metrics")}, indent=1, default=str))
    except (RunFolderError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
