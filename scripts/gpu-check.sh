#!/usr/bin/env bash
# The one prepared GPU check (issue 17.3): on a machine with an NVIDIA GPU, in under 10 minutes.
#
#   here, where ../shared/data is:  .venv/bin/python -m bench.gpu_check prepare   # build/gpu-inputs, ~9 MB
#   on the GPU machine:             scripts/gpu-check.sh [OUT]                     # default build/gpu-check
#
# 1. The GPU wheels, each pin of the [gpu] extra on its own (onnxruntime-gpu with its CUDA and
#    cuDNN libraries, TensorRT, cuda-python), into build/gpu-site: from PyPI where it is
#    reachable, else from the folder KIOSK_GPU_WHEELS (wheels carried to an offline machine). A
#    pin that cannot be had is written down in install.txt and the rest still runs.
# 2. python -m bench.gpu_check run: the onnxruntime CUDA and TensorRT execution providers, native
#    TensorRT FP16 and INT8 on every shipped bundle: cold start with and without the engine cache,
#    parity with the CPU on real images, latency at batch 1 and 8.
# 3. Everything lands in OUT: gpu-check.json, gpu-check.md (copy both to docs/gpu-check/, which
#    docs/engines.md includes), install.txt, nvidia-smi.txt.
# KIOSK_GPU_BUDGET_S (540) bounds the whole script; measuring stops in time to write the results.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-build/gpu-check}
PY=${PYTHON:-python3}
SITE=$PWD/build/gpu-site
INPUTS=${KIOSK_GPU_INPUTS:-build/gpu-inputs}
deadline=$(( $(date +%s) + ${KIOSK_GPU_BUDGET_S:-540} ))
mkdir -p "$OUT" "$SITE"
say() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$OUT/install.txt" >&2; }

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || say "nvidia-smi failed: no NVIDIA driver here"
[ -f "$INPUTS/cxr-pneumonia.npy" ] || [ -f "$INPUTS/fundus-dr.npy" ] \
  || say "no prepared inputs in $INPUTS: run 'python -m bench.gpu_check prepare' where the data is"

source=()
if [ -n "${KIOSK_GPU_WHEELS:-}" ]; then
  # offline: only the carried wheels; what they need (CUDA, cuDNN) must be on the machine already
  source=(--no-index --no-deps --find-links "$KIOSK_GPU_WHEELS")
fi
# the kiosk's own needs that a GPU image may lack (bundle signatures), then the [gpu] extra
requirements=$("$PY" deploy/requirements-jetson.py --with-onnxruntime | grep -E '^(cryptography|psutil)==')
requirements+=$'\n'$("$PY" deploy/requirements-jetson.py --extra gpu)
while IFS= read -r pin; do
  [ -n "$pin" ] || continue
  if "$PY" -m pip install -q --no-compile --disable-pip-version-check --target "$SITE" "${source[@]}" \
       "$pin" >> "$OUT/pip.log" 2>&1; then
    say "installed: $pin"
  else
    say "NOT installed: $pin ($(grep -E '^ERROR' "$OUT/pip.log" | tail -1))"
  fi
done <<< "$requirements"

export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
# onnxruntime-gpu and TensorRT find CUDA, cuDNN and libnvinfer in the nvidia-*/tensorrt wheels
libs=$("$PY" - "$SITE" <<'PY'
import glob, site, sys
roots = [sys.argv[1], *site.getsitepackages()]
print(":".join(sorted({d for r in roots for d in glob.glob(r + "/nvidia/*/lib") + glob.glob(r + "/tensorrt_libs")})))
PY
)
export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
budget=$(( deadline - $(date +%s) - 30 ))
say "measuring for at most $budget s"
PYTHONUNBUFFERED=1 "$PY" -m bench.gpu_check run --inputs "$INPUTS" --out "$OUT" --budget-s "$budget"
status=$?
say "done (exit $status): $OUT/gpu-check.json, $OUT/gpu-check.md"
exit $status
