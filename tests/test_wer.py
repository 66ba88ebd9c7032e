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


# The "whisper_en" normaliser is whisper_normalizer's own class; it must give what the
# previous implementation (transformers' copy fed whisper_normalizer's spelling map) gave.
WHISPER_CASES = [
    "Hello, World!",
    "The colour is grey; she organised the centre's theatre.",
    "twenty five apples and one hundred and three pears",
    "I won't go, Mr. Smith's car cost $20 million.",
    "It's 3.5 percent, one oh one, 1,000,000 people, 2nd place",
    "The 1960s were the twenty-fourth (or so) [noise] uh years",
    "café naïve résumé — ok?",
    "MR. AND MRS. JONES paid £5 and €10",
]


@pytest.mark.parametrize("text", WHISPER_CASES)
def test_whisper_normaliser_matches_transformers_copy_with_the_same_spelling_map(text):
    import json
    from importlib.resources import files

    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    spelling = json.loads(files("whisper_normalizer").joinpath("normalizers", "english.json").read_text("utf-8"))
    assert normalize(text) == EnglishTextNormalizer(spelling)(text)


def test_whisper_normaliser_known_outputs():
    assert normalize("I won't pay $20 million, Mr. Smith.") == "i will not pay $20000000 mister smith"
    assert normalize("one oh one colours") == "101 colors"


def test_corpus_wer_equals_jiwer_on_normalised_text():
    import jiwer

    refs = ["The colour is grey.", "twenty five apples", "a b c d e"]
    hyps = ["the color is gray", "25 apple", "a x c e f g"]
    expected = 100 * jiwer.wer([normalize(r) for r in refs], [normalize(h) for h in hyps])
    assert corpus_wer(refs, hyps)["wer"] == pytest.approx(expected)
