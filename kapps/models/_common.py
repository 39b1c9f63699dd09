"""Pieces every classification builder shares: argument checks, the input, the head and weight loading."""

from __future__ import annotations

import os

from kapps.errors import ModelError

import keras

POOLINGS = (None, "avg", "max")


def model_input(input_shape, *, weights=None, name: str = "image") -> keras.KerasTensor:
    """The model's input tensor, after checking `input_shape` and `weights`.

    Args:
        input_shape: (height, width, channels), each a positive int or None for height and width.
        weights: `None` or a path; checked here so a bad value fails before any layer is built.
        name: input name, which becomes the exported signature's input name.
    """
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(d is None or (isinstance(d, int) and d > 0) for d in shape):
        raise ValueError(f"input_shape must be (height, width, channels). Received: input_shape={input_shape!r}")
    if weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise ValueError(f"weights must be None or a file path. Received: weights={weights!r}")
    return keras.Input(shape=shape, name=name)


def classifier_head(
    x,
    *,
    include_top: bool,
    num_classes: int,
    pooling: str | None,
    classifier_activation: str | None,
    flatten: bool = True,
):
    """The output of a classifier: the class layer with the top, an optional global pooling without it.

    The class layer computes in float32 whatever the global dtype policy, so losses and exports see float32.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be None, 'avg' or 'max'. Received: pooling={pooling!r}")
    if include_top:
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer. Received: num_classes={num_classes!r}")
        if flatten:
            x = keras.layers.Flatten(name="flatten")(x)
        return keras.layers.Dense(num_classes, activation=classifier_activation, dtype="float32", name="predictions")(x)
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x


def load_weights(model: keras.Model, weights) -> None:
    """Load a weight file (`.weights.h5` or a `.keras` file of the same architecture) into `model`."""
    if weights is None:
        return
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise ModelError(f"The weight file {path!r} does not exist.")
    try:
        if path.endswith(".keras"):
            source = keras.saving.load_model(path, compile=False, safe_mode=True)
            model.set_weights(source.get_weights())
        else:
            model.load_weights(path)
    except (ValueError, OSError) as err:
        raise ModelError(f"The weights in {path!r} do not fit model {model.name!r}: {err}") from None
