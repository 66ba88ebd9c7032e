"""Languages: the LID parser and task, model.language on a tiny random multilingual Whisper,
and where the ASR task takes each sample's language from (its own, model.language, English)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from fastadasp.data.sample import Sample
from fastadasp.engine import Budget
from fastadasp.errors import ConfigError
from fastadasp.reduction import NoReduction
from fastadasp.tasks.parsing import LanguageAnswer

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
TRANSCRIBE_ES = "<|startoftranscript|><|es|><|transcribe|><|notimestamps|>"


def sample(labels=("de", "en", "es", "fr"), **extra) -> Sample:
    return Sample("s", Path("x.wav"), None, {"labels": list(labels), **extra} if labels is not None else extra)


# ---------------------------------------------------------------- the parser

@pytest.mark.parametrize("answer,want", [
    ("de", "de"), ("<|de|>", "de"), ("German.", "de"), ("Deutsch", "de"), ("  es-419 ", "es"),
    ("The speaker is speaking Spanish.", "es"), ("Castilian", "es"), ("Es español.", "es"),
    ("not French but German", "de"), ("It is not French.", None), ("French or German", None),
    ("Italian", None),  # a language outside the label set: unparsed
    ("I cannot tell.", None), ("", None),
])
def test_language_answer_maps_codes_and_names_to_the_label_set(answer, want):
    assert LanguageAnswer()(answer, sample()) == want


def test_language_answer_returns_the_label_as_the_set_spells_it():
    named = sample(labels=("German", "Spanish", "French"))
    assert LanguageAnswer()("de", named) == "German"
    assert LanguageAnswer()("Sounds like spanish to me", named) == "Spanish"
    assert LanguageAnswer()("pt", sample(labels=None)) == "pt"  # no label set: the code itself


# ---------------------------------------------------------------- the tasks' configs

def _task(name: str, model_language=None):
    from fastadasp.run.instantiate import instantiate
    from fastadasp.tasks.definition import Task

    task = OmegaConf.load(ROOT / f"configs/task/{name}.yaml")
    cfg = OmegaConf.create({"model": {"language": model_language}, "task": task})
    return Task.from_config(cfg.task, instantiate)


def test_lid_task_asks_whisper_for_the_language_and_scores_a_confusion_matrix():
    task = _task("lid")
    samples = [sample(language=lang) for lang in ("de", "de", "es", "fr")]
    assert task.prompt("whisper", samples[0]) == "<|startoftranscript|>"
    answers = [task.answer(text, s) for text, s in zip(["de", "German", "es", "it"], samples)]
    assert answers == ["de", "de", "es", None]
    scores = task.score([s.extra["language"] for s in samples], answers)
    assert (scores["accuracy"], scores["unparsed"]) == (75.0, 1)
    assert scores["confusion_matrix"]["matrix"] == [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]]
    assert pytest.approx(scores["unweighted_accuracy"]) == 200 / 3
    from fastadasp.tasks.definition import TaskDataError

    with pytest.raises(TaskDataError, match="needs field 'labels'"):
        task.check_dataset([Sample("x", Path("x.wav"), None, {"language": "de"})], "mine")


def test_asr_refuses_a_sample_whose_language_contradicts_model_language():
    from fastadasp.tasks.definition import TaskDataError

    german = [Sample(f"d{i}", Path("x.wav"), "Guten Tag", {"language": "de"}) for i in range(3)]
    want = r"model_language='fr', but 3 of 3 samples .* language='de'.*model.language"
    with pytest.raises(TaskDataError, match=want):
        _task("asr", "fr").check_dataset(german, "mine")
    for told in ("de", "DE", "auto", None):  # agreeing, detected, or unset: nothing to contradict
        _task("asr", told).check_dataset(german, "mine")


def test_asr_scores_each_sample_in_its_own_language():
    task = _task("asr")  # model.language unset
    refs, hyps = ["Das Rad ist grün!", "The colour is grey."], ["das rad ist grün", "the color is gray"]
    scores = task.score(refs, hyps, [{"language": "de"}, {}])
    assert scores["wer"] == 0.0 and scores["normalizer"] == "whisper_basic+whisper_en"
    assert scores["languages"] == {"de": 1, "en": 1} and scores["language_from"] == {"sample": 1, "default": 1}
    told = _task("asr", "de").score(["Das Rad ist grün!"], ["das rad ist grün"], [{}])
    assert told["language_from"] == {"setting": 1} and told["normalizer"] == "whisper_basic"


# ---------------------------------------------------------------- model.language on a tiny random multilingual Whisper

@pytest.fixture(scope="session")
def tiny_multilingual_dir(tmp_path_factory):
    """A random Whisper with base's vocabulary and tokenizer (multilingual ids) but tiny width."""
    from transformers import (
        WhisperConfig,
        WhisperForConditionalGeneration,
        WhisperTokenizerFast,
    )

    from fastadasp.models.ct2_whisper import WHISPER_BASE

    part1 = WHISPER_BASE.parts[0]
    try:
        tokenizer_file = part1.path().parent / "tokenizer.json"
    except ConfigError:
        pytest.skip(f"{part1.distribution} is not installed")
    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=51865, num_mel_bins=80, d_model=64, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
        max_source_positions=1500, max_target_positions=64, init_std=0.3,
        pad_token_id=50257, eos_token_id=50257, bos_token_id=50258, decoder_start_token_id=50258,
    )  # fmt: skip
    out = tmp_path_factory.mktemp("tiny_multilingual")
    WhisperForConditionalGeneration(config).eval().save_pretrained(out)
    special = "<|endoftext|>"
    WhisperTokenizerFast(tokenizer_file=str(tokenizer_file), unk_token=special, bos_token=special,
                         eos_token=special, pad_token=special).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_multilingual(tiny_multilingual_dir):
    from fastadasp.models.whisper import WhisperModel

    return WhisperModel(source=str(tiny_multilingual_dir), family="whisper")


def _with(model, **settings):
    """The same weights under other language settings."""
    import copy

    other = copy.copy(model)
    for key, value in settings.items():
        setattr(other, key, value)
    return other


def _audios(seconds=(3.0, 5.0), seed=0):
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(int(16000 * s))).astype(np.float32) for s in seconds]


def _decode_with(model, audio, language: str, max_new_tokens=6):
    """Reference: the stock pieces with the language token put in the prompt by hand."""
    from fastadasp.models.whisper_decode import greedy_decode

    hidden, _, _, _ = model.encode(model.featurize([audio]))
    special = model.special_tokens
    prompt = [special.sot, special.languages[language], special.transcribe, special.no_timestamps]
    out = greedy_decode(model.model, hidden, None, prompt, special.eot, max_new_tokens, model.suppress_ids,
                        model.suppress_begin_ids)
    return out.tokens[0]


def _generate(model, audios, prompt=TRANSCRIBE_ES, max_new_tokens=6):
    return model.generate(audios, prompt, NoReduction(), Budget(0.0), max_new_tokens)


def test_unset_language_keeps_the_prompts_and_a_code_replaces_it(tiny_multilingual):
    audio = _audios()[0]
    unset = _generate(tiny_multilingual, [audio])[0]
    assert unset.tokens == _decode_with(tiny_multilingual, audio, "es") and unset.extra["language"] == "es"
    german = _generate(_with(tiny_multilingual, language="de"), [audio])[0]
    assert german.tokens == _decode_with(tiny_multilingual, audio, "de") and german.extra["language"] == "de"
    assert german.tokens != unset.tokens  # the language token reached the decoder
    assert "language_probability" not in german.extra


def test_auto_detects_from_the_first_step_over_the_language_tokens(tiny_multilingual):
    from fastadasp.models.whisper_decode import detect_language

    model, audios = _with(tiny_multilingual, language="auto"), _audios()
    hidden, _, _, _ = model.encode(model.featurize(audios))
    ids, probs = detect_language(model.model, hidden, None, model.special_tokens.sot, model.special_tokens.language_ids)
    gens = _generate(model, audios)
    for gen, audio, i, p in zip(gens, audios, ids, probs):
        code = model.special_tokens.code_of(i)
        assert gen.extra["language"] == code and gen.extra["language_probability"] == pytest.approx(p)
        assert gen.tokens == _decode_with(model, audio, code)
    lid = _generate(tiny_multilingual, audios, "<|startoftranscript|>", max_new_tokens=5)
    assert [g.text for g in lid] == [g.extra["language"] for g in gens]  # identification = the same detection
    assert [g.tokens for g in lid] == [[i] for i in ids] and not any(g.hit_max_new_tokens for g in lid)


def test_long_audio_detects_once_per_sample_unless_asked(tiny_multilingual, monkeypatch):
    import fastadasp.models.whisper as whisper_module

    rows = []
    real = whisper_module.detect_language

    def counting(model, hidden, *args):
        rows.append(hidden.shape[0])
        return real(model, hidden, *args)

    monkeypatch.setattr(whisper_module, "detect_language", counting)
    audios = _audios((65.0, 4.0))  # 3 windows + 1
    once = _with(tiny_multilingual, language="auto", max_windows_per_batch=2)  # windows in batches of 2
    gens = _generate(once, audios)
    assert sum(rows) == 2 and gens[0].extra["windows"] == 3  # one detection per sample, across batches
    assert isinstance(gens[0].extra["language"], str) and "window_languages" not in gens[0].extra
    rows.clear()
    per_window = _with(once, detect_language_per_window=True)
    gens = _generate(per_window, audios)
    assert sum(rows) == 4 and gens[0].extra["windows"] == 3
    rows.clear()
    lid = _generate(once, audios, "<|startoftranscript|>")
    assert sum(rows) == 2 and "windows" not in lid[0].extra  # identification listens to the first 30 s only


def test_settings_that_cannot_work_are_one_line_errors(tiny_multilingual, tiny_multilingual_dir, tiny_whisper_dir):
    from fastadasp.models.whisper import WhisperModel

    audio = _audios()[:1]
    with pytest.raises(ConfigError, match="names no language; set model.language"):
        _generate(tiny_multilingual, audio, "<|startoftranscript|><|transcribe|><|notimestamps|>")
    with pytest.raises(ConfigError, match="needs <\\|transcribe\\|> or <\\|translate\\|>"):
        _generate(tiny_multilingual, audio, "<|startoftranscript|><|notimestamps|>")
    with pytest.raises(ConfigError, match="model.language=fr: this task asks .* which language is spoken"):
        _generate(_with(tiny_multilingual, language="fr"), audio, "<|startoftranscript|>")
    with pytest.raises(ConfigError, match="'klingon' is not one of"):
        WhisperModel(source=str(tiny_multilingual_dir), family="whisper", language="klingon")
    with pytest.raises(ConfigError, match="is multilingual; its prompts are model.family=whisper"):
        WhisperModel(source=str(tiny_multilingual_dir), family="whisper_en")
    # English-only (tiny.en's vocabulary): no language setting, no language or task token
    with pytest.raises(ConfigError, match="is English-only and takes no language setting"):
        WhisperModel(source=str(tiny_whisper_dir), language="auto")
    english = WhisperModel(source=str(tiny_whisper_dir))
    assert english.special_tokens.eot == 50256 and english.eos_id == 50256
    with pytest.raises(ConfigError, match="is English-only: its prompt .* may hold no language or task token"):
        _generate(english, audio, "<|startoftranscript|><|en|><|translate|><|notimestamps|>")
    assert "language" not in _generate(english, audio, "<|startoftranscript|><|notimestamps|>")[0].extra


def test_a_lid_run_records_the_detected_language_per_sample(tiny_multilingual, tmp_path):
    import soundfile

    from fastadasp.run.runner import evaluate

    samples = []
    for i, (audio, lang) in enumerate(zip(_audios((2.0, 3.0, 4.0)), ("de", "es", "fr"))):
        soundfile.write(tmp_path / f"{i}.wav", audio, 16000)
        samples.append(Sample(f"s{i}", tmp_path / f"{i}.wav", None, {"language": lang, "labels": ["de", "es", "fr"]}))
    metrics = evaluate(tiny_multilingual, _task("lid"), samples, NoReduction(), Budget(0.0), tmp_path / "run",
                       batch_size=2, log=lambda s: None)
    import json

    rows = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert all(r["prediction"] == r["language"] and 0 < r["language_probability"] <= 1 for r in rows)
    assert all(r["fields"]["labels"] == ["de", "es", "fr"] for r in rows)  # recorded: a run can be re-scored
    assert metrics["metrics"]["total"] == 3 and "confusion_matrix" in metrics["metrics"]


def test_identification_with_a_fixed_language_is_refused_before_the_model_loads(tiny_multilingual_dir, tmp_path,
                                                                                monkeypatch):
    import json

    import soundfile
    from conftest import compose_run

    from fastadasp.models.whisper import WhisperModel
    from fastadasp.run.runner import prepare

    soundfile.write(tmp_path / "a.wav", _audios((2.0,))[0], 16000)
    row = {"id": "a", "audio": str(tmp_path / "a.wav"), "language": "de", "labels": ["de", "fr"]}
    (tmp_path / "m.jsonl").write_text(json.dumps(row) + "\n")
    monkeypatch.setattr(WhisperModel, "__init__", lambda *a, **k: pytest.fail("the model must not load"))
    cfg = compose_run("model=whisper_hf", f"model.source={tiny_multilingual_dir}", "model.family=whisper",
                      "model.language=fr", "task=lid", "dataset=manifest", f"dataset.path={tmp_path / 'm.jsonl'}",
                      f"output_dir={tmp_path / 'run'}")
    with pytest.raises(ConfigError, match="model.language=fr: this task asks Whisper which language is spoken"):
        prepare(cfg, "manifest")
    ok = compose_run("model=whisper_hf", f"model.source={tiny_multilingual_dir}", "model.family=whisper",
                     "model.language=auto", "task=lid", "dataset=manifest", f"dataset.path={tmp_path / 'm.jsonl'}",
                     f"output_dir={tmp_path / 'run'}")
    assert prepare(ok, "manifest").samples[0].extra["labels"] == ["de", "fr"]
