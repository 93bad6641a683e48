#!/bin/bash
# Issue-15 `make demo` levers: train `experiment=tiny` FROM SCRATCH for MINUTES (default 15) on one pinned core
# (1 process, 1 thread), so two recipes run side by side under the same conditions, then score the model on
# the demo's 20 held-out files (the files `sonotok demo` picks) -> runs/demo_lev/NAME.json.
#   bench/demo_levers.sh NAME CORE [hydra overrides...]      e.g.
#   bench/demo_levers.sh ctrl 0
#   bench/demo_levers.sh pesq 1 loss=pesq
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1
name=$1; core=$2; shift 2
minutes=${MINUTES:-15}
corpus=${CORPUS:-data/corpus}
mkdir -p runs/demo_lev
taskset -c "$core" .venv/bin/python train.py experiment=tiny threads=1 data.num_workers=1 \
  "trainer.max_time=00:00:$(printf %02d "$minutes"):00" resume=null name="demolev_$name" out_dir="runs/demo_lev/$name" \
  "data.train=$PWD/$corpus/train.jsonl" "data.valid=$PWD/$corpus/valid.jsonl" "$@" > "runs/demo_lev/$name.log" 2>&1
taskset -c "$core" .venv/bin/python - "$name" "$corpus" <<'PY'
import json, sys
from pathlib import Path
import torch
from sonotok.evaluation.codec import evaluate
from sonotok.model_io import load_model
from sonotok.training.demo import _held_out_files
torch.set_num_threads(1)
name, corpus = sys.argv[1], Path(sys.argv[2])
run = Path("runs/demo_lev") / name
model_dir = run / "model"
res = evaluate(load_model(model_dir), [str(f) for f in _held_out_files(corpus, 20)], verbose=False)
res["model_dir"] = str(model_dir)
Path(f"runs/demo_lev/{name}.json").write_text(json.dumps(res, indent=1, default=str))
print(name, {k: res["summary"][k] for k in ("pesq_wb", "stoi", "mel_distance")})
PY
