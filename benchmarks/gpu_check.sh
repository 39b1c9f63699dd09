#!/usr/bin/env bash
# The measurements that need an accelerator (see benchmarks/gpu_check.py): ResNet-50 training images/s in float32
# and mixed_float16, with and without XLA; the YOLO recipe's first epoch; batch-32 inference through the exported
# artifacts; then their ratios. Under 8 minutes on one GPU. Without a GPU it says so in one line and exits 0.
#
#   bash benchmarks/gpu_check.sh [--batch-size 64] [--steps 30] [--work FOLDER]
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
[ -x "$python" ] || python="$(command -v python3)"
exec "$python" benchmarks/gpu_check.py "$@"
