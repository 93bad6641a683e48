#!/usr/bin/env bash
# libri2mix_8k: Conv-TasNet separation on Libri2Mix (wav8k/min, sep_clean).  Usage:
#   DATA_ROOT=/data/Libri2Mix bash recipes/libri2mix_8k/run.sh [start_stage] [stop_stage]
# Stages: 0 prepare (mixture manifests with mix/s1/s2 columns), 1 train (trainer=${TRAINER}) on the
#         train-360 folder, 2 export (TorchScript), 3 separate the test mixtures, 4 eval (SI-SNRi/SDRi vs oracles).
# Environment: DATA_ROOT (the Libri2Mix folder), WORK (default runs/libri2mix_8k), SEPARATION (default
#   convtasnet_8k; convtasnet_causal_8k streams), TRAINER (gpu | ddp | cpu), DEVICE, EXTRA, SONOTOK.
set -euo pipefail
start=${1:-0}; stop=${2:-4}
DATA_ROOT=${DATA_ROOT:-/data/Libri2Mix}
WORK=${WORK:-runs/libri2mix_8k}
SEPARATION=${SEPARATION:-convtasnet_8k}
TRAINER=${TRAINER:-gpu}
DEVICE=${DEVICE:-cuda}
EXTRA=${EXTRA:-}
SONOTOK=${SONOTOK:-sonotok}
MANIFESTS=$WORK/manifests
SPLITS=$DATA_ROOT/wav8k/min
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

if [ "$start" -le 0 ] && [ "$stop" -ge 0 ]; then
  echo "== stage 0: prepare mixture manifests from $DATA_ROOT (checks the layout and every s1/s2 file)"
  $SONOTOK prepare libri2mix --root "$DATA_ROOT" --out "$MANIFESTS" --rate 8k --mode min --mixture clean
fi
if [ "$start" -le 1 ] && [ "$stop" -ge 1 ]; then
  echo "== stage 1: train separation=$SEPARATION trainer=$TRAINER (re-running resumes)"
  # the separation data module reads Libri2Mix folders (mix_clean/ s1/ s2/) directly
  # shellcheck disable=SC2086
  $SONOTOK train --config-name separate separation="$SEPARATION" trainer="$TRAINER" \
    data.train="$SPLITS/train-360" data.valid="$SPLITS/dev" name=libri2mix_8k out_dir="$WORK/train" $EXTRA
fi
if [ "$start" -le 2 ] && [ "$stop" -ge 2 ]; then
  echo "== stage 2: export"
  $SONOTOK export --model "$WORK/train/model" --out "$WORK/export"
fi
if [ "$start" -le 3 ] && [ "$stop" -ge 3 ]; then
  echo "== stage 3: separate the test mixtures"
  $SONOTOK separate "$SPLITS/test/mix_clean" --model "$WORK/train/model" --out "$WORK/separated" --device "$DEVICE"
fi
if [ "$start" -le 4 ] && [ "$stop" -ge 4 ]; then
  echo "== stage 4: eval SI-SNRi / SDRi on the test split (3000 mixtures) vs ideal-mask oracles"
  $SONOTOK separation-eval --model "$WORK/train/model" --data "$SPLITS/test" --num-mixtures 3000 \
    --device "$DEVICE" --json "$WORK/separation_metrics.json"
fi
