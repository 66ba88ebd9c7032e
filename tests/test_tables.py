"""Tables from run folders: cells placed by recorded settings, seeds aggregated, missing
cells marked, best per column, paper numbers beside, provenance, Markdown/LaTeX, long-audio
table, plots, W&B offline. The metrics.json files here are synthetic fixtures, not results."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from fastadasp.analysis import (
    MISSING,
    RunFileError,
    build_tables,
    collect_benchmarks,
    collect_runs,
    collect_transfer_entropy,
    log_wandb,
    plot_all,
    write_tables,
)
from fastadasp.analysis import plots as plots_module

MODEL = "whisper_tiny_en"


def write_run(root: Path, folder: str, method: str, flops: float, value: float, *, settings: dict | None = None,
              seed: int | None = None, budget_model: str = "flops", task: str = "asr", dataset: str = "demo",
              metric: str = "wer", higher_is_better: bool | None = None, realized: float | None = None,
              extra_metrics: dict | None = None, drop: tuple = ()) -> Path:
    """A run folder with a metrics.json carrying the contract's keys."""
    out = root / folder
    out.mkdir(parents=True)
    method_settings = {"name": method, **(settings or {})}
    if seed is not None:
        method_settings["seed"] = seed
    record = {
        "model": MODEL, "task": task, "method": method, "method_settings": method_settings,
        "budget_model": budget_model, "flops_target": flops,
        "flops_realized": flops + 0.004 if realized is None else realized,
        "flops_realized_min": flops, "flops_realized_max": flops + 0.01,
        "num_samples": 48, "num_failed": 0, "failures": [], "repetition_loops": 0, "hit_max_new_tokens": 0,
        "metrics": {metric: value, **(extra_metrics or {}), "normalizer": "whisper_en"},
        "wall_s": 1.0, "seed": seed,
        "dataset": {"name": dataset, "split": "test", "root": "/data/x", "fingerprint": "fp-" + dataset},
        "primary_metric": metric, "limit": None, "git": {"commit": "c0ffee1", "dirty": False},
    }
    if higher_is_better is not None:
        record["higher_is_better"] = higher_is_better
    for key in drop:
        record.pop(key)
    (out / "metrics.json").write_text(json.dumps(record))
    return out


def write_benchmark(path: Path) -> Path:
    rows = []
    for beam in (1, 5):
        for method, target in (("none", 0.0), ("fastadasp_dense", 0.5)):
            reduced = method != "none"
            rows.append({"beam": beam, "audio_s": 120, "method": method, "flops_target": target,
                         "token_reduction": 0.5 if reduced else 0.0, "flops_realized": 0.487 if reduced else 0.0,
                         "rtf": 0.04, "prefill_s": 0.5 if reduced else 0.8, "decode_s": 2.0 if reduced else 4.0,
                         "new_tokens": 100, "throughput_tok_s": 30.0 if reduced else 20.0,
                         "kv_bytes": 5e6 if reduced else 1e7, "kv_bytes_full": 1e7, "peak_mem_bytes": 3e8,
                         "repeats": 3, "spread": {"prefill_s": 0.01}})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"kind": "long_audio_benchmark", "device": "NVIDIA H100", "model": "qwen2_audio_tiny",
                                "dtype": "bfloat16", "command": "python scripts/bench.py --long", "rows": rows}))
    return path


def make_results(root: Path) -> Path:
    """A small results tree: ASR sweep (flops and paper budget models), 3-seed random merge,
    ER accuracy runs, a benchmark file and a TE file. Folder names are deliberately unhelpful."""
    write_run(root, "a/full", "none", 0.0, 5.0)
    for i, t in enumerate((0.1, 0.3)):
        write_run(root, f"a/c{i}", "fastadasp_dense", t, 5.5 + 10 * t, settings={"schedule": "constant", "start_layer": 0, "weighted": True})
        write_run(root, f"a/d{i}", "fastadasp_dense", t, 6.0 + 10 * t, settings={"schedule": "decay", "start_layer": 0, "weighted": True})
        write_run(root, f"p/c{i}", "fastadasp_dense", t, 5.2 + 10 * t, settings={"schedule": "constant", "start_layer": 0, "weighted": True}, budget_model="paper")
        for seed in range(3):
            write_run(root, f"a/r{i}{seed}", "random_merge", t, 7.0 + seed, settings={"start_layer": 1}, seed=seed)
        write_run(root, f"a/s{i}", "fastadasp_sparse", t, 6.5 + 10 * t, settings={"start_layer": 1, "weighted": True})
    write_run(root, "e/full", "none", 0.0, 40.0, task="er", metric="accuracy", dataset="emo")
    write_run(root, "e/s", "fastadasp_sparse", 0.1, 41.0, settings={"start_layer": 1, "weighted": True}, task="er", metric="accuracy", dataset="emo")
    write_run(root, "e/v", "fastv", 0.1, 39.0, settings={"start_layer": 1}, task="er", metric="accuracy", dataset="emo")
    write_benchmark(root / "bench" / "long_audio.json")
    # the schema scripts/transfer_entropy.py writes: the last layer is the reference (TE 0, no rank)
    points = [(2.2, 2), (2.06, 1), (2.3, 3), (0.0, None)]
    te = {"model": MODEL, "task": "asr", "dataset": {"name": "calib", "split": "dev", "fingerprint": "x"},
          "selected_layer": 1, "rule": {"name": "min_te", "max_flops": 0.5}, "reference_layer": 3,
          "layers": [{"layer": i, "te": v, "entropy": 10.0 - v, "max_feasible_flops": 0.6, "feasible": True,
                      "reference": r is None, "rank": r} for i, (v, r) in enumerate(points)]}
    (root / "te").mkdir()
    (root / "te" / "transfer_entropy.json").write_text(json.dumps(te))
    return root


def _by_name(tables, prefix: str):
    found = [t for t in tables if t.name.startswith(prefix)]
    assert len(found) == 1, [t.name for t in tables]
    return found[0]


def test_cells_are_placed_by_recorded_settings_not_folder_names(tmp_path):
    # the folder names lie: each claims another method and budget than its metrics.json
    write_run(tmp_path, "fastv_flops0.5", "fastadasp_dense", 0.1, 7.0, settings={"schedule": "constant", "weighted": True})
    write_run(tmp_path, "none_flops0", "fastv", 0.3, 9.0, settings={"start_layer": 1})
    write_run(tmp_path, "fastadasp_dense_decay_0.1", "none", 0.0, 5.0)
    table = _by_name(build_tables(collect_runs([tmp_path]), include_paper=False), "methods_")
    assert table.values.loc["FastAdaSP-Dense constant", "10%"] == 7.0
    assert table.values.loc["FastV", "30%"] == 9.0
    assert table.values.loc["Full-token baseline", "full"] == 5.0
    assert table.cells.loc["FastV", "50%"] == MISSING
    assert "FastAdaSP-Dense decay" not in table.cells.index


def test_seeds_are_aggregated_as_mean_std_and_count(tmp_path):
    for seed, value in enumerate((10.0, 12.0, 14.0)):
        write_run(tmp_path, f"r{seed}", "random_merge", 0.2, value, settings={"start_layer": 1}, seed=seed,
                  realized=0.19 + 0.01 * seed)
    # another layer is another cell even though it is the same method
    write_run(tmp_path, "other_layer", "random_merge", 0.2, 30.0, settings={"start_layer": 2}, seed=0)
    table = _by_name(build_tables(collect_runs([tmp_path]), include_paper=False), "methods_")
    assert table.cells.loc["Random Merge (start_layer=1)", "20%"] == "**12.00 ± 2.00 (n=3)**"
    assert table.cells.loc["Random Merge (start_layer=2)", "20%"] == "30.00"
    prov = table.provenance_cells.set_index("row").loc["Random Merge (start_layer=1)"]
    assert prov["n"] == 3 and prov["seeds"] == "0,1,2"
    assert prov["flops_realized"] == "0.1900-0.2100"


def test_missing_cells_are_marked_never_zero(tmp_path):
    write_run(tmp_path, "x", "none", 0.0, 5.0)
    write_run(tmp_path, "y", "fastv", 0.1, 0.0, settings={"start_layer": 1})  # a real 0 stays 0.00
    table = _by_name(build_tables(collect_runs([tmp_path]), include_paper=False), "methods_")
    assert table.cells.loc["FastV", "10%"] == "**0.00**"
    for col in ("20%", "30%", "40%", "50%"):
        assert table.cells.loc["FastV", col] == MISSING
        assert pd.isna(table.values.loc["FastV", col])
        assert table.cells.loc["Full-token baseline", col] == ""  # method none cannot reduce
    md = (write_tables([table], tmp_path / "out")[0]).read_text()
    fastv_line = next(line for line in md.splitlines() if line.startswith("| FastV"))
    assert fastv_line.count(MISSING) == 4 and fastv_line.count("0.00") == 1


@pytest.mark.parametrize("metric,recorded,best", [
    ("wer", False, "FastAdaSP-Dense constant"),  # lower is better, as recorded
    ("accuracy", True, "FastV"),  # higher is better, as recorded
    ("wer", None, "FastAdaSP-Dense constant"),  # not recorded: the known map (WER lower)
    ("bleu", None, "FastV"),  # not recorded: everything else higher
])
def test_best_value_per_column_follows_the_metric_direction(tmp_path, metric, recorded, best):
    write_run(tmp_path, "a", "fastadasp_dense", 0.2, 3.0, settings={"schedule": "constant", "weighted": True},
              metric=metric, higher_is_better=recorded)
    write_run(tmp_path, "b", "fastv", 0.2, 8.0, settings={"start_layer": 1}, metric=metric, higher_is_better=recorded)
    table = _by_name(build_tables(collect_runs([tmp_path]), include_paper=False), "methods_")
    bold = [r for r in table.cells.index if table.cells.loc[r, "20%"].startswith("**")]
    assert bold == [best]
    tex = write_tables([table], tmp_path / "out")[1].read_text()
    assert re.search(r"\\textbf\{(3|8)\.00\}", tex).group(1) == ("3" if best.startswith("FastAdaSP") else "8")


def test_paper_layouts_show_the_papers_numbers_beside_ours(tmp_path):
    tables = build_tables(collect_runs([make_results(tmp_path / "res")]), include_paper=False)
    t1 = _by_name(tables, "wavllm_table1_whisper_tiny_en_flops")
    group = "ASR demo/test (wer ↓)"
    assert t1.values.loc["FastAdaSP-Dense constant", (group, "30%")] == pytest.approx(8.5)
    assert t1.cells.loc["Random Merge", (group, "10%")] == "8.00 ± 1.00 (n=3)"
    assert "FastAdaSP-Sparse" not in t1.cells.index  # not a row of Table 1: it is in Table 8's layout
    assert "ST" in t1.notes[0]  # the paper's task without runs is named, not filled
    paper = t1.paper[0]
    assert paper.values.loc["FastAdaSP-Dense constant", ("ASR (wer ↓)", "50%")] == 4.73
    assert paper.values.loc["Full-token baseline", ("ST (bleu ↑)", "full")] == 21.56
    t8 = _by_name(tables, "talk_table8_whisper_tiny_en_flops")
    # Table 8's "Weighted Merge" (no scheduler) is the single-layer weighted merge
    assert t8.values.loc["Weighted Merge", (group, "10%")] == pytest.approx(7.5)
    assert t8.values.loc["Weighted Merge + Decay Schedule", (group, "10%")] == pytest.approx(7.0)
    assert t8.paper[0].values.loc["Weighted Merge", ("ASR (wer ↓)", "50%")] == 93.14
    md = write_tables(tables, tmp_path / "out")
    text = (tmp_path / "out" / "tables" / f"{t1.name}.md").read_text()
    ours, theirs = text.index("| FastAdaSP-Dense constant"), text.index("## Paper: WavLLM Table 1")
    assert ours < theirs and "**4.73**" in text[theirs:]
    assert any(p.name == "index.md" for p in md)


def test_generic_tables_per_budget_model_share_the_full_token_baseline(tmp_path):
    tables = build_tables(collect_runs([make_results(tmp_path / "res")]), include_paper=False)
    flops = _by_name(tables, "methods_whisper_tiny_en_asr_demo_test_flops")
    paper = _by_name(tables, "methods_whisper_tiny_en_asr_demo_test_paper")
    assert flops.values.loc["Full-token baseline", "full"] == paper.values.loc["Full-token baseline", "full"] == 5.0
    assert paper.values.loc["FastAdaSP-Dense constant", "10%"] == pytest.approx(6.2)
    assert flops.values.loc["FastAdaSP-Dense constant", "10%"] == pytest.approx(6.5)
    assert "FastAdaSP-Dense decay" not in paper.cells.index
    er = _by_name(tables, "methods_whisper_tiny_en_er_emo_test_flops")
    assert er.cells.loc["FastAdaSP-Sparse", "10%"] == "**41.00**"  # accuracy: higher is better


def test_provenance_names_runs_model_dataset_normaliser_budget_and_realised_flops(tmp_path):
    tables = build_tables(collect_runs([make_results(tmp_path / "res")]), include_paper=False)
    table = _by_name(tables, "methods_whisper_tiny_en_asr_demo_test_flops")
    text = "\n".join(table.provenance)
    assert f"model: {MODEL}" in text
    assert "demo/test" in text and "fp-demo" in text
    assert "normaliser (metrics.normalizer): whisper_en" in text
    assert "budget model: flops" in text
    assert "realised FLOPs reduction over reduced runs: 0.1040-0.3040" in text
    assert "runs: 13" in text  # baseline + 2 budgets x (constant, decay, sparse, 3 random-merge seeds)
    cell = table.provenance_cells.set_index(["row", "flops_target"]).loc[("FastAdaSP-Dense decay", 0.3)]
    assert cell["run_dirs"].endswith("res/a/d1") and cell["n"] == 1


def test_markdown_latex_and_index_are_written(tmp_path):
    tables = build_tables(collect_runs([make_results(tmp_path / "res")]))
    write_tables(tables, tmp_path / "out")
    folder = tmp_path / "out" / "tables"
    index = (folder / "index.md").read_text()
    for table in tables:
        assert f"({table.name}.md)" in index
        tex = (folder / f"{table.name}.tex").read_text()
        assert tex.count(r"\begin{tabular}") == 1 + len(table.paper)
    tex = (folder / "methods_whisper_tiny_en_asr_demo_test_flops.tex").read_text()
    assert r"8.00 $\pm$ 1.00 (n=3)" in tex and "---" in tex and r"10\%" in tex
    md = (folder / "methods_whisper_tiny_en_asr_demo_test_flops.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| method"))
    assert [c.strip() for c in header.strip("|").split("|")] == ["method", "full", "10%", "20%", "30%", "40%", "50%"]
    # a stale table from an earlier generation does not survive
    (folder / "old_table.md").write_text("stale")
    write_tables(tables[:1], tmp_path / "out")
    assert not (folder / "old_table.md").exists()


def test_long_audio_table_from_benchmark_json(tmp_path):
    write_benchmark(tmp_path / "b.json")
    (tmp_path / "not_a_benchmark.json").write_text(json.dumps({"kind": "something_else"}))
    tables = build_tables(collect_runs([tmp_path]), collect_benchmarks([tmp_path]), include_paper=False)
    table = _by_name(tables, "long_audio_")
    cells = table.cells.set_index(["Beam", "Method"])
    assert cells.loc[("5", "FastAdaSP-Dense"), "Throughput (tok/s)"] == "30.00 (1.50x)"
    assert cells.loc[("1", "FastAdaSP-Dense"), "FLOPs reduction %"] == "48.70"
    assert cells.loc[("1", "FastAdaSP-Dense"), "KV vs full"] == "0.500"
    assert cells.loc[("1", "Full Token"), "Token reduce %"] == "Full Token"
    assert cells.loc[("1", "FastAdaSP-Dense"), "FLOPs target %"] == "50"
    assert [p.meta["paper_id"] for p in table.paper] == ["talk_table12", "wavllm_table4"]
    a100 = table.paper[0].cells
    assert a100.iloc[-1]["Throughput (tok/s)"] == "5.72 (1.84x)"  # as printed (5.72 / 3.10 = 1.845)
    assert "python scripts/bench.py --long" in "\n".join(table.provenance)


def test_bad_files_raise_errors_naming_file_and_field(tmp_path):
    write_run(tmp_path, "broken", "fastv", 0.1, 1.0, drop=("task",))
    with pytest.raises(RunFileError, match=r"broken/metrics.json: missing field\(s\) \['task'\]"):
        collect_runs([tmp_path])
    (tmp_path / "broken" / "metrics.json").write_text("{\n oops")
    with pytest.raises(RunFileError, match=r"broken/metrics.json: not valid JSON \(line 2\)"):
        collect_runs([tmp_path])
    with pytest.raises(FileNotFoundError, match="nowhere"):
        collect_runs([tmp_path / "nowhere"])


def test_runs_of_one_group_must_agree_on_the_headline_metric(tmp_path):
    write_run(tmp_path, "a", "fastv", 0.1, 1.0, settings={"start_layer": 1}, metric="wer")
    write_run(tmp_path, "b", "fastv", 0.2, 1.0, settings={"start_layer": 1}, metric="cer")
    with pytest.raises(ValueError, match="disagree on the headline metric"):
        build_tables(collect_runs([tmp_path]), include_paper=False)


def test_caption_triples_and_layer_table_with_transfer_entropy(tmp_path):
    write_run(tmp_path, "ac", "fastv", 0.3, 0.40, settings={"start_layer": 1}, task="ac", metric="cider",
              extra_metrics={"spice": 0.12, "spider": 0.26})
    for seed, cider in enumerate((0.30, 0.34)):  # SPICE could not run (no Java): None, shown missing
        write_run(tmp_path, f"ac_nospice{seed}", "fastv", 0.5, cider, settings={"start_layer": 1}, task="ac",
                  metric="cider", extra_metrics={"spice": None, "spider": None}, seed=seed)
    make_results(tmp_path / "res")
    tables = build_tables(collect_runs([tmp_path]), te_files=collect_transfer_entropy([tmp_path]), include_paper=False)
    ac = _by_name(tables, "methods_whisper_tiny_en_ac")
    assert ac.cells.loc["FastV", "30%"] == "**0.40 / 0.12 / 0.26**"
    assert ac.cells.loc["FastV", "50%"] == "**0.32 ± 0.03 / — / — (n=2)**"
    layers = _by_name(tables, "layers_whisper_tiny_en_asr")
    assert list(layers.cells.index) == ["Layer 0", "Layer 2", "Layer 3", "Layer 1 (selected)"]
    assert layers.cells.loc["Layer 1 (selected)", "TE"] == "2.06" and layers.cells.loc["Layer 0", "TE rank"] == "2"
    assert layers.cells.loc["Layer 3", "TE rank"] == MISSING  # the reference layer has no rank
    assert layers.values.loc["Layer 1 (selected)", "30%"] == pytest.approx(9.5)
    assert layers.cells.loc["Layer 0", "10%"] == MISSING  # TE known, never run at layer 0


def test_metric_plot_uses_realised_flops_and_seed_spread(tmp_path, monkeypatch):
    tables = build_tables(collect_runs([make_results(tmp_path / "res")]), include_paper=False)
    table = _by_name(tables, "methods_whisper_tiny_en_asr_demo_test_flops")
    figures = []
    monkeypatch.setattr(plots_module, "_save", lambda fig, path: figures.append(fig) or path)
    plots_module.plot_metric_vs_flops(table, tmp_path)
    ax = figures[0].axes[0]
    series = {c.get_label(): c for c in ax.containers}
    merge = series["Random Merge"]
    assert list(merge.lines[0].get_xdata()) == pytest.approx([10.4, 30.4])  # realised, not target
    assert list(merge.lines[0].get_ydata()) == pytest.approx([8.0, 8.0])
    y_bars = merge.lines[2][-1].get_segments()  # (x, y - std) -> (x, y + std) per point
    assert [seg[:, 1].tolist() for seg in y_bars] == [pytest.approx([7.0, 9.0])] * 2  # std over the 3 seeds
    assert ax.lines[0].get_ydata()[0] == 5.0  # the full-token line


def test_make_tables_script_reads_results_and_extra_folders_once(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_tables", Path(__file__).parents[1] / "scripts" / "make_tables.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    results = make_results(tmp_path / "results")
    extra = tmp_path / "multirun"
    write_run(extra, "0_x", "atome", 0.1, 6.1, settings={"start_layer": 0, "pair_factor": 2.0, "cap_to_budget": True})
    # the extra folder and a sub-folder of results overlap with results: no run counted twice
    assert script.main([str(extra), str(results / "a"), "--results", str(results), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "tables" / "methods_whisper_tiny_en_asr_demo_test_flops.md").read_text()
    assert "| A-ToMe " in md and "8.00 ± 1.00 (n=3)" in md
    plots = sorted(p.name for p in (tmp_path / "out" / "plots").glob("*.png"))
    assert "te_whisper_tiny_en_asr.png" in plots and "long_audio_qwen2_audio_tiny_NVIDIA_H100_bfloat16.png" in plots


def test_wandb_offline_run_holds_the_tables(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    res = make_results(tmp_path / "res")
    te = collect_transfer_entropy([res])
    tables = build_tables(collect_runs([res]), collect_benchmarks([res]), te, include_paper=False)
    plots = plot_all(tables, te, tmp_path / "plots")
    folder = log_wandb(tables[:2], plots[:1], tmp_path)
    assert folder.name.startswith("offline-run-") and folder.parent == tmp_path / "wandb"
    logged = sorted((folder / "files" / "media" / "table").rglob("*.table.json"))
    assert len(logged) == 2
    content = json.loads(next(p for p in logged if tables[0].name in p.name).read_text())
    assert content["columns"][0] == "method" and "full" in content["columns"]
    assert ["Full-token baseline", "5.00", "", "", "", "", ""] in content["data"]
    assert len(list((folder / "files" / "media" / "images").rglob("*.png"))) == 1
    # make_tables --wandb writes the run under its output folder: later collections skip it
    from fastadasp.analysis.runs import find_files

    assert not [f for f in find_files([tmp_path], "*.json") if "wandb" in f.parts]
    assert len(find_files([tmp_path], "*.json")) == 1 + 1 + 18  # benchmark, TE, metrics.json files


def test_single_shards_are_left_out_and_merged_runs_kept(tmp_path):
    write_run(tmp_path, "full", "none", 0.0, 5.0)
    for index, value in ((0, 1.0), (1, 3.0)):
        out = write_run(tmp_path, f"shard{index}", "fastv", 0.1, value, settings={"start_layer": 1})
        record = json.loads((out / "metrics.json").read_text()) | {"shard": {"index": index, "count": 2}}
        (out / "metrics.json").write_text(json.dumps(record))
    out = write_run(tmp_path, "merged", "fastv", 0.1, 2.0, settings={"start_layer": 1})
    record = json.loads((out / "metrics.json").read_text())
    record["shard"] = {"index": None, "count": 2, "merged_from": ["shard0", "shard1"]}
    (out / "metrics.json").write_text(json.dumps(record))
    runs = collect_runs([tmp_path])
    assert sorted(runs["shard"].dropna()) == ["0/2", "1/2"]
    table = _by_name(build_tables(runs, include_paper=False), "methods_")
    assert table.cells.loc["FastV", "10%"] == "**2.00**"  # the merged run alone, not a mean with its shards


def test_row_labels_name_the_settings_that_differ(tmp_path):
    write_run(tmp_path, "a", "fastadasp_dense", 0.1, 6.0, settings={"schedule": "constant", "start_layer": 0, "weighted": True})
    write_run(tmp_path, "b", "fastadasp_dense", 0.1, 6.5, settings={"schedule": "constant", "start_layer": 0, "weighted": False})
    write_run(tmp_path, "c", "fastadasp_sparse", 0.1, 7.0, settings={"start_layer": 1, "weighted": False})
    write_run(tmp_path, "d", "merge_h2o", 0.1, 8.0, settings={"start_layer": 1})
    write_run(tmp_path, "e", "fastv", 0.1, 9.0, settings={"start_layer": 1})
    table = _by_name(build_tables(collect_runs([tmp_path]), include_paper=False), "methods_")
    assert list(table.cells.index) == [
        "FastV", "FastAdaSP-Dense constant",  # the paper's rows, in the paper's order
        "FastAdaSP-Dense constant (weighted=False)", "FastAdaSP-Sparse (weighted=False)",  # merge_ave ablations
        "merge_h2o",  # a method the tables do not know keeps its name
    ]
    assert table.values.loc["FastAdaSP-Dense constant (weighted=False)", "10%"] == 6.5
