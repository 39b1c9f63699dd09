"""GoogLeNet / Inception v1 (Szegedy et al., "Going deeper with convolutions", CVPR 2015) and Inception v3
(Szegedy et al., "Rethinking the Inception architecture for computer vision", CVPR 2016).

GoogLeNet's nine Inception modules are the rows of `GOOGLENET_MODULES` (the paper's Table 1). Inception v3 is
keras.applications' InceptionV3 layer for layer: the same graph, so the same layer order and weight shapes, and
its ImageNet files load (Keras reads those legacy `.h5` files by layer order, not by name).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from kapps.layers.lrn import LocalResponseNormalization
from kapps.models._common import RELU_INIT, ImagenetWeights, classifier_head, load_weights, model_input
from kapps.registry import register_model

import keras


@dataclass(frozen=True)
class InceptionModule:
    """One row of Table 1 of the GoogLeNet paper: the filters of the four branches of an Inception module.

    Attributes:
        filters_1x1: the 1x1 branch ("#1x1").
        filters_3x3_reduce: the 1x1 reduction before the 3x3 convolution ("#3x3 reduce").
        filters_3x3: the 3x3 convolution ("#3x3").
        filters_5x5_reduce: the 1x1 reduction before the 5x5 convolution ("#5x5 reduce").
        filters_5x5: the 5x5 convolution ("#5x5").
        pool_proj: the 1x1 projection after the 3x3 max pooling ("pool proj").
    """

    filters_1x1: int
    filters_3x3_reduce: int
    filters_3x3: int
    filters_5x5_reduce: int
    filters_5x5: int
    pool_proj: int


GOOGLENET_MODULES = {
    "3a": InceptionModule(64, 96, 128, 16, 32, 32),
    "3b": InceptionModule(128, 128, 192, 32, 96, 64),
    "4a": InceptionModule(192, 96, 208, 16, 48, 64),
    "4b": InceptionModule(160, 112, 224, 24, 64, 64),
    "4c": InceptionModule(128, 128, 256, 24, 64, 64),
    "4d": InceptionModule(112, 144, 288, 32, 64, 64),
    "4e": InceptionModule(256, 160, 320, 32, 128, 128),
    "5a": InceptionModule(256, 160, 320, 32, 128, 128),
    "5b": InceptionModule(384, 192, 384, 48, 128, 128),
}
# A 3x3/2 max pooling halves the grid before these modules (28 -> 14 -> 7 at 224x224).
_POOL_BEFORE = ("4a", "5a")
# The auxiliary classifiers read the outputs of these modules (section 5 of the paper).
_AUX_AFTER = {"4a": "aux1", "4d": "aux2"}

INCEPTION_V3_IMAGENET = ImagenetWeights(
    top="inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
    notop="inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
    origin="https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/",
)
INCEPTION_V3_MIN_SIZE = 75


def conv_unit(
    x,
    filters: int,
    kernel_size: int | tuple[int, int],
    *,
    strides: int = 1,
    padding: str = "same",
    batch_norm: bool = True,
    scale: bool = True,
    name: str,
):
    """Convolution and ReLU; with `batch_norm`, a bias-free convolution, batch norm and ReLU.

    Layers are `{name}` (the convolution), `{name}_bn` and `{name}_relu`; `scale=False` drops the batch norm's
    gamma, which the following ReLU makes redundant up to the next layer's weights (keras' InceptionV3).
    """
    if not batch_norm:
        return keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            activation="relu",
            kernel_initializer=RELU_INIT,
            name=name,
        )(x)
    x = keras.layers.Conv2D(filters, kernel_size, strides=strides, padding=padding, use_bias=False, name=name)(x)
    x = keras.layers.BatchNormalization(scale=scale, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def inception_module(
    x,
    *,
    filters_1x1: int,
    filters_3x3_reduce: int,
    filters_3x3: int,
    filters_5x5_reduce: int,
    filters_5x5: int,
    pool_proj: int,
    batch_norm: bool = True,
    branch_5x5_kernel: int = 3,
    name: str,
):
    """The Inception module of GoogLeNet (Szegedy et al. 2015, Figure 2b): four branches concatenated.

    Branches: 1x1; 1x1 reduction then 3x3; 1x1 reduction then "5x5"; 3x3/1 max pooling then a 1x1 projection.
    The output has `filters_1x1 + filters_3x3 + filters_5x5 + pool_proj` channels on the input's grid. Layers are
    `{name}_1x1`, `{name}_3x3_reduce`, `{name}_3x3`, `{name}_5x5_reduce`, `{name}_5x5`, `{name}_pool`,
    `{name}_pool_proj` and the concatenation `{name}`.

    Args:
        x: input feature map (B, H, W, C).
        filters_1x1, filters_3x3_reduce, filters_3x3, filters_5x5_reduce, filters_5x5, pool_proj: the columns of
            Table 1 of the paper.
        batch_norm: bias-free convolutions followed by batch norm (torchvision's form) instead of biased ones.
        branch_5x5_kernel: kernel size of the "5x5" branch: 5 as in the paper, 3 as in torchvision's googlenet.
        name: prefix of every layer name.

    Returns:
        The concatenated feature map (B, H, W, filters_1x1 + filters_3x3 + filters_5x5 + pool_proj).
    """
    if branch_5x5_kernel not in (3, 5):
        raise ValueError(f"branch_5x5_kernel must be 3 or 5. Received: branch_5x5_kernel={branch_5x5_kernel!r}")
    branch_1x1 = conv_unit(x, filters_1x1, 1, batch_norm=batch_norm, name=f"{name}_1x1")
    branch_3x3 = conv_unit(x, filters_3x3_reduce, 1, batch_norm=batch_norm, name=f"{name}_3x3_reduce")
    branch_3x3 = conv_unit(branch_3x3, filters_3x3, 3, batch_norm=batch_norm, name=f"{name}_3x3")
    branch_5x5 = conv_unit(x, filters_5x5_reduce, 1, batch_norm=batch_norm, name=f"{name}_5x5_reduce")
    branch_5x5 = conv_unit(branch_5x5, filters_5x5, branch_5x5_kernel, batch_norm=batch_norm, name=f"{name}_5x5")
    branch_pool = keras.layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    branch_pool = conv_unit(branch_pool, pool_proj, 1, batch_norm=batch_norm, name=f"{name}_pool_proj")
    return keras.layers.Concatenate(name=name)([branch_1x1, branch_3x3, branch_5x5, branch_pool])


def auxiliary_classifier(x, *, num_classes: int, classifier_activation: str | None, batch_norm: bool = True, name: str):
    """GoogLeNet's auxiliary classifier (section 5 of the paper), as an extra output named `name`.

    5x5/3 average pooling (4x4 from 4a's and 4d's 14x14 at 224x224), 1x1 convolution of 128 filters, a fully
    connected layer of 1024 units with ReLU, 70% dropout and the class layer (float32).
    """
    x = keras.layers.AveragePooling2D(5, strides=3, name=f"{name}_pool")(x)
    x = conv_unit(x, 128, 1, batch_norm=batch_norm, name=f"{name}_conv")
    x = keras.layers.Flatten(name=f"{name}_flatten")(x)
    x = keras.layers.Dense(1024, activation="relu", kernel_initializer=RELU_INIT, name=f"{name}_fc")(x)
    x = keras.layers.Dropout(0.7, name=f"{name}_dropout")(x)
    return keras.layers.Dense(num_classes, activation=classifier_activation, dtype="float32", name=name)(x)


@register_model(
    task="classification",
    input_shape=(224, 224, 3),
    num_classes=1000,
    param_count=6_624_904,
    count_kind="trainable",
    source="torchvision googlenet without aux heads (conv + batch norm, 3x3 kernel in the '5x5' branch)",
)
def googlenet(
    *,
    input_shape: tuple[int | None, int | None, int] = (224, 224, 3),
    num_classes: int = 1000,
    include_top: bool = True,
    weights: str | None = None,
    pooling: str | None = None,
    classifier_activation: str | None = "softmax",
    aux_logits: bool = False,
    batch_norm: bool = True,
    branch_5x5_kernel: int = 3,
    lrn: bool = False,
    dropout: float = 0.4,
    name: str = "googlenet",
) -> keras.Model:
    """GoogLeNet: 7x7/2 conv 64, max pool, 1x1 conv 64, 3x3 conv 192, max pool, Inception 3a-5b, average pool,
    dropout and the class layer (Szegedy et al., "Going deeper with convolutions", CVPR 2015, Table 1).

    The defaults are torchvision's googlenet, whose count is the reference: bias-free convolutions with batch
    norm, and a 3x3 kernel in the "5x5" branch (a known quirk of torchvision). Arithmetic over Table 1 gives,
    trainable parameters at 224x224 with 1000 classes and no auxiliary heads:

    | batch_norm | branch_5x5_kernel | count |
    |---|---|---|
    | True | 3 | 6,624,904 (torchvision) |
    | True | 5 | 7,005,832 |
    | False | 3 | 6,617,624 |
    | False | 5 | 6,998,552 (the paper: `googlenet_paper`) |

    so only batch norm with the 3x3 kernel matches torchvision exactly. The paper's own form is
    `batch_norm=False, branch_5x5_kernel=5, lrn=True` (`googlenet_paper`).

    With `aux_logits=True` the model has three outputs, a dict `{"aux1", "aux2", "predictions"}`: the auxiliary
    classifiers after 4a and 4d and the main classifier, unchanged. Train as the paper does with
    `loss=dict.fromkeys(model.output_names, "sparse_categorical_crossentropy")` and
    `loss_weights={"aux1": 0.3, "aux2": 0.3, "predictions": 1.0}` (Keras wants a dict of losses beside a dict of
    weights), labels given once per output, and predict with the main output. Each auxiliary head adds
    128 * C + 2048 * 1024 + 1024 + 1025 * num_classes parameters at 224x224 (+ 256 batch-norm or + 128 bias),
    C = 512 (4a) or 528 (4d): 13,004,888 trainable in all by default.

    Args:
        input_shape: (height, width, channels); any size ("same" padding throughout), but a known one of at least
            65x65 with `aux_logits`, whose 5x5/3 pooling needs a 5x5 map at 4a.
        num_classes: size of the class layers.
        include_top: whether to add the average pooling, dropout and class layer after 5b.
        weights: `None` or the path of a weight file saved from this architecture (there are no ImageNet files).
        pooling: without the top, `None` (5b's feature map), `"avg"` or `"max"` global pooling.
        classifier_activation: activation of the class layers, `None` for logits.
        aux_logits: add the two auxiliary classifiers as outputs `"aux1"` and `"aux2"` (needs `include_top`).
        batch_norm: bias-free convolutions followed by batch norm instead of biased convolutions.
        branch_5x5_kernel: kernel size of the modules' "5x5" branch, 3 (torchvision) or 5 (the paper).
        lrn: local response normalisation after the first max pooling and after the 3x3 conv, as in the paper
            (window 5, beta 0.75, k 1 and Caffe's alpha 1e-4 per window, the settings of BVLC's reference model).
        dropout: dropout rate before the class layer, 0.4 in the paper.
        name: model name.

    Returns:
        A functional `keras.Model`; with `aux_logits`, its outputs are a dict.
    """
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")
    if branch_5x5_kernel not in (3, 5):
        raise ValueError(f"branch_5x5_kernel must be 3 or 5. Received: branch_5x5_kernel={branch_5x5_kernel!r}")
    inputs = model_input(input_shape, weights=weights, include_top=include_top, num_classes=num_classes)
    if aux_logits:
        if not include_top:
            raise ValueError("aux_logits=True needs include_top=True. Received: include_top=False")
        if any(d is None or d < 65 for d in inputs.shape[1:3]):
            raise ValueError(f"aux_logits=True needs a known input of at least 65x65. Received: {input_shape=}")

    def lrn_layer(layer_name: str) -> keras.layers.Layer:
        # Caffe divides alpha by the window size; kapps' layer takes the divided value.
        return LocalResponseNormalization(5, alpha=1e-4 / 5, beta=0.75, k=1.0, name=layer_name)

    x = conv_unit(inputs, 64, 7, strides=2, batch_norm=batch_norm, name="conv1_7x7")
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    if lrn:
        x = lrn_layer("pool1_lrn")(x)
    x = conv_unit(x, 64, 1, batch_norm=batch_norm, name="conv2_reduce")
    x = conv_unit(x, 192, 3, batch_norm=batch_norm, name="conv2_3x3")
    if lrn:
        x = lrn_layer("conv2_lrn")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool2")(x)
    aux = {}
    for stage, module in GOOGLENET_MODULES.items():
        if stage in _POOL_BEFORE:
            x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name=f"pool_{stage}")(x)
        x = inception_module(
            x, **asdict(module), batch_norm=batch_norm, branch_5x5_kernel=branch_5x5_kernel, name=f"inception_{stage}"
        )
        if aux_logits and stage in _AUX_AFTER:
            aux[_AUX_AFTER[stage]] = x
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    x = classifier_head(
        x,
        include_top=include_top,
        num_classes=num_classes,
        pooling=pooling,
        classifier_activation=classifier_activation,
    )
    if aux_logits:
        outputs = {
            head: auxiliary_classifier(
                features,
                num_classes=num_classes,
                classifier_activation=classifier_activation,
                batch_norm=batch_norm,
                name=head,
            )
            for head, features in aux.items()
        }
        x = {**outputs, "predictions": x}
    model = keras.Model(inputs, x, name=name)
    load_weights(model, weights)
    return model


@register_model(
    task="classification",
    input_shape=(224, 224, 3),
    num_classes=1000,
    param_count=6_998_552,
    source="computed from Table 1 of Szegedy et al. 2015: biased convolutions, real 5x5 kernels, no batch norm",
)
def googlenet_paper(**kwargs: Any) -> keras.Model:
    """GoogLeNet as the paper describes it: biased convolutions without batch norm, 5x5 kernels and LRN.

    6,998,552 parameters at 224x224 with 1000 classes (Szegedy et al., "Going deeper with convolutions", CVPR
    2015, Table 1 and Figure 3). Takes the keywords of `googlenet`, which may override these defaults.
    """
    kwargs = {"batch_norm": False, "branch_5x5_kernel": 5, "lrn": True, "name": "googlenet_paper", **kwargs}
    return googlenet(**kwargs)


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
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = classifier_head(
        x,
        include_top=include_top,
        num_classes=num_classes,
        pooling=pooling,
        classifier_activation=classifier_activation,
    )
    model = keras.Model(inputs, x, name=name)
    load_weights(model, weights, imagenet=INCEPTION_V3_IMAGENET, include_top=include_top)
    return model
