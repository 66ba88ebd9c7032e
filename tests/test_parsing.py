"""Answer parsers: tables of free-text outputs, tricky ones included, and what each maps to."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastadasp.data.manifest import Sample
from fastadasp.metrics import exact_match
from fastadasp.tasks.parsing import ChoiceAnswer, LabelAnswer, ShortAnswer, TextAnswer, YesNoAnswer

MELD = ["neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust"]
IEMOCAP = ["neutral", "happy", "angry", "sad"]
CHOICES = ["a dog barking", "a hot dog", "rain", "birds singing"]


def sample(**extra) -> Sample:
    return Sample(id="utt1", audio_path=Path("/nonexistent/utt1.wav"), text=None, extra=extra)


def test_text_answer_strips_and_is_never_none():
    assert TextAnswer()("  Hello there.\n", sample()) == "Hello there."
    assert TextAnswer()("   ", sample()) == ""


@pytest.mark.parametrize(
    "prediction, meld, iemocap",
    [
        ("joy", "joy", "happy"),
        ("Joy.", "joy", "happy"),
        ("happy", "joy", "happy"),
        ("Happiness", "joy", "happy"),
        ("The speaker sounds joyful!", "joy", "happy"),
        ("The emotion is: Anger.", "anger", "angry"),
        ("mad", "anger", "angry"),
        ("sad, very sad", "sadness", "sad"),
        ("neutral", "neutral", "neutral"),
        ("calm", "neutral", "neutral"),
        ("She sounds disgusted.", "disgust", None),  # IEMOCAP 4-class has no disgust
        ("scared", "fear", None),
        ("afraid", "fear", None),
        ("surprised", "surprise", None),
        ("not happy but sad", "sadness", "sad"),  # a negated mention is dropped
        ("not very happy", None, None),
        ("isn\u2019t angry", None, None),
        ("no doubt, happy", "joy", "happy"),  # punctuation ends the negation's scope
        ("happy and sad", None, None),  # two different labels: ambiguous
        ("I'm not sure", None, None),
        ("She made it", None, None),  # "made" is not "mad"
        ("excited", None, "happy"),  # IEMOCAP's 4 classes merge excited into happy; MELD has no such class
        ("The speaker sounds excited!", None, "happy"),
        ("frustrated", None, None),  # IEMOCAP's fru is dropped from the 4 classes
        ("", None, None),
    ],
)
def test_label_answer(prediction, meld, iemocap):
    parse = LabelAnswer()
    assert parse(prediction, sample(labels=MELD)) == meld
    assert parse(prediction, sample(labels=IEMOCAP)) == iemocap


def test_label_answer_extra_synonyms_map_to_a_label_or_through_a_group():
    parse = LabelAnswer(synonyms={"excited": "happy", "thrilled": "joy"})
    assert parse("Excited!", sample(labels=IEMOCAP)) == "happy"  # (IEMOCAP's class definition says so anyway)
    assert parse("thrilled", sample(labels=IEMOCAP)) == "happy"  # joy -> happy in IEMOCAP's label set
    assert parse("thrilled", sample(labels=MELD)) == "joy"
    # "happy" is not a MELD label, so the target resolves through its group: excited -> happy -> joy
    assert parse("excited", sample(labels=MELD)) == "joy"
    assert LabelAnswer()("excited", sample(labels=MELD)) is None
    # a target that is neither a label nor a group word maps nothing
    assert LabelAnswer(synonyms={"gloomy": "melancholy"})("gloomy", sample(labels=MELD)) is None


def test_label_answer_multiword_label_and_missing_labels():
    parse = LabelAnswer()
    assert parse("I think it is very angry.", sample(labels=["very angry", "calm"])) == "very angry"
    with pytest.raises(ValueError, match="sample 'utt1' has no 'labels' field"):
        parse("happy", sample())


@pytest.mark.parametrize(
    "prediction, answer",
    [
        ("Yes, there is only one speaker.", "yes"),
        ("yes", "yes"),
        ("Yeah", "yes"),
        ("No.", "no"),
        ("Nope, two people.", "no"),
        ("No, there is only one speaker.", "no"),  # the first word decides
        ("Yes and no", "yes"),
        ("The answer is no.", "no"),
        ("Answer: yes", "yes"),
        ("There are two speakers.", "no"),
        ("Two different people are talking", "no"),
        ("Multiple voices can be heard", "no"),
        ("More than one speaker.", "no"),
        ("There is only one speaker in the audio clip.", "yes"),
        ("A single voice", "yes"),
        ("The same person speaks throughout", "yes"),
        ("There is not only one speaker", None),  # negated: not read either way
        ("One speaker asks, two speakers answer", None),  # both phrasings
        ("Noise in the background", None),
        ("I am not sure.", None),
        ("", None),
    ],
)
def test_yes_no_answer(prediction, answer):
    assert YesNoAnswer()(prediction, sample()) == answer


def test_yes_no_answer_without_speaker_phrases():
    parse = YesNoAnswer(speaker_phrases=False)
    assert parse("There are two speakers.", sample()) is None
    assert parse("Yes, only one.", sample()) == "yes"


@pytest.mark.parametrize(
    "prediction, letter",
    [
        ("B", "B"),
        ("b", "B"),
        ("(b)", "B"),
        ("B.", "B"),
        ("[C]", "C"),
        ("Answer: B", "B"),
        ("The answer is (C).", "C"),
        ("The answer is d.", "D"),
        ("option D", "D"),
        ("B) birds singing", "B"),  # the letter wins over the text
        ("A. rain", "A"),
        ("(A) or (B)", None),  # two stated letters: ambiguous
        ("E", None),  # only four choices
        ("A dog barking.", "A"),  # an article, then the text of choice A
        ("a hot dog", "B"),
        ("It sounds like rain.", "C"),
        ("a hot dog, not a dog barking", None),  # two choices' texts
        ("hot dog", "B"),  # equals choice B's text after dropping the article
        ("dog", None),
        ("Birds singing in the rain", None),  # C and D both occur
        ("I don't know", None),
        ("", None),
    ],
)
def test_choice_answer(prediction, letter):
    assert ChoiceAnswer()(prediction, sample(choices=CHOICES)) == letter


def test_choice_answer_prefers_the_longest_contained_choice():
    parse = ChoiceAnswer()
    assert parse("I hear a hot dog vendor", sample(choices=["dog", "hot dog", "cat"])) == "B"
    with pytest.raises(ValueError, match="sample 'utt1' has no 'choices' field"):
        parse("B", sample())


@pytest.mark.parametrize(
    "prediction, answer",
    [("The dog.", "dog"), ("Yes, it is.", "yes"), ("No", "no"), ("Three birds", "3 birds"), ("two", "2"),
     ("", None), ("  ", None), ("!!!", None), ("the", None)],
)
def test_short_answer(prediction, answer):
    assert ShortAnswer()(prediction, sample()) == answer


def test_short_answer_agrees_with_exact_match():
    refs = ["dog", "yes", "three birds", "rain"]
    preds = ["A dog!", "Yes, it is.", "3 birds.", "snow"]
    parsed = [ShortAnswer()(p, sample()) for p in preds]
    assert exact_match(refs, parsed) == exact_match(refs, preds)
    assert exact_match(refs, parsed)["correct"] == 3
