#!/usr/bin/env bash
# On the lent GPU machine (its python3 holds torch): install the wheels that
# benchmarks/prepare_device.sh put in .device/whl, then benchmarks/gpu.sh on the carried
# Fashion-MNIST files (about 8 minutes in all; results in $OUT). Arguments go to
# benchmarks/gpu.py after these defaults: two epochs side by side, no 10-epoch run.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .device/whl/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
python3 -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
DATA=.device/fashion-mnist PYTHON=python3 exec benchmarks/gpu.sh --full-epochs 0 "$@"
