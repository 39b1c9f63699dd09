"""VGG (Simonyan & Zisserman, "Very deep convolutional networks for large-scale image recognition", ICLR 2015).

The six configurations of the paper's Table 1 (A, A-LRN, B, C, D, E) are rows of `CONFIGS`, built by one
private builder; D and E are layer for layer keras.applications' VGG16 and VGG19, so their ImageNet files load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kapps.layers.lrn import LocalResponseNormalization
from kapps.models._common import RELU_INIT, ImagenetWeights, classifier_head, load_weights, model_input
from kapps.registry import FeatureMap, register_model

import keras

FILTERS = (64, 128, 256, 512, 512)
# The backbone's maps are the block pools, `block1_pool` (stride 2) to `block5_pool` (stride 32), the maps FCN's
# skips read (pool3, pool4, pool5 in Long et al. 2015).
FEATURE_MAPS = tuple(
    FeatureMap(f"C{block}", f"block{block}_pool", 2**block, filters) for block, filters in enumerate(FILTERS, start=1)
)


@dataclass(frozen=True)
class VGGConfig:
    """One column of Table 1 of the paper.

    Attributes:
        kernel_sizes: for each of the five blocks, the kernel size of each of its convolutions; the blocks have
            `FILTERS` filters and end in a 2x2 max pooling.
        lrn: whether a local response normalisation follows the first convolution (configuration A-LRN).
    """

    kernel_sizes: tuple[tuple[int, ...], ...]
    lrn: bool = False


CONFIGS = {
    "A": VGGConfig(((3,), (3,), (3, 3), (3, 3), (3, 3))),
    "A-LRN": VGGConfig(((3,), (3,), (3, 3), (3, 3), (3, 3)), lrn=True),
    "B": VGGConfig(((3, 3), (3, 3), (3, 3), (3, 3), (3, 3))),
    "C": VGGConfig(((3, 3), (3, 3), (3, 3, 1), (3, 3, 1), (3, 3, 1))),
    "D": VGGConfig(((3, 3), (3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3))),
    "E": VGGConfig(((3, 3), (3, 3), (3, 3, 3, 3), (3, 3, 3, 3), (3, 3, 3, 3))),
}

_KERAS_APPLICATIONS = "https://storage.googleapis.com/tensorflow/keras-applications/"
IMAGENET = {
    "D": ImagenetWeights(
        top="vgg16_weights_tf_dim_ordering_tf_kernels.h5",
        notop="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        origin=_KERAS_APPLICATIONS + "vgg16/",
    ),
    "E": ImagenetWeights(
        top="vgg19_weights_tf_dim_ordering_tf_kernels.h5",
        notop="vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
        origin=_KERAS_APPLICATIONS + "vgg19/",
    ),
}


def vgg_block(
    x,
    filters: int,
    *,
    kernel_sizes: tuple[int, ...],
    batch_norm: bool = False,
    lrn: bool = False,
    pool_padding: str = "valid",
    name: str,
):
    """Convolutions of stride 1 and "same" padding, each followed by ReLU, then a 2x2 max pooling of stride 2.

    The pooling rounds an odd size down (`pool_padding="valid"`, keras.applications') or up (`"same"`, Caffe's
    ceil mode, which FCN needs so that every input pixel has a score). Layers are `{name}_conv1`, `{name}_conv2`,
    ... and `{name}_pool` as in keras.applications; with batch norm each
    convolution is linear and followed by `{name}_convI_bn` and `{name}_convI_relu`; the LRN is `{name}_lrn`.
    """
    for i, kernel_size in enumerate(kernel_sizes, start=1):
        conv = f"{name}_conv{i}"
        if batch_norm:
            x = keras.layers.Conv2D(filters, kernel_size, padding="same", name=conv)(x)
            x = keras.layers.BatchNormalization(name=f"{conv}_bn")(x)
            x = keras.layers.ReLU(name=f"{conv}_relu")(x)
        else:
            x = keras.layers.Conv2D(
                filters, kernel_size, padding="same", activation="relu", kernel_initializer=RELU_INIT, name=conv
            )(x)
        if lrn and i == 1:
            x = LocalResponseNormalization(name=f"{name}_lrn")(x)
    return keras.layers.MaxPooling2D(2, strides=2, padding=pool_padding, name=f"{name}_pool")(x)


def _vgg(
    config: str,
    *,
    input_shape: tuple[int | None, int | None, int] = (224, 224, 3),
    num_classes: int = 1000,
    include_top: bool = True,
    weights: str | None = None,
    pooling: str | None = None,
    classifier_activation: str | None = "softmax",
    batch_norm: bool = False,
    dropout: float = 0.0,
    fc_units: int = 4096,
    name: str,
) -> keras.Model:
    """Builds column `config` of `CONFIGS`; the public builders' docstring describes the keywords."""
    if not isinstance(fc_units, int) or fc_units < 1:
        raise ValueError(f"fc_units must be a positive integer. Received: fc_units={fc_units!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")
    layout = CONFIGS[config]
    imagenet = None if batch_norm else IMAGENET.get(config)
    inputs = model_input(
        input_shape, weights=weights, imagenet=imagenet, include_top=include_top, num_classes=num_classes
    )
    x = inputs
    for block, (filters, kernel_sizes) in enumerate(zip(FILTERS, layout.kernel_sizes, strict=True), start=1):
        x = vgg_block(
            x,
            filters,
            kernel_sizes=kernel_sizes,
            batch_norm=batch_norm,
            lrn=layout.lrn and block == 1,
            name=f"block{block}",
        )
    if include_top:
        # (B, H/32 * W/32 * 512): 25,088 features at 224x224
        x = keras.layers.Flatten(name="flatten")(x)
        for fc in ("fc1", "fc2"):
            x = keras.layers.Dense(fc_units, activation="relu", kernel_initializer=RELU_INIT, name=fc)(x)
            if dropout:
                x = keras.layers.Dropout(dropout, name=f"{fc}_dropout")(x)
    x = classifier_head(
        x,
        include_top=include_top,
        num_classes=num_classes,
        pooling=pooling,
        classifier_activation=classifier_activation,
    )
    model = keras.Model(inputs, x, name=name)
    load_weights(model, weights, imagenet=imagenet, include_top=include_top)
    return model


def fully_convolutional(classifier: keras.Model, *, name: str | None = None) -> keras.Model:
    """A VGG classifier as a fully convolutional net: its fully connected layers as the equal convolutions.

    fc1 reads the flattened last pooled map, so it is a convolution `fc6` whose kernel covers that map
    (7x7 at 224x224) with the same weights reshaped; fc2 and the class layer are 1x1 convolutions `fc7` and
    `scores` (Long et al., "Fully convolutional networks for semantic segmentation", CVPR 2015, Sec. 3.1). On the
    classifier's input size the scores are the classifier's, as a 1x1 map; a larger image gives a map of scores,
    one per window of that size, stepping 32 pixels. The convolutional layers are the classifier's own (shared,
    not copied) and the input size is free.

    Args:
        classifier: a VGG classifier with its top (`vgg16(...)`, any configuration, trained or not).
        name: model name; `<classifier>_fcn` by default.

    Returns:
        A functional `keras.Model` from images of any size (at least the classifier's) to
        `{"C1", ..., "C5", "fc6", "fc7", "scores"}`.
    """
    try:
        fc1, fc2, predictions = (classifier.get_layer(n) for n in ("fc1", "fc2", "predictions"))
    except ValueError:
        raise ValueError(
            f"classifier must be a VGG with its top (fc1, fc2, predictions). Received: {classifier.name!r}"
        ) from None
    pool5 = classifier.get_layer("block5_pool").output
    inputs = keras.Input((None, None, classifier.input_shape[-1]), name="image")
    by_layer = {feature.layer: feature.name for feature in FEATURE_MAPS}
    x, maps = inputs, {}
    for layer in classifier.layers[1:]:  # the blocks are a chain: call each layer on the free-size input
        x = layer(x)
        if layer.name in by_layer:
            maps[by_layer[layer.name]] = x
        if layer.name == "block5_pool":
            break
    window = tuple(pool5.shape[1:3])
    fc6 = keras.layers.Conv2D(fc1.units, window, activation=fc1.activation, name="fc6")
    fc7 = keras.layers.Conv2D(fc2.units, 1, activation=fc2.activation, name="fc7")
    scores = keras.layers.Conv2D(
        predictions.units, 1, activation=predictions.activation, dtype="float32", name="scores"
    )
    maps["fc6"] = fc6(x)
    maps["fc7"] = fc7(maps["fc6"])
    maps["scores"] = scores(maps["fc7"])
    for dense, conv in ((fc1, fc6), (fc2, fc7), (predictions, scores)):
        kernel, bias = dense.get_weights()
        conv.set_weights([kernel.reshape(conv.kernel.shape), bias])
    return keras.Model(inputs, maps, name=name or f"{classifier.name}_fcn")


_DOCSTRING = """{summary}

    Reference: Simonyan & Zisserman, "Very deep convolutional networks for large-scale image recognition",
    ICLR 2015, Table 1, configuration {column}.

    Args:
        input_shape: (height, width, channels); 224x224x3 is the paper's. With the top, height and width must be
            known (the classifier flattens the last feature map); 32x32 and larger work.
        num_classes: size of the output layer.
        include_top: whether to add the three fully connected layers (fc1, fc2, predictions).
        weights: `None` or the path of a weight file of this architecture (`.weights.h5`, a keras.applications
            `.h5` or a `.keras` file){imagenet}.
        pooling: without the top, `None` (the last feature map), `"avg"` or `"max"` global pooling.
        classifier_activation: activation of the output layer, `None` for logits.{batch_norm}
        dropout: dropout rate after fc1 and fc2; the paper trains with 0.5. The default 0 adds no layer, which
            keeps the model's layer list that of keras.applications.
        fc_units: width of fc1 and fc2: 4096 in the paper, a few hundred suit small inputs such as CIFAR-10.
        name: model name.

    Returns:
        A functional `keras.Model`.
"""
_IMAGENET = (
    ', or `"imagenet"`: keras.applications\' ImageNet file, from the Keras cache or\n'
    "            downloaded (inputs then go through `keras.applications.vgg16.preprocess_input`)"
)
_BATCH_NORM = "\n        batch_norm: batch normalisation after every convolution (what the `_bn` builders do)."


def _describe(summary: str, column: str, *, imagenet: bool = False, batch_norm: bool = False):
    """Gives a public builder the shared docstring: `summary`, the paper's column and the keyword arguments."""

    def decorate(builder):
        builder.__doc__ = _DOCSTRING.format(
            summary=summary,
            column=column,
            imagenet=_IMAGENET if imagenet else "",
            batch_norm="" if batch_norm else _BATCH_NORM,
        )
        return builder

    return decorate


_SOURCE = "Simonyan & Zisserman 2015, Table 1"


@register_model(
    task="classification",
    input_shape=(224, 224, 3),
    num_classes=1000,
    param_count=132_863_336,
    feature_maps=FEATURE_MAPS,
    source=f"torchvision vgg11 ({_SOURCE}, A)",
)
@_describe("VGG-11: 8 convolutions (1-1-2-2-2 per block) and 3 fully connected layers.", "A")
def vgg11(**kwargs: Any) -> keras.Model:
    return _vgg("A", **{"name": "vgg11", **kwargs})


@register_model(
    task="classification",
    input_shape=(224, 224, 3),
    num_classes=1000,
    param_count=132_863_336,
    feature_maps=FEATURE_MAPS,
    source=f"same as vgg11: LRN has no weights ({_SOURCE}, A-LRN)",
)
@_describe("VGG-11 with local response normalisation after the first convolution.", "A-LRN")
def vgg11_lrn(**kwargs: Any) -> keras.Model:
    return _vgg("A-LRN", **{"name": "vgg11_lrn", **kwargs})


@register_model(
    task="classification",
    input_shape=(224, 224, 3),
    num_classes=1000,
    param_count=133_047_848,
    feature_maps=FEATURE_MAPS,
    source=f"torchvision vgg13 ({_SOURCE}, B)",
)
@_describe("VGG-13: 10 convolutions (2 per block) and 3 fully connected layers.", "B")
def vgg13(**kwargs: Any) -> keras.Model:
    return _vgg("B", **{"name": "vgg13", **kwargs})


@register_model(
    task="classification",
    input_shape=(224, 224, 3),
    num_classes=1000,
    param_count=133_638_952,
    feature_maps=FEATURE_MAPS,
    source=f"computed from {_SOURCE}, C (the paper's Table 2 rounds it to 134M)",
)
@_describe("VGG-16 with 1x1 convolutions: like D, but the third convolution of blocks 3-5 is 1x1.", "C")
def vgg16_c(**kwargs: Any) -> keras.Model:
    return _vgg("C", **{"name": "vgg16_c", **kwargs})


@register_model(
    task="classification",
    input_shape=(224, 224, 3),
    num_classes=1000,
    param_count=138_357_544,
    feature_maps=FEATURE_MAPS,
    source=f"keras.applications VGG16 ({_SOURCE}, D)",
    imagenet_preprocessing="caffe",
)
@_describe("VGG-16: 13 3x3 convolutions (2-2-3-3-3); keras.applications' VGG16.", "D", imagenet=True)
def vgg16(**kwargs: Any) -> keras.Model:
    return _vgg("D", **{"name": "vgg16", **kwargs})


@register_model(
    task="classification",
    input_shape=(224, 224, 3),
    num_classes=1000,
    param_count=143_667_240,
    feature_maps=FEATURE_MAPS,
    source=f"keras.applications VGG19 ({_SOURCE}, E)",
    imagenet_preprocessing="caffe",
)
@_describe("VGG-19: 16 3x3 convolutions (2-2-4-4-4); keras.applications' VGG19.", "E", imagenet=True)
def vgg19(**kwargs: Any) -> keras.Model:
    return _vgg("E", **{"name": "vgg19", **kwargs})


@register_model(
    task="classification",
    input_shape=(224, 224, 3),
    num_classes=1000,
    param_count=132_868_840,
    count_kind="trainable",
    feature_maps=FEATURE_MAPS,
    source="torchvision vgg11_bn (trainable weights)",
)
@_describe("VGG-11 with batch normalisation after every convolution (Ioffe & Szegedy 2015).", "A", batch_norm=True)
def vgg11_bn(**kwargs: Any) -> keras.Model:
    return _vgg("A", batch_norm=True, **{"name": "vgg11_bn", **kwargs})


@register_model(
    task="classification",
    input_shape=(224, 224, 3),
    num_classes=1000,
    param_count=133_053_736,
    count_kind="trainable",
    feature_maps=FEATURE_MAPS,
    source="torchvision vgg13_bn (trainable weights) = vgg13 + 2 x 2,944 BN channels",
)
@_describe("VGG-13 with batch normalisation after every convolution (Ioffe & Szegedy 2015).", "B", batch_norm=True)
def vgg13_bn(**kwargs: Any) -> keras.Model:
    return _vgg("B", batch_norm=True, **{"name": "vgg13_bn", **kwargs})


@register_model(
    task="classification",
    input_shape=(224, 224, 3),
    num_classes=1000,
    param_count=138_365_992,
    count_kind="trainable",
    feature_maps=FEATURE_MAPS,
    source="torchvision vgg16_bn (trainable weights)",
)
@_describe("VGG-16 with batch normalisation after every convolution (Ioffe & Szegedy 2015).", "D", batch_norm=True)
def vgg16_bn(**kwargs: Any) -> keras.Model:
    return _vgg("D", batch_norm=True, **{"name": "vgg16_bn", **kwargs})


@register_model(
    task="classification",
    input_shape=(224, 224, 3),
    num_classes=1000,
    param_count=143_678_248,
    count_kind="trainable",
    feature_maps=FEATURE_MAPS,
    source="torchvision vgg19_bn (trainable weights)",
)
@_describe("VGG-19 with batch normalisation after every convolution (Ioffe & Szegedy 2015).", "E", batch_norm=True)
def vgg19_bn(**kwargs: Any) -> keras.Model:
    return _vgg("E", batch_norm=True, **{"name": "vgg19_bn", **kwargs})
