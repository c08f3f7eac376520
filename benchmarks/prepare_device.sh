#!/usr/bin/env bash
# Run HERE, before a session's GPU call: fills .device/ (git-ignored) with what the GPU
# machine cannot fetch (it has no network): the Fashion-MNIST files, and wheels of the
# packages its image lacks (torchinfo, pydantic) or may hold in other versions (typer, rich),
# for its Python 3.12. Then one call runs everything (benchmarks/on_device.sh):
#
#   device run, carry [".device"], timeout_s 540:  benchmarks/on_device.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/fashion-mnist}
mkdir -p .device/fashion-mnist .device/whl
cp "$DATA"/*.gz .device/fashion-mnist/
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .device/whl \
    torchinfo==1.8.0 typer==0.29.2 rich==15.0.0 pydantic==2.14.4 pydantic_core==2.50.5 \
    annotated-types==0.8.0 typing-inspection==0.4.5 typing_extensions==4.16.0 \
    shellingham==1.5.4 annotated-doc==0.0.7
du -sh .device
