#!/usr/bin/env bash
# Fine-tune several transfer recipes side by side on one GPU (issue 12: "one prepared script that
# fits in 10 minutes of an H200"), each with `python -m export train RECIPE --device cuda`.
#
#   scripts/train-gpu.sh DATA WORK OUT MINUTES RECIPE...
#
# (DEVICE=cpu runs the same on the CPU, as a smoke test.)
# DATA: a copy of ../shared/data holding at least the train and calibration images (the test
# split is never opened; `python -m export.pack RECIPE OUT` makes one, in parts of a size, with
# the ImageNet weights' package to put on PYTHONPATH); WORK: caches and checkpoints; OUT: where each run's best.pt (the EMA
# weights of its best calibration-split epoch) and history.json are copied; MINUTES: each run's
# time budget (its cosine schedule is compressed to end within it). The images are rendered once
# through the kiosk's preprocessing before the runs start. Then on this machine:
#   mkdir -p export/work/RECIPE/lite && cp OUT/RECIPE.best.pt export/work/RECIPE/lite/best.pt
#   python -m export.soup RECIPE... --against models/fundus-dr-2.0.1
set -euo pipefail
data=$1 work=$2 out=$3 minutes=$4
shift 4
python=${PYTHON:-python3}
device=${DEVICE:-cuda}  # DEVICE=cpu: the same runs on the CPU (a smoke test)
mkdir -p "$work" "$out"
cores=$(nproc)
threads=$(( cores / $# > 1 ? cores / $# : 1 ))
"$python" - "$data" "$work" "$1" <<'PY'
import sys
from pathlib import Path
from export.data import load_real
from export.recipes import RECIPES
recipe = RECIPES[sys.argv[3]]
load_real(recipe.task, recipe.spec, recipe.seed, data=Path(sys.argv[1]), cache=Path(sys.argv[2]),
          fractions=recipe.fractions, splits=("train", "calibration"))
PY
pids=()
for recipe in "$@"; do
  "$python" -m export train "$recipe" --device "$device" --no-build --fresh --threads "$threads" \
    --data "$data" --work "$work" --time-budget-min "$minutes" > "$work/$recipe.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for recipe in "$@"; do echo "== $recipe"; tail -n 40 "$work/$recipe.log"; done
for recipe in "$@"; do
  [ -f "$work/$recipe/lite/history.json" ] && cp "$work/$recipe/lite/history.json" "$out/$recipe.history.json"
  # best.pt with its weights in fp16 (half the size: a Lite2 checkpoint is 19 MB in fp32)
  [ -f "$work/$recipe/lite/best.pt" ] && "$python" -c "
import sys, torch
saved = torch.load(sys.argv[1], map_location='cpu', weights_only=True)
saved['ema'] = {k: v.half() if v.is_floating_point() else v for k, v in saved['ema'].items()}
torch.save(saved, sys.argv[2])" "$work/$recipe/lite/best.pt" "$out/$recipe.best.pt"
done
exit $status
