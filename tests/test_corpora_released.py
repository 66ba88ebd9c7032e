"""Corpus readers against the quirks of the corpora as really released (issue 15, section 1).

Files are written as bytes with the real separators (U+0085, U+2028, U+2029, form
feed, CRLF, a newline inside a quoted field), never built with `str.splitlines`,
which is the fault under test. Most tests need no audio: the readers do not open
clips at load time. The ones that do use the miniature corpora of
`fastadasp.testing.fixtures` and skip without espeak-ng/sox.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from fastadasp.testing import fixtures
from fastadasp.data.audio import read_audio
from fastadasp.data.corpora import CorpusError
from fastadasp.data.corpora._common import SampleList, read_lines, read_table
from fastadasp.data.corpora.covost2 import (
    COVOST2_EN_X, COVOST2_PAIRS, COVOST2_X_EN, NOT_IN_VALIDATED, covost2_pair, load_covost2, pair_languages)
from fastadasp.data.corpora.iemocap import load_iemocap
from fastadasp.data.corpora.librispeech import load_librispeech
from fastadasp.data.corpora.meld import load_meld
from fastadasp.data.corpora.voxceleb_sv import build_sv_set, load_voxceleb_sv, read_trials
from fastadasp.run.datasets import load_dataset

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "dataset"
needs_tools = pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")),
                                 reason="fixtures need espeak-ng and sox")

# every character str.splitlines() breaks on besides \n and \r: none is a line break for csv
NOT_LINE_BREAKS = ["\u0085", "\u2028", "\u2029", "\x0c", "\x0b", "\x1c", "\x1d", "\x1e"]


# ---------------------------------------------------------------- tables (CSV/TSV)

MELD_HEADER = b"Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime"


def _meld_row(sr_no: int, utterance: bytes, dialogue: int, utt: int, emotion: bytes = b"neutral") -> bytes:
    return (b"%d,\"" % sr_no + utterance + b"\",Ross," + emotion + b",neutral,%d,%d,3,19,"
            b"\"00:14:15,055\",\"00:14:17,183\"" % (dialogue, utt))


def _meld_csv(tmp_path: Path, rows: list[bytes], newline: bytes = b"\r\n") -> Path:
    root = tmp_path / "MELD.Raw"
    root.mkdir(exist_ok=True)
    (root / "test_sent_emo.csv").write_bytes(newline.join([MELD_HEADER, *rows]) + newline)
    return root


def test_meld_with_u0085_inside_utterances_loads_every_row(tmp_path):
    """The pre-2020 MELD CSVs: U+0085 (UTF-8 C2 85) inside utterances, CRLF, one cp1252 line."""
    nel = "\u0085".encode("utf-8")
    rows = [_meld_row(1, b"Oh" + nel + b" my God" + nel, 0, 0),  # a final U+0085 too, as released
            _meld_row(2, b"I don\x92t know.", 0, 1),  # a cp1252 line (0x92 = right quote)
            _meld_row(3, b"Okay.", 1, 0),
            _meld_row(4, b"Wait" + nel + b" what?", 1, 1),
            _meld_row(5, b"Fine.", 2, 0)]
    root = _meld_csv(tmp_path, rows)
    raw = (root / "test_sent_emo.csv").read_bytes()
    assert raw.count(b"\r\n") == 6
    # the fault: str.splitlines() sees 9 lines where the file has 6
    assert len(raw.decode("utf-8", errors="replace").splitlines()) == 9
    samples = load_meld(root)
    assert len(samples) == 5
    assert [s.id for s in samples] == ["dia0_utt0", "dia0_utt1", "dia1_utt0", "dia1_utt1", "dia2_utt0"]
    by_id = {s.id: s.text for s in samples}
    assert by_id["dia0_utt0"] == "Oh… my God…" and by_id["dia1_utt1"] == "Wait… what?"
    assert by_id["dia0_utt1"] == "I don’t know."


def test_meld_error_after_u0085_rows_names_the_physical_line(tmp_path):
    nel = "\u0085".encode("utf-8")
    rows = [_meld_row(1, b"Oh" + nel + b"no" + nel + b"no", 0, 0),
            _meld_row(2, b"Two\nlines", 0, 1),  # a newline inside quotes: the row spans lines 3-4
            _meld_row(3, b"Bad label", 0, 2, emotion=b"happy")]  # physical line 5
    root = _meld_csv(tmp_path, rows)
    with pytest.raises(CorpusError, match=r"test_sent_emo\.csv:5: column Emotion: unknown label 'happy'"):
        load_meld(root)


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_read_table_keeps_every_separator_inside_fields(tmp_path, newline):
    """Each splitlines-only separator inside a quoted and an unquoted field, a quoted
    newline, CRLF or LF: one row per record, fields intact, start lines physical."""
    lines = [b"id,text,note"]
    expected = []
    for i, char in enumerate(NOT_LINE_BREAKS):
        encoded = char.encode("utf-8")
        lines.append(b"q%d,\"a" % i + encoded + b"b\",x" + encoded + b"y")
        expected.append((f"q{i}", f"a{char}b", f"x{char}y"))
    lines.append(b"multi,\"first" + newline + b"second\",z")  # spans two physical lines
    expected.append(("multi", "first" + newline.decode() + "second", "z"))
    lines.append(b"last,end,ok")
    expected.append(("last", "end", "ok"))
    path = tmp_path / "t.csv"
    path.write_bytes(newline.join(lines) + newline)
    rows = list(read_table(path, ("id", "text", "note")))
    assert [(r["id"], r["text"], r["note"]) for _, r in rows] == expected
    starts = [int(where.rsplit(":", 1)[1]) for where, _ in rows]
    n = len(NOT_LINE_BREAKS)
    assert starts == [*range(2, 2 + n), 2 + n, 4 + n]  # the row after the 2-line record starts 2 lines on


def test_read_table_errors_name_the_row_start(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"a,b\r\n1,\"x\r\ny\"\r\n2,3,4\r\n")  # the bad row starts on line 4
    with pytest.raises(CorpusError, match=r"t\.csv:4: expected 2 fields, got 3$"):
        list(read_table(path, ("a", "b")))
    path.write_bytes(b"a,b,c\n1,2,3\n4,\"oops\n7,8\",9,x\n10,11,12\n")  # a misplaced quote joins two lines
    with pytest.raises(CorpusError, match=r"t\.csv:3: expected 3 fields, got 4 \(the row spans lines 3-4"):
        list(read_table(path, ("a", "b", "c")))


def test_read_table_refuses_a_quote_left_open_to_the_end(tmp_path):
    """csv (non-strict) returns the rest of the file as one field: with the header's field
    count that row would pass, and every later row would be lost without a word."""
    path = tmp_path / "t.csv"
    path.write_bytes(b"a,b\n1,2\n3,\"unclosed\n4,5\n6,7\n")
    with pytest.raises(CorpusError, match=r"t\.csv:3: a quoted field opened on this line is never closed "
                                          r"\(it runs to the end of the file, line 5\)"):
        list(read_table(path, ("a", "b")))


def test_read_lines_splits_on_newline_only(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes("one\u2028still one\r\ntwo\x0cstill two\n\nfour\u0085".encode("utf-8"))
    assert read_lines(path) == ["one\u2028still one", "two\x0cstill two", "", "four\u0085"]
    path.write_bytes(b"fine\nbad \xff byte\n")
    with pytest.raises(CorpusError, match=r"x\.txt:2: not UTF-8"):
        read_lines(path)


# ---------------------------------------------------------------- LibriSpeech and IEMOCAP line files

def test_librispeech_crlf_and_unicode_separators(tmp_path):
    chapter = tmp_path / "LibriSpeech" / "test-clean" / "121" / "127105"
    chapter.mkdir(parents=True)
    (chapter / "121-127105.trans.txt").write_bytes(
        "121-127105-0000 HELLO\u2028WORLD\r\n121-127105-0001 SECOND\u0085LINE\r\n".encode("utf-8"))
    samples = load_librispeech(tmp_path / "LibriSpeech")
    assert [(s.id, s.text) for s in samples] == [("121-127105-0000", "HELLO\u2028WORLD"),
                                                 ("121-127105-0001", "SECOND\u0085LINE")]
    (chapter / "121-127105.trans.txt").write_bytes(
        "121-127105-0000 A\u2028B\n121-127105-0001\n".encode("utf-8"))
    with pytest.raises(CorpusError, match=r"121-127105\.trans\.txt:2: expected 'SPK-CHAPTER-UTT TRANSCRIPT'"):
        load_librispeech(tmp_path / "LibriSpeech")


def test_iemocap_crlf_and_unicode_separators(tmp_path):
    session = tmp_path / "IEMOCAP_full_release" / "Session5" / "dialog"
    (session / "EmoEvaluation").mkdir(parents=True)
    (session / "transcriptions").mkdir()
    label = "[1.0000 - 3.0000]\t{utt}\t{emo}\t[2.5000, 3.0000, 2.5000]"
    labels = ["% header", "", label.format(utt="Ses05F_impro01_F000", emo="neu"), "C-E1:\tNeutral;\u2028odd;\t()",
              label.format(utt="Ses05F_impro01_M000", emo="ang"), ""]
    (session / "EmoEvaluation" / "Ses05F_impro01.txt").write_bytes("\r\n".join(labels).encode("utf-8"))
    (session / "transcriptions" / "Ses05F_impro01.txt").write_bytes(
        "Ses05F_impro01_F000 [001.0000-003.0000]: Hello\u2028there.\r\n"
        "Ses05F_impro01_M000 [004.0000-006.0000]: Stop\u0085it.\r\n".encode("utf-8"))
    samples = load_iemocap(tmp_path / "IEMOCAP_full_release")
    assert [(s.id, s.extra["label"], s.text) for s in samples] == [
        ("Ses05F_impro01_F000", "neutral", "Hello\u2028there."), ("Ses05F_impro01_M000", "angry", "Stop\u0085it.")]
    labels[4] = labels[4].replace("\t[", "\t(")  # physical line 5
    (session / "EmoEvaluation" / "Ses05F_impro01.txt").write_bytes("\r\n".join(labels).encode("utf-8"))
    with pytest.raises(CorpusError, match=r"Ses05F_impro01\.txt:5: expected"):
        load_iemocap(tmp_path / "IEMOCAP_full_release")


# ---------------------------------------------------------------- CoVoST 2: pairs, splits, the join

CV_HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccent"


def _covost_root(tmp_path: Path, pair: str, rows: list[tuple[str, str, str, str]], validated: list[str] | None,
                 sentence_column: bool = True, folder: str = "cv") -> Path:
    """A CoVoST 2 release folder without audio: rows = (clip, sentence, translation, split);
    validated = the clips Common Voice lists (None: no validated.tsv)."""
    root = tmp_path / f"{folder}_{pair}"
    root.mkdir()
    header = "path\tsentence\ttranslation\tsplit" if sentence_column else "path\ttranslation\tsplit"
    body = [f"{c}\t{s}\t{t}\t{sp}" if sentence_column else f"{c}\t{t}\t{sp}" for c, s, t, sp in rows]
    (root / f"covost_v2.{pair}.tsv").write_bytes(("\n".join([header, *body]) + "\n").encode("utf-8"))
    if validated is not None:
        sentences = {c: s for c, s, _, _ in rows}
        lines = [CV_HEADER] + [f"spk{i}\t{c}\tCV: {sentences.get(c, '')}\t2\t0\t\t\t" for i, c in enumerate(validated)]
        (root / "validated.tsv").write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    return root


def test_covost2_pairs_are_the_official_36():
    assert len(COVOST2_X_EN) == 21 and len(COVOST2_EN_X) == 15 and len(set(COVOST2_PAIRS)) == 36
    assert {"zh-CN_en", "sv-SE_en", "en_zh-CN", "en_sv-SE", "fr_en", "cy_en", "en_ja"} <= set(COVOST2_PAIRS)
    assert covost2_pair("zh_en") == "zh-CN_en" and covost2_pair("en_sv") == "en_sv-SE"
    assert pair_languages("sv-SE_en") == ("sv", "en") and pair_languages("en_zh") == ("en", "zh")
    with pytest.raises(CorpusError, match=r"CoVoST 2 has no pair 'en_fr'; its pairs: fr_en, de_en, .*en_cy$"):
        covost2_pair("en_fr")
    with pytest.raises(CorpusError, match="must look like 'en_de'"):
        covost2_pair("french")


@pytest.mark.parametrize("source", COVOST2_X_EN)
def test_every_x_to_english_direction_loads(tmp_path, source):
    """All 21 X->en pairs in their release spelling, asked for by base code as task.pair writes them."""
    release, base = f"{source}_en", source.split("-")[0].lower()
    clips = [f"common_voice_{source}_{n}.mp3" for n in (2, 1)]
    root = _covost_root(tmp_path, release, [(clips[0], "src two", "two", "test"),
                                            (clips[1], "src one", "one", "test")], validated=clips)
    for asked in dict.fromkeys([f"{base}_en", release]):
        samples = load_covost2(root, pair=asked, split="test")
        assert [s.id for s in samples] == [Path(c).stem for c in sorted(clips)]
        assert [s.extra["translation"] for s in samples] == ["one", "two"]
        assert all(s.extra["source_language"] == base and s.extra["target_language"] == "en" for s in samples)
        assert samples[0].audio_path == root / "clips" / sorted(clips)[0]


@pytest.mark.parametrize("target", COVOST2_EN_X)
def test_every_english_to_x_direction_loads(tmp_path, target):
    base = target.split("-")[0].lower()
    root = _covost_root(tmp_path, f"en_{target}", [("common_voice_en_1.mp3", "one", "x", "test")],
                        validated=["common_voice_en_1.mp3"])
    (sample,) = load_covost2(root, pair=f"en_{base}")
    assert (sample.extra["source_language"], sample.extra["target_language"]) == ("en", base)


def test_covost2_train_includes_train_covost_rows(tmp_path):
    """get_covost_splits.py (version 2): train = split in {train, train_covost}; dev, test exact."""
    rows = [("a.mp3", "A", "a", "train"), ("b.mp3", "B", "b", "train_covost"), ("c.mp3", "C", "c", "dev"),
            ("d.mp3", "D", "d", "test"), ("e.mp3", "E", "e", "dev_covost")]
    root = _covost_root(tmp_path, "fr_en", rows, validated=[r[0] for r in rows])
    assert [s.id for s in load_covost2(root, pair="fr_en", split="train")] == ["a", "b"]
    assert [s.id for s in load_covost2(root, pair="fr_en", split="dev")] == ["c"]
    assert [s.id for s in load_covost2(root, pair="fr_en", split="test")] == ["d"]
    with pytest.raises(CorpusError, match=r"no rows for split 'validation' \(split values in the file: "
                                          r"dev, dev_covost, test, train, train_covost\)"):
        load_covost2(root, pair="fr_en", split="validation")


def test_covost2_join_takes_common_voice_sentences_and_drops_unlisted_clips(tmp_path, caplog):
    rows = [(f"x{i}.mp3", f"s{i}", f"t{i}", "test") for i in range(9)]
    listed = [r[0] for r in rows if r[0] not in ("x2.mp3", "x5.mp3", "x7.mp3")]
    root = _covost_root(tmp_path, "de_en", rows, validated=listed)
    with caplog.at_level(logging.WARNING):
        samples = load_covost2(root, pair="de_en", limit=2)
    assert isinstance(samples, SampleList) and [s.id for s in samples] == ["x0", "x1"]
    assert samples.dropped == {NOT_IN_VALIDATED: ["x2", "x5", "x7"]}  # the whole split, not the limit
    assert samples[0].text == "CV: s0" and samples[0].extra["client_id"] == "spk0"  # Common Voice's, as the script
    (record,) = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert "dropped 3 of 9 rows: 3 clip not in Common Voice's validated.tsv (e.g. x2, x5, x7)" in record.getMessage()
    assert "covost_v2.de_en.tsv" in record.getMessage()


def test_covost2_release_without_validated(tmp_path):
    rows = [("x1.mp3", "own sentence", "t", "test")]
    root = _covost_root(tmp_path, "fr_en", rows, validated=None)
    (sample,) = load_covost2(root, pair="fr_en")  # the TSV's own sentences, nothing to join
    assert sample.text == "own sentence" and load_covost2(root, pair="fr_en").dropped == {}
    bare = _covost_root(tmp_path, "fr_en", rows, validated=None, sentence_column=False, folder="bare")
    with pytest.raises(CorpusError, match=r"covost_v2\.fr_en\.tsv is the released TSV and needs Common Voice's "
                                          r"validated\.tsv .*not found: .*validated\.tsv"):
        load_covost2(bare, pair="fr_en")
    with pytest.raises(CorpusError, match=r"not found: .*elsewhere\.tsv"):
        load_covost2(root, pair="fr_en", cv_tsv=tmp_path / "elsewhere.tsv")


def test_covost2_every_clip_unlisted_is_an_error(tmp_path):
    root = _covost_root(tmp_path, "fr_en", [("x1.mp3", "s", "t", "test"), ("x2.mp3", "s", "t", "test")],
                        validated=["other.mp3"])
    with pytest.raises(CorpusError, match=r"none of the 2 rows of split 'test' has its clip in .*validated\.tsv "
                                          r"\(it must be the Common Voice folder of the source language 'fr'"):
        load_covost2(root, pair="fr_en")


def test_load_dataset_reports_dropped_rows_in_info(tmp_path):
    """What the runner writes to metrics.json["dataset"] (and the run identity)."""
    rows = [(f"x{i}.mp3", f"s{i}", f"t{i}", "test") for i in range(8)]
    root = _covost_root(tmp_path, "en_de", rows, validated=[r[0] for r in rows[:1]])
    node = OmegaConf.create({"limit": None, "dataset": OmegaConf.load(CONFIGS / "covost2.yaml")})
    node.dataset.root = str(root)
    node.dataset.pair = "en_de"
    samples, info = load_dataset(node.dataset)
    assert type(samples) is list and [s.id for s in samples] == ["x0"]
    assert info["dropped"] == {"count": 7, "reasons": {NOT_IN_VALIDATED: {
        "count": 7, "examples": ["x1", "x2", "x3", "x4", "x5"]}}}
    assert info["name"] == "covost2" and info["pair"] == "en_de"
    (root / "validated.tsv").write_bytes((CV_HEADER + "\n" + "".join(
        f"s\t{c}\tx\t1\t0\t\t\t\n" for c, *_ in rows)).encode())
    assert "dropped" not in load_dataset(node.dataset)[1]  # nothing dropped: the identity is unchanged


@needs_tools
def test_covost2_released_fixture_end_to_end(tmp_path):
    fixture = fixtures.build_covost2(tmp_path, full_tsv=True)
    assert (fixture.root / "validated.tsv").is_file() and fixture.dropped
    samples = load_covost2(fixture.root, **fixture.kwargs)
    assert [s.id for s in samples] == list(fixture.expected) and samples.dropped == fixture.dropped
    for sample in samples:
        for key, value in fixture.expected[sample.id].items():
            assert (sample.text if key == "text" else sample.extra[key]) == value
    assert [s.id for s in load_covost2(fixture.root, pair="en_de", split="train")] == \
        ["common_voice_en_18000001", "common_voice_en_18000002"]  # the train and the train_covost row


@needs_tools
def test_covost2_french_to_english_fixture(tmp_path):
    fixture = fixtures.build_covost2(tmp_path, full_tsv=True, pair="fr_en")
    samples = load_covost2(fixture.root, **fixture.kwargs)
    assert [s.id for s in samples] == list(fixture.expected)
    assert all(s.id.startswith("common_voice_fr_") for s in samples)
    assert {(s.extra["source_language"], s.extra["target_language"]) for s in samples} == {("fr", "en")}
    assert samples.dropped == fixture.dropped
    audio = samples[0].load_audio(16000)
    assert 0.5 * 16000 < len(audio) and np.abs(audio).max() > 0.01


@needs_tools
def test_meld_fixture_holds_u0085(tmp_path):
    fixture = fixtures.build_meld(tmp_path)
    assert b"\xc2\x85" in (fixture.root / "test_sent_emo.csv").read_bytes()
    samples = load_meld(fixture.root)
    assert len(samples) == len(fixture.expected) == 4
    assert samples[-1].text == "Wait… what?"


# ---------------------------------------------------------------- VoxCeleb1 trial lists

@pytest.fixture(scope="module")
def vox(tmp_path_factory) -> fixtures.CorpusFixture:
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        pytest.skip("fixtures need espeak-ng and sox")
    return fixtures.build_voxceleb(tmp_path_factory.mktemp("vox"), trials=True)


def test_sv_from_a_trial_list(vox, tmp_path):
    samples = load_voxceleb_sv(vox.root, out_dir=tmp_path, **vox.kwargs)
    assert [s.id for s in samples] == list(vox.expected)
    wav_root = vox.root / "wav"
    for sample in samples:
        want = vox.expected[sample.id]
        assert {k: sample.extra[k] for k in want} == want
        assert sample.extra["trial_line"] == int(sample.id[len("trial"):])
        parts = [len(read_audio(wav_root / rel)) for rel in sample.extra["sources"]]
        assert len(sample.load_audio()) == sum(parts)  # enrolment then test, joined as the built set
    assert vox.overrides()[-3:] == [f"dataset.trials={vox.kwargs['trials']}", "dataset.n=null", "dataset.seed=0"]


def test_sv_trial_subset_is_balanced_seeded_and_in_file_order(vox, tmp_path):
    trials = vox.kwargs["trials"]
    picked = load_voxceleb_sv(vox.root, out_dir=tmp_path, trials=trials, n=4, seed=0)
    assert sorted(s.extra["answer"] for s in picked) == ["no", "no", "yes", "yes"]
    assert [s.id for s in picked] == sorted(s.id for s in picked)
    assert all(s.id in vox.expected for s in picked)
    draws = {tuple(s.id for s in load_voxceleb_sv(vox.root, out_dir=tmp_path, trials=trials, n=4, seed=k))
             for k in range(6)}
    assert len(draws) > 1
    with pytest.raises(CorpusError, match=r"n=8 needs 4 trials of each label, the list has 3 with label 1"):
        load_voxceleb_sv(vox.root, out_dir=tmp_path, trials=trials, n=8)
    with pytest.raises(ValueError, match="n=null only with a trial list"):
        build_sv_set(vox.root, tmp_path, n=None)


def test_sv_trial_cache_follows_the_list_content(vox, tmp_path):
    trials = tmp_path / "veri_test2.txt"
    shutil.copy(vox.kwargs["trials"], trials)
    first = build_sv_set(vox.root, tmp_path / "out", n=None, trials=trials)
    stamp = first.stat().st_mtime_ns
    assert build_sv_set(vox.root, tmp_path / "out", n=None, trials=trials) == first
    assert first.stat().st_mtime_ns == stamp  # re-used
    lines = trials.read_bytes().split(b"\n")
    trials.write_bytes(b"\n".join(lines[:-2] + [b""]))  # one trial fewer, same file name
    second = build_sv_set(vox.root, tmp_path / "out", n=None, trials=trials)
    assert second.parent != first.parent
    assert len(load_voxceleb_sv(vox.root, out_dir=tmp_path / "out", trials=trials, n=None)) == 5
    assert build_sv_set(vox.root, tmp_path / "out", n=4, seed=0).parent.name.startswith("sv_n4_seed0_")


def test_sv_trial_list_parsing(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes(b"1 id1/v/1.wav id1/v/2.wav\r\n\r\n0 id1/v/1.wav id2/v/1.wav\r\n")
    trials = read_trials(path)
    assert [(t.line, t.label, t.enrolment, t.test, t.answer) for t in trials] == [
        (1, "1", "id1/v/1.wav", "id1/v/2.wav", "yes"), (3, "0", "id1/v/1.wav", "id2/v/1.wav", "no")]
    bad = {
        b"1 id1/v/1.wav\n": r"list\.txt:2: expected 'LABEL ENROLMENT TEST'",
        b"2 id1/v/1.wav id1/v/2.wav\n": r"list\.txt:2: expected 'LABEL ENROLMENT TEST' with label 1",
        b"1 /abs/id1/v/1.wav id1/v/2.wav\n": r"list\.txt:2: expected a wav path relative to the wav folder",
        b"0 id1/v/1.wav id1/../x.wav\n": r"list\.txt:2: expected a wav path relative",
        b"1 id1/v/1.wav id2/v/1.wav\n": r"list\.txt:2: label 1 says same speaker, but the paths name id1 and id2",
        b"0 id1/v/1.wav id1/v/2.wav\n": r"list\.txt:2: label 0 says different speaker",
        b"1 id1/v/1.wav id1/v/1.wav\n": r"list\.txt:2: enrolment and test are the same clip",
    }
    for line, pattern in bad.items():
        path.write_bytes(b"1 id1/v/1.wav id1/v/2.wav\n" + line)
        with pytest.raises(CorpusError, match=pattern):
            read_trials(path)
    path.write_bytes(b"\n\n")
    with pytest.raises(CorpusError, match=r"list\.txt: no trials"):
        read_trials(path)
    with pytest.raises(CorpusError, match=r"SV trial list not found"):
        read_trials(tmp_path / "none.txt")


def test_sv_trial_naming_a_missing_wav_stops_the_load(vox, tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes(b"1 id10270/5r0dWxy17C8/00001.wav id10270/Zf2bXfIUB2A/00002.wav\n"
                     b"0 id10270/5r0dWxy17C8/00001.wav id10999/gone/00001.wav\n")
    with pytest.raises(CorpusError, match=r"list\.txt: 1 clip\(s\) named by the chosen trials are not under "
                                          r".*wav: id10999/gone/00001\.wav \(line 2\)"):
        load_voxceleb_sv(vox.root, out_dir=tmp_path, trials=path, n=None)
    assert not any((tmp_path).glob("sv_*"))  # nothing built


def test_sv_config_takes_a_trial_list(vox, tmp_path):
    node = OmegaConf.create({"limit": None, "data_root": str(tmp_path),
                             "dataset": OmegaConf.load(CONFIGS / "voxceleb_sv.yaml")})
    assert node.dataset.trials is None  # default: the built pairs
    node.dataset.root = str(vox.root)
    node.dataset.trials = vox.kwargs["trials"]
    node.dataset.n = None
    samples, info = load_dataset(node.dataset)
    assert [s.id for s in samples] == list(vox.expected)
    assert info["trials"] == vox.kwargs["trials"] and "dropped" not in info
    assert os.path.isdir(tmp_path / "voxceleb_sv")


@needs_tools
def test_dropped_rows_reach_metrics_json(tmp_path):
    """The count travels reader -> load_dataset -> runner -> metrics.json["dataset"]["dropped"]."""
    from hydra import compose, initialize_config_dir

    from fastadasp.run.runner import ModelCache, main

    fixture = fixtures.build_covost2(tmp_path, full_tsv=True)
    out = tmp_path / "run"
    with initialize_config_dir(config_dir=str(CONFIGS.parent), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "model=tiny_qwen2_audio", "task=st", *fixture.overrides(), "method=none", "task.max_new_tokens=2",
            f"output_dir={out}", f"data_root={tmp_path / 'data_root'}"])
    main(cfg, model_cache=ModelCache())
    on_disk = json.loads((out / "metrics.json").read_text())
    (reason, ids), = fixture.dropped.items()
    assert on_disk["dataset"]["dropped"] == {"count": 1, "reasons": {reason: {"count": 1, "examples": ids}}}
    assert on_disk["num_samples"] == len(fixture.expected)
