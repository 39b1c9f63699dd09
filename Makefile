# Both targets bootstrap .venv on a fresh machine that has only python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kapps-installed
WHEELS := $(VENV)/wheels

.PHONY: demo test lint installed-check clean

# The dependencies come from the package index as wheels into .venv/wheels, and are installed from there: the
# installed-package check below installs the built kapps wheel into a fresh venv from the same files, without
# fetching TensorFlow again (pip kept no download cache of it on these machines). setuptools and wheel are kept for building kapps.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip wheel --quiet --wheel-dir $(WHEELS) ".[dev]" "setuptools>=77" wheel
	rm -f $(WHEELS)/kapps-*.whl
	$(BIN)/python -m pip install --quiet --no-index --find-links $(WHEELS) -e ".[dev]"
	touch $(STAMP)

# Train LeNet-5 on the embedded digits, export it to SavedModel, TFLite (float32 and int8) and ONNX, verify each
# artifact in its own runtime and print the table.
demo: $(STAMP)
	$(BIN)/python recipes/lenet5.py --out saved_models/lenet5-demo --no-resume
	$(BIN)/kapps export saved_models/lenet5-demo --format all --quantize int8 --out export/lenet5-demo

# --durations=20: CI (.ci/run is `make test`) lists the 20 slowest tests, so a slow newcomer shows up in the log.
# -n $(JOBS) --dist loadfile: pytest-xdist runs the test files in JOBS processes (a file's tests, and so its module
# fixtures, stay in one); on the 2-core CI machine the suite took 8 min 54 s against 13 min 3 s in one process,
# which kept one core idle while TensorFlow traced graphs and converters ran. `make test JOBS=0` runs it in one process.
JOBS ?= 2
test: lint
	$(BIN)/python -m pytest -q -n $(JOBS) --dist loadfile --durations=20

# ruff, then lint-imports: the layering contracts in pyproject.toml's [tool.importlinter]. The recipes are checked
# as kapps/recipes (recipes/ is a link to it; naming both would report each finding twice).
lint: $(STAMP)
	$(BIN)/ruff check kapps benchmarks tests
	$(BIN)/ruff format --check kapps benchmarks tests
	$(BIN)/lint-imports

# kapps as a user installs it: the wheel in a fresh venv outside the checkout, run from an empty folder (kapps
# models, train, export, predict). .ci/run runs it after `make test`.
installed-check: $(STAMP)
	PYTHON=$(abspath $(BIN)/python) KAPPS_WHEELS=$(abspath $(WHEELS)) bash .ci/installed_check.sh

clean:
	rm -rf $(VENV) build *.egg-info
