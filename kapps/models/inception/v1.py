"""GoogLeNet / Inception v1 (Szegedy et al., "Going deeper with convolutions", CVPR 2015).

The nine Inception modules are the rows of `GOOGLENET_MODULES` (the paper's Table 1). Backbones
(`kapps.models.backbone`): `C1` the 7x7/2 convolution, `C2` the 3x3 convolution (stride 4, before the paper's
LRN), `C3` inception_3b, `C4` inception_4e and `C5` inception_5b (strides 8, 16, 32).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from kapps.layers.lrn import LocalResponseNormalization
from kapps.models._common import RELU_INIT, classifier_head, load_weights, model_input
from kapps.registry import FeatureMap, register_model

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
FEATURE_MAPS = (
    FeatureMap("C1", "conv1_7x7_relu", 2, 64),
    FeatureMap("C2", "conv2_3x3_relu", 4, 192),
    FeatureMap("C3", "inception_3b", 8, 480),
    FeatureMap("C4", "inception_4e", 16, 832),
    FeatureMap("C5", "inception_5b", 32, 1024),
)


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

    Layers are `{name}` (the convolution), `{name}_bn` and `{name}_relu` (with or without batch norm, so the unit's
    output has one name either way); `scale=False` drops the batch norm's gamma, which the following ReLU makes
    redundant up to the next layer's weights (keras' InceptionV3).
    """
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=not batch_norm,
        kernel_initializer="glorot_uniform" if batch_norm else RELU_INIT,
        name=name,
    )(x)
    if batch_norm:
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
    feature_maps=FEATURE_MAPS,
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
    feature_maps=FEATURE_MAPS,
)
def googlenet_paper(**kwargs: Any) -> keras.Model:
    """GoogLeNet as the paper describes it: biased convolutions without batch norm, 5x5 kernels and LRN.

    6,998,552 parameters at 224x224 with 1000 classes (Szegedy et al., "Going deeper with convolutions", CVPR
    2015, Table 1 and Figure 3). Takes the keywords of `googlenet`, which may override these defaults.
    """
    kwargs = {"batch_norm": False, "branch_5x5_kernel": 5, "lrn": True, "name": "googlenet_paper", **kwargs}
    return googlenet(**kwargs)


def googlenet_main_output(model: keras.Model) -> keras.Model:
    """A GoogLeNet trained with `aux_logits=True` without its auxiliary heads: the same input and weights, the
    `predictions` output only (the paper uses the auxiliary classifiers in training alone, section 5)."""
    if not isinstance(model.output, dict) or "predictions" not in model.output:
        raise ValueError(f"model must have a dict output with 'predictions'. Received: {model.output!r}")
    return keras.Model(model.input, model.output["predictions"], name=model.name)
