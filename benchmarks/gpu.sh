#!/usr/bin/env bash
# The whole GPU benchmark in one go, on a machine with one CUDA GPU and no network.
#
#   benchmarks/gpu.sh                      # alexnet@224, resnet18@96, googlenet@96
#   benchmarks/gpu.sh --compile            # also time cnnshape with torch.compile
#   DATA=/path/to/fashion-mnist benchmarks/gpu.sh --models resnet18 --full-epochs 0
#
# Writes to $OUT (the device runner's result folder) or benchmarks/out: nvidia-smi.txt,
# test_gpu.txt (the GPU tests), memory-gpu.md and memory-gpu.jsonl (predicted step memory
# against the allocator), gpu-results.md and gpu-results.jsonl (appended per model).
# First it measures DDP's cost on one GPU (benchmarks/ddp_overhead.py: plain `cnnshape train`
# vs `torchrun --nproc_per_node=1`, resnet18 and alexnet, 2 epochs; DDP_ARGS="..." adds or
# overrides its options, e.g. DDP_ARGS="--device cpu --models lenet" to check it on a CPU).
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

nvidia-smi > "$OUT_DIR/nvidia-smi.txt" 2>&1 || true
"$PY" -m pytest -q tests/test_gpu.py > "$OUT_DIR/test_gpu.txt" 2>&1 || true
tail -n 3 "$OUT_DIR/test_gpu.txt"
# Predicted step memory against max_memory_allocated, and the largest batch under a budget
# (benchmarks/memory_gpu.py; MEMORY_ARGS="..." adds or overrides its options).
# shellcheck disable=SC2086
"$PY" benchmarks/memory_gpu.py --out "$OUT_DIR" --models lenet alexnet vgg-small nin \
    googlenet lenet-bn resnet18 densenet ${MEMORY_ARGS:-} || true
# shellcheck disable=SC2086  # DDP_ARGS is a list of options
"$PY" benchmarks/ddp_overhead.py "${DATA_ARGS[@]}" --out "$OUT_DIR" ${DDP_ARGS:-}
"$PY" benchmarks/gpu.py "${DATA_ARGS[@]}" --out "$OUT_DIR" "$@"
