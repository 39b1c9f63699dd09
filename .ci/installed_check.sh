#!/usr/bin/env bash
# The installed form of kapps, as a user gets it: build the wheel from the checkout's tracked files, install it into
# a fresh virtual environment outside the checkout (with its dependencies, as pip resolves them from the wheel's
# metadata), and from an empty temporary folder run `kapps models`, `kapps train` (the list and
# a LeNet-5 run at a tiny budget), `kapps export` of that run and `kapps predict` on one image with the exported
# TFLite file. Any module or data file that the wheel lacks fails a command, and so this script.
#
#   bash .ci/installed_check.sh         # `make installed-check`; .ci/run runs it after `make test`
#
# PYTHON (default: the checkout's .venv/bin/python) builds the wheel and makes the venv, so the new venv has the
# Python that .venv has. The dependencies are installed from the wheels in KAPPS_WHEELS (default: .venv/wheels,
# which `make` fills from the package index when it sets up .venv; filled here if missing), with --no-index, so the
# check fetches nothing and takes the versions .venv has. The work folder is removed at the end unless
# KAPPS_KEEP_CHECK=1.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
wheels="${KAPPS_WHEELS:-$root/.venv/wheels}"
work="$(mktemp -d "${TMPDIR:-/tmp}/kapps-installed-check.XXXXXX")"
if [ "${KAPPS_KEEP_CHECK:-0}" = 1 ]; then
    trap 'echo "installed check: work folder kept: $work"' EXIT
else
    trap 'rm -rf "$work"' EXIT
fi

start=$(date +%s.%N)
last=$start
stage() {  # one line per finished stage, with its time and the time so far
    local now
    now=$(date +%s.%N)
    awk -v what="$1" -v now="$now" -v last="$last" -v start="$start" \
        'BEGIN { printf "installed check: %-62s %6.1f s (%5.1f s in all)\n", what, now - last, now - start }'
    last=$now
}
fail() {
    echo "installed check FAILED: $*" >&2
    exit 1
}

# 1. The wheel, built from a copy of the tracked files: setuptools builds in the source folder, and a build/ left
#    there by an earlier build could slip a deleted module into the wheel.
mkdir "$work/src" "$work/dist" "$work/run"
(cd "$root" && git ls-files -z | tar --null -T - -cf -) | tar -xf - -C "$work/src"
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$work/dist" "$work/src"
wheel=$(ls "$work/dist"/kapps-*.whl)
recipes=$(cd "$root/kapps/recipes" && ls ./*.py | wc -l)
packed=$("$python" -m zipfile -l "$wheel" | grep -c '^kapps/recipes/[^/]*\.py ' || true)
[ "$packed" = "$recipes" ] || fail "the wheel holds $packed files of kapps/recipes/, the checkout $recipes."
stage "built $(basename "$wheel") ($packed recipe files)"

# 2. A fresh venv outside the checkout, with the wheel and its dependencies. --no-compile: with pip compiling the
#    bytecode of all of TensorFlow the install took 2 min 20 s on the busy 2-core machine, 27 s without; the
#    commands below compile only the modules they import.
if [ ! -d "$wheels" ]; then
    "$python" -m pip wheel --quiet --wheel-dir "$wheels" "$wheel"
    rm -f "$wheels"/kapps-*.whl
    stage "fetched the dependencies' wheels into $wheels"
fi
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --no-compile --no-index --find-links "$wheels" "$wheel"
stage "installed it and its dependencies into a fresh venv"

# 3. The commands, from an empty folder, with nothing of the checkout on the path.
cd "$work/run"
export PATH="$work/venv/bin:$PATH"
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV
kapps="$work/venv/bin/kapps"
py="$work/venv/bin/python"

# Where kapps is imported from, found without importing it (each kapps command imports TensorFlow, 10-25 s here).
found=$("$py" -c 'import importlib.util; print(importlib.util.find_spec("kapps").origin)')
case "$found" in
    "$work/venv/"*) ;;
    *) fail "kapps is imported from $found, not from the new venv." ;;
esac
models=$("$kapps" models)
grep -q '^lenet5 ' <<<"$models" || fail "kapps models does not list lenet5."
listing=$("$kapps" train)
grep -q '^  yolo ' <<<"$listing" || fail "kapps train does not list the yolo recipe."
stage "kapps models, kapps train (the list of recipes)"

"$kapps" train lenet5 --epochs 1 --steps-per-epoch 2
"$py" - <<'EOF'
import json
from importlib import metadata

config = json.loads(open("saved_models/lenet5/config.json").read())
versions = config["versions"]
assert versions["kapps"] == metadata.version("kapps"), versions
assert versions["kapps_commit"] is None, versions  # an installed copy is no checkout
EOF
stage "kapps train lenet5 --epochs 1 --steps-per-epoch 2"

"$kapps" export saved_models/lenet5
[ -f export/lenet5/export_report.json ] || fail "kapps export wrote no export/lenet5/export_report.json."
stage "kapps export saved_models/lenet5 (SavedModel, TFLite, ONNX, verified)"

"$py" - <<'EOF'
import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

digits = load_digits()
Image.fromarray((digits.images[0] * 255 / 16).astype(np.uint8)).resize((32, 32)).save("digit.png")
EOF
"$kapps" predict export/lenet5/model.tflite digit.png
"$py" - <<'EOF'
import json

entry = json.loads(open("predictions/digit.json").read())
assert entry["task"] == "classification" and len(entry["top5"]) == 5, entry
EOF
stage "kapps predict export/lenet5/model.tflite digit.png"

cd /
if [ "${KAPPS_KEEP_CHECK:-0}" != 1 ]; then
    rm -rf "$work"
    stage "removed the work folder"
fi
echo "installed check passed"
