"""CoVoST 2 (X->Y speech translation on Common Voice clips) as downloaded.

`root` holds the Common Voice `clips/*.mp3` and the CoVoST 2 TSV of the pair:
either the split-script output `covost_v2.en_de.test.tsv` (columns path,
sentence, translation, client_id) or the released `covost_v2.en_de.tsv` with a
`split` column (its sentences, when absent, come from Common Voice's
`validated.tsv` in `root`). TSVs are read like the official tooling: tab
separated, QUOTE_NONE, backslash escapes, since sentences contain bare quotes.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..manifest import Sample
from ._common import CorpusError, apply_limit, check_limit, read_table, require_dir

__all__ = ["load_covost2"]

# The released TSVs spell two targets with a region; users may write either.
_PAIR_ALIASES = {"en_zh": "en_zh-CN", "en_sv": "en_sv-SE"}
_TSV = dict(delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")


def _pair_names(pair: str) -> list[str]:
    names = [pair]
    if pair in _PAIR_ALIASES:
        names.append(_PAIR_ALIASES[pair])
    names += [k for k, v in _PAIR_ALIASES.items() if v == pair]
    return names


def _find_tsv(root: Path, pair: str, split: str) -> tuple[Path, bool]:
    """(tsv, has_split_column): the per-split TSV if present, else the full one."""
    names = _pair_names(pair)
    for name in names:
        if (root / f"covost_v2.{name}.{split}.tsv").is_file():
            return root / f"covost_v2.{name}.{split}.tsv", False
    for name in names:
        if (root / f"covost_v2.{name}.tsv").is_file():
            return root / f"covost_v2.{name}.tsv", True
    tried = [f"covost_v2.{n}.{split}.tsv" for n in names] + [f"covost_v2.{n}.tsv" for n in names]
    raise CorpusError(f"no CoVoST 2 TSV for pair {pair!r} split {split!r} in {root} "
                      f"(looked for {', '.join(tried)})")


def _cv_sentences(cv_tsv: Path) -> dict[str, tuple[str, str]]:
    """path -> (sentence, client_id) from Common Voice's validated.tsv."""
    return {row["path"]: (row["sentence"], row.get("client_id", ""))
            for _, row in read_table(cv_tsv, ("path", "sentence"), **_TSV)}


def load_covost2(
    root: str | Path,
    pair: str = "en_de",
    split: str = "test",
    limit: int | None = None,
    clips_dir: str = "clips",
    cv_tsv: str | Path | None = None,
) -> list[Sample]:
    """Samples of one CoVoST 2 pair/split, sorted by clip name.

    text = the source sentence, extra: translation, source_language,
    target_language (base code: "de", "zh"), client_id.
    """
    check_limit(limit)
    root = require_dir(Path(root).expanduser(), "CoVoST 2 root")
    if "_" not in pair:
        raise ValueError(f"pair must look like 'en_de', got {pair!r}")
    source_language, target = pair.split("_", 1)
    tsv, filter_split = _find_tsv(root, pair, split)
    required = ("path", "translation", "split") if filter_split else ("path", "sentence", "translation")
    rows = [(where, row) for where, row in read_table(tsv, required, **_TSV)
            if not filter_split or row["split"] == split]
    if not rows:
        raise CorpusError(f"{tsv}: no rows for split {split!r}")
    sentences: dict[str, tuple[str, str]] | None = None
    if "sentence" not in rows[0][1]:
        cv_path = Path(cv_tsv) if cv_tsv is not None else root / "validated.tsv"
        if not cv_path.is_file():
            raise CorpusError(f"{tsv} has no 'sentence' column and Common Voice's {cv_path} is missing")
        sentences = _cv_sentences(cv_path)
    clips = root / clips_dir
    samples = []
    for where, row in rows:
        clip = row["path"].strip()
        if not clip:
            raise CorpusError(f"{where}: empty 'path'")
        if sentences is not None:
            if clip not in sentences:
                raise CorpusError(f"{where}: clip {clip} is not in Common Voice's validated.tsv")
            sentence, client_id = sentences[clip]
        else:
            sentence, client_id = row["sentence"], row.get("client_id", "")
        extra = {"translation": row["translation"], "source_language": source_language,
                 "target_language": target.split("-")[0].lower(), "client_id": client_id}
        samples.append(Sample(Path(clip).stem, clips / clip, sentence, extra))
    samples.sort(key=lambda s: s.id)
    return apply_limit(samples, limit, tsv)
