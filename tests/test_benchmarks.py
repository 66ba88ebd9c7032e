"""The benchmark machinery and the long-audio benchmark on the tiny random Qwen2-Audio
(random weights: the numbers are plumbing checks, never results)."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from fastadasp.run.benchmarking import PeakMemory, interleaved, markdown_table, spread
from fastadasp.models.speech_lm import decoder_stack_spec
from fastadasp.reduction import kv_cache_bytes

REPO = Path(__file__).resolve().parents[1]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_interleaved_rotates_the_order_and_drops_warmup():
    calls = []
    out = interleaved({name: (lambda n=name: calls.append(n) or len(calls)) for name in "abc"}, repeats=2, warmup=1)
    assert calls == list("abc" "bca" "cab")
    assert out == {"a": [6, 8], "b": [4, 9], "c": [5, 7]}  # call numbers of reps 2 and 3


def test_spread_and_table():
    s = spread([1.0, 3.0, 2.0])
    assert (s["median"], s["min"], s["max"], s["n"]) == (2.0, 1.0, 3.0, 3)
    assert s["rel_half_range"] == pytest.approx(0.5)
    table = markdown_table([{"a": 1.5, "b": "x"}, {"a": 2}], {"a": "A", "b": "B"})
    assert table.splitlines()[0].startswith("|") and "| x " in table and table.count("\n") == 3


def test_peak_memory_sees_an_allocation():
    with PeakMemory("cpu") as mem:
        x = torch.ones(40_000_000)  # 160 MB, touched
        x += 1
        del x
    assert 0.8 * 160e6 < mem.bytes < 1.5 * 160e6


@pytest.fixture(scope="module")
def long_audio(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "long_audio.json"
    argv = ["--source", "tiny:qwen2_audio", "--audio-s", "35", "--beams", "1", "2", "--batch-sizes", "1", "2", "--new-tokens", "3",
            "--repeats", "1", "--warmup-audio-s", "0", "--json", str(out)]
    assert load_script("benchmark_long_audio").main(argv) == 0
    return json.loads(out.read_text()), argv


def test_long_audio_json_follows_the_contract(long_audio):
    payload, argv = long_audio
    assert payload["kind"] == "long_audio_benchmark"
    assert {"device", "model", "dtype", "command", "rows"} <= set(payload)
    assert payload["command"].endswith(" ".join(argv))
    rows = payload["rows"]
    assert [(r["batch"], r["beam"], r["method"], r["flops_target"]) for r in rows] == [
        (batch, beam, method, flops) for batch in (1, 2) for beam in (1, 2)
        for method, flops in (("none", 0.0), ("fastadasp_dense", 0.5))]
    keys = {"beam", "audio_s", "method", "flops_target", "token_reduction", "flops_realized", "rtf", "prefill_s",
            "decode_s", "new_tokens", "throughput_tok_s", "kv_bytes", "kv_bytes_full", "peak_mem_bytes", "repeats",
            "spread"}
    for r in rows:
        assert keys <= set(r), keys - set(r)
        assert r["audio_s"] == 35 and r["repeats"] == 1 and r["new_tokens"] == 3
        assert set(r["spread"]) >= {"rtf", "prefill_s", "decode_s", "throughput_tok_s", "peak_mem_bytes"}


def test_long_audio_rows_are_internally_consistent(long_audio):
    payload, _ = long_audio
    from fastadasp.testing.tiny_models import tiny_model_dir
    from transformers import AutoConfig

    spec = decoder_stack_spec(AutoConfig.from_pretrained(tiny_model_dir("qwen2_audio")).text_config)
    for r in payload["rows"]:
        copies = r["batch"] * r["beam"]
        assert r["throughput_tok_s"] == pytest.approx(r["batch"] * (r["new_tokens"] - 1) / r["decode_s"])
        assert r["rtf"] * r["audio_s"] * r["batch"] >= r["prefill_s"] + r["decode_s"]  # one repeat: medians = that run
        assert r["prefill_batch_tokens"] == [copies, r["prompt_tokens"]]  # generate prefills every beam
        assert r["audio_tokens"] == 750 + 125  # 30 s + 5 s windows at 25 tokens/s
        assert r["kv_bytes_full"] == copies * kv_cache_bytes(spec, [r["prompt_tokens"]] * spec.num_layers, 4)
        assert r["peak_mem_bytes"] >= 0
        growth = copies * kv_cache_bytes(spec, [1] * spec.num_layers, 4)
        assert r["decode_cache_mean_bytes"] == pytest.approx(r["kv_bytes"] + growth * r["new_tokens"] / 2)
        assert r["decode_fraction_of_ideal"] == pytest.approx(r["speedup_decode"] / r["decode_memory_ideal"])
        if r["method"] == "none":
            assert r["flops_realized"] == r["token_reduction"] == 0 and r["kv_bytes"] == r["kv_bytes_full"]
            assert r["speedup_decode"] == 1 and r["decode_memory_ideal"] == 1
        else:
            assert abs(r["flops_realized"] - r["flops_target"]) <= 0.01
            assert 0 < r["token_reduction"] < 1 and r["kv_bytes"] < r["kv_bytes_full"]
            kept = r["tokens_per_layer"]
            assert r["kv_bytes"] == pytest.approx(copies * kv_cache_bytes(spec, kept[:-1], 4))
            w, k = r["decode_weight_bytes"], 3 if r["beam"] > 1 else 1  # the beam reorder reads and writes the cache
            full = next(f for f in payload["rows"] if f["method"] == "none" and (f["beam"], f["batch"]) == (r["beam"], r["batch"]))
            assert r["decode_memory_ideal"] == pytest.approx(
                (w + k * full["decode_cache_mean_bytes"]) / (w + k * r["decode_cache_mean_bytes"]))
            assert 1 < r["decode_memory_ideal"] < full["kv_bytes"] / r["kv_bytes"]
    reduced = [r for r in payload["rows"] if r["method"] != "none"]
    assert len({tuple(r["tokens_per_layer"]) for r in reduced}) == 1  # the same clip: the same plan in every cell
    assert len({r["decode_weight_bytes"] for r in payload["rows"]}) == 1


def test_decode_weight_bytes_skip_the_input_table_unless_tied():
    from fastadasp.run.benchmarking import decode_memory_ideal, decode_weight_bytes, random_qwen2_lm

    model = random_qwen2_lm(64, 2, vocab=100)
    every = sum(p.numel() * 4 for p in model.parameters())
    table = model.model.embed_tokens.weight.numel() * 4
    assert decode_weight_bytes(model.model, model.lm_head) == every - table
    model.lm_head.weight = model.model.embed_tokens.weight  # tied: the head reads the whole table every step
    assert decode_weight_bytes(model.model, model.lm_head) == every - table
    assert decode_memory_ideal(10.0, 5.0, 2.0, beams=5) == pytest.approx(25 / 16)
    assert decode_memory_ideal(10.0, 5.0, 2.0, beams=1) == pytest.approx(15 / 12)


def test_speech_lm_benchmark_in_half_precision_reports_what_it_measured(tmp_path, monkeypatch):
    """The GPU command's code path (bf16, several decode lengths, op profile, the
    GPU's size policy) on a tiny random LLM on the CPU: caches in bf16 bytes,
    measured == analytic, the requested decode lengths and steps, the profile's counts."""
    from fastadasp.engine import attention

    monkeypatch.setattr(attention, "READ_SIZES_ON", attention.READ_SIZES_ON)  # main() switches it; restored after
    out = tmp_path / "llm.json"
    argv = ["--hidden", "128", "--layers", "4", "--vocab", "512", "--dtype", "bfloat16", "--flops", "0.3",
            "--audio-tokens", "300", "--decode-audio-tokens", "300", "400", "--new-tokens", "3",
            "--batch-audio-tokens", "200", "--batch-size", "2", "--batch-new-tokens", "2", "--repeats", "1",
            "--max-repeats", "1", "--profile-repeats", "1", "--decode-repeats", "1", "--warmup-audio-tokens", "200",
            "--prefill-variants", "0", "1", "--op-profile", "--sizes", "bounded", "--json", str(out)]
    assert load_script("benchmark_speech_lm").main(argv) == 0
    assert attention.READ_SIZES_ON == () and not attention.reads_sizes(torch.device("cpu"))
    payload = json.loads(out.read_text())
    full, weighted = payload["prefill"]["300"]
    assert full["kv_measured_bytes"] == full["kv_analytic_bytes"] == 4 * 340 * 2 * 128 * 2  # layers x T x K,V x d x bf16
    assert weighted["kv_measured_bytes"] == weighted["kv_analytic_bytes"] < full["kv_measured_bytes"]
    assert weighted["flops_realised"] == pytest.approx(0.3, abs=0.01)
    assert weighted["machinery_median_ms"] > 0 and weighted["peak_mib"] is None  # peak memory is CUDA-only
    assert set(payload["decode_by_audio_tokens"]) == {"300", "400"}
    for dec in payload["decode_by_audio_tokens"].values():
        assert all(row["steps"] == 2 for row in dec["rows"].values())
        assert 1 < dec["memory_ideal"] and dec["fraction_of_ideal"] == pytest.approx(dec["speedup"] / dec["memory_ideal"])
        assert dec["cache_mean_bytes"]["reduced"] < dec["cache_mean_bytes"]["full"]
    assert payload["batching"]["batch"] == 2
    prof = payload["op_profile"]
    assert prof["full"]["kernel_s"] is None and prof["full"]["host_syncs"] == 0  # no device on a CPU run
    assert prof["FastAdaSP dense constant, weighted"]["host_ops"] > prof["full"]["host_ops"]


def test_device_check_compares_every_part_on_the_cpu():
    """scripts/check_device.py's comparisons, run CPU against CPU: they pass, and a
    changed kept-token set or hidden state is reported as a mismatch."""
    check = load_script("check_device")
    model = check.random_qwen2_lm(128, 4, seed=0, vocab=512)
    a, b = (check.llm_run(model, "dense_constant", 3, "keep") for _ in range(2))
    assert check.compare_llm(a, b)[0]
    b["hidden"][2] = b["hidden"][2] * 1.01
    ok, detail = check.compare_llm(a, b)
    assert not ok and detail.startswith("hidden states differ")
    b["valid"] = [~a["valid"][0]]
    assert check.compare_llm(a, b) == (False, "kept token set or cache lengths differ (a flipped selection?)")
    whisper = check.random_whisper("cpu")
    w1, w2 = (check.whisper_run(whisper, "dense_decay") for _ in range(2))
    assert check.compare_whisper(w1, w2)[0]
