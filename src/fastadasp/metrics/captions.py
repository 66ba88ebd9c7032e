"""Audio-caption metrics: CIDEr (pycocoevalcap's CIDEr-D), SPICE and SPIDEr = (CIDEr + SPICE) / 2.

Both sides are tokenised with pycocoevalcap's `PTBTokenizer` (Stanford
CoreNLP 3.4.1 in a JVM, lower-cases and drops punctuation), as the DCASE
caption-evaluation tools do for Clotho. Scores are on pycocoevalcap's scale
(CIDEr-D around 0-3, SPICE 0-1), not percent.

SPICE needs Stanford CoreNLP 3.6.0 jars that pycocoevalcap downloads from
nlp.stanford.edu the first time `Spice()` is built. This module never triggers
that download: it looks for the jars where pycocoevalcap does and, when they
are absent, reports `spice`/`spider` as None with the reason and the fix
(`make spice`, i.e. `scripts/get_spice.py`). A missing SPICE is never a 0.

SPICE 1.0 also writes its per-caption scores through Java's JavaScript engine
(Nashorn), which Java 15+ no longer ships (on Java 17 `getEngineByName
("JavaScript")` is null and SPICE would crash after parsing). On such a Java,
SPICE runs only with the standalone Nashorn jars (`nashorn-core` and ASM,
also installed by `scripts/get_spice.py`) on its class path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

__all__ = ["caption_scores", "nashorn_jars", "ptb_tokenize", "spice_jars", "spice_missing_reason"]

JAVA_FIX = "install a Java runtime, e.g. `apt-get install -y default-jre-headless`"
SPICE_FIX = "run `make spice` (python scripts/get_spice.py) on a machine with internet"


def _require_java() -> None:
    if shutil.which("java") is None:
        raise RuntimeError(
            f"caption metrics need `java` on PATH (pycocoevalcap's PTB tokenizer and SPICE run in a JVM); {JAVA_FIX}"
        )


def spice_jars() -> list[Path]:
    """The CoreNLP jars SPICE needs, at the paths pycocoevalcap's spice module loads them from."""
    from pycocoevalcap.spice import get_stanford_models as models

    lib = Path(models.SPICEDIR) / models.SPICELIB
    return [lib / f"{models.JAR}.jar", lib / f"{models.JAR}-models.jar"]


# Standalone Nashorn (Maven Central) and the ASM version its pom names: SPICE's JSON
# output needs a JavaScript engine, which Java 15+ lacks.
NASHORN_ARTIFACTS = (
    ("org.openjdk.nashorn", "nashorn-core", "15.4"),
    ("org.ow2.asm", "asm", "7.3.1"),
    ("org.ow2.asm", "asm-commons", "7.3.1"),
    ("org.ow2.asm", "asm-tree", "7.3.1"),
    ("org.ow2.asm", "asm-util", "7.3.1"),
    ("org.ow2.asm", "asm-analysis", "7.3.1"),
)


def nashorn_jars() -> list[Path]:
    """Where `scripts/get_spice.py` puts the Nashorn jars: beside the CoreNLP jars."""
    lib = spice_jars()[0].parent
    return [lib / f"{artifact}-{version}.jar" for _, artifact, version in NASHORN_ARTIFACTS]


@lru_cache(maxsize=4)
def java_major_version(java: str = "java") -> int | None:
    """The major version of `java` (8 for "1.8.0_x", 17 for "17.0.15"), None if it cannot be read."""
    run = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', run.stderr + run.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def spice_missing_reason() -> str | None:
    """Why SPICE cannot run here (missing java, jars or JavaScript engine, with the fix), or None when it can."""
    if shutil.which("java") is None:
        return f"SPICE needs java on PATH; {JAVA_FIX}"
    problems = []
    missing = [str(p) for p in spice_jars() if not p.is_file()]
    if missing:
        problems.append(f"SPICE needs Stanford CoreNLP 3.6.0 jars, missing: {', '.join(missing)}")
    major = java_major_version()
    if (major is None or major >= 15) and not all(p.is_file() for p in nashorn_jars()):
        problems.append(
            f"SPICE 1.0 writes its scores through a JavaScript engine, which Java {major or '?'} lacks "
            f"(removed in Java 15); the Nashorn jars are missing from {nashorn_jars()[0].parent}"
        )
    if problems:
        return "; ".join(problems) + f"; {SPICE_FIX} (or use Java 8-14)"
    return None


def ptb_tokenize(captions: dict[Any, list[str]]) -> dict[Any, list[str]]:
    """Tokenise {key: [sentences]} with pycocoevalcap's PTBTokenizer (one JVM start for all)."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    _require_java()
    # The tokenizer joins sentences with newlines and only replaces "\n" inside one; a "\r" (a line
    # break for Java) would shift every later line onto the wrong caption, so collapse all whitespace.
    wrapped = {k: [{"caption": " ".join(s.split())} for s in v] for k, v in captions.items()}
    out = PTBTokenizer().tokenize(wrapped)
    if {k: len(v) for k, v in out.items()} != {k: len(v) for k, v in captions.items() if v}:
        raise RuntimeError("PTBTokenizer returned a different number of sentences than it was given")
    return out


# SPICE 1.0 was built for Java 8; Java 16+ refuses its reflective access unless these are opened.
# JDK_JAVA_OPTIONS is read by Java 9+ launchers only, so Java 8 is unaffected.
_JAVA_OPENS = " ".join(
    f"--add-opens=java.base/{pkg}=ALL-UNNAMED"
    for pkg in ("java.lang", "java.util", "java.math", "java.io", "java.net", "java.text")
)


def _spice(gts: dict[str, list[str]], res: dict[str, list[str]]) -> float:
    """Corpus SPICE: the mean of per-caption SPICE F-scores, as pycocoevalcap's `Spice` computes it.

    Runs pycocoevalcap's spice-1.0.jar with pycocoevalcap's arguments, but
    without its `Spice()` constructor (which would try to download CoreNLP),
    with temp files outside site-packages, without the LMDB parse cache (its
    serializer is what Java 16+ rejects), with the Nashorn jars on the class
    path on Java 15+ (the jar's manifest still brings in CoreNLP), and with
    the Java 16+ module opens above.
    """
    from pycocoevalcap.spice import get_stanford_models as models

    data = [{"image_id": int(k), "test": res[k][0], "refs": gts[k]} for k in sorted(gts, key=int)]
    with tempfile.TemporaryDirectory(prefix="fastadasp_spice_") as tmp:
        in_path, out_path = Path(tmp) / "in.json", Path(tmp) / "out.json"
        in_path.write_text(json.dumps(data), encoding="utf-8")
        major = java_major_version()
        nashorn = [str(p) for p in nashorn_jars() if p.is_file()] if major is None or major >= 15 else []
        class_path = ["spice-1.0.jar", *nashorn]
        cmd = ["java", "-Xmx8G", "-cp", os.pathsep.join(class_path), "edu.anu.spice.SpiceScorer",
               str(in_path), "-out", str(out_path), "-subset", "-silent"]  # fmt: skip
        env = {**os.environ, "JDK_JAVA_OPTIONS": f"{os.environ.get('JDK_JAVA_OPTIONS', '')} {_JAVA_OPENS}".strip()}
        subprocess.run(cmd, cwd=models.SPICEDIR, env=env, check=True, stdout=subprocess.DEVNULL)
        results = json.loads(out_path.read_text(encoding="utf-8"))
    # pycocoevalcap turns a missing F-score into NaN, which makes the corpus mean NaN too.
    f_scores = [item["scores"]["All"]["f"] for item in results]
    return float(np.mean([np.nan if f is None else float(f) for f in f_scores]))


def caption_scores(
    references: Sequence[Sequence[str]],
    hypotheses: Sequence[str | None],
    spice: bool | Literal["auto"] = "auto",
    per_sample: bool = False,
) -> dict[str, Any]:
    """Corpus CIDEr-D, SPICE and SPIDEr over captions; None hypotheses count as empty captions.

    spice="auto": compute SPICE when it can run, else report why not (None,
    never 0); also when the SPICE JVM exits with an error, so a finished run
    keeps its CIDEr. spice=True: SPICE is required (missing jars or a failing
    SPICE raise). spice=False: skip it. ``per_sample``: also each caption's CIDEr-D
    (``per_sample``: {"cider": [...]}, whose mean is the corpus CIDEr-D; the document
    frequencies are the whole set's), for bootstrap intervals (fastadasp.metrics.samplewise).
    """
    from pycocoevalcap.cider.cider import Cider

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if not references:
        raise ValueError("no captions to score")
    for i, refs in enumerate(references):
        if isinstance(refs, str) or not refs:
            raise ValueError(f"references[{i}] must be a non-empty list of captions, got {refs!r}")
    _require_java()
    hyps = ["" if h is None else str(h) for h in hypotheses]
    n = len(hyps)
    tokens = ptb_tokenize(
        {("ref", i): list(r) for i, r in enumerate(references)}
        | {("hyp", i): [h] for i, h in enumerate(hyps)}
    )
    gts = {str(i): tokens[("ref", i)] for i in range(n)}
    res = {str(i): tokens[("hyp", i)] for i in range(n)}
    cider_scorer = Cider()
    cider, cider_by_sample = cider_scorer.compute_score(gts, res)
    out: dict[str, Any] = {"cider": float(cider), "spice": None, "spider": None}

    if spice is False:
        out["spice_unavailable"] = "disabled (spice=False)"
    else:
        reason = spice_missing_reason()
        if reason is not None and spice is True:
            raise RuntimeError(reason)
        if reason is None:
            try:
                out["spice"] = _spice(gts, res)
            except subprocess.CalledProcessError as exc:
                if spice is True:
                    raise
                reason = (
                    f"SPICE failed: `{' '.join(map(str, exc.cmd))}` exited with {exc.returncode} "
                    "(its Java error is printed above); CIDEr is unaffected"
                )
            else:
                out["spider"] = (out["cider"] + out["spice"]) / 2
        if reason is not None:
            out["spice_unavailable"] = reason
    out.update(
        {
            "num_samples": n,
            "refs_per_sample": sorted({len(r) for r in references}),
            "empty_hypotheses": sum(not h.strip() for h in hyps),
            "tokenizer": "pycocoevalcap PTBTokenizer (lower-case, punctuation removed)",
            "cider_variant": f"CIDEr-D (pycocoevalcap, n={cider_scorer._n}, sigma={cider_scorer._sigma})",
            "scale": "pycocoevalcap (fraction, not percent)",
        }
    )
    if per_sample:
        out["per_sample"] = {"cider": [float(x) for x in cider_by_sample]}
    return out

