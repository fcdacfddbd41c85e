#!/usr/bin/env bash
# Every GPU measurement of the issues in one command: the three benchmarks and the `gpu` tests.
#
#   bash benchmarks/gpu_suite.sh [OUT_DIR] [CIFAR_ARCHIVE]
#
# OUT_DIR (default bench-results/) receives one JSON file per benchmark (the script's last line)
# plus the full logs; CIFAR_ARCHIVE defaults to ../shared/data/cifar10-jpeg-train.tar.gz.
# A failing step is reported and the others still run; the exit status is that of the worst step.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench-results}
archive=${2:-../shared/data/cifar10-jpeg-train.tar.gz}
mkdir -p "$out"
status=0

step() {  # step NAME COMMAND...: run, keep the log, save the last line as NAME.json
    local name=$1
    shift
    echo "== $name: $*"
    if "$@" >"$out/$name.log" 2>&1; then
        tail -n 1 "$out/$name.log" | tee "$out/$name.json"
    else
        local rc=$?
        echo "!! $name failed (exit $rc); see $out/$name.log"
        tail -n 20 "$out/$name.log"
        status=$rc
    fi
}

python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'" || exit 2
step loop_overhead_cnn python benchmarks/loop_overhead.py --device cuda --model cnn
step loop_overhead_mlp python benchmarks/loop_overhead.py --device cuda --model mlp
step data_pipeline python benchmarks/data_pipeline.py --device cuda --archive "$archive"
step regnet_throughput python benchmarks/regnet_throughput.py --device cuda
echo "== gpu tests"
python -m pytest -q -m gpu -p no:cacheprovider >"$out/gpu_tests.log" 2>&1 || status=$?
tail -n 3 "$out/gpu_tests.log"
exit $status
