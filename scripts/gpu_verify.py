"""One prepared GPU check (``make gpu-verify``): correctness and speed of the engine on one card, in one JSON.

In under 8 minutes on one H100 or H200 it runs, each part as its own process
with its own time budget (a part that fails, crashes or runs out of time is
recorded as such and the next one starts):

1. ``check_eager``: ``scripts/check_device.py`` for every method, CPU == GPU,
   the engine as it runs by default (torch mass), plus the kernel times;
2. ``check_triton``: the same with the fused Triton mass on the GPU
   (``--mass-kernel triton``), and the bf16 mass against the exact one;
3. ``check_compiled``: the decoder's prefill through ``model.compile=true``'s
   compiled forward (recorded as skipped, with the reason, where the checkout
   lacks it);
4. ``prefill``: the Qwen-7B-shaped bf16 prefill at 3000 and 12000 audio
   tokens (``scripts/benchmark_speech_lm.py --preset qwen-7b``): full,
   weighted, unweighted, weighted with the Triton mass, and the compiled
   variants (eager, compiled, kernel);
5. ``op_profile``: one profiled prefill per variant at 3000 tokens (device
   busy share, syncs, host ops).

It writes ``results/benchmarks/gpu/verify_<card>.json`` (the card's name in
the file name and in the file): per part its command, status (``ok``,
``failed``, ``timeout``, ``skipped``), wall time, output tail and the JSON
the part wrote; and a summary with the numbers the issue's targets need
(checks passed, fraction of the FLOPs ideal per length and variant, the mass
kernels' times). ``--tiny`` runs the same parts at toy shapes (for a dry run
on the CPU: ``--device cpu --tiny``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
#: seconds per part; together under the 8 minutes the check may take (the rest: start-up, writing)
BUDGETS = {"check_eager": 75, "check_triton": 75, "check_compiled": 60, "prefill": 190, "op_profile": 60}
SCHEMA = 1


@dataclass
class Part:
    name: str
    argv: list[str]  # the script and its arguments (run with this interpreter)
    budget_s: float


def parts(device: str, tiny: bool, tokens: list[int], json_dir: Path) -> list[Part]:
    """The five parts, each writing its JSON into ``json_dir``."""
    check = [str(SCRIPTS / "check_device.py"), "--device", device]
    if tiny:
        check += ["--methods", "dense_constant", "dense_unweighted", "--kernel-tokens", "256"]
    shape = (["--hidden", "128", "--layers", "2", "--vocab", "256", "--warmup-audio-tokens", "100"] if tiny else
             ["--preset", "qwen-7b", "--dtype", "bfloat16"])
    bench = [str(SCRIPTS / "benchmark_speech_lm.py"), "--device", device, *shape, "--prefill-variants", "0", "1", "2",
             "--mass-kernel", "torch", "triton", "--skip", "decode", "batch"]
    return [
        Part("check_eager", [*check, "--json", str(json_dir / "check_eager.json")], BUDGETS["check_eager"]),
        Part("check_triton", [*check, "--mass-kernel", "triton", "--skip", "kernels",
                              "--json", str(json_dir / "check_triton.json")], BUDGETS["check_triton"]),
        Part("check_compiled", [*check, "--compile", "--skip", "whisper", "half", "kernels",
                                "--json", str(json_dir / "check_compiled.json")], BUDGETS["check_compiled"]),
        Part("prefill", [*bench, "--compile", "--audio-tokens", *map(str, tokens), "--repeats", "3", "--max-repeats", "3",
                         "--profile-repeats", "1", "--json", str(json_dir / "prefill.json")], BUDGETS["prefill"]),
        Part("op_profile", [*bench, "--audio-tokens", str(tokens[0]), "--skip", "prefill", "decode", "batch",
                            "--op-profile", "--json", str(json_dir / "op_profile.json")], BUDGETS["op_profile"]),
    ]


def run_part(part: Part, budget_s: float, json_path: Path | None, env: dict | None = None) -> dict:
    """Run one part with a time limit; whatever happens, return a record of it."""
    started = time.perf_counter()
    if budget_s <= 0:
        return {"name": part.name, "status": "skipped", "detail": "no time left in the overall budget",
                "budget_s": 0, "wall_s": 0.0, "command": _command(part), "output_tail": "", "result": None}
    try:
        done = subprocess.run([sys.executable, *part.argv], capture_output=True, text=True, timeout=budget_s, env=env,
                              cwd=REPO)
        status = "ok" if done.returncode == 0 else "failed"
        detail = f"exit status {done.returncode}"
        output = done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        status, detail = "timeout", f"stopped after its budget of {budget_s:.0f} s"
        output = _text(exc.stdout) + _text(exc.stderr)
    result = json.loads(json_path.read_text()) if json_path is not None and json_path.is_file() else None
    return {"name": part.name, "status": status, "detail": detail, "budget_s": budget_s,
            "wall_s": time.perf_counter() - started, "command": _command(part), "output_tail": output[-4000:],
            "result": result}


def _text(out: str | bytes | None) -> str:
    return out.decode(errors="replace") if isinstance(out, bytes) else (out or "")


def _command(part: Part) -> str:
    return " ".join(["python", *(str(Path(a).relative_to(REPO)) if a.startswith(str(REPO)) else a for a in part.argv)])


def summarise(records: list[dict]) -> dict:
    """The numbers the issue's targets need, read from the parts' own JSON."""
    out: dict = {"parts": {r["name"]: r["status"] for r in records}}
    for r in records:
        res = r["result"] or {}
        if r["name"].startswith("check_"):
            checks = res.get("checks", [])
            out[r["name"]] = {"passed": sum(c["ok"] is True for c in checks), "failed": sum(c["ok"] is False for c in checks),
                              "skipped": sum(c["ok"] is None for c in checks),
                              "failures": [f"{c['part']} {c['case']}: {c['detail']}" for c in checks if c["ok"] is False]}
            if res.get("kernels"):
                out["mass_kernel_ms"] = res["kernels"]
        elif r["name"] == "prefill":
            out["prefill"] = {length: {row["variant"]: {"speedup": row["speedup"], "fraction_of_ideal": row["fraction_of_ideal"],
                                                        "median_ms": row["median_ms"]} for row in rows}
                              for length, rows in res.get("prefill", {}).items()}
        elif r["name"] == "op_profile":
            out["op_profile"] = {name: {k: v.get(k) for k in ("wall_s", "busy_share", "host_syncs", "host_ops")}
                                 for name, v in res.get("op_profile", {}).items()}
    return out


def card_slug(name: str) -> str:
    """``cuda: NVIDIA H200`` -> ``nvidia_h200`` (the file name's card)."""
    name = name.split(":", 1)[-1] if name.startswith(("cuda", "cpu")) else name
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:60] or "unknown"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda[:i], or cpu for a dry run with --tiny (default: %(default)s)")
    p.add_argument("--out", type=Path, default=None,
                   help="output JSON (default: results/benchmarks/gpu/verify_<card>.json)")
    p.add_argument("--budget-s", type=float, default=sum(BUDGETS.values()),
                   help="seconds for all parts together; each part gets its own budget or what is left "
                   "(default: %(default)s)")
    p.add_argument("--parts", nargs="+", choices=list(BUDGETS), default=list(BUDGETS), help="parts to run (default: all)")
    p.add_argument("--tokens", type=int, nargs="+", default=[3000, 12000], help="prefill audio tokens (default: %(default)s)")
    p.add_argument("--tiny", action="store_true", help="toy shapes (a dry run of the plumbing, e.g. on the CPU)")
    args = p.parse_args(argv)
    if args.budget_s <= 0:
        p.error("--budget-s must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    import torch

    from fastadasp.run.benchmarking import device_name, write_json

    card = device_name(args.device)
    print(f"gpu-verify on {card} | torch {torch.__version__} | budget {args.budget_s:.0f} s", flush=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])))
    # a dry run on a (shared, 2-core) CPU compiles with Inductor and interprets Triton: the parts' budgets,
    # sized for a GPU machine's host, get 5x there (the overall --budget-s still bounds the whole)
    scale = 1.0
    if torch.device(args.device).type == "cpu":
        env.setdefault("TRITON_INTERPRET", "1")  # the CPU runs Triton only interpreted
        scale = 5.0 if args.tiny else 1.0
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for part in parts(args.device, args.tiny, args.tokens, Path(tmp)):
            if part.name not in args.parts:
                continue
            left = args.budget_s - (time.perf_counter() - started)
            json_path = Path(part.argv[part.argv.index("--json") + 1])
            record = run_part(part, min(part.budget_s * scale, left), json_path, env)
            records.append(record)
            print(f"{record['status']:>8} {part.name} ({record['wall_s']:.0f} s): {record['detail']}", flush=True)
    payload = {"schema": SCHEMA, "kind": "gpu_verify", "device": card, "torch": torch.__version__,
               "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "wall_s": time.perf_counter() - started, "summary": summarise(records), "parts": records}
    out = args.out or REPO / "results" / "benchmarks" / "gpu" / f"verify_{card_slug(card)}.json"
    write_json(out, payload)
    print("\nSummary:\n" + json.dumps(payload["summary"], indent=1))
    print(f"wrote {out} ({payload['wall_s']:.0f} s)")
    return 0 if all(r["status"] in ("ok", "skipped") for r in records) else 1


if __name__ == "__main__":
    raise SystemExit(main())
