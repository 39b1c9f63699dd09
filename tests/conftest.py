"""Shared fixtures: a small trained LeNet-5 run folder made once per session from the embedded digits, and its
export in every format."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import kapps.data
import kapps.models
import kapps.train

import keras
import pytest

ROOT = Path(__file__).resolve().parents[1]


def train_lenet(out: Path, *, epochs: int = 2, steps: int | None = None, callbacks=(), **options) -> kapps.train.Run:
    """Train LeNet-5 on digits through the engine, as the recipe does, at a small budget."""
    opts = kapps.train.TrainOptions(
        epochs=epochs, batch_size=32, lr=2e-3, out=str(out), steps_per_epoch=steps, **options
    )
    data = kapps.data.load("digits", image_size=(32, 32), seed=opts.seed)
    train = kapps.data.pipeline(data.train, batch_size=32, training=True, seed=opts.seed)
    val = kapps.data.pipeline(data.val, batch_size=256, training=False)
    test = kapps.data.pipeline(data.test, batch_size=256, training=False)
    return kapps.train.fit(
        opts,
        build_model=lambda: kapps.models.build("lenet5"),
        train=train,
        train_steps=opts.epoch_steps(data.sizes["train"]),
        val=val,
        test=test,
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
        config={"task": "classification", "model": {"name": "lenet5"}, "data": data.describe()},
        callbacks=callbacks,
    )


@pytest.fixture(scope="session")
def lenet_run(tmp_path_factory) -> kapps.train.Run:
    """A LeNet-5 run folder trained for 4 epochs on digits: good enough that its classes are not ties."""
    return train_lenet(tmp_path_factory.mktemp("runs") / "lenet5", epochs=4)


@dataclass(frozen=True)
class Export:
    """An export folder with its report and what `kapps export` printed while writing it."""

    path: Path
    report: dict
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def lenet_export(lenet_run, tmp_path_factory) -> Export:
    """`kapps export RUN --format all --quantize int8` of `lenet_run`, run once in-process: SavedModel, float and
    int8 TFLite and ONNX, verified. Tests read it; a test that writes into an export folder copies it first."""
    from kapps.cli import main

    from click.testing import CliRunner

    out = tmp_path_factory.mktemp("export") / "lenet5"
    args = ["export", str(lenet_run.path), "--format", "all", "--quantize", "int8", "--out", str(out)]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "export_report.json").read_text())
    return Export(out, report, result.stdout, result.stderr)


@pytest.fixture
def empty_cwd(tmp_path_factory, monkeypatch) -> Path:
    """A fresh empty working directory, so that a test sees files written to the default output folders too
    (`export/<run name>`, `predictions/`), which are relative to it."""
    cwd = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(cwd)
    return cwd


def error_line(result) -> str:
    """The line a user mistake prints, from a `CliRunner` result: exit status 1 through kapps' own `sys.exit` (an
    exception that escapes, a traceback in a real process, also gives status 1 in CliRunner), nothing on stdout and
    one sentence `error: ....` on stderr."""
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (result.exception, result.output)
    assert result.stdout == "", result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and lines[0].endswith("."), result.stderr
    return lines[0]


def git_commit_of_checkout(folder: Path = ROOT) -> str | None:
    """The commit of the checkout at `folder` as git's own porcelain says it, `-dirty` when a tracked file differs
    from it (what every run folder and export report must record), or None when `folder` is not a checkout."""
    head = subprocess.run(["git", "-C", str(folder), "log", "-1", "--format=%H"], capture_output=True, text=True)
    if head.returncode != 0:
        return None
    changed = subprocess.run(["git", "-C", str(folder), "diff", "--quiet", "HEAD"], capture_output=True).returncode
    return head.stdout.strip() + ("-dirty" if changed else "")


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `python -m kapps.cli ARGS` or a recipe script (when the first argument ends in .py) in a subprocess."""
    command = [sys.executable, *args] if args[0].endswith(".py") else [sys.executable, "-m", "kapps.cli", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, cwd=cwd or ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def run_kapps(*args: str, cwd: Path, script: bool = False, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the `kapps` console script (`script=True`) or `python -m kapps.cli` with ARGS in `cwd`, in an environment
    without the variables that quieten or unquieten TensorFlow, so what stderr shows is kapps' own doing."""
    program = [str(Path(sys.executable).with_name("kapps"))] if script else [sys.executable, "-m", "kapps.cli"]
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "KAPPS_TF_LOGS")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([*program, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def assert_exports_match(model, images, folder: Path, *, atol: float = 1e-4) -> dict:
    """Write `model` as SavedModel, TFLite and ONNX under `folder`, run each in its own runtime on `images` and
    check every output against the Keras model (max abs diff <= atol, same top-1 class). Returns the diffs."""
    from kapps.export import keras_runner, onnx_runner, saved_model_runner, tflite_runner, writers

    import numpy as np

    folder = Path(folder)
    expected = keras_runner(model)(images)
    saved = writers.write_saved_model(model, folder / "saved_model")
    artifacts = {
        "saved_model": saved_model_runner(saved),
        "tflite": tflite_runner(writers.write_tflite(saved, folder / "model.tflite")),
        "onnx": onnx_runner(writers.write_onnx(model, folder / "model.onnx")),
    }
    diffs = {}
    for name, runner in artifacts.items():
        got = runner(images)
        assert set(got) == set(expected), (name, sorted(got), sorted(expected))
        diffs[name] = max(float(np.max(np.abs(got[k] - expected[k]))) for k in expected)
        assert diffs[name] <= atol, (name, diffs[name])
        for k, v in expected.items():
            if v.ndim == 2 and v.shape[-1] > 1:
                np.testing.assert_array_equal(np.argmax(got[k], -1), np.argmax(v, -1), err_msg=name)
    return diffs


def tflite_ops(path) -> set[str]:
    """The operator names in a .tflite file (TensorFlow's analyzer prints them; Flex ops would be Select TF ops)."""
    import contextlib
    import io
    import re

    import tensorflow as tf

    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        tf.lite.experimental.Analyzer.analyze(model_path=str(path))
    return set(re.findall(r"Op#\d+ (\w+)", text.getvalue()))
