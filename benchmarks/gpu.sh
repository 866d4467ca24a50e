#!/usr/bin/env bash
# Every GPU figure of the project in one run, each next to its reference and goal, with the machine
# named. Under 5 minutes on one CUDA GPU; paste its output into benchmarks/README.md.
#   bash benchmarks/gpu.sh            on a machine with an NVIDIA GPU (after bash scripts/setup.sh)
#   bash benchmarks/gpu.sh --smoke    on any machine, CPU and tiny random models: checks the script
# Sections: the CUDA agreement test; the rasteriser (goal: 12 x 64 strokes <= 2 ms); one 16-stroke
# CLIPasso sketch and the 4-level x 3-seed set projected to 2000 iterations (goal <= 60 s on an
# H100-class GPU); the default CLIPascene matrix projected (goal <= 10 min); peak GPU memory of each;
# the default set's time to a usable sketch at the caps of 500, 1000 and 2000 iterations.
# The references run CLIP in fp16 on CUDA, as the official code does there. The CLIPasso section
# prints the sketches per CLIP pass and the fp16 loss scale each run used, and fp16's gradient cosine.
# On a Mac (no CUDA): python benchmarks/clipasso.py --device mps --parity-only prints MPS's cosines.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1

if [ "$SMOKE" = 1 ]; then
  DEVICE=cpu
  # One torch thread: on a shared 2-core machine two threads that wait for each other make the tiny
  # models several times slower (the smoke run measures nothing; it must only be quick).
  export OMP_NUM_THREADS=1
  RASTER=(--repeats 2 --cases 1x4,2x4)
  CLIPASSO=(--iterations 3 --models tiny-random --skip-parity --skip-bf16)
  CLIPASCENE=(--iterations 4 --models tiny-random --skip-parity --layers 2)
  CONVERGENCE=(--models tiny-random --strokes 8,4 --seeds 0 --iterations 30 --caps 20)
  LIMIT=900  # a shared, loaded CPU
else
  DEVICE=cuda
  RASTER=(--repeats 20)
  CLIPASSO=(--iterations 5)
  CLIPASCENE=(--iterations 6)
  CONVERGENCE=(--iterations 2000)  # the default set, random models: what bridge.estimates' figure rests on
  LIMIT=120
  if ! "$PY" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())'; then
    echo "error: no CUDA GPU is usable here (torch.cuda.is_available() is false)" >&2
    echo "  fix: run on a machine with an NVIDIA GPU and a CUDA build of PyTorch, or pass --smoke" >&2
    exit 4
  fi
fi

failed=()
section() {  # section TITLE GOAL COMMAND...: run with a time limit; a failure is named, the rest goes on
  local title=$1 goal=$2
  shift 2
  echo
  echo "== $title"
  [ -n "$goal" ] && echo "goal: $goal"
  local start=$SECONDS
  timeout -s INT -k 10 "$LIMIT" "$@"  # INT: a section stopped at its limit still prints what it has
  local rc=$?
  echo "(${title}: $((SECONDS - start)) s, exit $rc)"
  [ "$rc" -eq 0 ] || failed+=("$title (exit $rc)")
}

echo "== machine"
date -u +"%Y-%m-%d %H:%M UTC"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/GPU: /'
else
  echo "GPU: none (nvidia-smi not found)"
fi
"$PY" -c 'import torch, platform; print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, Python {platform.python_version()}")'
[ "$SMOKE" = 1 ] && echo "SMOKE RUN: CPU and tiny random models; the figures check the script, they measure nothing"

section "CUDA agreement test (tests/test_raster.py: CUDA forward and gradients vs CPU)" "" \
  "$PY" -m pytest -q -p no:cacheprovider tests/test_raster.py -k cuda -rs
section "rasteriser, ours vs a naive dense renderer" "12 x 64 strokes <= 2 ms (forward + backward, 224 px)" \
  "$PY" benchmarks/raster.py --device "$DEVICE" "${RASTER[@]}"
section "CLIPasso, ours vs the official-shaped reference" \
  "full set (4 levels x 3 seeds, 2000 iterations) <= 60 s on an H100-class GPU" \
  "$PY" benchmarks/clipasso.py --device "$DEVICE" "${CLIPASSO[@]}"
section "CLIPascene, ours vs the official-shaped reference" "default matrix <= 10 min" \
  "$PY" benchmarks/clipascene.py --device "$DEVICE" "${CLIPASCENE[@]}"
section "Time to a usable sketch (iterations to 90 % / 99 % of the loss decrease)" \
  "sets bridge.estimates.USABLE_ITERATIONS (360 from a CPU run of 770 iterations)" \
  "$PY" benchmarks/convergence.py --device "$DEVICE" "${CONVERGENCE[@]}"

echo
if [ ${#failed[@]} -gt 0 ]; then
  printf 'failed: %s\n' "${failed[@]}"
  exit 1
fi
echo "all sections ran (total $SECONDS s)"
