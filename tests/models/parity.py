"""Weights that are not the defaults, and export parity measured on logits.

A freshly built batch-norm net has moving mean 0 and variance 1, gamma 1 and beta 0, so a converter (or a weight
loader) that drops the statistics, swaps two of them or folds them wrongly answers as a correct one does, and
softmax outputs of an untrained net hide most of what is left. These helpers give every statistic a random value
and compare the artifacts' logits with the Keras model's on the logits' own scale.
"""

from __future__ import annotations

from pathlib import Path

from kapps.export import keras_runner, onnx_runner, saved_model_runner, tflite_runner, writers

import keras
import numpy as np

# Float artifacts: max |difference| <= FLOAT_TOLERANCE * max |logit|. Measured on resnet20, vgg16_c with batch
# norm and GoogLeNet: at most 7e-6 (TFLite and ONNX fold batch norm into the convolutions; the SavedModel is
# exact); a model with its statistics dropped is off by about 1.
FLOAT_TOLERANCE = 1e-4
# Quantised TFLite (dynamic range and int8): root-mean-square difference <= QUANTISED_TOLERANCE * spread, the
# spread being the standard deviation of the logits across the images (their image-dependent part, so an artifact
# that ignores its input is off by about 1). Measured on resnet20 and vgg16_c: dynamic 0.03-0.09, int8
# 0.07-0.18; with the statistics dropped or mean and variance swapped, 2.4 and more.
QUANTISED_TOLERANCE = 0.4


def varied_images(rng: np.random.Generator, count: int, size: int) -> np.ndarray:
    """Uniform noise with a random contrast and colour cast per image, as photos differ in exposure: noise alone
    averages to the same features in every image, and an untrained net's logits then hardly depend on it."""
    noise = rng.uniform(size=(count, size, size, 3))
    contrast = rng.uniform(0.2, 2.0, (count, 1, 1, 3))
    cast = rng.normal(0.0, 1.0, (count, 1, 1, 3))
    return (noise * contrast + cast).astype("float32")


def randomise_batch_norm(model: keras.Model, images: np.ndarray, seed: int) -> keras.Model:
    """Give every batch-norm layer random gamma, beta, moving mean and moving variance; returns `model`.

    gamma is normal around 1 and beta around 0. The moving statistics start as the layer's input statistics on
    `images`, as training leaves them (pure random ones drown the image in constant offsets within a few layers),
    then each channel's mean moves by a normal half of its standard deviation and its variance is multiplied by a
    factor uniform in [0.5, 2], so that neither the defaults nor the data's own statistics are what is folded.
    """
    rng = np.random.default_rng(seed)
    layers = [layer for layer in _layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        channels = layer.moving_mean.shape
        if layer.gamma is not None:
            layer.gamma.assign(rng.normal(1.0, 0.25, channels))
        if layer.beta is not None:
            layer.beta.assign(rng.normal(0.0, 0.25, channels))
        layer.momentum = 0.0  # one training-mode call then sets the moving statistics to the batch's
    model(images, training=True)
    for layer, momentum in zip(layers, momenta, strict=True):
        layer.momentum = momentum
        channels = layer.moving_mean.shape
        mean, variance = layer.moving_mean.numpy(), layer.moving_variance.numpy()
        layer.moving_mean.assign(mean + rng.normal(0.0, 0.5, channels) * np.sqrt(variance))
        layer.moving_variance.assign(variance * rng.uniform(0.5, 2.0, channels))
    return model


def randomise_weights(model: keras.Model, images: np.ndarray, seed: int) -> keras.Model:
    """Give every weight a random value; returns `model`.

    Kernels are He-normal for their own fan-in (two kernels of one shape differ, and the logits keep their scale),
    biases normal around 0, batch norm as `randomise_batch_norm` on `images`: nothing is left at a default that a
    loader could also produce by mistake.
    """
    rng = np.random.default_rng(seed)
    for layer in _layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            continue
        for weight in layer.weights:
            shape = tuple(weight.shape)
            if len(shape) > 1:
                weight.assign(rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[:-1])), shape))
            else:
                weight.assign(rng.normal(0.0, 0.1, shape))
    return randomise_batch_norm(model, images, seed + 1)


def misfold_batch_norm(model: keras.Model, how: str) -> keras.Model:
    """A copy of `model` whose batch-norm layers hold what a broken converter or loader would use.

    Args:
        model: the model to copy (left unchanged).
        how: `"drop"` (moving mean 0, variance 1), `"swap_mean_variance"` or `"swap_gamma_variance"` (a negative
            value put in a variance is taken by its magnitude, as a NaN would hide nothing).
    """
    if how not in ("drop", "swap_mean_variance", "swap_gamma_variance"):
        raise ValueError(f"how must be 'drop', 'swap_mean_variance' or 'swap_gamma_variance'. Received: {how=}")
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for layer in _layers(copy):
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        mean, variance = layer.moving_mean.numpy(), layer.moving_variance.numpy()
        if how == "drop":
            mean, variance = np.zeros_like(mean), np.ones_like(variance)
        elif how == "swap_mean_variance":
            mean, variance = variance, np.abs(mean)
        elif layer.gamma is not None:
            gamma = layer.gamma.numpy()
            layer.gamma.assign(variance)
            variance = np.abs(gamma)
        layer.moving_mean.assign(mean)
        layer.moving_variance.assign(variance)
    return copy


def keras_logits(model: keras.Model, images: np.ndarray) -> dict[str, np.ndarray]:
    """The Keras model's outputs in inference mode, keyed like the artifacts'."""
    return keras_runner(model)(images)


def exported_outputs(
    model: keras.Model,
    images: np.ndarray,
    folder: Path,
    *,
    quantizations: tuple[str, ...] = (),
    calibration: np.ndarray | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Write `model` as SavedModel, float TFLite, ONNX and one TFLite file per quantization under `folder` with
    kapps.export's writers, and return each artifact's outputs on `images`, run in its own runtime (keys
    `"saved_model"`, `"tflite"`, `"onnx"`, `"tflite_int8"`...). `calibration`: the images int8 is calibrated
    on, one at a time as `kapps.export` feeds them."""
    folder = Path(folder)
    saved = writers.write_saved_model(model, folder / "saved_model")
    runners = {
        "saved_model": saved_model_runner(saved),
        "tflite": tflite_runner(writers.write_tflite(saved, folder / "model.tflite")),
        "onnx": onnx_runner(writers.write_onnx(model, folder / "model.onnx")),
    }
    batches = None if calibration is None else lambda: (calibration[i : i + 1] for i in range(len(calibration)))
    for quantize in quantizations:
        path = writers.write_tflite(saved, folder / f"model_{quantize}.tflite", quantize=quantize, calibration=batches)
        runners[f"tflite_{quantize}"] = tflite_runner(path)
    return {name: run(images) for name, run in runners.items()}


def float_error(expected: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> float:
    """Largest |difference| over every output, over the largest |expected logit|."""
    assert set(got) == set(expected), (sorted(got), sorted(expected))
    return max(float(np.max(np.abs(got[k] - expected[k])) / np.max(np.abs(expected[k]))) for k in expected)


def quantised_error(expected: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> float:
    """Root-mean-square difference over each output's spread across the images (the standard deviation of the
    expected logits about their mean image), the largest over the outputs."""
    assert set(got) == set(expected), (sorted(got), sorted(expected))
    return max(
        float(np.sqrt(np.mean((got[k] - expected[k]) ** 2)) / np.std(expected[k] - expected[k].mean(axis=0)))
        for k in expected
    )


def assert_exports_match_logits(
    model: keras.Model,
    images: np.ndarray,
    folder: Path,
    *,
    quantizations: tuple[str, ...] = (),
    calibration: np.ndarray | None = None,
) -> dict[str, float]:
    """Export `model` (see `exported_outputs`) and check each artifact's logits against the Keras model's: float
    ones within FLOAT_TOLERANCE, quantised ones within QUANTISED_TOLERANCE. Returns the errors by artifact.

    First checks that the comparison can fail here: the same model with its batch-norm statistics dropped, or with
    moving mean and variance swapped, is off by more than a hundred times FLOAT_TOLERANCE on these images, and by
    more than five times QUANTISED_TOLERANCE when there are quantised artifacts to compare.
    """
    expected = keras_logits(model, images)
    for how in ("drop", "swap_mean_variance"):
        misfolded = keras_logits(misfold_batch_norm(model, how), images)
        assert float_error(expected, misfolded) > 100 * FLOAT_TOLERANCE, (how, float_error(expected, misfolded))
        if quantizations:
            error = quantised_error(expected, misfolded)
            assert error > 5 * QUANTISED_TOLERANCE, (how, error)
    errors = {}
    for name, got in exported_outputs(
        model, images, folder, quantizations=quantizations, calibration=calibration
    ).items():
        if name.startswith("tflite_"):
            errors[name] = quantised_error(expected, got)
            assert errors[name] <= QUANTISED_TOLERANCE, (name, errors[name])
        else:
            errors[name] = float_error(expected, got)
            assert errors[name] <= FLOAT_TOLERANCE, (name, errors[name])
    return errors


def _layers(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _layers(layer)
        else:
            yield layer
