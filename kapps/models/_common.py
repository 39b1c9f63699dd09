"""Pieces every classification builder shares: argument checks, the input, the head and weight loading."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kapps.errors import ModelError

import keras

POOLINGS = (None, "avg", "max")


@dataclass(frozen=True)
class ImagenetWeights:
    """Where keras.applications keeps the ImageNet weights of an architecture kapps reproduces layer for layer.

    Attributes:
        top: file name of the weights with the classifier (1000 classes).
        notop: file name of the weights without it.
        origin: the folder URL the two files are downloaded from when they are not in the Keras cache.
    """

    top: str
    notop: str
    origin: str


# Initialisation of ReLU layers that no batch norm follows (VGG, googlenet_paper): He et al. (2015)'s variance
# 2 / fan_in keeps the signal's scale through depth. With Keras's default Glorot, vgg19's logits start about 1e-5
# of the input's scale, and googlenet_paper and the VGGs stayed at chance on digits.
RELU_INIT = "he_normal"


def keras_cache() -> Path:
    """The Keras cache folder: `$KERAS_HOME`, else `~/.keras`; weight files live in its `models/`."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")


def model_input(
    input_shape,
    *,
    weights=None,
    imagenet: ImagenetWeights | None = None,
    include_top: bool = True,
    num_classes: int = 1000,
    name: str = "image",
) -> keras.KerasTensor:
    """The model's input tensor, after checking `input_shape` and `weights`.

    Args:
        input_shape: (height, width, channels), each a positive int or None for height and width.
        weights: `None`, `"imagenet"` (only where `imagenet` is given) or a path; checked here so a bad value fails
            before any layer is built.
        imagenet: the architecture's keras.applications ImageNet files, or None where there are none.
        include_top: whether the model has its classifier; with ImageNet weights it must have 1000 classes.
        num_classes: the classifier's size.
        name: input name, which becomes the exported signature's input name.
    """
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(d is None or (isinstance(d, int) and d > 0) for d in shape):
        raise ValueError(f"input_shape must be (height, width, channels). Received: input_shape={input_shape!r}")
    if weights == "imagenet":
        if imagenet is None:
            raise ValueError("weights='imagenet' is offered only for the keras.applications architectures.")
        if include_top and num_classes != 1000:
            raise ValueError(
                f"weights='imagenet' with include_top=True needs num_classes=1000. Received: num_classes={num_classes}"
            )
    elif weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise ValueError(f"weights must be None, 'imagenet' or a file path. Received: weights={weights!r}")
    return keras.Input(shape=shape, name=name)


def classifier_head(
    x,
    *,
    include_top: bool,
    num_classes: int,
    pooling: str | None,
    classifier_activation: str | None,
):
    """The output of a classifier: the class layer with the top, an optional global pooling without it.

    The class layer computes in float32 whatever the global dtype policy, so losses and exports see float32.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be None, 'avg' or 'max'. Received: pooling={pooling!r}")
    if include_top:
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer. Received: num_classes={num_classes!r}")
        return keras.layers.Dense(num_classes, activation=classifier_activation, dtype="float32", name="predictions")(x)
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x


def pooled_classifier_head(
    x,
    *,
    include_top: bool,
    num_classes: int,
    pooling: str | None,
    classifier_activation: str | None,
):
    """`classifier_head` for nets whose class layer reads the globally averaged last map (`avg_pool`, as in
    keras.applications' ResNet and InceptionV3): with the top, average pooling then the class layer."""
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return classifier_head(
        x,
        include_top=include_top,
        num_classes=num_classes,
        pooling=pooling,
        classifier_activation=classifier_activation,
    )


def batch_norm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """Every BatchNormalization layer of `model`, nested models' included."""
    found, pending = [], list(model.layers)
    while pending:
        layer = pending.pop()
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        pending.extend(getattr(layer, "layers", ()))
    return found


def set_bn_momentum(model: keras.Model, momentum: float) -> keras.Model:
    """Give every BatchNormalization layer of `model` this moving-average momentum (a training setting: it changes
    no weight, is read at each training call and is saved in the layer's config). Returns `model`."""
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"bn_momentum must be in [0, 1). Received: bn_momentum={momentum!r}")
    for layer in batch_norm_layers(model):
        layer.momentum = momentum
    return model


def load_weights(
    model: keras.Model, weights, *, imagenet: ImagenetWeights | None = None, include_top: bool = True
) -> None:
    """Load `weights` into `model`.

    Args:
        model: the freshly built model.
        weights: `None` (nothing to do), `"imagenet"` (the keras.applications file: from the Keras cache, else
            downloaded; offline without the file this fails with one sentence), or the path of a `.weights.h5`,
            a keras.applications-style `.h5` or a `.keras` file of the same architecture.
        imagenet: the architecture's ImageNet files, for `"imagenet"`.
        include_top: picks the file with or without the classifier.
    """
    if weights is None:
        return
    if weights == "imagenet":
        weights = _imagenet_file(model.name, imagenet, include_top=include_top)
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


def _imagenet_file(name: str, imagenet: ImagenetWeights | None, *, include_top: bool) -> str:
    if imagenet is None:
        raise ModelError(f"There are no ImageNet weights for {name!r}; pass weights=None or a file path.")
    file = imagenet.top if include_top else imagenet.notop
    cache = keras_cache()
    cached = cache / "models" / file
    if cached.is_file():
        return str(cached)
    try:
        return keras.utils.get_file(file, imagenet.origin + file, cache_subdir="models", cache_dir=str(cache))
    except Exception as err:  # no network, a proxy, a refused download: all leave the user the same fix
        raise ModelError(
            f"The ImageNet weights of {name!r} are not in the Keras cache ({cached}) and could not be downloaded "
            f"({type(err).__name__}); put the file there or pass weights=PATH."
        ) from None
