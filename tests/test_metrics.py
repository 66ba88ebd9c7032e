"""BLEU, accuracy-type metrics and caption metrics against direct library calls; SPICE reporting; get_spice."""

from __future__ import annotations

import importlib.util
import subprocess
import zipfile
from pathlib import Path

import pytest
import sacrebleu

from fastadasp.metrics import bleu, captions, classification_accuracy, corpus_bleu, exact_match
from fastadasp.metrics.accuracy import accuracy
from fastadasp.metrics.accuracy import normalize_answer

# ----------------------------------------------------------------------------- BLEU

DE_REFS = ["Das Haus ist klein.", "Der Hund bellt laut.", "Ich habe keine Zeit, sagte er."]
DE_HYPS = ["Das Haus ist sehr klein.", "Der Hund bellt.", "Er sagte, ich habe keine Zeit."]
ZH_REFS = ["今天天气很好。", "我喜欢吃苹果和香蕉。", "他明天去北京开会。"]
ZH_HYPS = ["今天的天气很好", "我喜欢吃苹果。", "他明天要去北京。"]


def _same_as_sacrebleu(out: dict, direct) -> None:
    assert out["bleu"] == pytest.approx(direct.score)
    assert out["bp"] == pytest.approx(direct.bp)
    assert out["precisions"] == pytest.approx(direct.precisions)


def test_bleu_equals_sacrebleu_13a_and_names_its_settings():
    out = corpus_bleu(DE_REFS, DE_HYPS, target_language="de")
    _same_as_sacrebleu(out, sacrebleu.corpus_bleu(DE_HYPS, [DE_REFS], tokenize="13a"))
    assert list(out)[:2] == ["bleu", "signature"]
    assert "tok:13a" in out["signature"] and f"version:{sacrebleu.__version__}" in out["signature"]
    assert (out["tokenize"], out["num_sentences"], out["target_language"]) == ("13a", 3, "de")


@pytest.mark.parametrize("target_language", ["zh", "zh-CN", "en_zh", "en_zh-CN"])
def test_bleu_uses_zh_tokenizer_for_chinese_targets(target_language):
    out = corpus_bleu(ZH_REFS, ZH_HYPS, target_language=target_language)
    _same_as_sacrebleu(out, sacrebleu.corpus_bleu(ZH_HYPS, [ZH_REFS], tokenize="zh"))
    assert out["tokenize"] == "zh" and "tok:zh" in out["signature"]
    # 13a does not split Chinese characters, so the choice matters
    assert out["bleu"] != pytest.approx(sacrebleu.corpus_bleu(ZH_HYPS, [ZH_REFS], tokenize="13a").score)


@pytest.mark.parametrize(
    "language, tokenizer",
    [(None, "13a"), ("", "13a"), ("de", "13a"), ("en_de", "13a"), ("zh", "zh"), ("ZH-cn", "zh"),
     ("zh_CN", "zh"), ("en->zh", "zh"), ("zh-CN_en", "13a"), ("ja", "13a")],
)
def test_tokenizer_for(language, tokenizer):
    assert bleu.tokenizer_for(language) == tokenizer


def test_bleu_explicit_tokenize_overrides_language():
    out = corpus_bleu(ZH_REFS, ZH_HYPS, tokenize="char", target_language="zh")
    _same_as_sacrebleu(out, sacrebleu.corpus_bleu(ZH_HYPS, [ZH_REFS], tokenize="char"))
    assert out["tokenize"] == "char"


def test_bleu_none_hypothesis_is_an_empty_string():
    hyps = [None, DE_HYPS[1], DE_HYPS[2]]
    out = corpus_bleu(DE_REFS, hyps)
    _same_as_sacrebleu(out, sacrebleu.corpus_bleu(["", *DE_HYPS[1:]], [DE_REFS]))
    assert out["empty_hypotheses"] == 1
    assert out["bleu"] < corpus_bleu(DE_REFS, DE_HYPS)["bleu"]


def test_bleu_multiple_references_per_sentence():
    second = ["Das Haus ist sehr klein.", "Der Hund bellt.", "Er sagte, er habe keine Zeit."]
    out = corpus_bleu([list(pair) for pair in zip(DE_REFS, second)], DE_HYPS)
    _same_as_sacrebleu(out, sacrebleu.corpus_bleu(DE_HYPS, [DE_REFS, second]))
    assert "nrefs:2" in out["signature"]


def test_bleu_bad_input():
    with pytest.raises(ValueError, match="3 references but 2 hypotheses"):
        corpus_bleu(DE_REFS, DE_HYPS[:2])
    with pytest.raises(ValueError, match="no sentences"):
        corpus_bleu([], [])
    with pytest.raises(ValueError, match="same number of references"):
        corpus_bleu([["a", "b"], ["c"]], ["a", "c"])


# ----------------------------------------------------------------------------- accuracy


def test_accuracy_counts_unparsed_as_wrong():
    out = accuracy(["yes", "no", "B", "no"], ["Yes", None, "b ", "yes"])
    assert out == {"accuracy": 50.0, "correct": 2, "total": 4, "unparsed": 1, "compare": "strip+casefold"}


def test_classification_confusion_matrix_and_unweighted_accuracy():
    refs = ["joy", "joy", "joy", "joy", "sadness", "anger", "anger"]
    hyps = ["joy", "joy", "joy", "sadness", None, "anger", "joy"]
    out = classification_accuracy(refs, hyps, labels=["joy", "sadness", "anger", "fear"])
    cm = out["confusion_matrix"]
    assert cm["labels"] == ["joy", "sadness", "anger", "fear"]
    assert cm["columns"] == ["joy", "sadness", "anger", "fear", "unparsed"]
    assert cm["matrix"] == [
        [3, 1, 0, 0, 0],
        [0, 0, 0, 0, 1],
        [1, 0, 1, 0, 0],
        [0, 0, 0, 0, 0],
    ]
    assert out["accuracy"] == pytest.approx(100 * 4 / 7)
    # recall joy 3/4, sadness 0/1, anger 1/2; fear has no references and is not averaged
    assert out["unweighted_accuracy"] == pytest.approx(100 * (0.75 + 0 + 0.5) / 3)
    assert out["per_class_recall"] == pytest.approx({"joy": 75.0, "sadness": 0.0, "anger": 50.0})
    assert (out["correct"], out["total"], out["unparsed"], out["labels_from"]) == (4, 7, 1, "config")
    assert sum(map(sum, cm["matrix"])) == len(refs)


def test_classification_labels_from_data_are_sorted_union():
    out = classification_accuracy(["b", "a"], ["c", "A"])
    assert out["confusion_matrix"]["labels"] == ["a", "b", "c"]
    assert out["confusion_matrix"]["matrix"] == [[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert out["labels_from"] == "data" and out["unweighted_accuracy"] == pytest.approx(50.0)


def test_classification_rejects_values_outside_labels():
    with pytest.raises(ValueError, match=r"reference 'joy' at index 1 is not one of the labels"):
        classification_accuracy(["sad", "joy"], ["sad", "sad"], labels=["sad", "happy"])
    with pytest.raises(ValueError, match=r"hypothesis 'the speaker is happy' at index 0"):
        classification_accuracy(["sad"], ["the speaker is happy"], labels=["sad", "happy"])


@pytest.mark.parametrize(
    "text, normalised",
    [
        ("The dog.", "dog"),
        ("  A  Dog   barking!", "dog barking"),
        ("an apple, the pear", "apple pear"),
        ("Yes, it is.", "yes"),
        ("yeah", "yes"),
        ("No.", "no"),
        ("Nope!", "no"),
        ("no one", "no one"),  # "no" followed by a word, not punctuation: not a no-answer
        ("Yes it is", "yes it is"),
        ("Three", "three"),
        ("", ""),
    ],
)
def test_normalize_answer(text, normalised):
    assert normalize_answer(text) == normalised


def test_exact_match_normalises_and_accepts_any_listed_reference():
    refs = ["dog", "yes", ["rain", "raining"], "two", "car"]
    hyps = ["A dog.", "Yes, it is.", "Raining!", "2", None]
    out = exact_match(refs, hyps)
    assert (out["accuracy"], out["correct"], out["unparsed"]) == (60.0, 3, 1)
    assert out["normalize"] == "yesno+squad"
    raw = exact_match(refs, hyps, normalize=False)
    assert raw["correct"] == 0 and raw["normalize"] == "strip"


def test_accuracy_bad_input():
    for metric in (accuracy, classification_accuracy, exact_match):
        with pytest.raises(ValueError, match="1 references but 2 hypotheses"):
            metric(["a"], ["a", "b"])
        with pytest.raises(ValueError, match="no samples"):
            metric([], [])


# ----------------------------------------------------------------------------- captions

CAPTION_REFS = [
    ["A dog barks loudly in the distance.", "a dog is barking", "Dog barking nearby!", "a dog barks", "barking dog"],
    ["Rain falls on a tin roof.", "rain drops on the roof", "heavy rain", "rain is falling", "it is raining hard"],
    ["Birds chirp in the morning.", "birds are singing", "a bird sings", "birds chirping", "many birds chirp"],
]


def _no_spice_jars(monkeypatch, tmp_path):
    jars = [tmp_path / "lib" / "stanford-corenlp-3.6.0.jar", tmp_path / "lib" / "stanford-corenlp-3.6.0-models.jar"]
    monkeypatch.setattr(captions, "spice_jars", lambda: jars)
    return jars


def _fake_tokenizer(captions_by_key):
    """Stand-in for the JVM tokenizer in tests about SPICE reporting."""
    return {k: [" ".join(s.lower().replace(".", " ").split()) for s in v] for k, v in captions_by_key.items()}


def test_cider_equals_direct_pycocoevalcap_call():
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    hyps = ["A dog is barking loudly.", "rain on a\nroof", None]
    out = captions.caption_scores(CAPTION_REFS, hyps, spice=False)
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": c} for c in refs] for i, refs in enumerate(CAPTION_REFS)})
    res = tokenizer.tokenize({i: [{"caption": h or ""}] for i, h in enumerate(hyps)})
    direct, _ = Cider().compute_score(gts, res)
    assert out["cider"] == pytest.approx(direct, abs=1e-12)
    assert list(out)[0] == "cider" and out["cider"] > 0
    assert (out["spice"], out["spider"], out["spice_unavailable"]) == (None, None, "disabled (spice=False)")
    assert (out["num_samples"], out["empty_hypotheses"], out["refs_per_sample"]) == (3, 1, [5])


def test_cider_identical_captions_beat_unrelated_ones():
    identical = captions.caption_scores(CAPTION_REFS, [refs[1] for refs in CAPTION_REFS], spice=False)
    unrelated = captions.caption_scores(CAPTION_REFS, ["purple elephant", "quantum sofa", "violin taxes"], spice=False)
    assert unrelated["cider"] == 0.0 and identical["cider"] > 1.0


def test_spice_missing_jars_is_reported_never_zero_and_never_downloads(monkeypatch, tmp_path):
    import pycocoevalcap.spice.get_stanford_models as models

    jars = _no_spice_jars(monkeypatch, tmp_path)
    monkeypatch.setattr(captions, "ptb_tokenize", _fake_tokenizer)
    monkeypatch.setattr(models, "urlretrieve", lambda *a, **k: pytest.fail("SPICE jars download attempted"))
    monkeypatch.setattr(captions, "_spice", lambda *a: pytest.fail("SPICE run without its jars"))
    out = captions.caption_scores(CAPTION_REFS, ["a dog barks", "rain", "birds"])
    assert out["spice"] is None and out["spider"] is None and out["cider"] > 0
    assert str(jars[0]) in out["spice_unavailable"] and "make spice" in out["spice_unavailable"]
    with pytest.raises(RuntimeError, match="make spice"):
        captions.caption_scores(CAPTION_REFS, ["a dog barks", "rain", "birds"], spice=True)


def test_spider_is_mean_of_cider_and_spice_when_spice_runs(monkeypatch, tmp_path):
    for jar in _no_spice_jars(monkeypatch, tmp_path):
        jar.parent.mkdir(exist_ok=True)
        jar.write_bytes(b"jar")
    monkeypatch.setattr(captions, "ptb_tokenize", _fake_tokenizer)
    seen = {}
    monkeypatch.setattr(captions, "_spice", lambda gts, res: seen.update(gts=gts, res=res) or 0.25)
    out = captions.caption_scores(CAPTION_REFS, ["a dog barks", None, "birds"])
    assert out["spice"] == 0.25 and out["spider"] == pytest.approx((out["cider"] + 0.25) / 2)
    assert "spice_unavailable" not in out
    assert seen["res"]["1"] == [""] and len(seen["gts"]["0"]) == 5


def test_spice_failure_keeps_cider_in_auto_mode_and_raises_when_required(monkeypatch, tmp_path):
    for jar in _no_spice_jars(monkeypatch, tmp_path):
        jar.parent.mkdir(exist_ok=True)
        jar.write_bytes(b"jar")
    monkeypatch.setattr(captions, "ptb_tokenize", _fake_tokenizer)

    def failing(*_):
        raise subprocess.CalledProcessError(1, ["java", "-jar", "spice-1.0.jar"])

    monkeypatch.setattr(captions, "_spice", failing)
    out = captions.caption_scores(CAPTION_REFS, ["a dog barks", "rain", "birds"])
    assert out["spice"] is None and out["spider"] is None and out["cider"] > 0
    assert "SPICE failed" in out["spice_unavailable"] and "exited with 1" in out["spice_unavailable"]
    with pytest.raises(subprocess.CalledProcessError):
        captions.caption_scores(CAPTION_REFS, ["a dog barks", "rain", "birds"], spice=True)


def test_caption_metrics_name_the_missing_java(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="apt-get install -y default-jre-headless"):
        captions.caption_scores(CAPTION_REFS, ["a", "b", "c"])
    assert "java" in captions.spice_missing_reason()


def test_caption_bad_input():
    with pytest.raises(ValueError, match="3 references but 1 hypotheses"):
        captions.caption_scores(CAPTION_REFS, ["a"])
    with pytest.raises(ValueError, match=r"references\[0\] must be a non-empty list"):
        captions.caption_scores(["a dog barks"], ["a dog"])


def test_spice_jars_are_where_pycocoevalcap_looks():
    import pycocoevalcap.spice.get_stanford_models as models

    jar, models_jar = captions.spice_jars()
    assert jar == Path(models.SPICEDIR) / models.SPICELIB / f"{models.JAR}.jar"
    assert models_jar.name == f"{models.JAR}-models.jar" and models_jar.parent == jar.parent


# ----------------------------------------------------------------------------- scripts/get_spice.py


@pytest.fixture(scope="module")
def get_spice():
    path = Path(__file__).resolve().parents[1] / "scripts" / "get_spice.py"
    spec = importlib.util.spec_from_file_location("get_spice", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_get_spice_installs_jars_from_a_local_zip(get_spice, tmp_path, capsys):
    archive = tmp_path / "corenlp.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"{get_spice.CORENLP}/stanford-corenlp-3.6.0.jar", b"code")
        zf.writestr(f"{get_spice.CORENLP}/stanford-corenlp-3.6.0-models.jar", b"models")
        zf.writestr(f"{get_spice.CORENLP}/README.txt", b"x")
    lib = tmp_path / "lib"
    assert get_spice.main(["--zip", str(archive), "--lib-dir", str(lib), "--dry-run"]) == 0
    assert not lib.exists()
    assert get_spice.main(["--zip", str(archive), "--lib-dir", str(lib)]) == 0
    assert (lib / "stanford-corenlp-3.6.0.jar").read_bytes() == b"code"
    assert (lib / "stanford-corenlp-3.6.0-models.jar").read_bytes() == b"models"
    assert sorted(p.name for p in lib.iterdir()) == ["stanford-corenlp-3.6.0-models.jar", "stanford-corenlp-3.6.0.jar"]
    assert get_spice.main(["--lib-dir", str(lib)]) == 0 and "already installed" in capsys.readouterr().out


def test_get_spice_rejects_a_wrong_zip(get_spice, tmp_path):
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("something/else.jar", b"x")
    with pytest.raises(SystemExit, match="has no stanford-corenlp-full-2015-12-09/stanford-corenlp-3.6.0"):
        get_spice.main(["--zip", str(archive), "--lib-dir", str(tmp_path / "lib")])


# ----------------------------------------------------------------------------- config targets


@pytest.mark.parametrize(
    "target",
    [
        "fastadasp.metrics.wer.corpus_wer",
        "fastadasp.metrics.bleu.corpus_bleu",
        "fastadasp.metrics.accuracy.accuracy",
        "fastadasp.metrics.accuracy.classification_accuracy",
        "fastadasp.metrics.accuracy.exact_match",
        "fastadasp.metrics.captions.caption_scores",
    ],
)
def test_metric_targets_resolve_for_hydra(target):
    """A package-level name equal to a submodule's would hide it from `_target_` paths."""
    from hydra.utils import get_method

    assert get_method(target).__name__ == target.rsplit(".", 1)[1]
