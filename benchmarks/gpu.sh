#!/usr/bin/env bash
# The whole GPU benchmark in one go, on a machine with one CUDA GPU and no network.
#
#   benchmarks/gpu.sh                      # alexnet@224, resnet18@96, googlenet@96
#   benchmarks/gpu.sh --compile            # also time cnnshape with torch.compile
#   DATA=/path/to/fashion-mnist benchmarks/gpu.sh --models resnet18 --full-epochs 0
#
# On the lent GPU machine, run it through benchmarks/on_device.sh (after
# benchmarks/prepare_device.sh here), which brings the data and the missing packages.
#
# Four stages, most wanted first, each with a time limit (seconds; override with
# TESTS_SECONDS=... and so on), so that one stage running long cannot cost the others; every
# stage appends its results as it goes, so a stage cut short keeps what it measured:
#   1. tests/test_gpu.py: bf16, channels_last and the no-sync path on CUDA
#   2. benchmarks/gpu.py: training speed against the book-style loop (arguments of this
#      script go to it)                                 -> gpu-results.md, gpu-results.jsonl
#   3. benchmarks/memory_gpu.py: predicted step memory against max_memory_allocated, and
#      the largest batch under a budget (MEMORY_ARGS="..." adds options)
#                                                       -> memory-gpu.md, memory-gpu.jsonl
#   4. benchmarks/ddp_overhead.py: plain `cnnshape train` against torchrun with one process
#      (DDP_ARGS="..." adds options, e.g. "--device cpu --models lenet" on a CPU)
#                                                       -> gpu-results.md
# Writes to $OUT (the device runner's result folder) or benchmarks/out, with nvidia-smi.txt and
# gpu.log (this script's whole output).
# Without the Fashion-MNIST files it measures speed on synthetic IDX files instead.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # cnnshape importable without installing
OUT_DIR=${OUT:-benchmarks/out}
mkdir -p "$OUT_DIR"

DATA=${DATA:-}
for candidate in "$DATA" shared/data/fashion-mnist ../shared/data/fashion-mnist; do
    if [ -n "$candidate" ] && [ -d "$candidate" ]; then DATA=$candidate; break; fi
done
DATA_ARGS=()
if [ -n "$DATA" ] && [ -d "$DATA" ]; then DATA_ARGS=(--data-dir "$DATA"); fi

stage() {  # stage NAME SECONDS COMMAND...: a failure or a timeout ends this stage only
    local name=$1 seconds=$2 started=$SECONDS code=0
    shift 2
    echo "== $name (at most ${seconds} s)"
    timeout --kill-after=10 "$seconds" "$@" || code=$?
    echo "== $name: exit $code after $((SECONDS - started)) s$([ "$code" = 124 ] && echo ' (time limit)')"
}

exec > >(tee -a "$OUT_DIR/gpu.log") 2>&1  # everything below, also kept as a file
nvidia-smi > "$OUT_DIR/nvidia-smi.txt" 2>&1 || true
stage "GPU tests" "${TESTS_SECONDS:-60}" "$PY" -m pytest -q -rs tests/test_gpu.py
stage "training speed" "${SPEED_SECONDS:-200}" \
    "$PY" benchmarks/gpu.py "${DATA_ARGS[@]}" --out "$OUT_DIR" "$@"
# shellcheck disable=SC2086  # MEMORY_ARGS and DDP_ARGS are lists of options
stage "step memory" "${MEMORY_SECONDS:-120}" \
    "$PY" benchmarks/memory_gpu.py --out "$OUT_DIR" --models lenet alexnet vgg-small nin \
    googlenet lenet-bn resnet18 densenet ${MEMORY_ARGS:-}
# shellcheck disable=SC2086
stage "DDP overhead" "${DDP_SECONDS:-90}" \
    "$PY" benchmarks/ddp_overhead.py "${DATA_ARGS[@]}" --out "$OUT_DIR" ${DDP_ARGS:-}
