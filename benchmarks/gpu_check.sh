#!/usr/bin/env bash
# Issue 10's GPU checks as one prepared command, sized for a short lease on a GPU machine.
#
#   bash benchmarks/gpu_check.sh bench   # ~4-6 min: bench_device eager (1, 2, 4 concurrent cells)
#                                        #   and the Trainer under --compile reduce-overhead (CUDA graphs)
#   bash benchmarks/gpu_check.sh paper   # the paper rows of leaderboards/paper/matrix.toml, 3 cells
#                                        #   sharing the GPU (crafting Δs and Δc included: ~10+ min)
#
# Data: $UEBENCH_DATA if set, else the packed CIFAR-10 of ../shared/gpu copied into .gpu/ (see the
# developers' guide) is unpacked to /tmp/data. Results go to $OUT (default /tmp/gpu-check): JSON
# from the benchmark, results.csv and curves from the sweep — copy them into leaderboards/paper/
# and benchmarks/README.md by hand, naming the device.
set -uo pipefail
cd "$(dirname "$0")/.."
stage=${1:-bench}
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
if [ -z "${UEBENCH_DATA:-}" ]; then
  python3 .gpu/unpack_cifar.py .gpu/cifar10-q95.npz.xz /tmp/data || exit 1
  export UEBENCH_DATA=/tmp/data
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
case "$stage" in
  bench)
    timeout 300 python3 benchmarks/bench_device.py --device cuda --concurrent 1,2,4 --json "$out/bench-eager.json"
    timeout 240 python3 benchmarks/bench_device.py --device cuda --compile reduce-overhead --skip-crafting \
      --concurrent 1,2 --json "$out/bench-compiled.json"
    ;;
  paper)
    timeout 1500 python3 -m uebench.cli sweep leaderboards/paper/matrix.toml --out "$out/paper" --jobs 3
    ;;
  *)
    echo "usage: bash benchmarks/gpu_check.sh bench|paper" >&2
    exit 2
    ;;
esac
