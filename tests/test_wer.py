"""Corpus WER and the three normalisers."""

from __future__ import annotations

import pytest

from fastadasp.metrics.wer import corpus_wer, normalize


def test_one_substitution_in_four_words_is_25_percent():
    out = corpus_wer(["the cat sat down"], ["the cat sat up"], normalizer="none")
    assert out["wer"] == pytest.approx(25.0)
    assert (out["substitutions"], out["deletions"], out["insertions"], out["ref_words"]) == (1, 0, 0, 4)
    assert out["normalizer"] == "none"


def test_corpus_wer_is_total_edits_over_total_words():
    # 1 deletion in 2 words + 0 errors in 8 words = 10%, not the mean of 50% and 0%.
    out = corpus_wer(["a b", "c d e f g h i j"], ["a", "c d e f g h i j"], normalizer="none")
    assert out["wer"] == pytest.approx(10.0) and out["deletions"] == 1


def test_whisper_normaliser_ignores_case_punctuation_and_spelling():
    assert normalize("Hello, World!") == normalize("hello world") == "hello world"
    assert corpus_wer(["Hello, World!"], ["hello world"])["wer"] == 0.0
    assert normalize("The colour is grey") == "the color is gray"
    assert corpus_wer(["twenty five apples"], ["25 apples"])["wer"] == 0.0


def test_paper_normaliser():
    text = "<|startoftranscript|><|en|> Hello ,  World !<|endoftext|>"
    assert normalize(text, "paper") == "hello, world!"
    # punctuation is kept by the paper's normaliser, so this is one substitution
    assert corpus_wer(["Hello world."], ["hello world"], normalizer="paper")["substitutions"] == 1


def test_empty_references():
    out = corpus_wer(["", "a b"], ["x", "a b"], normalizer="none")
    assert (out["insertions"], out["ref_words"], out["wer"]) == (1, 2, pytest.approx(50.0))
    with pytest.raises(ValueError, match="no words"):
        corpus_wer(["", " ."], ["x", ""], normalizer="whisper_en")
    with pytest.raises(ValueError, match="no words"):
        corpus_wer([], [])


def test_bad_arguments():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        corpus_wer(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="unknown normalizer"):
        normalize("x", "bogus")
