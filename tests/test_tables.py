"""Tables from run folders: cells placed by recorded settings, seeds aggregated, missing
cells marked, best per column, paper numbers beside, provenance, Markdown/LaTeX, long-audio
table, plots, W&B offline; file names from config names; the paper's numbers read from YAML;
the shipped results give the tables they gave before. The metrics.json files written here are
synthetic fixtures, not results."""

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
from fastadasp.analysis.paper_numbers import (
    BUDGETS,
    LONG_AUDIO_TABLES,
    PAPER_TABLES,
    PaperNumbersError,
    load_paper_numbers,
)

MODEL = "whisper_tiny_en"
ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"


def write_run(root: Path, folder: str, method: str, flops: float, value: float, *, settings: dict | None = None,
              seed: int | None = None, budget_model: str = "flops", task: str = "asr", dataset: str = "demo",
              metric: str = "wer", higher_is_better: bool | None = None, realized: float | None = None,
              extra_metrics: dict | None = None, drop: tuple = (), recorded: dict | None = None) -> Path:
    """A run folder with a metrics.json carrying the contract's keys (and ``recorded``: more keys)."""
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
    record.update(recorded or {})
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
    t1 = _by_name(tables, "wavllm_table1_whisper_tiny_en_analytic")
    group = "ASR demo/test (wer ↓)"
    assert t1.values.loc["FastAdaSP-Dense constant", (group, "30%")] == pytest.approx(8.5)
    assert t1.cells.loc["Random Merge", (group, "10%")] == "8.00 ± 1.00 (n=3)"
    assert "FastAdaSP-Sparse" not in t1.cells.index  # not a row of Table 1: it is in Table 8's layout
    assert "ST" in t1.notes[0]  # the paper's task without runs is named, not filled
    paper = t1.paper[0]
    assert paper.values.loc["FastAdaSP-Dense constant", ("ASR (wer ↓)", "50%")] == 4.73
    assert paper.values.loc["Full-token baseline", ("ST (bleu ↑)", "full")] == 21.56
    t8 = _by_name(tables, "talk_table8_whisper_tiny_en_analytic")
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
    flops = _by_name(tables, "methods_whisper_tiny_en_asr_demo_test_analytic")
    paper = _by_name(tables, "methods_whisper_tiny_en_asr_demo_test_token_layer")
    assert flops.values.loc["Full-token baseline", "full"] == paper.values.loc["Full-token baseline", "full"] == 5.0
    assert paper.values.loc["FastAdaSP-Dense constant", "10%"] == pytest.approx(6.2)
    assert flops.values.loc["FastAdaSP-Dense constant", "10%"] == pytest.approx(6.5)
    assert "FastAdaSP-Dense decay" not in paper.cells.index
    er = _by_name(tables, "methods_whisper_tiny_en_er_emo_test_analytic")
    assert er.cells.loc["FastAdaSP-Sparse", "10%"] == "**41.00**"  # accuracy: higher is better


def test_provenance_names_runs_model_dataset_normaliser_budget_and_realised_flops(tmp_path):
    tables = build_tables(collect_runs([make_results(tmp_path / "res")]), include_paper=False)
    table = _by_name(tables, "methods_whisper_tiny_en_asr_demo_test_analytic")
    text = "\n".join(table.provenance)
    assert f"model: {MODEL}" in text
    assert "demo/test" in text and "fp-demo" in text
    assert "normaliser (metrics.normalizer): whisper_en" in text
    assert "cost model: analytic FLOPs (full-token runs recorded under: analytic)" in text
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
    tex = (folder / "methods_whisper_tiny_en_asr_demo_test_analytic.tex").read_text()
    assert r"8.00 $\pm$ 1.00 (n=3)" in tex and "---" in tex and r"10\%" in tex
    md = (folder / "methods_whisper_tiny_en_asr_demo_test_analytic.md").read_text()
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
    table = _by_name(tables, "methods_whisper_tiny_en_asr_demo_test_analytic")
    figures = []
    monkeypatch.setattr(plots_module, "_save", lambda fig, path: figures.append(fig) or path)
    plots_module.plot_metric_vs_flops(table, tmp_path)
    ax = figures[0].axes[0]
    series = {c.get_label(): c for c in ax.containers}
    merge = series["Random Merge"]
    assert list(merge.lines[0].get_xdata()) == pytest.approx([10.4, 30.4])  # realised, not target
    assert list(merge.lines[0].get_ydata()) == pytest.approx([8.0, 8.0])
    y_bars = series["_seeds: Random Merge"].lines[2][-1].get_segments()  # the seeds' spread, drawn apart
    assert [seg[:, 1].tolist() for seg in y_bars] == [pytest.approx([7.0, 9.0])] * 2  # std over the 3 seeds
    sampling = merge.lines[2][-1].get_segments()  # no predictions.jsonl here: no sampling interval, zero-length bars
    assert [seg[:, 1].tolist() for seg in sampling] == [pytest.approx([8.0, 8.0])] * 2
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
    md = (tmp_path / "out" / "tables" / "methods_whisper_tiny_en_asr_demo_test_analytic.md").read_text()
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


# ---------------------------------------------------------------------------- names, cost models


def test_old_and_new_cost_model_names_land_in_one_table(tmp_path):
    """Runs before the rename say budget_model flops | paper, later ones analytic | token_layer."""
    write_run(tmp_path, "full", "none", 0.0, 5.0, budget_model="flops")
    write_run(tmp_path, "old", "fastv", 0.1, 6.0, settings={"start_layer": 1}, budget_model="flops")
    write_run(tmp_path, "new", "fastv", 0.2, 7.0, settings={"start_layer": 1}, budget_model="analytic")
    write_run(tmp_path, "old_tl", "fastv", 0.1, 8.0, settings={"start_layer": 1}, budget_model="paper")
    write_run(tmp_path, "new_tl", "fastv", 0.2, 9.0, settings={"start_layer": 1}, budget_model="token_layer")
    runs = collect_runs([tmp_path])
    assert sorted(set(runs["budget_model"])) == ["analytic", "token_layer"]
    tables = {t.name: t for t in build_tables(runs, include_paper=False) if t.kind == "methods"}
    assert sorted(tables) == ["methods_whisper_tiny_en_asr_demo_test_analytic",
                              "methods_whisper_tiny_en_asr_demo_test_token_layer"]
    analytic, token_layer = tables.values()
    assert list(analytic.values.loc["FastV", ["10%", "20%"]]) == [6.0, 7.0]
    assert list(token_layer.values.loc["FastV", ["10%", "20%"]]) == [8.0, 9.0]
    assert "cost model analytic FLOPs" in analytic.title and "cost model token-layer (paper)" in token_layer.title


def test_the_tables_read_old_cost_model_names_as_the_budgets_do():
    """analysis keeps its own copy of the old -> new names (it never imports torch); the two must agree."""
    from fastadasp.analysis.names import COST_MODEL_LABELS, COST_MODEL_NAMES
    from fastadasp.reduction.budget import COST_MODEL_NAMES as BUDGET_NAMES, DEPRECATED_COST_MODEL_NAMES

    assert COST_MODEL_NAMES == DEPRECATED_COST_MODEL_NAMES
    assert sorted(COST_MODEL_LABELS) == sorted(BUDGET_NAMES)  # every cost model has its caption words


def _model_yaml(folder: Path, name: str, target: str, source: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(f"_target_: {target}\nsource: {source}\ndevice: cuda\n")


def test_file_names_come_from_config_names_never_from_folders(tmp_path):
    configs = tmp_path / "configs"
    _model_yaml(configs / "model", "alpha", "pkg.Alpha", "org/alpha-7b")
    _model_yaml(configs / "model", "alpha_chat", "pkg.Alpha", "org/alpha-7b-chat")
    _model_yaml(configs / "model", "beta", "pkg.Beta", "ct2")
    res = tmp_path / "res"

    def run(folder: str, model: str, **recorded):
        write_run(res, f"{folder}/full", "none", 0.0, 5.0, recorded={"model": model, **recorded})
        write_run(res, f"{folder}/x", "fastv", 0.1, 6.0, settings={"start_layer": 1}, recorded={"model": model, **recorded})

    # a shipped-style run: no choices, its config.model matches beta.yaml (device differs: overridden)
    run("alpha", "Beta (converted, 4 layers)", config={"model": {"_target_": "pkg.Beta", "source": "ct2", "device": "cpu"}})
    # a new run names its choice; it overrode the checkpoint, which the name says
    run("beta", "Alpha 7B local", choices={"model": "alpha", "task": "asr", "dataset": "task_default/asr"},
        config={"model": {"_target_": "pkg.Alpha", "source": "/data/ckpt/alpha-local/"}})
    # no choice, and two configs of that class, neither with this source: the description names it
    run("gamma", "Alpha (someone's fine-tune)", config={"model": {"_target_": "pkg.Alpha", "source": "/x/ft"}})
    runs = collect_runs([res], configs=configs)
    assert dict(zip(runs["model"], runs["model_config"])) == {
        "Beta (converted, 4 layers)": "beta", "Alpha 7B local": "alpha_alpha_local",
        "Alpha (someone's fine-tune)": "Alpha_someone_s_fine_tune"}
    tables = {t.name: t for t in build_tables(runs, include_paper=False) if t.kind == "methods"}
    assert sorted(tables) == ["methods_Alpha_someone_s_fine_tune_asr_demo_test_analytic",
                              "methods_alpha_alpha_local_asr_demo_test_analytic",
                              "methods_beta_asr_demo_test_analytic"]
    # the caption keeps the source description (and the config name when it is not the description)
    assert tables["methods_beta_asr_demo_test_analytic"].title.startswith(
        "ASR on demo/test, model beta = Beta (converted, 4 layers), cost model analytic FLOPs")
    assert "model: Beta (converted, 4 layers) (config: beta)" in tables["methods_beta_asr_demo_test_analytic"].provenance
    write_run(tmp_path / "bad", "r", "none", 0.0, 1.0, recorded={"choices": {"model": 3}})
    with pytest.raises(RunFileError, match=r"choices.model=3"):
        collect_runs([tmp_path / "bad"])


def test_benchmark_tables_are_named_by_the_benchmarks_own_arguments(tmp_path):
    path = write_benchmark(tmp_path / "b.json")
    record = json.loads(path.read_text())
    record["settings"] = {"model": "qwen2_audio", "source": "random", "device": "cuda:0", "dtype": "bfloat16"}
    path.write_text(json.dumps(record))
    table = _by_name(build_tables(collect_runs([tmp_path]), collect_benchmarks([tmp_path]), include_paper=False),
                     "long_audio_")
    assert table.name == "long_audio_random_qwen2_audio_cuda_bf16"
    assert "qwen2_audio_tiny on NVIDIA H100 (bfloat16)" in table.title  # the description stays in the caption


def test_runs_record_the_config_choices_their_tables_are_named_by():
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from fastadasp.run import runner

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["model=tiny_qwen2_audio", "method=fastv"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    try:
        choices = runner._hydra_choices()
    finally:
        HydraConfig.instance().cfg = None
    assert choices["model"] == "tiny_qwen2_audio" and choices["method"] == "fastv" and choices["task"] == "asr"
    assert not any(group.startswith("hydra") for group in choices)
    assert runner._hydra_choices() == {}  # outside Hydra: nothing to record


# ---------------------------------------------------------------------------- the paper's numbers


def test_paper_numbers_file_holds_what_the_python_literals_held():
    """tests/data/paper_numbers_before_issue16.json: the literals, captured before they became YAML."""
    import dataclasses

    before = json.loads((DATA / "paper_numbers_before_issue16.json").read_text())
    loaded = {"budgets": list(BUDGETS),
              "accuracy": {k: dataclasses.asdict(v) for k, v in PAPER_TABLES.items()},
              "long_audio": {k: dataclasses.asdict(v) for k, v in LONG_AUDIO_TABLES.items()}}
    assert json.loads(json.dumps(loaded)) == {k: v for k, v in before.items() if k != "about"}
    assert load_paper_numbers() == (BUDGETS, PAPER_TABLES, LONG_AUDIO_TABLES)
    ac = PAPER_TABLES["talk_table10"]  # triples and rows stay tuples (frozen, hashable, as the tables read them)
    assert ac.tasks["ac"] == (("cider", "spice", "spider"), True) and ac.rows[0].values["ac"][0] == (0.44, 0.13, 0.29)
    assert isinstance(LONG_AUDIO_TABLES["wavllm_table4"].rows[0], tuple)


def test_paper_numbers_agree_with_spec_section_9():
    """Spot checks against SPEC.md s.9 (WavLLM Tables 1, 2, 4), one per table edge and middle."""
    t1, t2, t4 = PAPER_TABLES["wavllm_table1"], PAPER_TABLES["wavllm_table2"], LONG_AUDIO_TABLES["wavllm_table4"]
    assert BUDGETS == (0.1, 0.2, 0.3, 0.4, 0.5)
    assert t1.baseline == {"asr": 2.25, "st": 21.56} and t2.baseline == {"er": 72.80, "sqa": 67.60}
    rows1 = {r.label: r.values for r in t1.rows}
    assert rows1["H2O"]["asr"] == (2.25, 2.46, 3.37, 5.60, 10.20)
    assert rows1["FastV"]["asr"][4] == 185.79 and rows1["Random Evict"]["st"][3] == 14.10
    assert rows1["FastAdaSP-Dense constant"]["st"] == (21.47, 20.72, 19.81, 18.54, 17.45)
    rows2 = {r.label: r.values for r in t2.rows}
    assert rows2["FastAdaSP-Sparse"]["sqa"] == (67.65, 68.05, 67.45, 68.45, 68.70)
    assert rows2["A-ToMe"]["er"][2] == 72.20
    assert t4.rows[3] == (5, 120, 50, 48.40, 0.032, 0.46, 3.44, 20.66, 1.34)
    assert t4.rows[-1][-2:] == (12.55, 1.44) and t4.rows[4][:4] == (1, 240, None, 0)


def test_a_malformed_paper_numbers_file_is_named_with_its_table(tmp_path):
    text = (ROOT / "src" / "fastadasp" / "analysis" / "paper_numbers.yaml").read_text()
    short = tmp_path / "short.yaml"
    short.write_text(text.replace("asr: [2.25, 2.46, 3.37, 5.60, 10.20]", "asr: [2.25, 2.46]"))
    with pytest.raises(PaperNumbersError, match=r"short.yaml, table wavllm_table1, row 'H2O': values of \['asr'\]"):
        load_paper_numbers(short)
    missing = tmp_path / "missing.yaml"
    missing.write_text(text.replace("    model: Qwen-Audio\n", "", 1))
    with pytest.raises(PaperNumbersError, match=r"missing.yaml, table talk_table9: missing or malformed field"):
        load_paper_numbers(missing)


# ---------------------------------------------------------------------------- the shipped results


def test_shipped_results_give_the_tables_they_gave_before_and_are_current():
    """Every table built from results/ has the cells it had before the renaming (snapshot taken with
    the earlier code: tests/data/shipped_tables_before_issue16.json), and results/tables and
    results/plots hold exactly the files `make tables` writes now."""
    results = ROOT / "results"
    # what was shipped then: tiny.en on demo and demo_dense, its TE, the benchmarks (later sets and models
    # add tables and columns of their own)
    earlier_runs = [results / "runs" / "whisper_tiny_en" / s for s in ("demo", "demo_dense")]
    te = collect_transfer_entropy([results / "transfer_entropy" / "whisper_tiny_en_asr"])
    tables = build_tables(collect_runs(earlier_runs), collect_benchmarks([results]), te)
    before = json.loads((DATA / "shipped_tables_before_issue16.json").read_text())["tables"]
    assert [t.name for t in tables] == list(before)
    for table in tables:
        expected = before[table.name]
        cells = table.cells
        assert table.kind == expected["kind"]
        assert [[str(p) for p in (c if isinstance(c, tuple) else (c,))] for c in cells.columns] == expected["columns"], table.name
        assert (None if cells.index.name is None else [str(i) for i in cells.index]) == expected["index"], table.name
        # the same values; since issue 18 each is followed by its interval, marks and collapse count
        for now, then in zip(cells.astype(str).values.ravel(), (c for row in expected["rows"] for c in row)):
            assert now == then or now.startswith(then + " "), (table.name, now, then)
        if table.kind in ("methods", "paper_layout", "layers"):  # every shipped run has its predictions.jsonl
            shown = cells.drop(columns=["TE", "TE rank"], errors="ignore").astype(str).values.ravel()
            measured = [c for c in shown if re.match(r"\**\d", c)]
            assert measured and all(re.search(r"\[-?\d+\.\d+, -?\d+\.\d+\]", c) for c in measured), table.name
    te_now = collect_transfer_entropy([results])
    now = build_tables(collect_runs([results]), collect_benchmarks([results]), te_now)
    written = {p.name for p in (results / "tables").iterdir()}
    assert written == {f"{t.name}{suffix}" for t in now for suffix in (".md", ".tex")} | {"index.md"}
    index = (results / "tables" / "index.md").read_text()
    assert all(f"({t.name}.md)" in index for t in now)
    plotted = {t.name for t in now if t.kind in ("methods", "long_audio")} | {plots_module._te_name(t) for t in te_now}
    assert {p.stem for p in (results / "plots").glob("*.png")} == plotted


# ---------------------------------------------------------------------------- plot scale


def test_metric_plot_cuts_the_axis_marks_points_beyond_and_bands_the_baseline(tmp_path, monkeypatch):
    write_run(tmp_path, "b0", "none", 0.0, 9.0, seed=0)
    write_run(tmp_path, "b1", "none", 0.0, 11.0, seed=1)
    write_run(tmp_path, "f1", "fastv", 0.1, 12.0, settings={"start_layer": 1})
    write_run(tmp_path, "f5", "fastv", 0.5, 100.0, settings={"start_layer": 1})
    table = _by_name(build_tables(collect_runs([tmp_path]), include_paper=False), "methods_")
    figures, bands = [], []
    monkeypatch.setattr(plots_module, "_save", lambda fig, path: figures.append(fig) or path)
    real_band = plots_module._full_token_band
    monkeypatch.setattr(plots_module, "_full_token_band", lambda ax, v, interval, what: bands.append(
        (v, interval, what)) or real_band(ax, v, interval, what))
    plots_module.plot_metric_vs_flops(table, tmp_path)
    ax = figures[0].axes[0]
    cut = plots_module.CLIP_FACTOR * 10.0  # the full-token mean
    assert ax.get_ylim()[1] == pytest.approx(cut * 1.03)  # not 100: the 10-40% region keeps the height
    (value, (low, high), what), = bands
    assert value == 10.0 and (low, high) == pytest.approx((10 - 2 ** 0.5, 10 + 2 ** 0.5)) and "2 runs" in what
    fastv = next(c for c in ax.containers if c.get_label() == "FastV")
    assert list(fastv.lines[0].get_ydata()) == pytest.approx([12.0, cut])  # drawn on the edge ...
    assert "100.0" in [t.get_text() for t in ax.texts]  # ... with its value written
    assert plots_module._axis_cut(60.0, True, pd.Series([50.0, 10.0])) == 20.0  # accuracy: cut below
    assert plots_module._axis_cut(60.0, True, pd.Series([50.0])) is None  # everything fits: no cut
    assert plots_module._axis_cut(0.0, False, pd.Series([5.0])) is None  # WER 0: nothing to scale by


# ---------------------------------------------------------------------------- intervals, marks, collapses


def test_cells_show_intervals_marks_and_collapses_computed_from_predictions(tmp_path):
    from fake_runs import REFERENCES, with_errors, write_asr_run

    from fastadasp.analysis import IntervalSettings
    from fastadasp.analysis.samples import load_run_samples
    from fastadasp.metrics.uncertainty import bootstrap_interval

    ones = {k: 1 for k in REFERENCES}  # every sample: 1 edit in 10 words, so every resample gives exactly 10%
    write_asr_run(tmp_path, "full", with_errors(ones))
    write_asr_run(tmp_path, "same", with_errors(ones), method="fastv", flops=0.1, settings={"start_layer": 1})
    write_asr_run(tmp_path, "worse", with_errors({k: 5 for k in REFERENCES}), method="fastadasp_dense", flops=0.1,
                  settings={"schedule": "constant", "weighted": True}, flags={"repetition_loop": ["s02"]})
    seeds = []
    for seed, (extra, edits) in enumerate((("s00", 3), ("s03", 4), ("s07", 5))):  # WER 12, 13, 14
        seeds.append(write_asr_run(tmp_path, f"random{seed}", with_errors(ones | {extra: edits}),
                                   method="random_merge", flops=0.1, settings={"start_layer": 1}, seed=seed))
    settings = IntervalSettings(resamples=1000, seed=12345, cache_dir=tmp_path / "cache")
    table = _by_name(build_tables(collect_runs([tmp_path]), include_paper=False, intervals=settings), "methods_")
    assert table.cells.loc["Full-token baseline", "full"] == "10.00 [10.00, 10.00]"
    assert table.cells.loc["FastV", "10%"] == "**10.00** [10.00, 10.00]"  # the same as full tokens: no mark
    assert table.cells.loc["FastAdaSP-Dense constant", "10%"] == "50.00 [50.00, 50.00] †‡ c=1"
    random_merge = table.cells.loc["Random Merge", "10%"]
    low, high = bootstrap_interval([load_run_samples(d, "wer").stats for d in seeds], 1000, 12345)
    # the seeds' spread (± std) and the interval of the seeds' mean, apart
    assert random_merge.startswith(f"13.00 ± 1.00 (n=3) [{low:.2f}, {high:.2f}]") and low < 13.0 < high
    assert any("† = the paired 95% interval" in note for note in table.notes)
    prov = table.provenance_cells.set_index("row")
    assert prov.loc["FastAdaSP-Dense constant", "vs_full"].startswith("+40.00 [+40.00, +40.00], flips 0.0%")
    assert prov.loc["FastAdaSP-Dense constant", "collapses"] == "1"
    md, tex = (p.read_text() for p in write_tables([table], tmp_path / "out")[:2])
    assert "vs full-token: B - A [95%], sign flips" in md and "50.00 [50.00, 50.00] †‡ c=1" in md
    assert r"50.00 [50.00, 50.00] \dag{}\ddag{} c=1" in tex and r"\dag{} = the paired 95\% interval" in tex
    assert "per-sample records (intervals, paired differences, collapses): 6 of 6 runs" in table.provenance


def test_per_sample_records_are_cached_by_content(tmp_path, monkeypatch):
    from fake_runs import with_errors, write_asr_run

    from fastadasp.analysis import samples

    run = write_asr_run(tmp_path / "runs", "full", with_errors({"s01": 2}))
    cache = tmp_path / "cache"
    first = samples.load_run_samples(run, "wer", cache_dir=cache)
    assert len(list((cache / "samplewise").glob("*.json"))) == 1
    monkeypatch.setattr(samples, "_MEMORY", {})
    monkeypatch.setattr(samples, "_build", lambda *a: pytest.fail("a cached record was recomputed"))
    again = samples.load_run_samples(run, "wer", cache_dir=cache)
    assert again.ids == first.ids and (again.stats.stats == first.stats.stats).all()
    with (run / "predictions.jsonl").open("a") as fh:  # new content: a new key, computed again
        fh.write("\n")
    with pytest.raises(pytest.fail.Exception, match="recomputed"):
        samples.load_run_samples(run, "wer", cache_dir=cache)


def test_recorded_intervals_are_shown_for_runs_without_predictions(tmp_path):
    interval = {"wer": [4.1, 6.3], "method": "percentile bootstrap over samples", "resamples": 1000, "seed": 12345}
    write_run(tmp_path, "full", "none", 0.0, 5.0, recorded={"metrics_interval": interval, "collapses": {"count": 0}})
    write_run(tmp_path, "x", "fastv", 0.1, 6.0, settings={"start_layer": 1},
              recorded={"metrics_interval": {"wer": [5.0, 7.5]}, "collapses": {"count": 2}})
    table = _by_name(build_tables(collect_runs([tmp_path]), include_paper=False), "methods_")
    assert table.cells.loc["Full-token baseline", "full"] == "5.00 [4.10, 6.30]"
    assert table.cells.loc["FastV", "10%"] == "**6.00** [5.00, 7.50] c=2"  # no predictions: no paired mark
    assert "no per-sample record" in table.provenance_cells.set_index("row").loc["FastV", "vs_full"]
    plain = _by_name(build_tables(collect_runs([tmp_path]), include_paper=False, intervals=False), "methods_")
    assert plain.cells.loc["FastV", "10%"] == "**6.00**" and not plain.notes


def test_the_language_parts_of_a_set_get_their_own_tables_named_by_language(tmp_path):
    res = tmp_path / "res"
    for lang, value in (("es", 20.0), ("de", 6.0)):
        data = {"name": "demo_multilingual", "language": lang, "fingerprint": f"fp-{lang}"}
        write_run(res, f"{lang}/full", "none", 0.0, value, recorded={"dataset": data})
        write_run(res, f"{lang}/x", "fastv", 0.3, value - 1, settings={"start_layer": 1}, recorded={"dataset": data})
    tables = [t for t in build_tables(collect_runs([res]), include_paper=False) if t.kind == "methods"]
    assert sorted(re.sub(r"^methods_.*_asr_", "", t.name) for t in tables) == [
        "demo_multilingual_de_analytic", "demo_multilingual_es_analytic"]
    assert all(len(t.cells) == 2 for t in tables)  # each language's own full-token run and method run
