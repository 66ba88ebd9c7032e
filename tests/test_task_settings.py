"""Task settings that must agree (issue 15): the ST pair in both directions and against the dataset,
BLEU's tokenizer per target, Qwen2-Audio's prompt styles, each labelled dataset's class definition,
and Clotho-AQA's secondary metrics. Every refusal is one line and comes before any model loads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import compose_run

from fastadasp.data.manifest import Sample
from fastadasp.metrics.bleu import tokenizer_for
from fastadasp.run.datasets import load_dataset
from fastadasp.run.instantiate import instantiate as _instantiate
from fastadasp.run.runner import ModelCache, main
from fastadasp.tasks.classes import class_definition_for, class_definitions
from fastadasp.tasks.definition import Task, TaskConfigError, TaskDataError
from fastadasp.tasks.parsing import LabelAnswer
from fastadasp.testing import fixtures

ROOT = Path(__file__).resolve().parents[1]

#: CoVoST 2's directions as released (Wang et al. 2020; facebookresearch/covost): 15 en->X, 21 X->en
EN_TO_X = "de ca zh fa et mn tr ar sv lv sl ta ja id cy".split()
X_TO_EN = "fr de es ca it ru zh pt fa et mn nl tr ar sv lv sl ta ja id cy".split()
COVOST2_PAIRS = [f"en_{x}" for x in EN_TO_X] + [f"{x}_en" for x in X_TO_EN]
RELEASE_SPELLINGS = {"en_zh-CN": "en_zh", "en_sv-SE": "en_sv", "zh-CN_en": "zh_en", "sv-SE_en": "sv_en"}


def st_task(*overrides: str) -> Task:
    return Task.from_config(compose_run("task=st", "dataset.root=/x", *overrides).task, _instantiate)


def sample(**extra) -> Sample:
    return Sample("utt1", Path("/nonexistent/utt1.wav"), "text", extra)


# ----------------------------------------------------------------------------- the ST pair


def test_the_task_knows_every_covost2_direction():
    pairs = compose_run("task=st").task.pairs
    assert set(COVOST2_PAIRS) <= set(pairs) and len(COVOST2_PAIRS) == 36
    from fastadasp.data.corpora import covost2

    exported = next((getattr(covost2, n) for n in ("COVOST2_PAIRS", "PAIRS") if hasattr(covost2, n)), None)
    if exported is not None:  # the reader's own list, once it exports one, must be the task's too
        names = {RELEASE_SPELLINGS.get(p, p) for p in exported}
        assert names == set(COVOST2_PAIRS) and names <= set(pairs)


@pytest.mark.parametrize("pair", COVOST2_PAIRS + list(RELEASE_SPELLINGS))
def test_every_pair_gives_languages_prompts_and_the_bleu_tokenizer(pair):
    task = st_task(f"task.pair={pair}")
    source, target = RELEASE_SPELLINGS.get(pair, pair).split("_")
    languages = compose_run("task=st").task.languages
    assert task.variables == {"source_code": source, "target_code": target,
                              "source_language": languages[source], "target_language": languages[target]}
    # the prompts name the source language (as a name, or Qwen's tag), never "English" for X->en
    base = task.prompt("qwen2_audio", sample())
    assert base.endswith(f"into {languages[target]}: <|{source}|>") and "Detect the language" in base
    for family in ("qwen2_audio_instruct", "audioflamingo3"):
        assert f"Translate the {languages[source]} speech into {languages[target]}." in task.prompt(family, sample())
    assert f"<|{source}|><|translate|><|{target}|>" in task.prompt("qwen_audio", sample())
    # the metric scores with the target's tokenizer
    assert task.metric.keywords["target_language"] == target
    want = {"zh": "zh", "ja": "ja-mecab", "ko": "ko-mecab"}.get(target, "13a")
    assert tokenizer_for(target) == want
    assert task.score(["参考"], ["参考"])["tokenize"] == want
    # the dataset reads the pair the task names (its `pair` follows task.pair)
    assert compose_run("task=st", f"task.pair={pair}", "dataset.root=/x").dataset.pair == pair


def test_whisper_translates_only_into_english():
    task = st_task("task.pair=fr_en")
    assert task.prompt("whisper", sample()) == "<|startoftranscript|><|fr|><|translate|><|notimestamps|>"
    with pytest.raises(TaskConfigError) as error:
        st_task("task.pair=en_de").prompt("whisper", sample())
    message = str(error.value)
    assert "\n" not in message and "task.pair=en_de gives target_code='de'" in message
    assert "Whisper translates only into English" in message and "task.pair=fr_en" in message


def test_an_unknown_pair_is_one_line_listing_the_known_ones_before_any_model_loads(tmp_path):
    with pytest.raises(TaskConfigError) as error:
        st_task("task.pair=xx_en")
    message = str(error.value)
    assert "\n" not in message and "unknown pair 'xx_en'" in message
    assert all(p in message for p in COVOST2_PAIRS) and "zh-CN_en" in message
    cache = ModelCache()
    cfg = compose_run("model=tiny_qwen2_audio", "task=st", "task.pair=fr", "dataset.root=/nonexistent",
                      f"output_dir={tmp_path}")
    with pytest.raises(TaskConfigError, match="unknown pair 'fr'"):
        main(cfg, model_cache=cache)
    assert cache.loads == 0


def test_run_py_refuses_an_unknown_pair_in_one_line_without_a_traceback(tmp_path):
    run = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "model=tiny_qwen2_audio", "task=st", "task.pair=fr_xx",
         "dataset.root=/nonexistent", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"},
    )
    assert run.returncode == 2, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: task 'st': unknown pair 'fr_xx'; known: en_de"), run.stderr
    assert "Traceback" not in run.stderr and "Interpolation" not in run.stderr


def test_prompt_styles_of_qwen2_audio_base():
    assert st_task().prompt("qwen2_audio", sample()) == (
        "<|audio_bos|><|AUDIO|><|audio_eos|>Detect the language and translate the speech into German: <|en|>")
    # the earlier prompt stays selectable, naming the source language now
    assert st_task("task.pair=de_en", "task.prompt_style=instruction").prompt("qwen2_audio", sample()) == (
        "<|audio_bos|><|AUDIO|><|audio_eos|>Translate the German speech into English:")
    with pytest.raises(TaskConfigError, match=r"the qwen2_audio prompt has styles \['instruction', 'pretraining'\], "
                                              r"not 'chatty'; set task.prompt_style="):
        st_task("task.prompt_style=chatty").prompt("qwen2_audio", sample())
    assert "German" in st_task("task.prompt_style=chatty").prompt("wavllm", sample())  # one prompt, no styles


# ----------------------------------------------------------------------------- task pair vs dataset pair


def test_samples_whose_languages_contradict_the_pair_are_refused_naming_both():
    task = st_task()  # en_de
    agreeing = [Sample(f"s{i}", Path("x.mp3"), "t", {"translation": "ü", "source_language": "en",
                                                     "target_language": "de"}) for i in range(2)]
    task.check_dataset(agreeing, "covost2")
    chinese = [Sample("s9", Path("x.mp3"), "t", {"translation": "好", "source_language": "en",
                                                 "target_language": "zh"})]
    with pytest.raises(TaskDataError) as error:
        task.check_dataset(agreeing + chinese, "covost2")
    message = str(error.value)
    assert "\n" not in message
    assert "task.pair=en_de gives target_code='de'" in message
    assert "1 of 3 samples of dataset 'covost2' have target_language='zh'" in message and "'s9'" in message
    assert "set task.pair to the dataset's pair and leave dataset.pair unset" in message
    # the release's region spelling agrees with its base code; a sample without the field is not judged
    st_task("task.pair=zh-CN_en").check_dataset(
        [Sample("z", Path("x.mp3"), "t", {"translation": "a", "source_language": "zh-CN", "target_language": "en"}),
         Sample("m", Path("x.mp3"), "t", {"translation": "a"})], "covost2")


@pytest.fixture(scope="module")
def covost(tmp_path_factory):
    """CoVoST 2's fixture (en_de) plus the same clips listed as fr_en and en_zh pairs."""
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        pytest.skip("fixtures need espeak-ng and sox")
    fixture = fixtures.build_covost2(tmp_path_factory.mktemp("corpora"))
    tsv = (fixture.root / "covost_v2.en_de.test.tsv").read_text(encoding="utf-8").splitlines()
    english = [tsv[0]] + ["\t".join([*row.split("\t")[:2], row.split("\t")[1], *row.split("\t")[3:]])
                          for row in tsv[1:]]
    (fixture.root / "covost_v2.fr_en.test.tsv").write_text("\n".join(english) + "\n", encoding="utf-8")
    (fixture.root / "covost_v2.en_zh-CN.test.tsv").write_text("\n".join(tsv) + "\n", encoding="utf-8")
    return fixture


def test_a_dataset_pair_contradicting_the_task_pair_stops_before_the_model_loads(covost, tmp_path):
    cache = ModelCache()
    for overrides, found in ((["dataset.pair=en_zh"], "target_language='zh'"),  # the case
                             (["task.pair=fr_en", "dataset.pair=en_de"], "source_language='en'")):
        cfg = compose_run("model=tiny_qwen2_audio", "task=st", "dataset=covost2", f"dataset.root={covost.root}",
                          *overrides, f"output_dir={tmp_path / 'run'}")
        with pytest.raises(TaskDataError, match=found):
            main(cfg, model_cache=cache)
    assert cache.loads == 0 and not (tmp_path / "run" / "predictions.jsonl").exists()


def test_an_x_to_english_pair_runs_end_to_end(covost, tmp_path, prompts_seen):
    """fr_en through run.py's configs: the reader's languages, the prompt, 13a BLEU on English references."""
    import sacrebleu

    cfg = compose_run("model=tiny_qwen2_audio", "task=st", "task.pair=fr_en", f"dataset.root={covost.root}",
                      "task.max_new_tokens=4", f"output_dir={tmp_path}")
    metrics = main(cfg, model_cache=ModelCache())
    rows = [json.loads(x) for x in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert metrics["num_samples"] == len(rows) == 3 and metrics["dataset"]["pair"] == "fr_en"
    assert {r["reference"] for r in rows} == {v["text"] for v in covost.expected.values()}  # English references
    assert prompts_seen and all(p.endswith("Detect the language and translate the speech into English: <|fr|>")
                                for p in prompts_seen)
    scores = metrics["metrics"]
    assert scores["tokenize"] == "13a" and scores["target_language"] == "en"
    rows.sort(key=lambda r: r["index"])
    direct = sacrebleu.corpus_bleu([r["answer"] for r in rows], [[r["reference"] for r in rows]], tokenize="13a")
    assert scores["bleu"] == pytest.approx(direct.score)
    # the run folder alone rebuilds the task (settings.json holds the resolved pair and variables)
    from fastadasp.run.rescoring import load_run, task_from_settings

    settings, _, _ = load_run(tmp_path)
    again = task_from_settings(settings)
    assert again.variables["source_language"] == "French" and again.score_rows(rows)["bleu"] == scores["bleu"]


# ----------------------------------------------------------------------------- emotion classes


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """Every corpus fixture, read through its dataset config: {name: samples}. (hf is a generic reader:
    its labels are whatever a user maps, so it falls back to the generic synonym groups.)"""
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        pytest.skip("fixtures need espeak-ng and sox")
    out = tmp_path_factory.mktemp("corpora")
    built = fixtures.build_all(out, [name for name in fixtures.BUILDERS if name != "hf"])
    return {name: load_dataset(compose_run(f"task={f.task}", *f.overrides(), f"data_root={out / 'data_root'}").dataset,
                               default_name=name)[0]
            for name, f in built.items()}


@pytest.fixture(scope="module")
def labelled_datasets(corpora):
    """The corpora whose samples carry a label set (`labels`): the ER datasets."""
    return {name: samples for name, samples in corpora.items() if any("labels" in s.extra for s in samples)}


def test_every_labelled_reader_has_one_class_definition(labelled_datasets):
    assert set(labelled_datasets) >= {"iemocap", "meld"}
    assert sorted(d.dataset for d in class_definitions()) == ["iemocap", "meld"]
    for name, samples in labelled_datasets.items():
        for s in samples:
            definition = class_definition_for(s.extra["labels"])
            assert definition is not None and definition.dataset == name, (name, s.extra["labels"])
        definition = class_definition_for(samples[0].extra["labels"])
        # every class has words, each word means one class, every label means itself
        assert all(definition.words[label] for label in definition.labels)
        owners: dict[str, str] = {}
        for label, words in definition.words.items():
            for word in words:
                assert owners.setdefault(word, label) == label, f"{name}: {word!r} means two classes"
        for label in definition.labels:
            assert LabelAnswer()(label, sample(labels=list(definition.labels))) == label


def test_iemocap_answers_merge_as_its_references_do(labelled_datasets):
    """The reader merges exc into happy; an answer naming the raw label's emotion gets the sample's class."""
    from fastadasp.data.corpora.iemocap import FOUR_CLASS

    raw_words = {"neu": "neutral", "hap": "happy", "exc": "excited", "ang": "angry", "sad": "sad"}
    assert set(raw_words) == set(FOUR_CLASS)
    samples = labelled_datasets["iemocap"]
    assert {s.extra["original_label"] for s in samples} >= {"exc", "hap"}
    for s in samples:
        answer = f"The speaker sounds {raw_words[s.extra['original_label']]}."
        assert LabelAnswer()(answer, s) == s.extra["label"], s.id
    assert LabelAnswer()("excited", samples[0]) == "happy"
    assert LabelAnswer()("frustrated", samples[0]) is None  # fru is not one of the 4 classes


def test_meld_keeps_its_seven_labels(labelled_datasets):
    s = labelled_datasets["meld"][0]
    parse = LabelAnswer()
    assert [parse(word, s) for word in ("happy", "sad", "angry", "surprised", "scared", "disgusted", "calm")] == \
        ["joy", "sadness", "anger", "surprise", "fear", "disgust", "neutral"]
    assert parse("excited", s) is None  # MELD has no excitement class: an assumption we do not make


# ----------------------------------------------------------------------------- Clotho-AQA


def test_aqa_rows_record_every_annotator_answer_and_the_metric_names_each_number():
    task = Task.from_config(compose_run("task=aqa").task, _instantiate)
    samples = [Sample("a", Path("a.wav"), None, {"question": "How many dogs bark?", "answer": "two",
                                                 "answers": ["two", "2", "three"]}),
               Sample("b", Path("b.wav"), None, {"question": "Is it raining?", "answer": "yes",
                                                 "answers": ["yes", "no", "yes"]}),
               Sample("c", Path("c.wav"), None, {"question": "What barks?", "answer": "a dog",
                                                 "answers": ["dog", "a dog", "puppy"]})]
    rows = [{"reference": task.reference_of(s), "answer": task.answer(p, s), "fields": task.row_fields(s)}
            for s, p in zip(samples, ["2 dogs.", "No.", "A puppy"])]
    assert rows[0]["fields"] == {"question": "How many dogs bark?", "answers": ["two", "2", "three"]}
    scores = task.score_rows(rows)
    assert task.headline(scores) == ("accuracy", pytest.approx(0.0))  # "2 dogs" is not "two"
    assert scores["accuracy_any_annotator"] == pytest.approx(200 / 3)  # "no" and "puppy" were given
    assert (scores["accuracy_yes_no"], scores["yes_no_total"], scores["open_total"]) == (0.0, 1, 2)
    # without the rows' fields the metric still runs, and says why the any-annotator number is missing
    plain = task.score([r["reference"] for r in rows], [r["answer"] for r in rows])
    assert plain["accuracy_any_annotator"] is None and plain["accuracy_any_annotator_unavailable"]
    rows[0]["answer"] = task.answer("Two", samples[0])
    assert task.score_rows(rows)["accuracy"] == pytest.approx(100 / 3)  # "Two" == "two" == "2"


def test_clotho_aqa_samples_carry_the_annotators_answers(corpora):
    task = Task.from_config(compose_run("task=aqa").task, _instantiate)
    samples = corpora["clotho_aqa"]
    rows = [{"reference": task.reference_of(s), "answer": task.reference_of(s), "fields": task.row_fields(s)}
            for s in samples]
    assert all(len(r["fields"]["answers"]) >= 1 for r in rows)
    scores = task.score_rows(rows)
    assert scores["accuracy"] == scores["accuracy_any_annotator"] == 100.0


def test_every_task_config_builds_with_its_defaults():
    for path in sorted((ROOT / "configs" / "task").glob("*.yaml")):
        task = Task.from_config(compose_run(f"task={path.stem}").task, _instantiate)
        assert task.name == path.stem and task.prompts
        for family in task.prompts:
            if family in task.prompt_conditions:
                continue
            task.template(family)
