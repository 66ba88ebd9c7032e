"""Every task of the paper end to end through run.py's configs and runner, on the
miniature corpora in their published layouts, for both tiny speech-LM families.

The tiny models are random: their answers are noise and their scores are never
results. What is checked: the right references, labels, questions and choices
reach the prompt and the rows, tasks refuse datasets that lack what they need
before any model loads, and each metric equals a direct call of the library
that defines it (jiwer, sacreBLEU, pycocoevalcap) on the same predictions.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jiwer
import pytest
import sacrebleu
from conftest import compose_run

from fastadasp.metrics.accuracy import normalize_answer
from fastadasp.metrics.wer import normalize
from fastadasp.run.runner import ModelCache, main
from fastadasp.tasks.definition import TaskDataError
from fastadasp.testing import fixtures

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")),
                                reason="fixtures need espeak-ng and sox")

#: (task, corpus) pairs of SPEC section 7 and WavLLM's tables
TASKS = [("asr", "librispeech"), ("st", "covost2"), ("er", "meld"), ("er", "iemocap"), ("ac", "clotho"),
         ("aqa", "clotho_aqa"), ("sv", "voxceleb_sv"), ("sqa", "sqa")]
FAMILIES = {"tiny_qwen2_audio": "<|AUDIO|>", "tiny_audioflamingo3": "<sound>"}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    return fixtures.build_all(tmp_path_factory.mktemp("corpora"))


@pytest.fixture(scope="module")
def caches():
    return {family: ModelCache() for family in FAMILIES}


def rows_of(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]


def direct_metric(task: str, refs: list, answers: list) -> dict:
    """The headline number computed straight from the defining library."""
    if task == "asr":
        return {"wer": 100 * jiwer.wer([normalize(r) for r in refs], [normalize(a) for a in answers])}
    if task == "st":
        return {"bleu": sacrebleu.corpus_bleu(answers, [refs], tokenize="13a").score}
    if task == "ac":
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        tok = PTBTokenizer()
        gts = tok.tokenize({i: [{"caption": c} for c in r] for i, r in enumerate(refs)})
        res = tok.tokenize({i: [{"caption": a}] for i, a in enumerate(answers)})
        return {"cider": Cider().compute_score(gts, res)[0]}
    same = normalize_answer if task == "aqa" else (lambda x: str(x).strip().lower())  # AQA: "two" == "2"
    correct = sum(a is not None and same(a) == same(r) for r, a in zip(refs, answers))
    return {"accuracy": 100 * correct / len(refs)}


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("task, corpus", TASKS)
def test_task_end_to_end(task, corpus, family, corpora, caches, prompts_seen, tmp_path):
    fixture = corpora[corpus]
    assert fixture.task == task
    results = {}
    for method, extra in (("fastadasp_dense", []), ("fastadasp_sparse", ["method.layer=1"])):
        out = tmp_path / method
        cfg = compose_run(f"model={family}", f"task={task}", *fixture.overrides(), f"method={method}", *extra,
                          "flops=0.1", "task.max_new_tokens=6", "batch_size=2", f"output_dir={out}",
                          f"data_root={tmp_path / 'data_root'}")
        prompts_seen.clear()
        metrics = main(cfg, model_cache=caches[family])
        rows = rows_of(out)
        results[method] = metrics
        assert metrics["task"] == task and metrics["dataset"]["name"] == corpus
        assert metrics["num_failed"] == 0 and metrics["num_samples"] == len(rows) > 0
        assert 0.05 < metrics["flops_realized"] < 0.15
        # the references, labels, questions and choices of the corpus arrive intact
        for row in rows:
            want = fixture.expected.get(row["id"])
            if want is None:
                continue  # the speaker-count set is built (seeded) from the corpus, checked below
            ref_field = {"asr": "text", "st": "translation", "er": "label", "ac": "captions", "aqa": "answer",
                         "sqa": "answer"}[task]
            assert row["reference"] == want[ref_field]
            if task == "er":
                assert row["fields"]["labels"] == want["labels"]
            if task == "sqa":
                assert row["fields"]["choices"] == want["choices"]
        if task == "aqa":  # ids are hashed: the fixture keys its answers by question
            assert {(r["fields"]["question"], r["reference"]) for r in rows} == \
                {(v["question"], v["answer"]) for v in fixture.expected.values()}
        else:
            assert task == "sv" or {r["id"] for r in rows} == set(fixture.expected)
        by_id = {r["id"]: r for r in rows}
        for prompt, row in zip(prompts_seen, sorted(rows, key=lambda r: r["index"])):
            assert prompt.count(FAMILIES[family]) == 1
            want = fixture.expected.get(row["id"], {})
            if task in ("aqa", "sqa"):
                assert row["fields"]["question"] in prompt
            if task == "sqa":
                assert all(f"{chr(65 + i)}. {c}" in prompt for i, c in enumerate(want["choices"]))
            if task == "st":
                assert "German" in prompt
        if task == "sv":
            answers = [r["reference"] for r in rows]
            assert sorted(set(answers)) == ["no", "yes"] and answers.count("yes") == answers.count("no")
        # the metric equals a direct library call on the same predictions
        answers = [r["answer"] for r in sorted(by_id.values(), key=lambda r: r["index"])]
        refs = [r["reference"] for r in sorted(by_id.values(), key=lambda r: r["index"])]
        for key, value in direct_metric(task, refs, answers).items():
            assert metrics["metrics"][key] == pytest.approx(value, abs=1e-9), key
        if task in ("er", "sv", "sqa", "aqa"):
            unparsed = sum(a is None for a in answers)
            assert metrics["metrics"]["unparsed"] == unparsed
        if task == "er":
            cm = metrics["metrics"]["confusion_matrix"]
            assert sum(map(sum, cm["matrix"])) == len(rows)
        if task == "ac":
            assert metrics["metrics"]["spice"] is None or metrics["metrics"]["spice"] > 0
        if task == "aqa":  # the secondary numbers are named in metrics.json beside the majority accuracy
            assert {"accuracy_any_annotator", "accuracy_yes_no", "accuracy_open"} <= set(metrics["metrics"])
            assert metrics["primary_metric"] == "accuracy"
    assert results["fastadasp_dense"]["method_settings"]["schedule"] == "constant"
    assert results["fastadasp_sparse"]["method_settings"]["start_layer"] == 1


@pytest.mark.parametrize("task, field", [("er", "label"), ("st", "translation"), ("aqa", "answer"),
                                         ("sqa", "answer"), ("ac", "captions")])
def test_a_dataset_without_what_the_task_needs_fails_before_the_model_loads(task, field, corpora, tmp_path):
    cache = ModelCache()
    cfg = compose_run("model=tiny_qwen2_audio", f"task={task}", *corpora["librispeech"].overrides(),
                      f"output_dir={tmp_path}")
    with pytest.raises(TaskDataError, match=f"needs field '{field}'"):
        main(cfg, model_cache=cache)
    assert cache.loads == 0


def test_aqa_without_questions_names_the_question_field(corpora, tmp_path):
    wav = next(Path(corpora["clotho"].root).rglob("*.wav"))
    manifest = tmp_path / "answers_only.jsonl"
    manifest.write_text(json.dumps({"id": "a", "audio": str(wav), "answer": "yes"}) + "\n")
    cfg = compose_run("model=tiny_qwen2_audio", "task=aqa", "dataset=manifest", f"dataset.path={manifest}",
                      f"output_dir={tmp_path / 'run'}")
    with pytest.raises(TaskDataError, match="needs field 'question'"):
        main(cfg, model_cache=ModelCache())


def test_whisper_has_no_prompt_for_sparse_tasks(corpora, tmp_path):
    cfg = compose_run("task=er", *corpora["meld"].overrides(), f"output_dir={tmp_path}")
    cache = ModelCache()
    with pytest.raises(ValueError, match="task 'er' has no prompt for model family 'whisper_en'"):
        main(cfg, model_cache=cache)
    assert cache.loads == 0


def test_task_default_datasets_and_the_st_pair():
    cfg = compose_run("task=er")
    assert cfg.dataset.corpus == "meld"
    cfg = compose_run("task=st", "task.pair=en_zh", "dataset.root=/x")
    assert cfg.dataset.pair == "en_zh" and cfg.task.variables.target_language == "Chinese"
    assert cfg.task.metric.target_language == "zh"
    assert compose_run("task=asr").dataset.corpus == "demo"
    assert compose_run("task=asr", "dataset=librispeech").dataset.corpus == "librispeech"


@pytest.mark.real_model
def test_real_whisper_librispeech_layout_equals_the_same_audio_through_a_manifest(corpora, tmp_path):
    """Whisper tiny.en reads a LibriSpeech-layout copy and the manifest exported from it alike."""
    from fastadasp.data.corpora.librispeech import load_librispeech
    from fastadasp.data.manifest import write_manifest

    fixture = corpora["librispeech"]
    manifest = tmp_path / "ls.jsonl"
    write_manifest(manifest, load_librispeech(fixture.root, split=fixture.kwargs.get("split", "test-clean")))
    cache, runs = ModelCache(), {}
    for name, data in (("corpus", fixture.overrides()), ("manifest", ["dataset=manifest", f"dataset.path={manifest}"])):
        cfg = compose_run("model=whisper_tiny_en", *data, "method=fastadasp_dense", "flops=0.3",
                          f"output_dir={tmp_path / name}")
        runs[name] = main(cfg, model_cache=cache)
    assert runs["corpus"]["metrics"] == runs["manifest"]["metrics"]
    assert runs["corpus"]["metrics"]["wer"] < 50  # real transcripts of espeak-ng speech, not noise
    assert [r["prediction"] for r in rows_of(tmp_path / "corpus")] == \
        [r["prediction"] for r in rows_of(tmp_path / "manifest")]
