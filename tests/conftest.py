"""Shared fixtures: a small trained LeNet-5 run folder made once per session from the embedded digits."""

from __future__ import annotations

import os
import subprocess
import sys
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


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `python -m kapps.cli ARGS` or a recipe script (when the first argument ends in .py) in a subprocess."""
    command = [sys.executable, *args] if args[0].endswith(".py") else [sys.executable, "-m", "kapps.cli", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, cwd=cwd or ROOT, env=env, capture_output=True, text=True, timeout=timeout)


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
