#!/bin/bash
# Issue-15 quality levers: each stage fine-tunes a model directory for 25 minutes on the many-voice corpus
# (1 thread, pinned to one core, so two stages run side by side under the same conditions), then
# bench/classic.py scores the results next to Opus/Codec2 on the 54 held-out files. Results and the
# stage-by-stage commands: bench/results/levers.md.
#   bench/levers.sh NAME CORE [hydra overrides...]      e.g.
#   bench/levers.sh ctrl 0 init_from=default
#   bench/levers.sh gan  1 init_from=default discriminator=cpu_small
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1
name=$1; core=$2; shift 2
mkdir -p runs/lev
taskset -c "$core" .venv/bin/python train.py experiment=fast_16k threads=1 data.num_workers=1 \
  trainer.max_time=00:00:25:00 schedule.warmup_steps=50 schedule.total_minutes=max_time optim.generator.lr=5e-4 \
  trainer.val_check_interval=400 name="lev_$name" out_dir="runs/lev/$name" "$@" > "runs/lev/$name.log" 2>&1
