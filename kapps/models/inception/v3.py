"""Inception v3 (Szegedy et al., "Rethinking the Inception architecture for computer vision", CVPR 2016).

keras.applications' InceptionV3 layer for layer: the same graph, so the same layer order and weight shapes, and
its ImageNet files load (Keras reads those legacy `.h5` files by layer order, not by name). Backbones
(`kapps.models.backbone`): `C1` and `C2` the stem's last convolutions before each max pooling (strides 2 and 4),
`C3` mixed2, `C4` mixed7 and `C5` mixed10 (the last blocks of the 35x35, 17x17 and 8x8 grids at 299x299).
"""

from __future__ import annotations

from typing import Any

from kapps.models._common import ImagenetWeights, load_weights, model_input, pooled_classifier_head
from kapps.models.inception.v1 import conv_unit
from kapps.registry import FeatureMap, register_model

import keras

INCEPTION_V3_IMAGENET = ImagenetWeights(
    top="inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
    notop="inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
    origin="https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/",
)
INCEPTION_V3_MIN_SIZE = 75
FEATURE_MAPS = (
    FeatureMap("C1", "stem_conv3_relu", 2, 64),
    FeatureMap("C2", "stem_conv5_relu", 4, 192),
    FeatureMap("C3", "mixed2", 8, 288),
    FeatureMap("C4", "mixed7", 16, 768),
    FeatureMap("C5", "mixed10", 32, 2048),
)


def _v3_conv(x, filters: int, kernel_size: int | tuple[int, int], *, name: str, **kwargs: Any):
    return conv_unit(x, filters, kernel_size, batch_norm=True, scale=False, name=name, **kwargs)


def _avg_pool_branch(x, filters: int, *, name: str):
    x = keras.layers.AveragePooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    return _v3_conv(x, filters, 1, name=f"{name}_pool_proj")


def block_35x35(x, *, pool_filters: int, name: str):
    """Inception v3 on the 35x35 grid (mixed0-2; Figure 5 of the paper, with keras' 5x5 branch kept whole).

    Branches: 1x1 64; 1x1 48 -> 5x5 64; 1x1 64 -> 3x3 96 -> 3x3 96; 3x3 average pool -> 1x1 `pool_filters`.
    """
    branch_1x1 = _v3_conv(x, 64, 1, name=f"{name}_1x1")
    branch_5x5 = _v3_conv(x, 48, 1, name=f"{name}_5x5_reduce")
    branch_5x5 = _v3_conv(branch_5x5, 64, 5, name=f"{name}_5x5")
    branch_3x3dbl = _v3_conv(x, 64, 1, name=f"{name}_3x3dbl_reduce")
    branch_3x3dbl = _v3_conv(branch_3x3dbl, 96, 3, name=f"{name}_3x3dbl_1")
    branch_3x3dbl = _v3_conv(branch_3x3dbl, 96, 3, name=f"{name}_3x3dbl_2")
    branch_pool = _avg_pool_branch(x, pool_filters, name=name)
    return keras.layers.Concatenate(name=name)([branch_1x1, branch_5x5, branch_3x3dbl, branch_pool])


def reduce_35_to_17(x, *, name: str):
    """Inception v3's grid reduction 35x35 -> 17x17 (mixed3; Figure 10): stride-2 convolutions beside a max pool."""
    branch_3x3 = _v3_conv(x, 384, 3, strides=2, padding="valid", name=f"{name}_3x3")
    branch_3x3dbl = _v3_conv(x, 64, 1, name=f"{name}_3x3dbl_reduce")
    branch_3x3dbl = _v3_conv(branch_3x3dbl, 96, 3, name=f"{name}_3x3dbl_1")
    branch_3x3dbl = _v3_conv(branch_3x3dbl, 96, 3, strides=2, padding="valid", name=f"{name}_3x3dbl_2")
    branch_pool = keras.layers.MaxPooling2D(3, strides=2, name=f"{name}_pool")(x)
    return keras.layers.Concatenate(name=name)([branch_3x3, branch_3x3dbl, branch_pool])


def block_17x17(x, *, filters_7x7: int, name: str):
    """Inception v3 on the 17x17 grid (mixed4-7; Figure 6 with n = 7): 7x7 factorised into 1x7 and 7x1.

    Branches: 1x1 192; 1x1 -> 1x7 -> 7x1 192; 1x1 -> 7x1 -> 1x7 -> 7x1 -> 1x7 192; average pool -> 1x1 192, the
    inner convolutions having `filters_7x7` filters.
    """
    branch_1x1 = _v3_conv(x, 192, 1, name=f"{name}_1x1")
    branch_7x7 = _v3_conv(x, filters_7x7, 1, name=f"{name}_7x7_reduce")
    branch_7x7 = _v3_conv(branch_7x7, filters_7x7, (1, 7), name=f"{name}_7x7_1")
    branch_7x7 = _v3_conv(branch_7x7, 192, (7, 1), name=f"{name}_7x7_2")
    branch_7x7dbl = _v3_conv(x, filters_7x7, 1, name=f"{name}_7x7dbl_reduce")
    for i, (kernel, filters) in enumerate(
        (((7, 1), filters_7x7), ((1, 7), filters_7x7), ((7, 1), filters_7x7), ((1, 7), 192)), start=1
    ):
        branch_7x7dbl = _v3_conv(branch_7x7dbl, filters, kernel, name=f"{name}_7x7dbl_{i}")
    branch_pool = _avg_pool_branch(x, 192, name=name)
    return keras.layers.Concatenate(name=name)([branch_1x1, branch_7x7, branch_7x7dbl, branch_pool])


def reduce_17_to_8(x, *, name: str):
    """Inception v3's grid reduction 17x17 -> 8x8 (mixed8): 1x1 -> 3x3/2 320; 1x1 -> 1x7 -> 7x1 -> 3x3/2 192; pool."""
    branch_3x3 = _v3_conv(x, 192, 1, name=f"{name}_3x3_reduce")
    branch_3x3 = _v3_conv(branch_3x3, 320, 3, strides=2, padding="valid", name=f"{name}_3x3")
    branch_7x7x3 = _v3_conv(x, 192, 1, name=f"{name}_7x7x3_reduce")
    branch_7x7x3 = _v3_conv(branch_7x7x3, 192, (1, 7), name=f"{name}_7x7x3_1")
    branch_7x7x3 = _v3_conv(branch_7x7x3, 192, (7, 1), name=f"{name}_7x7x3_2")
    branch_7x7x3 = _v3_conv(branch_7x7x3, 192, 3, strides=2, padding="valid", name=f"{name}_7x7x3_3")
    branch_pool = keras.layers.MaxPooling2D(3, strides=2, name=f"{name}_pool")(x)
    return keras.layers.Concatenate(name=name)([branch_3x3, branch_7x7x3, branch_pool])


def _split_1x3_3x1(x, filters: int, *, name: str):
    # (B, H, W, 2 * filters): a 1x3 and a 3x1 convolution side by side (Figure 7's expanded filter bank).
    across = _v3_conv(x, filters, (1, 3), name=f"{name}_1x3")
    down = _v3_conv(x, filters, (3, 1), name=f"{name}_3x1")
    return keras.layers.Concatenate(name=name)([across, down])


def block_8x8(x, *, name: str):
    """Inception v3 on the 8x8 grid (mixed9-10; Figure 7): the 3x3 outputs split into 1x3 and 3x1 side by side.

    Branches: 1x1 320; 1x1 384 -> (1x3, 3x1) 384 each; 1x1 448 -> 3x3 384 -> (1x3, 3x1) 384 each; pool -> 1x1 192.
    """
    branch_1x1 = _v3_conv(x, 320, 1, name=f"{name}_1x1")
    branch_3x3 = _v3_conv(x, 384, 1, name=f"{name}_3x3_reduce")
    branch_3x3 = _split_1x3_3x1(branch_3x3, 384, name=f"{name}_3x3")
    branch_3x3dbl = _v3_conv(x, 448, 1, name=f"{name}_3x3dbl_reduce")
    branch_3x3dbl = _v3_conv(branch_3x3dbl, 384, 3, name=f"{name}_3x3dbl_1")
    branch_3x3dbl = _split_1x3_3x1(branch_3x3dbl, 384, name=f"{name}_3x3dbl_2")
    branch_pool = _avg_pool_branch(x, 192, name=name)
    return keras.layers.Concatenate(name=name)([branch_1x1, branch_3x3, branch_3x3dbl, branch_pool])


# Inception v3 after its stem: (output name, block, keywords); the names are keras.applications' `mixed0`-`mixed10`.
INCEPTION_V3_BLOCKS = (
    ("mixed0", block_35x35, {"pool_filters": 32}),
    ("mixed1", block_35x35, {"pool_filters": 64}),
    ("mixed2", block_35x35, {"pool_filters": 64}),
    ("mixed3", reduce_35_to_17, {}),
    ("mixed4", block_17x17, {"filters_7x7": 128}),
    ("mixed5", block_17x17, {"filters_7x7": 160}),
    ("mixed6", block_17x17, {"filters_7x7": 160}),
    ("mixed7", block_17x17, {"filters_7x7": 192}),
    ("mixed8", reduce_17_to_8, {}),
    ("mixed9", block_8x8, {}),
    ("mixed10", block_8x8, {}),
)


@register_model(
    task="classification",
    input_shape=(299, 299, 3),
    num_classes=1000,
    param_count=23_851_784,
    source="keras.applications InceptionV3, count_params()",
    imagenet_preprocessing="tf",
    feature_maps=FEATURE_MAPS,
)
def inception_v3(
    *,
    input_shape: tuple[int | None, int | None, int] = (299, 299, 3),
    num_classes: int = 1000,
    include_top: bool = True,
    weights: str | None = None,
    pooling: str | None = None,
    classifier_activation: str | None = "softmax",
    name: str = "inception_v3",
) -> keras.Model:
    """Inception v3 (Szegedy et al., "Rethinking the Inception architecture for computer vision", CVPR 2016).

    keras.applications' InceptionV3 layer for layer: stem (3x3/2 32, 3x3 32, 3x3 64, max pool, 1x1 80, 3x3 192,
    max pool), three 35x35 blocks, a grid reduction, four 17x17 blocks with factorised 1x7/7x1 convolutions, a
    grid reduction, two 8x8 blocks, global average pooling and the class layer; every convolution is bias-free
    and followed by batch norm without scale and ReLU. 23,851,784 parameters at 299x299 with 1000 classes.

    The graph is keras', so `model.layers` comes in the same order with the same weight shapes, which is what
    Keras reads its legacy ImageNet `.h5` files by. Names are kapps' own (`mixed4_7x7dbl_3`, `_bn`, `_relu`) rather
    than keras' counter-numbered `conv2d_57`, which depend on what else the session built; the block outputs keep
    keras' names `mixed0`-`mixed10`, as do `avg_pool` and `predictions`. Like keras, the auxiliary classifier
    and label smoothing are left to training code. Inputs are expected in [-1, 1]
    (`keras.applications.inception_v3.preprocess_input`).

    Args:
        input_shape: (height, width, channels), at least 75x75.
        num_classes: size of the class layer.
        include_top: whether to add the average pooling and class layer after mixed10.
        weights: `None`, `"imagenet"` (keras.applications' files, from the Keras cache or downloaded) or a path.
        pooling: without the top, `None` (mixed10's feature map), `"avg"` or `"max"` global pooling.
        classifier_activation: activation of the class layer, `None` for logits.
        name: model name.

    Returns:
        A functional `keras.Model`.
    """
    inputs = model_input(
        input_shape,
        weights=weights,
        imagenet=INCEPTION_V3_IMAGENET,
        include_top=include_top,
        num_classes=num_classes,
    )
    if any(d is not None and d < INCEPTION_V3_MIN_SIZE for d in inputs.shape[1:3]):
        raise ValueError(f"input_shape must be at least 75x75 for inception_v3. Received: {input_shape=}")
    x = _v3_conv(inputs, 32, 3, strides=2, padding="valid", name="stem_conv1")
    x = _v3_conv(x, 32, 3, padding="valid", name="stem_conv2")
    x = _v3_conv(x, 64, 3, name="stem_conv3")
    x = keras.layers.MaxPooling2D(3, strides=2, name="stem_pool1")(x)
    x = _v3_conv(x, 80, 1, padding="valid", name="stem_conv4")
    x = _v3_conv(x, 192, 3, padding="valid", name="stem_conv5")
    x = keras.layers.MaxPooling2D(3, strides=2, name="stem_pool2")(x)
    # (B, 35, 35, 192) at 299x299
    for block_name, block, block_kwargs in INCEPTION_V3_BLOCKS:
        x = block(x, name=block_name, **block_kwargs)
    # (B, 8, 8, 2048) at 299x299
    x = pooled_classifier_head(
        x,
        include_top=include_top,
        num_classes=num_classes,
        pooling=pooling,
        classifier_activation=classifier_activation,
    )
    model = keras.Model(inputs, x, name=name)
    load_weights(model, weights, imagenet=INCEPTION_V3_IMAGENET, include_top=include_top)
    return model
