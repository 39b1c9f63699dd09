"""Run an exported artifact in its own runtime: one callable `images -> {output name: array}` per format."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

Runner = Callable[[np.ndarray], dict[str, np.ndarray]]
"""Every runner also has `input_shape`: the model's input shape without the batch axis (None where free)."""

SIGNATURE = "serving_default"
INPUT_NAME = "image"


def keras_runner(model) -> Runner:
    """The Keras model itself, called eagerly (no `predict` overhead), outputs keyed like the exports."""
    names = list(model.output_names)

    def run(images: np.ndarray) -> dict[str, np.ndarray]:
        outputs = model(images, training=False)
        return _named(outputs, names)

    run.input_shape = tuple(model.input_shape[1:])
    return run


def saved_model_runner(path: Path) -> Runner:
    """The SavedModel's serving signature, through `tf.saved_model.load`."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    signature = loaded.signatures[SIGNATURE]

    def run(images: np.ndarray) -> dict[str, np.ndarray]:
        outputs = signature(**{INPUT_NAME: tf.constant(images)})
        return {k: v.numpy() for k, v in outputs.items()}

    run.keepalive = loaded  # the signature's variables live as long as the loaded object
    run.input_shape = tuple(signature.structured_input_signature[1][INPUT_NAME].shape[1:])
    return run


def tflite_runner(path: Path, *, num_threads: int | None = None) -> Runner:
    """The `.tflite` file's serving signature, through the LiteRT interpreter of `ai_edge_litert`.

    `num_threads` defaults to every CPU, as TensorFlow and onnxruntime use, so their latencies compare fairly
    (the interpreter's own default is one thread).
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=num_threads or os.cpu_count())
    runner = interpreter.get_signature_runner(SIGNATURE)

    def run(images: np.ndarray) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in runner(**{INPUT_NAME: images}).items()}

    run.keepalive = interpreter
    shape = runner.get_input_details()[INPUT_NAME]["shape_signature"][1:]
    run.input_shape = tuple(None if d < 0 else int(d) for d in shape)
    return run


def onnx_runner(path: Path, *, num_threads: int | None = None) -> Runner:
    """The `.onnx` file through an onnxruntime CPU `InferenceSession`.

    `num_threads` sets the session's intra-op threads; None keeps onnxruntime's default (one per physical core).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if num_threads is not None:
        options.intra_op_num_threads = num_threads
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    input_name = session.get_inputs()[0].name

    def run(images: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(names, {input_name: images}), strict=True))

    run.input_shape = tuple(d if isinstance(d, int) else None for d in session.get_inputs()[0].shape[1:])
    return run


RUNNERS = {"saved_model": saved_model_runner, "tflite": tflite_runner, "onnx": onnx_runner}


def _named(outputs, names: list[str]) -> dict[str, np.ndarray]:
    if isinstance(outputs, dict):
        return {k: np.asarray(v) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return {n: np.asarray(v) for n, v in zip(names, outputs, strict=True)}
    return {names[0]: np.asarray(outputs)}
