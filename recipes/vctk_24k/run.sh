#!/usr/bin/env bash
# vctk_24k: prepare -> train -> export -> tokenize -> eval.  Usage:
#   DATA_ROOT=/data/VCTK-Corpus-0.92 bash recipes/vctk_24k/run.sh [start_stage] [stop_stage]
# Stages: 0 prepare (manifests), 1 train (trainer=${TRAINER}), 2 export (TorchScript + torch.export),
#         3 tokenize the test split, 4 eval on the test split (held-out speakers).
# Environment: DATA_ROOT (your download), WORK (default runs/vctk_24k), EXPERIMENT (default encodec_like_24k),
#   TRAINER (gpu | ddp | cpu; default gpu), DEVICE (tokenize; default cuda), EXTRA (more Hydra overrides), SONOTOK (default: sonotok).
set -euo pipefail
start=${1:-0}; stop=${2:-4}
DATA_ROOT=${DATA_ROOT:-/data/VCTK-Corpus-0.92}
WORK=${WORK:-runs/vctk_24k}
EXPERIMENT=${EXPERIMENT:-encodec_like_24k}
TRAINER=${TRAINER:-gpu}
EXTRA=${EXTRA:-}
SONOTOK=${SONOTOK:-sonotok}
DEVICE=${DEVICE:-cuda}
MANIFESTS=$WORK/manifests
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

if [ "$start" -le 0 ] && [ "$stop" -ge 0 ]; then
  echo "== stage 0: prepare manifests from $DATA_ROOT"
  $SONOTOK prepare vctk --root "$DATA_ROOT" --out "$MANIFESTS" 
fi
if [ "$start" -le 1 ] && [ "$stop" -ge 1 ]; then
  echo "== stage 1: train experiment=$EXPERIMENT trainer=$TRAINER (re-running resumes)"
  # shellcheck disable=SC2086
  $SONOTOK train experiment="$EXPERIMENT" trainer="$TRAINER" sample_rate=24000 \
    data.train="$MANIFESTS/train.jsonl" data.valid="$MANIFESTS/valid.jsonl" data.num_workers=8 \
    name=vctk_24k out_dir="$WORK/train" $EXTRA
fi
if [ "$start" -le 2 ] && [ "$stop" -ge 2 ]; then
  echo "== stage 2: export"
  $SONOTOK export --model "$WORK/train/model" --out "$WORK/export"
fi
if [ "$start" -le 3 ] && [ "$stop" -ge 3 ]; then
  echo "== stage 3: tokenize the test split"
  $SONOTOK tokenize --model "$WORK/train/model" "$MANIFESTS/test.jsonl" --out "$WORK/codes" --device "$DEVICE"
fi
if [ "$start" -le 4 ] && [ "$stop" -ge 4 ]; then
  echo "== stage 4: eval (PESQ-WB, STOI, mel distance, codebook use) on the test split"
  $SONOTOK eval --model "$WORK/train/model" --data "$MANIFESTS/test.jsonl" --out "$WORK/eval"
fi
