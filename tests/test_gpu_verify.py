"""scripts/gpu_verify.py's CPU-runnable parts: arguments, the part runner's time limits and
failure records, the summary, and the JSON it writes (a dry run of two parts at toy shapes)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


gv = load_script("gpu_verify")


def test_arguments_and_budgets_fit_eight_minutes():
    args = gv.parse_args([])
    assert args.device == "cuda" and args.tokens == [3000, 12000] and args.parts == list(gv.BUDGETS)
    assert args.budget_s == sum(gv.BUDGETS.values()) < 8 * 60
    with pytest.raises(SystemExit):
        gv.parse_args(["--budget-s", "0"])
    with pytest.raises(SystemExit):
        gv.parse_args(["--parts", "decode"])
    names = [p.name for p in gv.parts("cuda", False, [3000, 12000], Path("/tmp/x"))]
    assert names == list(gv.BUDGETS)
    prefill = next(p for p in gv.parts("cuda", False, [3000, 12000], Path("/tmp/x")) if p.name == "prefill")
    assert {"--preset", "qwen-7b", "--compile", "triton", "3000", "12000"} <= set(prefill.argv)


def test_part_runner_records_timeouts_failures_and_results(tmp_path):
    out = tmp_path / "r.json"
    ok = gv.run_part(gv.Part("ok", ["-c", f"import json; json.dump({{'x': 1}}, open({str(out)!r}, 'w')); print('hi')"], 30),
                     30, out)
    assert (ok["status"], ok["result"], ok["output_tail"].strip()) == ("ok", {"x": 1}, "hi")
    slow = gv.run_part(gv.Part("slow", ["-c", "import time; print('started', flush=True); time.sleep(30)"], 30), 0.5, None)
    assert slow["status"] == "timeout" and slow["wall_s"] < 10 and "budget of 0 s" in slow["detail"]
    bad = gv.run_part(gv.Part("bad", ["-c", "import sys; sys.exit('broken on purpose')"], 30), 30, tmp_path / "none.json")
    assert bad["status"] == "failed" and bad["detail"] == "exit status 1" and "broken on purpose" in bad["output_tail"]
    assert bad["result"] is None
    late = gv.run_part(gv.Part("late", ["-c", "pass"], 30), 0, None)
    assert late["status"] == "skipped"
    assert {"name", "status", "detail", "budget_s", "wall_s", "command", "output_tail", "result"} == set(bad)


def test_summary_reads_every_part():
    records = [
        {"name": "check_eager", "status": "ok", "result": {"checks": [
            {"part": "decoder", "case": "a", "ok": True, "detail": ""}, {"part": "decoder", "case": "b", "ok": False,
                                                                         "detail": "tokens per layer differ"},
            {"part": "compiled", "case": "c", "ok": None, "detail": "missing"}], "kernels": [{"tokens": 3000}]}},
        {"name": "prefill", "status": "timeout", "result": {"prefill": {"3000": [
            {"variant": "full", "speedup": 1.0, "fraction_of_ideal": 0.5, "median_ms": 90.0}]}}},
        {"name": "op_profile", "status": "failed", "result": None},
    ]
    s = gv.summarise(records)
    assert s["parts"] == {"check_eager": "ok", "prefill": "timeout", "op_profile": "failed"}
    assert (s["check_eager"]["passed"], s["check_eager"]["failed"], s["check_eager"]["skipped"]) == (1, 1, 1)
    assert s["check_eager"]["failures"] == ["decoder b: tokens per layer differ"]
    assert s["prefill"]["3000"]["full"]["fraction_of_ideal"] == 0.5 and s["mass_kernel_ms"] == [{"tokens": 3000}]
    assert s["op_profile"] == {}
    assert gv.card_slug("cuda: NVIDIA H200") == "nvidia_h200" and gv.card_slug("NVIDIA H100 80GB HBM3") == "nvidia_h100_80gb_hbm3"


def test_dry_run_on_the_cpu_writes_one_json(tmp_path):
    # one real part, a subprocess at toy shapes on the CPU: its record, its own JSON and the summary, in one file
    out = tmp_path / "verify.json"
    # check_eager: the cheapest real part (the compiled path's correctness is test_compile's; on a loaded CPU
    # its Inductor compiles take minutes)
    rc = gv.main(["--device", "cpu", "--tiny", "--parts", "check_eager", "--out", str(out)])
    payload = json.loads(out.read_text())
    assert rc == 0 and payload["kind"] == "gpu_verify" and payload["schema"] == gv.SCHEMA
    assert payload["device"].startswith("cpu") and [p["name"] for p in payload["parts"]] == ["check_eager"]
    (eager,) = payload["parts"]
    assert eager["status"] == "ok", eager["output_tail"]
    assert eager["command"].startswith("python scripts/check_device.py --device cpu")
    assert eager["result"]["path"] == {"mass_kernel": "torch", "compile": False}
    assert payload["summary"]["check_eager"]["failed"] == 0 and payload["summary"]["check_eager"]["passed"] > 0
