#!/usr/bin/env bash
# Everything the course asks of a GPU, in one run (issue: "The course on a GPU"). Not yet run: no GPU
# has been lent to this project. Usage, on a machine with a CUDA GPU, from the repository root:
#
#     OUT=outputs/gpu bash benchmarks/gpu_run.sh
#
# It installs the course (make setup), prints the device, runs the tests that need a GPU (and fails
# if any of them is skipped), runs make bench on CUDA (textbook, course, large batch, CUDA graph and
# the conv VAE, plus every notebook timed under nbval with nothing cached) and writes everything to
# $OUT: nvidia-smi.txt, gpu_tests.log, cuda.json, cuda.md and bench.log. Fashion-MNIST comes from
# Debian's dataset-fashion-mnist or from data/ (carry data/ along if the machine has neither).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-outputs/gpu}
mkdir -p "$OUT"
export VAE_DATASET=${VAE_DATASET:-fashion-mnist}
make setup
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
.venv/bin/python -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))" \
  | tee "$OUT/device.txt"
# The tests that skip without a GPU: here none may skip.
.venv/bin/python -m pytest tests/ -p no:cacheprovider -rs -k "cuda or gpu" 2>&1 | tee "$OUT/gpu_tests.log"
if grep -q "SKIPPED" "$OUT/gpu_tests.log"; then
  echo "a GPU test was skipped on the GPU machine" >&2
  exit 1
fi
.venv/bin/python -m benchmarks.run --course --out "$OUT" 2>&1 | tee "$OUT/bench.log"
