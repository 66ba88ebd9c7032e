"""BLEU, accuracy-type metrics and caption metrics against direct library calls; SPICE reporting; get_spice."""

from __future__ import annotations

import importlib.util
import subprocess
import zipfile
from pathlib import Path

import pytest
import sacrebleu

from fastadasp.metrics import bleu, captions, classification_accuracy, corpus_bleu, exact_match
from fastadasp.metrics.accuracy import accuracy, answer_accuracy
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
     ("zh_CN", "zh"), ("en->zh", "zh"), ("zh-CN_en", "13a"), ("ja", "ja-mecab"), ("en_ja", "ja-mecab"),
     ("ja_en", "13a"), ("ko", "ko-mecab"), ("ko-KR", "ko-mecab"), ("en->ko", "ko-mecab")],
)
def test_tokenizer_for(language, tokenizer):
    assert bleu.tokenizer_for(language) == tokenizer


# Japanese and Korean are written without spaces between words: 13a sees one "word" per clause.
JA_REFS = ["彼女は大丈夫だろう。", "私は毎朝コーヒーを飲みます。"]
JA_HYPS = ["彼女は大丈夫です。", "私は毎朝お茶を飲みます。"]
KO_REFS = ["나는 학교에 갑니다.", "오늘은 날씨가 좋습니다."]
KO_HYPS = ["나는 학교에 간다.", "오늘 날씨가 좋습니다."]


def test_bleu_tokenises_japanese_with_mecab():
    out = corpus_bleu(JA_REFS, JA_HYPS, target_language="ja")
    _same_as_sacrebleu(out, sacrebleu.corpus_bleu(JA_HYPS, [JA_REFS], tokenize="ja-mecab"))
    assert out["tokenize"] == "ja-mecab" and "tok:ja-mecab-" in out["signature"]
    # MeCab splits the unsegmented sentences into words; 13a cannot, and scores differently
    thirteen_a = sacrebleu.corpus_bleu(JA_HYPS, [JA_REFS], tokenize="13a").score
    assert out["bleu"] > 0 and out["bleu"] != pytest.approx(thirteen_a)
    assert out["sys_len"] > len(JA_HYPS) * 3  # words, not one token per sentence


def test_bleu_tokenises_korean_with_mecab_ko():
    out = corpus_bleu(KO_REFS, KO_HYPS, target_language="en_ko")
    _same_as_sacrebleu(out, sacrebleu.corpus_bleu(KO_HYPS, [KO_REFS], tokenize="ko-mecab"))
    assert out["tokenize"] == "ko-mecab" and "tok:ko-mecab-" in out["signature"]
    assert out["bleu"] != pytest.approx(sacrebleu.corpus_bleu(KO_HYPS, [KO_REFS], tokenize="13a").score)


def test_bleu_metric_binds_the_target_and_refuses_a_tokenizer_that_cannot_load(monkeypatch):
    from fastadasp.run.config import ConfigError

    score = bleu.bleu_metric(target_language="ja")
    assert score(JA_REFS, JA_HYPS) == corpus_bleu(JA_REFS, JA_HYPS, target_language="ja")
    assert bleu.bleu_metric(target_language="ja", tokenize="char")(JA_REFS, JA_HYPS)["tokenize"] == "char"

    def no_mecab(tokenize):
        raise RuntimeError("Japanese tokenization requires extra dependencies")

    monkeypatch.setattr(bleu.sacrebleu, "BLEU", no_mecab)
    with pytest.raises(ConfigError, match=r"BLEU for target 'ja' uses ja-mecab, but sacreBLEU's 'ja-mecab' "
                                          r"tokenizer cannot load here \(Japanese tokenization requires"):
        bleu.bleu_metric(target_language="ja")


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
        ("Three", "3"),  # number words become digits, on both sides (issue 15)
        ("2", "2"),
        ("02", "2"),
        ("twenty-one", "21"),
        ("Twenty one birds.", "21 birds"),
        ("a hundred and five", "105"),
        ("two thousand three hundred", "2300"),
        ("1,000 cars", "1000 cars"),
        ("2.5 seconds", "2.5 seconds"),
        ("the second one", "second 1"),  # ordinals stay words
        ("no one", "no one"),
        ("", ""),
    ],
)
def test_normalize_answer(text, normalised):
    assert normalize_answer(text) == normalised


def test_exact_match_normalises_and_accepts_any_listed_reference():
    refs = ["dog", "yes", ["rain", "raining"], "two", "car"]
    hyps = ["A dog.", "Yes, it is.", "Raining!", "2", None]
    out = exact_match(refs, hyps)
    assert (out["accuracy"], out["correct"], out["unparsed"]) == (80.0, 4, 1)  # "2" == "two" (issue 15)
    assert out["normalize"] == "yesno+squad+numbers"
    raw = exact_match(refs, hyps, normalize=False)
    assert raw["correct"] == 0 and raw["normalize"] == "strip"


def test_answer_accuracy_majority_any_annotator_and_yes_no_subsets():
    majority = ["two", "yes", "no", "dog", "rain"]
    annotators = [["two", "2", "three"], ["yes", "yes", "no"], ["no", "no", "no"], ["dog", "a cat", "dog"],
                  ["rain", "rain", "water"]]
    hyps = ["2", "no", "No.", "cat", None]
    out = answer_accuracy(majority, hyps, annotators)
    # majority: "2" == "two", "No." == "no"; any annotator: also "no" (one annotator said no) and "cat" ("a cat")
    assert (out["accuracy"], out["correct"], out["total"], out["unparsed"]) == (40.0, 2, 5, 1)
    assert (out["accuracy_any_annotator"], out["correct_any_annotator"]) == (80.0, 4)
    assert (out["accuracy_yes_no"], out["yes_no_total"]) == (50.0, 2)  # "yes" wrong, "no" right
    assert out["accuracy_open"] == pytest.approx(100 / 3) and out["open_total"] == 3
    assert list(out)[0] == "accuracy" and out["normalize"] == "yesno+squad+numbers"
    assert out["annotator_answers_missing"] == 0
    # the primary number is exact_match's against the majority answer
    assert out["accuracy"] == exact_match(majority, hyps)["accuracy"]


def test_answer_accuracy_without_annotator_answers_says_why():
    out = answer_accuracy(["yes", "dog"], ["yes", "dog"])
    assert out["accuracy"] == 100.0 and out["accuracy_any_annotator"] is None
    assert "annotator answers" in out["accuracy_any_annotator_unavailable"]
    # a sample without annotator answers counts against its majority answer only, and is counted
    partial = answer_accuracy(["yes", "dog"], ["no", "cat"], [["yes", "no"], None])
    assert partial["accuracy_any_annotator"] == 50.0 and partial["annotator_answers_missing"] == 1
    assert answer_accuracy(["dog"], ["dog"])["accuracy_yes_no"] is None  # an empty subset has no accuracy
    with pytest.raises(ValueError, match="2 references but 1 annotator answer lists"):
        answer_accuracy(["a", "b"], ["a", "b"], [["a"]])


def test_accuracy_bad_input():
    for metric in (accuracy, classification_accuracy, exact_match, answer_accuracy):
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
    """Point the SPICE jar lookup at an empty folder; returns the CoreNLP jar paths there."""
    jars = [tmp_path / "lib" / "stanford-corenlp-3.6.0.jar", tmp_path / "lib" / "stanford-corenlp-3.6.0-models.jar"]
    monkeypatch.setattr(captions, "spice_jars", lambda: jars)
    return jars


def _touch(paths):
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"jar")


@pytest.fixture(autouse=True)
def _fresh_java_version():
    captions.java_major_version.cache_clear()
    yield
    captions.java_major_version.cache_clear()


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
    # "\r" is a line break to the Java tokenizer: without care it would shift captions between samples
    unrelated_captions = ["purple elephant", "quantum\r\nsofa", "violin\rtaxes"]
    unrelated = captions.caption_scores(CAPTION_REFS, unrelated_captions, spice=False)
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
    _touch(_no_spice_jars(monkeypatch, tmp_path) + captions.nashorn_jars())
    monkeypatch.setattr(captions, "ptb_tokenize", _fake_tokenizer)
    seen = {}
    monkeypatch.setattr(captions, "_spice", lambda gts, res: seen.update(gts=gts, res=res) or 0.25)
    out = captions.caption_scores(CAPTION_REFS, ["a dog barks", None, "birds"])
    assert out["spice"] == 0.25 and out["spider"] == pytest.approx((out["cider"] + 0.25) / 2)
    assert "spice_unavailable" not in out
    assert seen["res"]["1"] == [""] and len(seen["gts"]["0"]) == 5


def test_spice_failure_keeps_cider_in_auto_mode_and_raises_when_required(monkeypatch, tmp_path):
    _touch(_no_spice_jars(monkeypatch, tmp_path) + captions.nashorn_jars())
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


@pytest.mark.parametrize(
    "major, nashorn_installed, problem",
    [(17, False, "JavaScript engine, which Java 17 lacks"), (17, True, None), (11, False, None), (8, False, None)],
)
def test_spice_needs_nashorn_on_java_15_and_later(monkeypatch, tmp_path, major, nashorn_installed, problem):
    _touch(_no_spice_jars(monkeypatch, tmp_path))
    if nashorn_installed:
        _touch(captions.nashorn_jars())
    monkeypatch.setattr(captions, "java_major_version", lambda java="java": major)
    reason = captions.spice_missing_reason()
    if problem is None:
        assert reason is None
    else:
        assert problem in reason and "make spice" in reason and "CoreNLP" not in reason


def _fake_java(tmp_path, version: str, f_scores) -> Path:
    """A `java` that answers -version and, as SPICE, writes the given per-caption F-scores and logs its call."""
    import json
    import sys

    script = tmp_path / "bin" / "java"
    script.parent.mkdir()
    script.write_text(
        f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
if args == ["-version"]:
    sys.stderr.write('openjdk version "{version}" 2025-04-15\\n'); sys.exit(0)
items = json.load(open(args[args.index("-cp") + 3]))
json.dump({{"args": args, "cwd": os.getcwd(), "items": items, "opts": os.environ.get("JDK_JAVA_OPTIONS")}},
          open({str(tmp_path / "call.json")!r}, "w"))
scores = {list(f_scores)!r}
json.dump([{{"image_id": it["image_id"], "scores": {{"All": {{"f": f}}}}}} for it, f in zip(items, scores)],
          open(args[args.index("-out") + 1], "w"))
"""
    )
    script.chmod(0o755)
    return script


def test_spice_runs_the_jar_and_averages_per_caption_f_scores(monkeypatch, tmp_path):
    import json

    import pycocoevalcap.spice.get_stanford_models as models

    _touch(_no_spice_jars(monkeypatch, tmp_path) + captions.nashorn_jars())
    _fake_java(tmp_path, "17.0.15", [0.5, 0.25, 0.0])
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}")
    gts = {"0": ["a dog barks"], "1": ["rain falls", "it rains"], "2": ["birds sing"]}
    res = {"0": ["a dog"], "1": ["rain"], "2": [""]}
    assert captions._spice(gts, res) == pytest.approx(0.25)
    call = json.loads((tmp_path / "call.json").read_text())
    assert call["items"] == [{"image_id": i, "test": res[str(i)][0], "refs": gts[str(i)]} for i in range(3)]
    class_path = call["args"][call["args"].index("-cp") + 1].split(":")
    assert class_path == ["spice-1.0.jar", *map(str, captions.nashorn_jars())]
    assert call["args"][call["args"].index("-cp") + 2] == "edu.anu.spice.SpiceScorer"
    assert {"-subset", "-silent", "-Xmx8G"} <= set(call["args"]) and "-cache" not in call["args"]
    assert Path(call["cwd"]) == Path(models.SPICEDIR).resolve() and "--add-opens" in call["opts"]


def test_spice_on_java_8_leaves_nashorn_off_the_class_path_and_nan_propagates(monkeypatch, tmp_path):
    import json

    _touch(_no_spice_jars(monkeypatch, tmp_path) + captions.nashorn_jars())
    _fake_java(tmp_path, "1.8.0_292", [0.5, None])
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}")
    assert captions.java_major_version() == 8
    score = captions._spice({"0": ["a"], "1": ["b"]}, {"0": ["a"], "1": ["b"]})
    assert score != score  # NaN, as pycocoevalcap reports a corpus with an unscorable caption
    call = json.loads((tmp_path / "call.json").read_text())
    assert call["args"][call["args"].index("-cp") + 1] == "spice-1.0.jar"


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
    engine_dir = tmp_path / "maven"
    _touch([engine_dir / p.name for p in captions.nashorn_jars()])
    lib = tmp_path / "lib"
    local = ["--zip", str(archive), "--jars-from", str(engine_dir), "--lib-dir", str(lib), "--nashorn"]
    assert get_spice.main([*local, "--dry-run"]) == 0
    assert not lib.exists() and "nashorn-core-15.4.jar" in capsys.readouterr().out
    assert get_spice.main(local) == 0
    assert (lib / "stanford-corenlp-3.6.0.jar").read_bytes() == b"code"
    assert (lib / "stanford-corenlp-3.6.0-models.jar").read_bytes() == b"models"
    expected = {"stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar"} | {
        p.name for p in captions.nashorn_jars()
    }
    assert {p.name for p in lib.iterdir()} == expected
    assert get_spice.main(["--lib-dir", str(lib), "--nashorn"]) == 0 and "already installed" in capsys.readouterr().out


def test_get_spice_downloads_from_maven_central_urls(get_spice):
    assert get_spice.maven_url("org.openjdk.nashorn", "nashorn-core", "15.4") == (
        "https://repo1.maven.org/maven2/org/openjdk/nashorn/nashorn-core/15.4/nashorn-core-15.4.jar"
    )


def test_get_spice_rejects_a_wrong_zip(get_spice, tmp_path):
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("something/else.jar", b"x")
    with pytest.raises(SystemExit, match="has no stanford-corenlp-full-2015-12-09/stanford-corenlp-3.6.0"):
        get_spice.main(["--zip", str(archive), "--lib-dir", str(tmp_path / "lib"), "--no-nashorn"])


# ----------------------------------------------------------------------------- config targets


@pytest.mark.parametrize(
    "target",
    [
        "fastadasp.metrics.wer.corpus_wer",
        "fastadasp.metrics.bleu.corpus_bleu",
        "fastadasp.metrics.bleu.bleu_metric",
        "fastadasp.metrics.accuracy.answer_accuracy",
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
