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


# Languages (issue 17): the basic normaliser for non-English text, per-sample languages, CER.

def test_basic_normaliser_keeps_accents_and_drops_punctuation():
    assert normalize("¿Sabes a qué hora cierra la farmacia?", "whisper_basic") == "sabes a qué hora cierra la farmacia"
    assert normalize("Wir fahren [laut] nach Berlin.", "auto", language="de") == "wir fahren nach berlin"
    assert normalize("The colour is grey", "auto", language=None) == "the color is gray"  # no language: English


def test_auto_follows_each_samples_language_then_the_setting_then_english():
    refs, hyps = ["The colour is grey.", "Le chat noir."], ["the color is gray", "le chat noir"]
    both = corpus_wer(refs, hyps, normalizer="auto", languages=["en", "fr"])
    assert both["wer"] == 0.0 and both["normalizer"] == "whisper_en+whisper_basic"
    assert both["languages"] == {"en": 1, "fr": 1} and both["per_language"]["fr"]["wer"] == 0.0
    # English spellings are not normalised for a French sample: grey != gray
    told = corpus_wer(["grey"], ["gray"], normalizer="auto", language="fr")
    assert told["wer"] == 100.0 and told["language_from"] == {"setting": 1}
    own = corpus_wer(["grey"], ["gray"], normalizer="auto", language="fr", languages=["en-GB"])
    assert own["wer"] == 0.0 and own["language_from"] == {"sample": 1}  # the sample's own language wins
    assert corpus_wer(["grey"], ["gray"], normalizer="auto", language="auto")["language_from"] == {"default": 1}


def test_character_error_rate_for_languages_without_spaces():
    ref, hyp = "我爱北京天安门。", "我爱北京天门"
    auto = corpus_wer([ref], [hyp], normalizer="auto", unit="auto", languages=["zh-CN"])
    assert auto["unit"] == "char" and auto["ref_words"] == 7 and auto["wer"] == pytest.approx(100 / 7)
    assert corpus_wer([ref], [hyp], normalizer="whisper_basic")["wer"] == 100.0  # one "word": useless
    # an explicit unit=char scores any language by characters (spaces not counted)
    chars = corpus_wer(["the cat"], ["the bat"], normalizer="none", unit="char")
    assert chars["ref_words"] == 6 and chars["wer"] == pytest.approx(100 / 6)
    with pytest.raises(ValueError, match="unknown unit"):
        corpus_wer(["a"], ["a"], unit="letters")
