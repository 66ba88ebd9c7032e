"""Corpus BLEU through sacreBLEU, with the tokenizer chosen by target language.

BLEU is only comparable under the same tokenisation, so the result carries
sacreBLEU's signature string (tokenizer, smoothing, case, version). The paper
scored CoVoST 2 En->Zh with `tokenize="zh"` (reference SPEC section 7); every
other target uses sacreBLEU's default `13a` unless `tokenize` says otherwise.
"""

from __future__ import annotations

from typing import Any, Sequence

import sacrebleu

__all__ = ["corpus_bleu", "tokenizer_for"]

_CHINESE_LOCALES = {"zh_cn", "zh_tw", "zh_hk", "zh_hans", "zh_hant"}  # locales, not language pairs


def tokenizer_for(target_language: str | None) -> str:
    """`zh` for a Chinese target, else `13a`.

    Accepts a language ("zh", "zh-CN", "zh_CN", "de") or a CoVoST-style pair whose
    target comes last ("en_zh-CN", "en->zh"). A hyphen is read as a region tag
    ("zh-CN"), never as a pair separator.
    """
    if not target_language:
        return "13a"
    lang = target_language.strip().lower()
    if lang not in _CHINESE_LOCALES:
        lang = lang.replace("->", "_").split("_")[-1]
    return "zh" if lang.split("-")[0].split("_")[0] in ("zh", "cmn") else "13a"


def _reference_streams(references: Sequence[str | Sequence[str]]) -> list[list[str]]:
    """sacreBLEU wants one stream per reference set; accept one str or a list of refs per sentence."""
    if all(isinstance(r, str) for r in references):
        return [list(references)]
    counts = {len(r) for r in references if not isinstance(r, str)}
    if any(isinstance(r, str) for r in references) or len(counts) != 1:
        raise ValueError(
            "references must be all strings, or all lists with the same number of references per sentence"
        )
    return [[refs[k] for refs in references] for k in range(counts.pop())]


def corpus_bleu(
    references: Sequence[str | Sequence[str]],
    hypotheses: Sequence[str | None],
    tokenize: str | None = None,
    target_language: str | None = None,
) -> dict[str, Any]:
    """sacreBLEU corpus BLEU (0-100). None/empty hypotheses count as empty strings (they score nothing)."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if not references:
        raise ValueError("no sentences to score; BLEU is undefined")
    tok = tokenize or tokenizer_for(target_language)
    hyps = ["" if h is None else str(h) for h in hypotheses]
    metric = sacrebleu.BLEU(tokenize=tok)
    score = metric.corpus_score(hyps, _reference_streams(references))
    return {
        "bleu": score.score,
        "signature": str(metric.get_signature()),
        "tokenize": tok,
        "target_language": target_language,
        "num_sentences": len(hyps),
        "empty_hypotheses": sum(not h.strip() for h in hyps),
        "bp": score.bp,
        "precisions": list(score.precisions),
        "sys_len": score.sys_len,
        "ref_len": score.ref_len,
    }
