#!/usr/bin/env bash
# Every shipped sweep of results/runs and the Transfer-Entropy selection they use, resumable
# (resume=true throughout: an interrupted run continues, finished runs are only re-summarised).
#   bash scripts/reproduce_all.sh                      (make results; hours on a 2-core CPU)
#   bash scripts/reproduce_all.sh tiny_bounded base_english   (some parts)
# Parts: tiny_analytic tiny_bounded tiny_noisy tiny_token_layer base_te base_english base_multilingual.
# Two lanes can run side by side, one torch thread each (how the shipped runs were made):
#   OMP_NUM_THREADS=1 bash scripts/reproduce_all.sh tiny_analytic tiny_bounded tiny_noisy tiny_token_layer &
#   OMP_NUM_THREADS=1 bash scripts/reproduce_all.sh base_te base_english base_multilingual
# Grids beyond tiny_analytic are coarser (fewer budgets and seeds) so that everything fits one session;
# results/README.md lists what each part covers.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export PY
TINY=${OUT_TINY:-results/runs/whisper_tiny_en}
BASE=${OUT_BASE:-results/runs/whisper_base}
TE_BASE=results/transfer_entropy/whisper_base_asr
status=0
# every method and schedule x flops 0.1-0.5 on the large dense set, analytic cost model, seeds 0-2
tiny_analytic() { OUT=$TINY COST_MODELS=analytic bash scripts/reproduce_results.sh demo_dense_large || status=1; }
# the chaining explanation tested: FastAdaSP dense constant with at most 2, 4 or 8 tokens per group and layer
tiny_bounded() {
  "$PY" run.py -m model=whisper_tiny_en dataset=demo_dense_large batch_size=16 cost_model=analytic resume=true \
    flops=0.3,0.4,0.5 method=fastadasp_dense method.schedule=constant method.max_group_size=2,4,8 \
    hydra.sweep.dir="$TINY/demo_dense_large/analytic/bounded_chain" || status=1
}
# the same clips in pink noise at 10 dB: every method at 30% and 50%, seed 0 for the random baselines
tiny_noisy() {
  OUT=$TINY FLOPS=0.3,0.5 EXTRA_SEEDS= COST_MODELS=analytic bash scripts/reproduce_results.sh demo_dense_large_noisy \
    || status=1
}
# the paper's token-layer cost model at 10/30/50%, seed 0 for the random baselines
tiny_token_layer() {
  OUT=$TINY FLOPS=0.1,0.3,0.5 EXTRA_SEEDS= COST_MODELS=token_layer bash scripts/reproduce_results.sh demo_dense_large \
    || status=1
}
base_te() {
  [ -f "$TE_BASE/transfer_entropy.json" ] || "$PY" scripts/transfer_entropy.py model=whisper_base task=asr \
    dataset=demo_calib +dataset@eval_dataset=demo_dense calibration_limit=16 batch_size=16 rule.name=min_te \
    rule.max_flops=0.5 rule.budget_model=analytic hydra.run.dir="$TE_BASE" || status=1
}
base_layer() { "$PY" -c "import json; print(json.load(open('$TE_BASE/transfer_entropy.json'))['selected_layer'])"; }
# Whisper base (decodes about 3x slower than tiny.en): every method at 10/30/50%, seeds 0-1 for the random baselines
base_english() {
  OUT=$BASE FLOPS=0.1,0.3,0.5 EXTRA_SEEDS=1 MODEL=whisper_base LAYER=$(base_layer) COST_MODELS=analytic \
    bash scripts/reproduce_results.sh demo_dense_large || status=1
}
# full tokens on ASR and X->en ST in five languages and on LID; every method at 30/50% on es->en and LID
base_multilingual() {
  OUT=$BASE FLOPS=0.3,0.5 SEEDS=0 LAYER=$(base_layer) bash scripts/reproduce_multilingual.sh es_en || status=1
}
for part in ${@:-tiny_analytic tiny_bounded tiny_noisy tiny_token_layer base_te base_english base_multilingual}; do
  "$part"
done
exit $status
