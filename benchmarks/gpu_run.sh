#!/usr/bin/env bash
# Everything the course asks of a GPU, in one run. From the repository root, on a machine with a CUDA GPU:
#
#     OUT=outputs/gpu bash benchmarks/gpu_run.sh
#
# It installs the course (make setup, unless PYTHON is set: see below), prints the device, runs the
# tests that need a GPU (and fails if any of them is skipped), runs make bench on CUDA (textbook,
# course, large batch, CUDA graph and the conv VAE, then every notebook timed under nbval with nothing
# cached, 01 to 11 in order), then the conv VAE at four widths (benchmarks/conv_widths.py), and writes
# everything to $OUT:
# nvidia-smi.txt, device.txt, gpu_tests.log, bench.log, cuda.json and cuda.md (written once before
# the notebooks start, then again at the end), cuda-conv-widths.json and .md.
#
# On a machine that cannot reach PyPI, set PYTHON to an interpreter that already has torch,
# torchvision, pytest, nbval, ipykernel<7 and ipywidgets (for example through PYTHONPATH): make setup
# is then skipped and the repository is put on PYTHONPATH. Fashion-MNIST comes from Debian's
# dataset-fashion-mnist or from $VAE_DATA_DIR/FashionMNIST/raw (carry the four .gz files along if the
# machine has neither).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-outputs/gpu}
mkdir -p "$OUT"
export VAE_DATASET=${VAE_DATASET:-fashion-mnist}
export PYTHONUNBUFFERED=1
if [ -z "${PYTHON:-}" ]; then
  make setup || exit 1
  PYTHON=.venv/bin/python
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
status=0
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
"$PYTHON" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, \
'CUDA', torch.version.cuda, torch.cuda.get_device_name(0))" | tee "$OUT/device.txt" || exit 1
# The tests that skip without a GPU: here none may skip.
"$PYTHON" -m pytest tests/ -p no:cacheprovider -rs -k "cuda or gpu" 2>&1 | tee "$OUT/gpu_tests.log" || status=1
if grep -q "SKIPPED" "$OUT/gpu_tests.log"; then
  echo "a GPU test was skipped on the GPU machine" >&2
  status=1
fi
"$PYTHON" -m benchmarks.run --course --out "$OUT" 2>&1 | tee "$OUT/bench.log" || status=1
"$PYTHON" -m benchmarks.conv_widths --out "$OUT" 2>&1 | tee -a "$OUT/bench.log" || status=1
exit $status
