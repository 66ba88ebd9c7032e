"""CoVoST 2 (speech translation on Common Voice clips) as downloaded, all 36 directions.

`root` is the Common Voice folder of the SOURCE language (`cv-corpus-4/en/` for
en->X, `.../fr/` for fr->en): `clips/*.mp3`, `validated.tsv`, and the CoVoST 2
TSV of the pair in its release spelling (`covost_v2.en_de.tsv`,
`covost_v2.zh-CN_en.tsv`; `COVOST2_PAIRS`). A pair may be written with base
codes too ("zh_en", "en_sv"). Two TSV shapes are read:

- the split script's output `covost_v2.<pair>.<split>.tsv` (path, sentence,
  translation, client_id): already joined, read as is;
- the released `covost_v2.<pair>.tsv` with a `split` column, joined with
  Common Voice's `validated.tsv` as the official `get_covost_splits.py` does
  (an inner join on `path`; sentence and client_id from Common Voice). Like that
  script and the public loaders, split=train takes the rows marked `train` AND
  `train_covost`; dev and test take their own value only. A row whose clip
  `validated.tsv` does not list is dropped (the join drops it), counted, logged
  and reported in the run's dataset info (`dropped`, see `_common.SampleList`).
  Without `validated.tsv`, the TSV's own sentence column is used (nothing dropped).

TSVs are read like the official tooling: tab separated, QUOTE_NONE, backslash
escapes, since sentences contain bare quotes.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..manifest import Sample
from ._common import CorpusError, apply_limit, check_limit, read_table, require_dir

__all__ = ["COVOST2_EN_X", "COVOST2_PAIRS", "COVOST2_X_EN", "NOT_IN_VALIDATED", "covost2_pair",
           "load_covost2", "pair_languages"]

#: source languages of the 21 X->en directions, release spelling (get_covost_splits.py, version 2)
COVOST2_X_EN: tuple[str, ...] = ("fr", "de", "es", "ca", "it", "ru", "zh-CN", "pt", "fa", "et", "mn", "nl",
                                 "tr", "ar", "sv-SE", "lv", "sl", "ta", "ja", "id", "cy")
#: target languages of the 15 en->X directions, release spelling
COVOST2_EN_X: tuple[str, ...] = ("de", "ca", "zh-CN", "fa", "et", "mn", "tr", "ar", "sv-SE", "lv", "sl", "ta",
                                 "ja", "id", "cy")
#: every CoVoST 2 pair as its TSV spells it: "fr_en", ..., "zh-CN_en", "en_de", ..., "en_sv-SE"
COVOST2_PAIRS: tuple[str, ...] = (tuple(f"{x}_en" for x in COVOST2_X_EN)
                                  + tuple(f"en_{x}" for x in COVOST2_EN_X))
#: the reason recorded for rows whose clip Common Voice's validated.tsv does not list
NOT_IN_VALIDATED = "clip not in Common Voice's validated.tsv"

_TSV = dict(delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
_TRAIN_SPLITS = ("train", "train_covost")  # get_v2_split("train") in get_covost_splits.py


def _base(code: str) -> str:
    """Primary language subtag, lower case: "zh-CN" -> "zh", "sv_SE" -> "sv"."""
    return code.replace("_", "-").split("-")[0].strip().lower()


def _spellings() -> dict[str, str]:
    """Lower-case spelling -> release code: "zh-cn" and "zh" -> "zh-CN", "de" -> "de"."""
    codes = dict.fromkeys(("en", *COVOST2_X_EN, *COVOST2_EN_X))
    table = {_base(code): code for code in codes}
    table.update({code.lower(): code for code in codes})
    return table


_RELEASE_CODE = _spellings()


def covost2_pair(pair: str) -> str:
    """The release spelling of a CoVoST 2 pair ("zh_en" -> "zh-CN_en", "en_sv" -> "en_sv-SE").

    Raises CorpusError, listing the pairs, for anything CoVoST 2 does not have.
    """
    source, sep, target = str(pair).partition("_")
    if not sep or not source or not target:
        raise CorpusError(f"CoVoST 2 pair must look like 'en_de' or 'fr_en', got {pair!r}")
    release = f"{_RELEASE_CODE.get(source.lower(), source)}_{_RELEASE_CODE.get(target.lower(), target)}"
    if release not in COVOST2_PAIRS:
        raise CorpusError(f"CoVoST 2 has no pair {pair!r}; its pairs: {', '.join(COVOST2_PAIRS)}")
    return release


def pair_languages(pair: str) -> tuple[str, str]:
    """(source, target) base codes of a CoVoST 2 pair: "zh-CN_en" -> ("zh", "en")."""
    source, target = covost2_pair(pair).split("_")
    return _base(source), _base(target)


def _find_tsv(root: Path, pair: str, split: str, spellings: list[str]) -> tuple[Path, bool]:
    """(tsv, has_split_column): the per-split TSV if present, else the full one."""
    for name in spellings:
        if (root / f"covost_v2.{name}.{split}.tsv").is_file():
            return root / f"covost_v2.{name}.{split}.tsv", False
    for name in spellings:
        if (root / f"covost_v2.{name}.tsv").is_file():
            return root / f"covost_v2.{name}.tsv", True
    tried = [f"covost_v2.{n}.{split}.tsv" for n in spellings] + [f"covost_v2.{n}.tsv" for n in spellings]
    raise CorpusError(f"no CoVoST 2 TSV for pair {pair!r} split {split!r} in {root} "
                      f"(looked for {', '.join(tried)})")


def _cv_sentences(cv_tsv: Path, wanted: set[str]) -> dict[str, tuple[str, str]]:
    """path -> (sentence, client_id) from Common Voice's validated.tsv, for the wanted clips only."""
    return {row["path"]: (row["sentence"], row.get("client_id", ""))
            for _, row in read_table(cv_tsv, ("path", "sentence"), **_TSV) if row["path"] in wanted}


def _split_rows(tsv: Path, rows: list[tuple[str, dict[str, str]]], split: str) -> list[tuple[str, dict[str, str]]]:
    """The rows of one split of the released TSV (train = train + train_covost)."""
    accepted = _TRAIN_SPLITS if split == "train" else (split,)
    chosen = [(where, row) for where, row in rows if row["split"].strip() in accepted]
    if not chosen:
        seen = sorted({row["split"].strip() for _, row in rows})
        raise CorpusError(f"{tsv}: no rows for split {split!r} (split values in the file: {', '.join(seen) or 'none'})")
    return chosen


def load_covost2(
    root: str | Path,
    pair: str = "en_de",
    split: str = "test",
    limit: int | None = None,
    clips_dir: str = "clips",
    cv_tsv: str | Path | None = None,
) -> list[Sample]:
    """Samples of one CoVoST 2 pair/split, sorted by clip name (a `SampleList`).

    text = the source sentence; extra: translation, source_language and
    target_language (base codes: "fr", "zh", "en"), client_id. `cv_tsv`: Common
    Voice's validated.tsv if not in root.
    """
    check_limit(limit)
    release = covost2_pair(pair)
    root = require_dir(Path(root).expanduser(), "CoVoST 2 root")
    source_language, target_language = pair_languages(release)
    spellings = list(dict.fromkeys([release, str(pair)]))
    tsv, full_release = _find_tsv(root, str(pair), split, spellings)
    required = ("path", "translation", "split") if full_release else ("path", "sentence", "translation")
    rows = list(read_table(tsv, required, **_TSV))
    if full_release:
        rows = _split_rows(tsv, rows, split)
    elif not rows:
        raise CorpusError(f"{tsv}: no rows for split {split!r}")
    for where, row in rows:
        row["path"] = row["path"].strip()
        if not row["path"]:
            raise CorpusError(f"{where}: empty 'path'")
    sentences: dict[str, tuple[str, str]] | None = None
    cv_path: Path | None = None
    if full_release:
        cv_path = Path(cv_tsv).expanduser() if cv_tsv is not None else root / "validated.tsv"
        if cv_path.is_file():
            sentences = _cv_sentences(cv_path, {row["path"] for _, row in rows})
        elif cv_tsv is not None or "sentence" not in rows[0][1]:
            raise CorpusError(f"{tsv} is the released TSV and needs Common Voice's validated.tsv "
                              f"(for the sentences and the official join); not found: {cv_path}")
    clips = root / clips_dir
    samples, not_listed = [], []
    for where, row in rows:
        clip = row["path"]
        if sentences is not None:
            if clip not in sentences:
                not_listed.append(Path(clip).stem)
                continue
            sentence, client_id = sentences[clip]
        else:
            sentence, client_id = row["sentence"], row.get("client_id", "")
        extra = {"translation": row["translation"], "source_language": source_language,
                 "target_language": target_language, "client_id": client_id}
        samples.append(Sample(Path(clip).stem, clips / clip, sentence, extra))
    if not samples and not_listed:
        raise CorpusError(f"{tsv}: none of the {len(rows)} rows of split {split!r} has its clip in "
                          f"{cv_path} (it must be the Common Voice folder of the source language {source_language!r}, "
                          "from the release CoVoST 2 was built on: Common Voice 4)")
    samples.sort(key=lambda s: s.id)
    return apply_limit(samples, limit, tsv, dropped={NOT_IN_VALIDATED: sorted(not_listed)})
