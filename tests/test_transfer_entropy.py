"""Transfer-Entropy layer selection (SPEC s.6) on the tiny random models: plumbing, never results."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import CONFIGS, ROOT, compose_run
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from fastadasp.data.manifest import Sample, load_manifest
from fastadasp.reduction import (
    BudgetError,
    FastAdaSPSparse,
    FixedRatio,
    StackSpec,
    TokenLayerBudget,
    TokenLayout,
    solve_ratio,
    solve_ratio_flops,
)
from fastadasp.run.transfer_entropy import (
    CalibrationOverlapError,
    LayerTE,
    check_no_overlap,
    entropy_proxy,
    final_entropies,
    main,
    max_feasible_flops,
    select_layer,
    transfer_entropy_curve,
)


def compose_te(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="transfer_entropy", overrides=overrides)


def write_manifest(folder: Path, prefix: str, seconds: list[float], seed: int) -> Path:
    """Noise wavs and their manifest (ids ``<prefix>-i``)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for i, s in enumerate(seconds):
        wav = folder / f"{prefix}{i}.wav"
        sf.write(wav, (0.1 * rng.standard_normal(int(16000 * s))).astype("float32"), 16000)
        lines.append(json.dumps({"id": f"{prefix}-{i}", "audio": wav.name, "text": "hello world"}))
    path = folder / f"{prefix}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    root = tmp_path_factory.mktemp("te_data")
    return write_manifest(root, "cal", [1.0, 1.6, 2.2], 0), write_manifest(root, "test", [1.2, 1.4], 1)


@pytest.fixture(scope="module")
def whisper(tiny_whisper_dir):
    from fastadasp.models.whisper import WhisperModel

    return WhisperModel(source=str(tiny_whisper_dir))


@pytest.fixture(scope="module")
def qwen():
    from fastadasp.models.qwen2_audio import Qwen2AudioModel

    return Qwen2AudioModel("tiny:qwen2_audio")


def audios_of(manifest: Path) -> tuple[list[np.ndarray], list[str]]:
    samples = load_manifest(manifest)
    return [s.load_audio(16000) for s in samples], [s.id for s in samples]


# -- the entropy proxy and the rule (pure) ----------------------------------------------


def test_entropy_proxy_matches_a_hand_computation():
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 5, 8, generator=g) * torch.linspace(0.5, 3, 5)[None, :, None]
    mask = torch.tensor([[True, True, False, True, False], [False, True, True, True, True]])
    got = entropy_proxy(hidden, mask)
    h = hidden.numpy().astype(np.float64)
    want = [sum(math.log(np.std(h[b, t], ddof=1)) for t in range(5) if mask[b, t]) for b in range(2)]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)


def curve(tes, feasible, reference_last=True):
    n = len(tes)
    return [LayerTE(i, te, 0.0, 0.0, ok, reference_last and i == n - 1) for i, (te, ok) in enumerate(zip(tes, feasible))]


def test_rule_picks_the_lowest_feasible_te_and_skips_infeasible_layers():
    points = curve([0.5, 0.2, 0.3, 0.1, 0.25, 0.0], [True, True, True, False, True, False])
    assert select_layer(points, "min_te")[0] == 1  # layer 3 has the lowest TE but cannot reach the budget
    assert select_layer(points, "min_te", min_layer=2)[0] == 4
    layer, how = select_layer(points, "first_local_min")
    assert layer == 1 and how["local_minima"] == [1, 3]
    layer, how = select_layer(points, "first_local_min", min_layer=2)  # minima 1 (too early), 3 (infeasible)
    assert layer == 4 and how["fallback"] == "min_te"
    # the reference's TE of 0 is a definition: never selected, even when feasible
    assert select_layer(curve([0.4, 0.3, 0.0], [True, True, True]), "min_te")[0] == 1
    assert select_layer(curve([0.4, 0.3, 0.0], [False, False, False]), "min_te")[0] is None
    with pytest.raises(ValueError, match="unknown TE rule"):
        select_layer(points, "max_te")


def test_ties_go_to_the_earlier_layer():
    assert select_layer(curve([0.3, 0.2, 0.2, 0.0], [True] * 4), "min_te")[0] == 1


SPEC = StackSpec(num_layers=8, d_model=64, num_heads=4, num_kv_heads=2, head_dim=16, ffn_dim=128, mlp_matrices=3,
                 causal=True)


@pytest.mark.parametrize("target", [0.3, 0.5, 0.7])
def test_feasibility_agrees_with_the_project_solvers(target):
    """A layer is feasible exactly when the budget solver of run.py accepts it."""
    layouts = [TokenLayout(20, (50,)), TokenLayout(12, (30, 25))]
    for layer in range(SPEC.num_layers):
        bound = max_feasible_flops(layer, SPEC, "token_layer")
        assert bound == pytest.approx(1 - (layer + 1) / SPEC.num_layers)
        try:
            solve_ratio(SPEC.num_layers, layer, "single", target)
            paper_ok = True
        except BudgetError:
            paper_ok = False
        assert paper_ok == (target < bound)
        bound = max_feasible_flops(layer, SPEC, "analytic", layouts)
        ok = []
        for t in layouts:
            try:
                solve_ratio_flops(SPEC, t, "single", layer, target)
                ok.append(True)
            except BudgetError:
                ok.append(False)
        assert all(ok) == (target <= bound)


def test_the_earlier_cost_model_names_still_work_with_a_warning():
    layouts = [TokenLayout(20, (50,))]
    for old, new in (("paper", "token_layer"), ("flops", "analytic")):
        with pytest.warns(DeprecationWarning, match=f"rule.budget_model={old} is deprecated: use rule.budget_model={new}"):
            assert max_feasible_flops(2, SPEC, old, layouts) == max_feasible_flops(2, SPEC, new, layouts)
    with pytest.raises(BudgetError, match=r"unknown cost model 'tokens' \(rule.budget_model\)"):
        max_feasible_flops(2, SPEC, "tokens", layouts)


def test_fixed_ratio_is_the_reduction_budget_type():
    import fastadasp.run.transfer_entropy as te

    assert te.FixedRatio is FixedRatio and FixedRatio.__mro__[1].__name__ == "Budget"


def test_overlap_is_refused_by_id_and_by_audio_path(tmp_path):
    a = Sample("a", tmp_path / "a.wav", None)
    b = Sample("b", tmp_path / "b.wav", None)
    check_no_overlap([a], [b])
    with pytest.raises(CalibrationOverlapError, match=r"1 shared ids \['a'\]"):
        check_no_overlap([a], [Sample("a", tmp_path / "other.wav", None), b])
    with pytest.raises(CalibrationOverlapError, match="b.wav"):  # same file under another id, another spelling
        check_no_overlap([b], [Sample("test-7", tmp_path / "x" / ".." / "b.wav", None)])


# -- models ------------------------------------------------------------------------


def test_fixed_ratio_merges_half_the_audio_at_the_layer_on_a_speech_lm(qwen, manifests):
    audios, ids = audios_of(manifests[0])
    prompt = "<|audio_bos|><|AUDIO|><|audio_eos|>Detect the language and recognize the speech: <|en|>"
    inputs, segments = qwen.prepare(audios, prompt)
    spans = (segments >= 0).sum(1)
    with qwen.reducer(FastAdaSPSparse(layer=1), FixedRatio(ratio=0.5)) as reducer:
        mask = qwen.prefill(audios, prompt, reducer, ids)
    assert mask.sum(1).tolist() == (spans - spans // 2).tolist()


def test_curve_on_a_speech_lm_reference_is_zero_and_batches_agree(qwen, manifests):
    audios, ids = audios_of(manifests[0])
    prompts = ["<|audio_bos|><|AUDIO|><|audio_eos|>Detect the language and recognize the speech: <|en|>"] * len(ids)
    points, h_ref = transfer_entropy_curve(qwen, audios, prompts, ids, None, 0.5, 3, "analytic", 0.5, log=lambda _: None)
    assert [p.layer for p in points] == [0, 1, 2, 3]
    assert points[-1].reference and points[-1].te == 0.0 and points[-1].entropy == h_ref
    assert all(math.isfinite(p.te) for p in points) and len({round(p.te, 6) for p in points[:-1]}) == 3
    assert sorted(p.rank for p in points[:-1]) == [1, 2, 3]
    # one by one gives the same entropies as a padded batch
    one = final_entropies(qwen, audios, prompts, ids, 1, 0.5, 1)
    batch = final_entropies(qwen, audios, prompts, ids, 1, 0.5, 3)
    np.testing.assert_allclose(one, batch, rtol=1e-4)
    assert points[1].entropy == pytest.approx(np.mean(batch), rel=1e-6)


def test_curve_on_whisper_reads_the_encoder_and_only_early_layers_are_feasible(whisper, manifests):
    audios, ids = audios_of(manifests[0])
    points, h_ref = transfer_entropy_curve(whisper, audios, [""] * 3, ids, [0, 2], 0.5, 2, "token_layer", 0.5,
                                           log=lambda _: None)
    assert [p.layer for p in points] == [0, 2]  # the reference (layer 3) runs but is not a candidate here
    assert [p.feasible for p in points] == [True, False]  # token-layer bound 1 - (L+1)/4: 0.75, 0.25
    # the entropy is summed over the 750 encoder tokens left of 1500; a plain recomputation agrees
    captured = []
    with whisper.reducer(FastAdaSPSparse(layer=0), FixedRatio(ratio=0.5)) as reducer:
        hook = reducer.blocks[-1].register_forward_hook(lambda m, a, out: captured.append(out))
        mask = whisper.prefill(audios, "", reducer, ids)
        hook.remove()
    assert mask.sum(1).tolist() == [750] * 3
    h = captured[0].double()
    want = np.mean([h[b][mask[b]].std(-1).log().sum().item() for b in range(3)])
    assert points[0].entropy == pytest.approx(want, rel=1e-5)
    assert abs(h_ref - points[0].entropy) == pytest.approx(points[0].te)


def test_main_on_a_speech_lm_writes_the_schema(qwen, manifests, tmp_path):
    cfg = compose_te(["model=tiny_qwen2_audio", "dataset=manifest", f"dataset.path={manifests[0]}",
                      f"eval_dataset.path={manifests[1]}", "calibration_limit=2", f"output_dir={tmp_path}"])
    record = main(cfg, log=lambda _: None)
    saved = json.loads((tmp_path / "transfer_entropy.json").read_text())
    assert saved == json.loads(json.dumps(record))
    assert saved["calibration"]["num_utterances"] == 2 and saved["calibration"]["overlap_checked"]
    assert saved["num_layers"] == 4 and saved["ratio"] == 0.5 and saved["dataset"]["name"] == "manifest"
    assert {p["layer"] for p in saved["layers"]} == {0, 1, 2, 3}
    for p in saved["layers"]:
        assert {"layer", "te", "rank", "entropy", "max_feasible_flops"} <= set(p)
    feasible = [p for p in saved["layers"] if p["feasible"] and not p["reference"]]
    assert saved["selected_layer"] == min(feasible, key=lambda p: p["te"])["layer"]
    assert {k: saved["rule"][k] for k in ("name", "max_flops", "budget_model", "min_layer")} == {
        "name": "min_te", "max_flops": 0.5, "budget_model": "analytic", "min_layer": 0}


def test_overlapping_calibration_is_refused_before_the_model_loads(manifests, tmp_path):
    cfg = compose_te(["model=whisper_hf", "model.source=/nonexistent", "dataset=manifest",
                      f"dataset.path={manifests[0]}", f"eval_dataset.path={manifests[0]}", f"output_dir={tmp_path}"])
    with pytest.raises(CalibrationOverlapError, match=r"3 shared ids \['cal-0', 'cal-1', 'cal-2'\]"):
        main(cfg, log=lambda _: None)
    cfg = compose_te(["model=whisper_hf", "model.source=/nonexistent", "dataset=manifest",
                      f"dataset.path={manifests[0]}", "+dataset@eval_dataset=manifest",
                      f"eval_dataset.path={manifests[0]}", f"output_dir={tmp_path}"])
    with pytest.raises(CalibrationOverlapError, match="cal0.wav"):
        main(cfg, log=lambda _: None)


# -- the script, and its result in run.py's method config --------------------------------


def test_script_writes_outputs_and_layer_auto_uses_them(tiny_whisper_dir, manifests, tmp_path, whisper):
    out = tmp_path / "te"
    cmd = [sys.executable, str(ROOT / "scripts" / "transfer_entropy.py"), "model=whisper_hf",
           f"model.source={tiny_whisper_dir}", "dataset=manifest", f"dataset.path={manifests[0]}",
           f"eval_dataset.path={manifests[1]}", "rule.budget_model=token_layer", "rule.max_flops=0.3",
           f"hydra.run.dir={out}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / "transfer_entropy.json").read_text())
    layers = {p["layer"]: p for p in record["layers"]}
    assert sorted(layers) == [0, 1, 2, 3] and layers[3]["te"] == 0.0 and layers[3]["reference"]
    assert [layers[i]["feasible"] for i in range(4)] == [True, True, False, False]  # token-layer bounds .75 .5 .25 0
    selected = record["selected_layer"]
    assert selected == min((0, 1), key=lambda i: (layers[i]["te"], i))
    table = (out / "te_table.md").read_text()
    for i in range(4):
        assert f"Layer {i}" in table and f"{layers[i]['te']:.4f}".rstrip("0").rstrip(".") in table
    assert f"Layer {selected} (Selected)" in table
    assert record["command"].startswith("python scripts/transfer_entropy.py model=whisper_hf")
    import matplotlib.image

    assert matplotlib.image.imread(out / "te_curve.png").shape[2] in (3, 4)

    te_file = str(out / "transfer_entropy.json")
    cfg = compose_run("method=fastadasp_sparse", "method.layer=auto", f"method.te_file={te_file}")
    method = instantiate(cfg.method)
    assert method.start_layer == selected and method.reducing_layers(4) == [selected]
    settings = method.describe()
    assert settings["te_file"] == te_file and settings["layer"] == selected and len(settings["te_file_sha256"]) == 64
    # the engine merges at that layer: tokens drop after it
    audios, ids = audios_of(manifests[1])
    with whisper.reducer(method, TokenLayerBudget(0.2)) as reducer:
        _, _, _, tokens = whisper.encode(whisper.featurize(audios), reducer, ids)
    drops = [i for i in range(4) if tokens[0][i + 1] < tokens[0][i]]
    assert drops == [selected]


def test_layer_auto_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="needs method.te_file"):
        FastAdaSPSparse(layer="auto")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        FastAdaSPSparse(layer="auto", te_file=str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        FastAdaSPSparse(layer="auto", te_file=str(bad))
    bad.write_text(json.dumps({"selected_layer": None}))
    with pytest.raises(ValueError, match="bad.json has no usable 'selected_layer'"):
        FastAdaSPSparse(layer="auto", te_file=str(bad))
    deep = tmp_path / "qwen_te.json"
    deep.write_text(json.dumps({"selected_layer": 9, "num_layers": 32}))
    method = FastAdaSPSparse(layer="auto", te_file=str(deep))
    assert method.layer_ratios(32, 0.5)[9] == 0.5
    with pytest.raises(ValueError, match="qwen_te.json: selected layer 9 of a 32-layer stack.*has 4 layers"):
        method.layer_ratios(4, 0.5)
    deep.write_text(json.dumps({"selected_layer": 2, "num_layers": 32}))  # in range, but another model's depth
    with pytest.raises(ValueError, match="has 4 layers"):
        FastAdaSPSparse(layer="auto", te_file=str(deep)).layer_ratios(4, 0.5)
    with pytest.raises(ValueError, match="only read with layer=auto"):
        FastAdaSPSparse(layer=2, te_file=str(deep))


def test_integer_layer_is_unchanged():
    method = instantiate(compose_run("method=fastadasp_sparse", "method.layer=2").method)
    assert method.start_layer == 2 and "te_file" not in method.describe() and "layer" not in method.describe()
