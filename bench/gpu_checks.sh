#!/usr/bin/env bash
# Every GPU check of issues 24, 25 and 26 in one run of under 10 minutes (570 s of step limits) on one
# H100 or H200, for a lent device (README "GPU figures"). From the repository root, after the wheels of
# bench/gpu_wheels.sh are installed (README "GPU benchmark"); each step has its own time limit, so one
# that overruns costs only itself. The figures go to $OUT (the device tool's folder) or ./gpu-figures, one file per step.
set -u
cd "$(dirname "$0")/.."
out=${OUT:-gpu-figures}
mkdir -p "$out"
step() {  # NAME LIMIT_S COMMAND...: run it, print and keep its output
  local name=$1 limit=$2
  shift 2
  echo "## $name ($(date -u +%H:%M:%S), limit ${limit} s): $*"
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.txt"
  echo "## $name: exit ${PIPESTATUS[0]}"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
# issue 26: generator and encoder, eager and compiled (CUDA graphs), kernel launches, drift from the CPU
step generator 210 python3 bench/generator.py --device cuda --batches 1,32 --runs 5 --cache-dir "$out/inductor"
# issue 25: a training step of each kind at 1024 px, bf16 (the CUDA default) and fp32, augmentation on
step train 140 python3 bench/train.py --device cuda --sizes 1024 --precision bf16,fp32 --ada-p 0.3 --repeats 2
# issue 24: the stylize worker end to end through Redis and rq, PNG and JPEG, 1 and 64 jobs in flight; eager
# (compiling its 7 buckets of CUDA graphs would take the whole budget; the generator step times compiled networks)
step serving 160 python3 bench/gpu_serving.py --device cuda --networks real --size 1024 --inflight 1,64 \
  --formats png,jpeg --seconds 10 --env AGILEGAN_COMPILE=off
# issue 24: JPEG results of a batch on the GPU (nvJPEG) against host copies + Pillow in the CPU pool
step jpeg 30 python3 bench/device_jpeg.py --device cuda --batches 1,32 --runs 5
# issue 25: bf16 against fp32 training, the same run twice
step precision 30 python3 bench/precision.py --device cuda --size 256 --steps 200 --eval-every 100
