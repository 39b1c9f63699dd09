"""Recurrent layers in a form the converters take: unrolled over their fixed number of steps.

Keras 3's SimpleRNN, LSTM and GRU (and ConvLSTM2D, any `keras.layers.RNN`) trace, when not unrolled, to a
`tf.while_loop` over a TensorList whose element shape holds the free batch axis; TFLite's builtin ops refuse it
("TensorListReserve requires element_shape to be static", measured with TF 2.21 for all three cells), and the fused
UNIDIRECTIONAL_SEQUENCE_LSTM is not offered either: the converter fuses only functions marked with an
`_implements`/`api_implements` attribute, which tf.keras 2's LSTM set and Keras 3's layers do not. Unrolled, the
recurrence is one copy of the cell per step, the weights shared: FULLY_CONNECTED, LOGISTIC, TANH, MUL, ADD,
SPLIT, UNPACK and PACK, all builtins (an LSTM of 128 units over 200 steps: an 830 kB file, 12 s to convert).

Models train faster as a loop (an LSTM of 128 units over 200 steps, batch 64, on 2 CPU cores: 0.16 s a step and
2.5 s to build, against 0.29 s and 19 s unrolled; on a GPU only the loop runs on cuDNN), so kapps trains the loop
and `kapps export` writes the same weights unrolled, verified against the model as trained.
"""

from __future__ import annotations

from kapps.errors import ExportError

import keras


def recurrent_loops(model: keras.Model) -> list[str]:
    """The names of `model`'s recurrent layers (nested models' too) that run as a loop, not unrolled."""
    return [layer.name for layer in _loops(model)]


def unrolled_twin(model: keras.Model, *, tflite: bool) -> keras.Model:
    """`model` with every recurrent layer unrolled and the same weights; the model itself when it has no loop.

    Args:
        model: the model to export.
        tflite: whether a TFLite file is to be written: a loop over a free number of steps cannot be unrolled,
            which only TFLite needs (tf2onnx converts the loop).

    Raises:
        ExportError: a TFLite file is asked of a model whose recurrence runs over a free number of steps.
    """
    loops = _loops(model)
    if not loops:
        return model
    free = [layer.name for layer in loops if layer.input.shape[1] is None]  # (batch, steps, ...)
    if free:
        if tflite:
            raise ExportError(
                f"The recurrent layer {free[0]!r} reads a free number of steps, so it cannot be unrolled, and "
                "TFLite's builtin ops cannot convert its loop; build the model on a fixed number of steps, or "
                "export it with --format onnx."
            )
        return model

    names = {layer.name for layer in loops}

    def unroll(node):
        if isinstance(node, dict):
            config = node.get("config")
            if isinstance(config, dict) and config.get("name") in names and config.get("unroll") is False:
                node = {**node, "config": {**config, "unroll": True}}
            return {k: unroll(v) for k, v in node.items()}
        if isinstance(node, list):
            return [unroll(v) for v in node]
        return node

    twin = model.__class__.from_config(unroll(model.get_config()))
    twin.set_weights(model.get_weights())
    return twin


def _loops(model: keras.Model) -> list[keras.layers.RNN]:
    found, pending = [], list(model.layers)
    while pending:
        layer = pending.pop(0)
        if isinstance(layer, keras.layers.RNN) and not layer.unroll:
            found.append(layer)
        pending.extend(getattr(layer, "layers", ()))
    return found
