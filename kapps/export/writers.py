"""Write a Keras model as a SavedModel, a `.tflite` file or an `.onnx` file, all with one named signature.

Every format sees the same `tf.function`: input `image` (batch axis free), outputs keyed by the model's output
names, so the three runtimes answer with the same names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from kapps.export.runtimes import INPUT_NAME, SIGNATURE
from kapps.formats import QUANTIZATIONS

import keras
import numpy as np
import tensorflow as tf


def serving_function(model: keras.Model) -> tuple[tf.types.experimental.GenericFunction, list[tf.TensorSpec]]:
    """The model as a `tf.function` with a named input and a dict of named outputs, and its input signature."""
    spec = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name=INPUT_NAME)]
    names = list(model.output_names)

    @tf.function(input_signature=spec)
    def serve(image):
        outputs = model(image, training=False)
        if isinstance(outputs, dict):
            return outputs
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        return {name: tf.cast(y, tf.float32) for name, y in zip(names, outputs, strict=True)}

    return serve, spec


def write_saved_model(model: keras.Model, path: Path) -> Path:
    """A SavedModel whose `serving_default` signature takes `image` and returns the named outputs."""
    serve, spec = serving_function(model)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name=SIGNATURE, fn=serve, input_signature=spec)
    archive.write_out(str(path), verbose=False)
    return Path(path)


def write_tflite(
    saved_model: Path,
    path: Path,
    *,
    quantize: str = "none",
    calibration: Callable[[], Iterable[np.ndarray]] | None = None,
) -> Path:
    """Convert a SavedModel to TFLite builtins only (no Select TF ops).

    Args:
        saved_model: the SavedModel written by `write_saved_model`.
        path: the `.tflite` file to write.
        quantize: `"none"` (float32), `"dynamic"` (int8 weights), `"float16"` (float16 weights) or `"int8"`
            (int8 weights and activations, float32 input and output, calibrated on `calibration`).
        calibration: returns an iterable of single-image batches, for `"int8"`.
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}. Received: quantize={quantize!r}")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=[SIGNATURE])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        if calibration is None:
            raise ValueError("int8 quantization needs calibration data")
        converter.representative_dataset = lambda: ([image] for image in calibration())
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    path = Path(path)
    path.write_bytes(converter.convert())
    return path


def write_onnx(model: keras.Model, path: Path, *, opset: int = 17) -> Path:
    """Convert the serving function to ONNX with tf2onnx, input `image` and outputs named as in Keras."""
    import tf2onnx

    serve, spec = serving_function(model)
    tf2onnx.convert.from_function(serve, input_signature=spec, opset=opset, output_path=str(path))
    return Path(path)
