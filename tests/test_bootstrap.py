"""Per-sample statistics reproduce every corpus metric; the bootstrap interval and the paired
difference equal a direct computation on hand-made samples, are seeded, give exactly 0 for
identical runs and move the right way when one sample changes; BLEU comparisons run sacreBLEU's
own paired bootstrap and agree with it."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import sacrebleu
from fake_runs import REFERENCES, with_errors

from fastadasp.metrics import accuracy as accuracy_module
from fastadasp.metrics.bleu import bleu_metric, corpus_bleu
from fastadasp.metrics.samplewise import SampleStats, sample_stats, unsupported_reason
from fastadasp.metrics.uncertainty import (
    bootstrap_interval,
    paired_difference,
    percentile_interval,
    resample_counts,
)
from fastadasp.metrics.wer import corpus_wer

WER = partial(corpus_wer, normalizer="none")
IDS = list(REFERENCES)
REFS = list(REFERENCES.values())
KNOWN_EDITS = {"s00": 0, "s01": 1, "s02": 5, "s03": 0, "s04": 2, "s05": 10, "s06": 0, "s07": 3, "s08": 0, "s09": 1}


def wer_stats(edits: dict[str, int]) -> SampleStats:
    hyps = with_errors(edits)
    return sample_stats(WER, REFS, [hyps[k] for k in IDS], IDS, "wer")


def test_per_sample_edits_are_the_known_edits_and_sum_to_corpus_wer():
    stats = wer_stats(KNOWN_EDITS)
    assert stats.stats[:, 0].tolist() == [KNOWN_EDITS[k] for k in IDS]
    assert stats.stats[:, 1].tolist() == [10] * 10
    assert stats.value() == pytest.approx(100 * 22 / 100)
    assert stats.value() == WER(REFS, list(with_errors(KNOWN_EDITS).values()))["wer"]


def test_bootstrap_interval_equals_a_direct_computation_of_corpus_wer_per_resample():
    stats = wer_stats(KNOWN_EDITS)
    edits = np.array([KNOWN_EDITS[k] for k in IDS])
    words = np.full(10, 10)
    # direct: draw sample ids, sum edits and reference words of the drawn samples, sort, take the 25th/974th
    draws = np.random.default_rng(7).choice(10, size=(1000, 10), replace=True)
    direct = sorted(100 * edits[d].sum() / words[d].sum() for d in draws)
    assert bootstrap_interval(stats, 1000, seed=7) == pytest.approx((direct[25], direct[974]))
    # a corpus rate per resample, not a mean of per-sample rates (which would differ here)
    counts = resample_counts(10, 1000, 7)
    assert stats.value(counts)[0] == pytest.approx(100 * (counts[0] @ edits) / (counts[0] @ words))


def test_the_interval_is_seeded():
    stats = wer_stats(KNOWN_EDITS)
    assert bootstrap_interval(stats, 500, seed=3) == bootstrap_interval(stats, 500, seed=3)
    assert bootstrap_interval(stats, 500, seed=3) != bootstrap_interval(stats, 500, seed=4)
    assert paired_difference(stats, wer_stats({}), 500, 3) == paired_difference(stats, wer_stats({}), 500, 3)


def test_identical_runs_differ_by_exactly_zero():
    a, b = wer_stats(KNOWN_EDITS), wer_stats(KNOWN_EDITS)
    result = paired_difference(a, b)
    assert result.difference == 0.0 and result.interval == (0.0, 0.0)
    assert result.sign_flips is None and not result.excludes_zero
    assert result.a_interval == result.b_interval == bootstrap_interval(a)


def test_one_worse_sample_moves_the_difference_up_and_never_below_zero():
    a = wer_stats(KNOWN_EDITS)
    b = wer_stats({**KNOWN_EDITS, "s03": 4})  # one sample gets 4 more errors
    result = paired_difference(a, b)
    assert result.difference == pytest.approx(4.0)  # 4 more edits over 100 reference words
    low, high = result.interval
    assert 0.0 <= low <= result.difference <= high  # every resample: B has at least A's edits
    assert result.sign_flips == pytest.approx(np.mean(resample_counts(10)[:, IDS.index("s03")] == 0))
    better = paired_difference(b, a)  # the other way round: the mirror image
    assert better.difference == pytest.approx(-4.0) and better.interval == pytest.approx((-high, -low))


def test_a_clear_difference_excludes_zero_and_says_which_way():
    a = wer_stats({})
    b = wer_stats({k: 3 for k in IDS})
    result = paired_difference(a, b)
    assert result.interval == pytest.approx((30.0, 30.0)) and result.excludes_zero and result.sign_flips == 0.0
    assert "B is worse" in result.verdict
    assert "B is better" in paired_difference(b, a).verdict


def test_several_seeds_per_side_take_the_mean_of_each_resample():
    seeds = [wer_stats(KNOWN_EDITS), wer_stats({k: 2 for k in IDS}), wer_stats({})]
    counts = resample_counts(10, 1000, 5)
    direct = np.mean([s.value(counts) for s in seeds], axis=0)
    assert bootstrap_interval(seeds, 1000, 5) == percentile_interval(direct)
    result = paired_difference(wer_stats({}), seeds, 1000, 5)
    assert result.b == pytest.approx(np.mean([s.value() for s in seeds])) and result.b_runs == 3


def test_runs_on_other_samples_or_other_settings_are_refused():
    a = wer_stats(KNOWN_EDITS)
    with pytest.raises(ValueError, match="different samples: 1 only in A, 0 only in B"):
        paired_difference(a, a.subset(IDS[:-1]))
    other = sample_stats(partial(corpus_wer, normalizer="paper"), REFS, REFS, IDS, "wer")
    with pytest.raises(ValueError, match="different settings: normalizer: 'none' != 'paper'"):
        paired_difference(a, other)
    with pytest.raises(ValueError, match="resamples must be an integer >= 40"):
        bootstrap_interval(a, 10)


@pytest.mark.parametrize("normalizer,unit,languages", [
    ("whisper_en", "word", None), ("paper", "word", None), ("auto", "auto", ["en", "ja", None, "de"]),
    ("none", "char", None),
])
def test_wer_statistics_reproduce_corpus_wer_for_every_setting(normalizer, unit, languages):
    refs = ["The colour of money.", "これはペンです", "", "Guten Morgen, Welt"]
    hyps = ["the color of honey", "これはペン", "an insertion", "Guten Abend Welt!"]
    metric = partial(corpus_wer, normalizer=normalizer, unit=unit)
    extra = {"languages": languages} if languages else {}
    stats = sample_stats(metric, refs, hyps, ["a", "b", "c", "d"], "wer", **extra)
    corpus = metric(refs, hyps, **extra)
    assert stats.value() == pytest.approx(corpus["wer"])
    assert stats.stats[:, 1].sum() == corpus["ref_words"]
    assert stats.stats[:, 0].sum() == corpus["substitutions"] + corpus["deletions"] + corpus["insertions"]
    assert stats.per_sample()[2] == np.inf  # errors but no reference words


@pytest.mark.parametrize("metric,name,refs,hyps,extra", [
    (accuracy_module.accuracy, "accuracy", ["A", "B", "c", "D"], ["a", None, "C", "B"], {}),
    (partial(accuracy_module.classification_accuracy, labels=["joy", "anger"]), "accuracy",
     ["joy", "anger", "joy"], ["joy", "joy", None], {}),
    (accuracy_module.exact_match, "accuracy", [["two", "2"], "the cat", "yes"], ["2", "a cat", "Yes, it is."], {}),
    (accuracy_module.answer_accuracy, "accuracy", ["yes", "dog", "no"], ["Yes.", "cat", "yes"],
     {"annotator_answers": [["yes"], ["cat", "dog"], None]}),
    (accuracy_module.answer_accuracy, "accuracy_any_annotator", ["yes", "dog", "no"], ["Yes.", "cat", "yes"],
     {"annotator_answers": [["yes"], ["cat", "dog"], None]}),
    (accuracy_module.answer_accuracy, "accuracy_yes_no", ["yes", "dog", "no"], ["Yes.", "cat", "yes"], {}),
    (accuracy_module.answer_accuracy, "accuracy_open", ["yes", "dog", "no"], ["Yes.", "cat", "yes"], {}),
])
def test_accuracy_statistics_reproduce_the_metric(metric, name, refs, hyps, extra):
    stats = sample_stats(metric, refs, hyps, [str(i) for i in range(len(refs))], name, **extra)
    assert stats.value() == pytest.approx(metric(refs, hyps, **extra)[name])
    assert stats.higher_is_better


def test_a_metric_without_a_per_sample_form_is_named():
    assert "unweighted_accuracy" in unsupported_reason(accuracy_module.classification_accuracy, "unweighted_accuracy")
    assert "no per-sample form" in unsupported_reason(lambda r, h: {"x": 1.0}, "x")
    assert unsupported_reason(partial(corpus_wer, normalizer="none"), "wer") is None


# ---------------------------------------------------------------------------- BLEU: sacreBLEU's own test

BLEU_REFS = [f"the {w} sat on the mat near the {v} door today" for w, v in
             zip("cat dog fox owl hen cow pig ram elk bat".split(), "red blue green old new big small tall wide shut".split())]
BLEU_A = [r.replace("today", "yesterday") for r in BLEU_REFS]
BLEU_B = [r.replace("sat on", "stood by") if i % 2 else r for i, r in enumerate(BLEU_REFS)]


def bleu_stats(hyps: list[str]) -> SampleStats:
    return sample_stats(bleu_metric("en"), BLEU_REFS, hyps, [f"b{i}" for i in range(10)], "bleu")


def test_bleu_statistics_reproduce_sacrebleu_corpus_bleu():
    for hyps in (BLEU_A, BLEU_B):
        assert bleu_stats(hyps).value() == pytest.approx(corpus_bleu(BLEU_REFS, hyps, target_language="en")["bleu"])


def test_bleu_comparisons_run_sacrebleus_paired_bootstrap_and_agree_with_it(monkeypatch):
    import sacrebleu.significance as significance

    calls = []
    real = significance.PairedTest
    monkeypatch.setattr(significance, "PairedTest", lambda *a, **k: calls.append(k) or real(*a, **k))
    a, b = bleu_stats(BLEU_A), bleu_stats(BLEU_B)
    result = paired_difference(a, b, 1000, 12345)
    assert calls and calls[0]["test_type"] == "bs" and calls[0]["n_samples"] == 1000
    # the same comparison asked of sacreBLEU directly
    monkeypatch.setenv("SACREBLEU_SEED", "12345")
    direct = real([("A", BLEU_A), ("B", BLEU_B)], {"BLEU": sacrebleu.BLEU()}, references=[BLEU_REFS],
                  test_type="bs", n_samples=1000)()[1]["BLEU"]
    assert result.test["p_value"] == direct[1].p_value
    # the same resamples: sacreBLEU's bootstrap mean and CI half-width are those of our intervals
    assert result.test["b"]["mean"] == pytest.approx(direct[1].mean)
    assert (result.b_interval[1] - result.b_interval[0]) / 2 == pytest.approx(direct[1].ci)
    assert (result.a_interval[1] - result.a_interval[0]) / 2 == pytest.approx(direct[0].ci)
    # sacreBLEU's own single-system bootstrap CI (corpus_score with n_bootstrap) agrees too
    score = sacrebleu.BLEU().corpus_score(BLEU_B, [BLEU_REFS], n_bootstrap=1000)
    assert bootstrap_interval(b, 1000, 12345) == pytest.approx(result.b_interval)
    assert (result.b_interval[1] - result.b_interval[0]) / 2 == pytest.approx(score._ci)


def test_bleu_refuses_seed_zero_which_sacrebleu_reads_as_no_seed():
    with pytest.raises(ValueError, match="seed 0"):
        paired_difference(bleu_stats(BLEU_A), bleu_stats(BLEU_B), 100, 0)


@pytest.mark.skipif(__import__("shutil").which("java") is None, reason="CIDEr's PTB tokenizer needs java")
def test_cider_statistics_are_per_caption_scores_whose_mean_is_corpus_cider():
    from fastadasp.metrics.captions import caption_scores

    refs = [["a dog barks loudly", "a dog is barking"], ["rain falls on a roof", "heavy rain on a tin roof"],
            ["birds sing in the morning", "birds are chirping"]]
    hyps = ["a dog barks", "rain on a roof", "a car passes by"]
    metric = partial(caption_scores, spice=False)
    stats = sample_stats(metric, refs, hyps, ["x", "y", "z"], "cider")
    assert stats.value() == pytest.approx(metric(refs, hyps)["cider"])
    assert stats.stats[2, 0] < stats.stats[0, 0]  # the wrong caption scores lowest


def test_the_run_config_sets_resamples_seed_and_collapse_threshold_and_refuses_bad_ones():
    from omegaconf import OmegaConf

    from fastadasp.errors import ConfigError
    from fastadasp.run.config import validate

    assert validate(OmegaConf.create({})).statistics == (1000, 12345, 90.0)
    chosen = {"statistics": {"resamples": 200, "seed": 7, "collapse_threshold": 50}}
    assert validate(OmegaConf.create(chosen)).statistics == (200, 7, 50.0)
    for bad, key in (({"resamples": 0}, "statistics.resamples"), ({"seed": -1}, "statistics.seed"),
                     ({"collapse_threshold": -5}, "statistics.collapse_threshold")):
        with pytest.raises(ConfigError, match=key):
            validate(OmegaConf.create({"statistics": bad}))
