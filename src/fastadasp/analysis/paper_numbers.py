"""The paper's own numbers, typed in from SPEC.md s.9 (WavLLM Tables 1, 2, 4) and the
talk slides (Tables 6, 8, 9, 10, 12), so generated tables can show them beside ours.

Data only. Each accuracy table maps a paper row label to the method settings our
runs record (``method`` plus a subset of ``method_settings``); ``None`` marks a
cell the paper leaves empty ("-"). The paper's bold marks are not copied: the
table builder marks the best value per column with the same rule it applies to ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["BUDGETS", "PaperRow", "PaperTable", "PAPER_TABLES", "LONG_AUDIO_TABLES", "LongAudioPaperTable"]

#: the paper's "FLOPs Reduce" columns
BUDGETS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)


@dataclass(frozen=True)
class PaperRow:
    """One method row: its label in the paper and the settings of ours it corresponds to."""

    label: str
    method: str
    settings: dict = field(default_factory=dict)
    #: task -> five values (budgets 10..50%); a value may be a tuple (CIDEr, SPICE, SPIDEr)
    values: dict = field(default_factory=dict)
    #: row facts that are not results per budget (Table 6: "te", "te_rank")
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PaperTable:
    """An accuracy table of the paper: tasks as column groups, FLOPs budgets as columns."""

    id: str
    title: str
    model: str
    source: str
    #: task -> (metric name(s), higher_is_better); metric is a tuple for triple cells
    tasks: dict
    #: task -> full-token baseline value
    baseline: dict
    rows: tuple[PaperRow, ...]
    #: "methods" (rows are methods) or "layers" (Table 6: rows are layers of FastAdaSP sparse)
    layout: str = "methods"
    notes: tuple[str, ...] = ()


_DENSE_CONST = {"schedule": "constant", "weighted": True}
_DENSE_DECAY = {"schedule": "decay", "weighted": True}
_SPARSE = {"weighted": True}
_CAPTION = ("cider", "spice", "spider")

PAPER_TABLES: dict[str, PaperTable] = {
    t.id: t
    for t in (
        PaperTable(
            id="wavllm_table1",
            title="WavLLM Table 1: dense tasks (ASR WER % lower is better, ST BLEU higher is better)",
            model="WavLLM",
            source="paper Table 1, as restated in SPEC.md s.9",
            tasks={"asr": ("wer", False), "st": ("bleu", True)},
            baseline={"asr": 2.25, "st": 21.56},
            rows=(
                PaperRow("H2O", "h2o", {}, {"asr": (2.25, 2.46, 3.37, 5.60, 10.20), "st": (20.42, 20.12, 19.99, 18.64, 17.36)}),
                PaperRow("Random Merge", "random_merge", {}, {"asr": (2.32, 2.51, 3.08, 8.10, 77.42), "st": (20.73, 19.34, 18.23, 15.69, 9.24)}),
                PaperRow("Random Evict", "random_evict", {}, {"asr": (2.53, 4.34, 9.23, 34.80, 172.52), "st": (20.34, 19.03, 17.36, 14.10, 8.59)}),
                PaperRow("A-ToMe", "atome", {}, {"asr": (2.35, 2.92, 4.43, 15.87, 50.46), "st": (20.53, 19.42, 17.29, 13.42, 8.51)}),
                PaperRow("FastV", "fastv", {}, {"asr": (2.37, 4.94, 13.84, 51.10, 185.79), "st": (21.17, 20.18, 18.98, 16.36, 10.07)}),
                PaperRow("FastAdaSP-Dense decay", "fastadasp_dense", _DENSE_DECAY, {"asr": (2.27, 2.57, 2.74, 3.53, 6.09), "st": (20.92, 20.59, 19.66, 18.06, 16.40)}),
                PaperRow("FastAdaSP-Dense constant", "fastadasp_dense", _DENSE_CONST, {"asr": (2.27, 2.49, 2.48, 2.96, 4.73), "st": (21.47, 20.72, 19.81, 18.54, 17.45)}),
            ),
        ),
        PaperTable(
            id="wavllm_table2",
            title="WavLLM Table 2: sparse tasks (ER and SQA accuracy %, higher is better)",
            model="WavLLM",
            source="paper Table 2, as restated in SPEC.md s.9",
            tasks={"er": ("accuracy", True), "sqa": ("accuracy", True)},
            baseline={"er": 72.80, "sqa": 67.60},
            rows=(
                PaperRow("H2O", "h2o", {}, {"er": (72.32, 72.60, 73.73, 72.11, 72.36), "sqa": (67.10, 68.40, 68.00, 67.55, 65.40)}),
                PaperRow("Random Merge", "random_merge", {}, {"er": (72.76, 72.44, 72.19, 72.28, 72.52), "sqa": (67.40, 68.00, 67.40, 67.95, 68.30)}),
                PaperRow("Random Evict", "random_evict", {}, {"er": (73.08, 71.71, 72.44, 72.03, 72.28), "sqa": (67.65, 67.35, 68.35, 67.80, 67.50)}),
                PaperRow("A-ToMe", "atome", {}, {"er": (72.84, 72.68, 72.20, 71.23, 69.54), "sqa": (67.05, 67.15, 65.75, 63.45, 62.60)}),
                PaperRow("FastV", "fastv", {}, {"er": (72.76, 72.52, 71.55, 71.47, 70.66), "sqa": (67.45, 67.25, 68.45, 68.10, 67.95)}),
                PaperRow("FastAdaSP-Sparse", "fastadasp_sparse", _SPARSE, {"er": (73.16, 72.60, 73.73, 73.65, 73.65), "sqa": (67.65, 68.05, 67.45, 68.45, 68.70)}),
            ),
        ),
        PaperTable(
            id="talk_table8",
            title="Talk Table 8: the scheduler on WavLLM dense tasks (ASR WER %, ST BLEU)",
            model="WavLLM",
            source="talk slides, Table 8",
            tasks={"asr": ("wer", False), "st": ("bleu", True)},
            baseline={"asr": 2.25, "st": 21.56},
            rows=(
                # "Weighted Merge" without a scheduler = the weighted merge done once, at one
                # layer: our fastadasp_sparse (single layer, weighted) run on a dense task.
                PaperRow("Weighted Merge", "fastadasp_sparse", _SPARSE, {"asr": (2.25, 2.44, 3.25, 10.51, 93.14), "st": (20.94, 20.03, 18.41, 14.45, 8.74)}),
                PaperRow("Weighted Merge + Constant Schedule", "fastadasp_dense", _DENSE_CONST, {"asr": (2.27, 2.49, 2.48, 2.96, 4.73), "st": (21.47, 20.72, 19.81, 18.54, 17.45)}),
                PaperRow("Weighted Merge + Decay Schedule", "fastadasp_dense", _DENSE_DECAY, {"asr": (2.27, 2.57, 2.74, 3.53, 6.09), "st": (20.92, 20.59, 19.66, 18.06, 16.40)}),
            ),
            notes=(
                "Mapping: 'Weighted Merge' (no scheduler) is one attention-weighted merge at a single layer, "
                "i.e. method fastadasp_sparse (weighted=true) run on the dense task; the schedule rows are "
                "fastadasp_dense with schedule constant / decay (weighted=true). The constant/decay rows equal "
                "Table 1's FastAdaSP-Dense rows, which supports this reading.",
            ),
        ),
        PaperTable(
            id="talk_table9",
            title="Talk Table 9: Qwen-Audio dense tasks (ASR WER %, ST BLEU)",
            model="Qwen-Audio",
            source="talk slides, Table 9",
            tasks={"asr": ("wer", False), "st": ("bleu", True)},
            baseline={"asr": 2.21, "st": 41.46},
            rows=(
                PaperRow("Random Merge", "random_merge", {}, {"asr": (2.43, 3.39, 8.21, 27.53, 169.96), "st": (40.63, 39.35, 37.01, 32.39, 24.3)}),
                PaperRow("Random Evict", "random_evict", {}, {"asr": (5.70, 21.42, 61.04, 184.59, 342.88), "st": (38.39, 28.22, 14.98, 6.29, None)}),
                PaperRow("A-ToMe", "atome", {}, {"asr": (2.20, 3.26, 13.91, 71.56, 273.49), "st": (41.24, 39.87, 36.52, 25.35, 8.64)}),
                PaperRow("FastV", "fastv", {}, {"asr": (12.54, 54.40, 110.42, 179.58, 258.78), "st": (41.12, 40.31, 38.45, 34.74, 27.14)}),
                PaperRow("FastAdaSP-Dense decay", "fastadasp_dense", _DENSE_DECAY, {"asr": (2.19, 2.23, 2.51, 4.37, 15.24), "st": (41.41, 41.05, 40.51, 39.02, 35.79)}),
                PaperRow("FastAdaSP-Dense constant", "fastadasp_dense", _DENSE_CONST, {"asr": (2.22, 2.21, 2.30, 3.57, 16.01), "st": (41.47, 41.30, 40.83, 39.81, 37.04)}),
            ),
        ),
        PaperTable(
            id="talk_table10",
            title="Talk Table 10: Qwen-Audio sparse tasks (ER accuracy %, AC CIDEr / SPICE / SPIDEr)",
            model="Qwen-Audio",
            source="talk slides, Table 10",
            tasks={"er": ("accuracy", True), "ac": (_CAPTION, True)},
            baseline={"er": 54.80, "ac": (0.45, 0.13, 0.29)},
            rows=(
                PaperRow("Random Merge", "random_merge", {}, {"er": (51.80, 48.00, 43.80, 39.20, 32.30), "ac": ((0.44, 0.13, 0.29), (0.43, 0.13, 0.28), (0.41, 0.13, 0.27), (0.41, 0.12, 0.26), (0.38, 0.12, 0.25))}),
                PaperRow("Random Evict", "random_evict", {}, {"er": (52.80, 48.20, 42.00, 34.61, 23.14), "ac": ((0.43, 0.13, 0.28), (0.42, 0.13, 0.27), (0.38, 0.12, 0.25), (0.31, 0.10, 0.20), (0.12, 0.07, 0.14))}),
                PaperRow("A-ToMe", "atome", {}, {"er": (54.91, 54.70, 54.20, 53.90, 51.60), "ac": ((0.44, 0.13, 0.29), (0.44, 0.13, 0.29), (0.43, 0.13, 0.28), (0.41, 0.13, 0.27), (0.39, 0.12, 0.28))}),
                PaperRow("FastV", "fastv", {}, {"er": (54.80, 53.80, 53.50, 52.10, 50.38), "ac": ((0.44, 0.13, 0.29), (0.45, 0.13, 0.29), (0.45, 0.13, 0.29), (0.44, 0.13, 0.28), (0.43, 0.13, 0.28))}),
                PaperRow("FastAdaSP-Sparse", "fastadasp_sparse", _SPARSE, {"er": (55.17, 55.05, 54.40, 53.86, 52.14), "ac": ((0.45, 0.13, 0.29), (0.44, 0.13, 0.29), (0.45, 0.13, 0.29), (0.44, 0.13, 0.28), (0.43, 0.13, 0.28))}),
            ),
        ),
        PaperTable(
            id="talk_table6",
            title="Talk Table 6: layer selection, FastAdaSP-Sparse on Qwen-Audio ER (accuracy %)",
            model="Qwen-Audio",
            source="talk slides, Table 6",
            tasks={"er": ("accuracy", True)},
            baseline={"er": 54.80},
            layout="layers",
            rows=(
                PaperRow("Layer 2", "fastadasp_sparse", {"layer": 2}, {"er": (54.78, 54.30, 54.06, 52.91, 52.10)}, {"te": 2.20, "te_rank": 4}),
                PaperRow("Layer 9", "fastadasp_sparse", {"layer": 9}, {"er": (55.51, 54.30, 53.61, 53.30, 51.50)}, {"te": 2.17, "te_rank": 3}),
                PaperRow("Layer 12", "fastadasp_sparse", {"layer": 12}, {"er": (54.75, 53.96, 53.44, 52.72, 48.35)}, {"te": 2.29, "te_rank": 5}),
                PaperRow("Layer 15", "fastadasp_sparse", {"layer": 15}, {"er": (53.98, 54.06, 53.02, 50.57, None)}, {"te": 2.11, "te_rank": 2}),
                PaperRow("Layer 3 (selected)", "fastadasp_sparse", {"layer": 3}, {"er": (55.17, 55.05, 54.40, 53.86, 52.14)}, {"te": 2.06, "te_rank": 1}),
            ),
        ),
    )
}


@dataclass(frozen=True)
class LongAudioPaperTable:
    """The long-audio cost tables (WavLLM): one row per (beam, audio length, token reduce)."""

    id: str
    title: str
    model: str
    device: str
    source: str
    #: (beam, audio_s, token_reduce % or None for full, flops_reduction %, rtf, prefill_s, decode_s,
    #:  throughput, throughput speed-up as printed in the paper or None for full)
    rows: tuple[tuple, ...]


LONG_AUDIO_TABLES: dict[str, LongAudioPaperTable] = {
    t.id: t
    for t in (
        LongAudioPaperTable(
            id="talk_table12",
            title="Talk Table 12 (= WavLLM Table 3): long audio on one A100 80GB",
            model="WavLLM",
            device="A100 80GB",
            source="talk slides, Table 12",
            rows=(
                (1, 120, None, 0.00, 0.054, 0.79, 5.75, 12.86, None),
                (1, 120, 50, 48.62, 0.044, 0.77, 4.57, 13.57, 1.05),
                (5, 120, None, 0.00, 0.137, 3.11, 13.32, 5.48, None),
                (5, 120, 50, 48.40, 0.092, 3.09, 8.01, 8.87, 1.61),
                (1, 240, None, 0.00, 0.044, 1.70, 8.90, 8.09, None),
                (1, 240, 50, 49.21, 0.036, 1.59, 7.02, 9.69, 1.20),
                (5, 240, None, 0.00, 0.126, 6.72, 23.55, 3.10, None),
                (5, 240, 50, 49.21, 0.077, 6.48, 11.89, 5.72, 1.84),
            ),
        ),
        LongAudioPaperTable(
            id="wavllm_table4",
            title="WavLLM Table 4: long audio on one H100",
            model="WavLLM",
            device="H100",
            source="paper Table 4, as restated in SPEC.md s.9",
            rows=(
                (1, 120, None, 0, 0.027, 0.26, 3.00, 24.63, None),
                (1, 120, 50, 48.62, 0.023, 0.26, 2.52, 24.73, 1.01),
                (5, 120, None, 0, 0.043, 0.48, 4.73, 15.44, None),
                (5, 120, 50, 48.40, 0.032, 0.46, 3.44, 20.66, 1.34),
                (1, 240, None, 0, 0.020, 0.43, 4.29, 16.70, None),
                (1, 240, 50, 49.21, 0.019, 0.39, 4.06, 16.75, 1.00),
                (5, 240, None, 0, 0.039, 1.13, 8.39, 8.70, None),
                (5, 240, 50, 49.21, 0.026, 0.96, 5.42, 12.55, 1.44),
            ),
        ),
    )
}
