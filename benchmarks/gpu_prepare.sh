#!/usr/bin/env bash
# Fill .device/ (ignored by git) with what benchmarks/gpu_suite.sh needs on a bare GPU machine that
# has no network and no ../shared: the CIFAR-10 JPEG archive and wheels of the Python packages
# epochal needs that the machine's image lacks (pydantic and its parts, for Python 3.12 x86-64).
#
#   bash benchmarks/gpu_prepare.sh [CIFAR_ARCHIVE] [PYTHON_VERSION]
#
# Then, on the GPU machine, with .device carried along: bash benchmarks/gpu_suite.sh OUT_DIR
# (about 19 MB, well inside the 64 MiB a device call may carry).
set -euo pipefail
cd "$(dirname "$0")/.."
archive=${1:-../shared/data/cifar10-jpeg-train.tar.gz}
pyver=${2:-3.12}
[ -f "$archive" ] || { echo "gpu_prepare: no archive at $archive" >&2; exit 1; }
mkdir -p .device/wheels
cp "$archive" .device/cifar10-jpeg-train.tar.gz
pins=()
for name in pydantic pydantic_core annotated-types typing-inspection; do   # the versions CI tested
    pins+=("$(grep -i -E "^${name//[-_]/[-_]}==" constraints.txt)")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .device/wheels "${pins[@]}"
du -sh .device
ls .device .device/wheels
