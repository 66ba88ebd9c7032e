"""Run folders written by hand for the interval, comparison and collapse tests: settings.json,
predictions.jsonl and a metrics.json whose WER is the one the rows give. Synthetic fixtures,
not results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

from fastadasp.metrics.wer import corpus_wer

#: ten reference sentences of ten words each (100 reference words)
REFERENCES = {f"s{i:02d}": " ".join(f"w{i}x{j}" for j in range(10)) for i in range(10)}


def with_errors(edits: Mapping[str, int], references: Mapping[str, str] = REFERENCES) -> dict[str, str]:
    """Hypotheses with exactly ``edits[id]`` substitutions (the first words replaced)."""
    out = {}
    for key, ref in references.items():
        words = ref.split()
        n = edits.get(key, 0)
        out[key] = " ".join([f"bad{j}" for j in range(n)] + words[n:])
    return out


def asr_task(normalizer: str = "none") -> dict:
    return {"name": "asr", "reference": "text", "requires": [], "prompts": {"whisper_en": "<|x|>"},
            "max_new_tokens": 16, "parser": {"_target_": "fastadasp.tasks.parsing.TextAnswer"},
            "metric": {"_target_": "fastadasp.metrics.wer.corpus_wer", "_partial_": True, "normalizer": normalizer},
            "primary_metric": "wer", "higher_is_better": False}


def write_asr_run(root: Path, folder: str, hypotheses: Mapping[str, str],
                  references: Mapping[str, str] = REFERENCES, *, method: str = "none", flops: float = 0.0,
                  settings: dict | None = None, seed: int | None = None, normalizer: str = "none",
                  flags: Mapping[str, Sequence[str]] | None = None, dataset: str = "demo") -> Path:
    """A finished ASR run folder. ``flags``: {"hit_max_new_tokens" | "repetition_loop": ids}."""
    out = root / folder
    out.mkdir(parents=True)
    flags = flags or {}
    ids = list(hypotheses)
    rows = [{"id": key, "index": i, "prediction": hypotheses[key], "answer": hypotheses[key],
             "reference": references[key], "fields": {}, "flops_realized": flops, "tokens_per_layer": [10, 10],
             "hit_max_new_tokens": key in flags.get("hit_max_new_tokens", ()),
             "repetition_loop": key in flags.get("repetition_loop", ())} for i, key in enumerate(ids)]
    (out / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    method_settings = {"name": method, **(settings or {}), **({"seed": seed} if seed is not None else {})}
    (out / "settings.json").write_text(json.dumps({"task": asr_task(normalizer), "method": method_settings,
                                                   "dataset": {"name": dataset}}))
    scores = corpus_wer([references[k] for k in ids], [hypotheses[k] for k in ids], normalizer=normalizer)
    record = {
        "model": "whisper_tiny_en", "task": "asr", "method": method, "method_settings": method_settings,
        "budget_model": "analytic", "flops_target": flops, "flops_realized": flops, "num_samples": len(ids),
        "num_failed": 0, "failures": [], "metrics": scores, "primary_metric": "wer", "higher_is_better": False,
        "seed": seed, "dataset": {"name": dataset, "split": "test", "fingerprint": "fp-" + dataset}, "limit": None,
        "git": {"commit": "c0ffee1", "dirty": False},
    }
    (out / "metrics.json").write_text(json.dumps(record))
    return out
