"""ResNet (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016): the ImageNet and CIFAR-10 nets.

The variants are rows of `IMAGENET_STAGES` and `CIFAR_STAGES`, built by two private builders from the blocks of
`kapps.models.resnet_blocks`. The ImageNet nets' keywords:

    input_shape: (height, width, channels), (224, 224, 3) by default; without the top, (None, None, 3) works.
    num_classes: size of the output layer.
    include_top: whether to end with global average pooling and the class layer.
    weights: `None`, `"imagenet"` (resnet50/101/152 in the keras.applications layout: the Keras cache, else a
        download) or the path of a weight file of the same architecture.
    pooling: without the top, `None` (the last feature map), `"avg"` or `"max"` global pooling.
    classifier_activation: activation of the output layer, `None` for logits.
    conv_bias: `True` gives the convolutions biases, as keras.applications ResNet50/101/152 do (their layer names,
        order and weights); `False` gives the paper's and torchvision's parameterisation, where each convolution
        is followed by batch normalisation and has no bias.
    zero_init_residual: start the scale (gamma) of each residual branch's last batch norm at 0, so that every block
        begins as its shortcut and the net as a shallow one (Goyal et al. 2017, "Accurate, Large Minibatch SGD",
        Sec. 5.1; torchvision's option of the same name). Only the initial values change: the layers, counts and
        weight files are the same. Off by default: it helps deep bottleneck nets start (resnet101 from scratch at
        lr 0.05 on digits began at a loss of 2.7 with it, 6.0 without, chance being 2.3), but on a budget of a few
        hundred steps it slows the CIFAR nets (resnet20 on digits, 10 epochs: 78.9% with it, 98.3% without).
    name: model name.

The CIFAR-10 nets (`resnet20` ... `resnet110`, and the plain nets `plain20` ... `plain56` without shortcuts,
Sec. 4.2) take the same keywords except `conv_bias` (never any bias; the plain nets have no `zero_init_residual`
either), with (32, 32, 3) inputs and 10 classes by default, and `bn_momentum` (0.9: the batch-norm moving
statistics follow the batches closely enough for the few hundred steps of a small data set; Keras's default 0.99
left them so far off after 200 steps on digits that inference scored at chance).

Backbones (`kapps.models.backbone`): the ImageNet nets offer `C1` (the stem's 7x7/2 convolution, stride 2) and the
outputs of the four stages `C2`-`C5` (strides 4-32); the CIFAR nets, which never downsample before their first
stage, offer their three stages as `C0`-`C2` (strides 1-4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kapps.models._common import ImagenetWeights, load_weights, model_input, pooled_classifier_head, set_bn_momentum
from kapps.models.resnet_blocks import (
    BLOCKS,
    BN_EPSILON,
    BOTTLENECK_EXPANSION,
    basic_block,
    bottleneck_block,
    conv_bn,
    stage,
)
from kapps.registry import FeatureMap, register_model

import keras

__all__ = [
    "BLOCKS",
    "CIFAR_STAGES",
    "IMAGENET_STAGES",
    "basic_block",
    "bottleneck_block",
    "conv_bn",
    "stage",
]

KA_ORIGIN = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"


@dataclass(frozen=True)
class Stages:
    """The body of a ResNet: one kind of block, stacked in stages.

    Attributes:
        block: `"basic"` (two 3x3 convolutions) or `"bottleneck"` (1x1 reduce, 3x3, 1x1 expand by 4).
        blocks: number of blocks in each stage.
        filters: width of each stage (a bottleneck block's output has 4x as many channels).
        imagenet: the keras.applications ImageNet files where that layout exists.
        stem: filters of the ImageNet layout's 7x7 stem convolution (the `C1` map); the CIFAR nets' 3x3 stem has
            the first stage's width instead (Sec. 4.2).
    """

    block: str
    blocks: tuple[int, ...]
    filters: tuple[int, ...]
    imagenet: ImagenetWeights | None = None
    stem: int = 64

    @property
    def channels(self) -> tuple[int, ...]:
        """Output channels of each stage."""
        expansion = BOTTLENECK_EXPANSION if self.block == "bottleneck" else 1
        return tuple(expansion * f for f in self.filters)

    def stage_maps(self, *, first: int, first_stride: int) -> tuple[FeatureMap, ...]:
        """The stages' outputs as feature maps `C<first>`, ...: the first at `first_stride`, each next one at twice
        the stride of the one before."""
        return tuple(
            FeatureMap(f"C{first + i}", f"conv{i + 2}_block{blocks}_out", first_stride * 2**i, channels)
            for i, (blocks, channels) in enumerate(zip(self.blocks, self.channels, strict=True))
        )


def _ka_weights(name: str) -> ImagenetWeights:
    prefix = f"{name}_weights_tf_dim_ordering_tf_kernels"
    return ImagenetWeights(top=f"{prefix}.h5", notop=f"{prefix}_notop.h5", origin=KA_ORIGIN)


IMAGENET_WIDTHS = (64, 128, 256, 512)
# Half of every width, stem included: for detection on a CPU, where the neck and heads add their own weights.
NARROW_WIDTHS = (32, 64, 128, 256)

# Table 1 of the paper: conv2_x ... conv5_x; resnet10_narrow is resnet18 with one block a stage and half the width.
IMAGENET_STAGES = {
    "resnet10_narrow": Stages("basic", (1, 1, 1, 1), NARROW_WIDTHS, stem=32),
    "resnet18": Stages("basic", (2, 2, 2, 2), IMAGENET_WIDTHS),
    "resnet34": Stages("basic", (3, 4, 6, 3), IMAGENET_WIDTHS),
    "resnet50": Stages("bottleneck", (3, 4, 6, 3), IMAGENET_WIDTHS, _ka_weights("resnet50")),
    "resnet101": Stages("bottleneck", (3, 4, 23, 3), IMAGENET_WIDTHS, _ka_weights("resnet101")),
    "resnet152": Stages("bottleneck", (3, 8, 36, 3), IMAGENET_WIDTHS, _ka_weights("resnet152")),
}

# Sec. 4.2: depth 6n + 2, three stages of n basic blocks on 32x32, 16x16 and 8x8 maps.
CIFAR_WIDTHS = (16, 32, 64)
CIFAR_STAGES = {
    20: Stages("basic", (3, 3, 3), CIFAR_WIDTHS),
    32: Stages("basic", (5, 5, 5), CIFAR_WIDTHS),
    44: Stages("basic", (7, 7, 7), CIFAR_WIDTHS),
    56: Stages("basic", (9, 9, 9), CIFAR_WIDTHS),
    110: Stages("basic", (18, 18, 18), CIFAR_WIDTHS),
}


def imagenet_feature_maps(variant: str) -> tuple[FeatureMap, ...]:
    """The backbone maps of the ImageNet net `variant`: the stem's `conv1_relu` and the four stages."""
    stages = IMAGENET_STAGES[variant]
    return (FeatureMap("C1", "conv1_relu", 2, stages.stem), *stages.stage_maps(first=2, first_stride=4))


def cifar_feature_maps(depth: int) -> tuple[FeatureMap, ...]:
    """The backbone maps of the CIFAR net of `depth`: its three stages, at strides 1, 2 and 4."""
    return CIFAR_STAGES[depth].stage_maps(first=0, first_stride=1)


def _body(x, stages: Stages, **block_kwargs):
    """The stages `conv2`, `conv3`, ... of `stages`: the first at stride 1 (the stem has downsampled), the others
    halving the resolution; `block_kwargs` go to every block."""
    for i, (blocks, filters) in enumerate(zip(stages.blocks, stages.filters, strict=True)):
        x = stage(x, stages.block, filters, blocks, stride=1 if i == 0 else 2, name=f"conv{i + 2}", **block_kwargs)
    return x


def _imagenet_resnet(
    variant: str,
    *,
    input_shape: tuple[int | None, int | None, int] = (224, 224, 3),
    num_classes: int = 1000,
    include_top: bool = True,
    weights: str | None = None,
    pooling: str | None = None,
    classifier_activation: str | None = "softmax",
    conv_bias: bool = True,
    zero_init_residual: bool = False,
    name: str,
) -> keras.Model:
    """The ImageNet ResNet `variant` of `IMAGENET_STAGES`; the keywords are described in the module docstring."""
    stages = IMAGENET_STAGES[variant]
    inputs = model_input(
        input_shape, weights=weights, imagenet=stages.imagenet, include_top=include_top, num_classes=num_classes
    )
    if weights == "imagenet" and not conv_bias:
        raise ValueError(
            "weights='imagenet' loads the keras.applications layout, which needs conv_bias=True. "
            f"Received: conv_bias={conv_bias!r}"
        )
    # Stem: 7x7/2 convolution and 3x3/2 max pooling, (H/4, W/4, stem).
    x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = keras.layers.Conv2D(stages.stem, 7, strides=2, use_bias=conv_bias, name="conv1_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name="conv1_bn")(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    x = _body(x, stages, conv_bias=conv_bias, zero_init_residual=zero_init_residual)
    x = pooled_classifier_head(
        x,
        include_top=include_top,
        num_classes=num_classes,
        pooling=pooling,
        classifier_activation=classifier_activation,
    )
    model = keras.Model(inputs, x, name=name)
    load_weights(model, weights, imagenet=stages.imagenet, include_top=include_top)
    return model


def _cifar_resnet(
    depth: int,
    *,
    residual: bool,
    input_shape: tuple[int | None, int | None, int] = (32, 32, 3),
    num_classes: int = 10,
    include_top: bool = True,
    weights: str | None = None,
    pooling: str | None = None,
    classifier_activation: str | None = "softmax",
    bn_momentum: float = 0.9,
    zero_init_residual: bool = False,
    name: str,
) -> keras.Model:
    """The CIFAR-10 net of `depth` (a key of `CIFAR_STAGES`): 3x3 conv 16, three stages, pooling, dense.

    Shortcuts that change shape are parameter-free ("option A"), so a ResNet has exactly the weights of the plain
    net of the same depth (`residual=False`).
    """
    stages = CIFAR_STAGES[depth]
    inputs = model_input(input_shape, weights=weights, include_top=include_top, num_classes=num_classes)
    x = conv_bn(inputs, stages.filters[0], 3, conv_bias=False, name="conv1")
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    x = _body(x, stages, conv_shortcut=False, residual=residual, conv_bias=False, zero_init_residual=zero_init_residual)
    x = pooled_classifier_head(
        x,
        include_top=include_top,
        num_classes=num_classes,
        pooling=pooling,
        classifier_activation=classifier_activation,
    )
    model = keras.Model(inputs, x, name=name)
    set_bn_momentum(model, bn_momentum)
    load_weights(model, weights)
    return model


_SOURCE = "He et al. 2016"
_COMPUTED = f"computed ({_SOURCE}, Sec. 4.2)"


_ZERO_INIT = """
        zero_init_residual: start each residual branch's last batch-norm scale at 0 (the module docstring)."""


def _describe(summary: str, *, keywords: str):
    """Give a public builder its docstring: `summary`, where its keywords are described, its parameter count."""

    def decorate(builder):
        info = builder.__kapps_count__
        counted = "parameters" if info[1] == "all" else "trainable parameters"
        zero_init = _ZERO_INIT if "zero_init_residual" in (builder.__kwdefaults__ or {}) else ""
        builder.__doc__ = f"""{summary}

    Args:{zero_init}
        **kwargs: the {keywords} keywords of the module docstring (`kapps.models.resnet`).

    Returns:
        A functional `keras.Model`; {info[0]:,} {counted} at the defaults.
    """
        return builder

    return decorate


def _register(variant, *, param_count: int, count_kind: str, source: str):
    """Register an ImageNet variant (a key of `IMAGENET_STAGES`) or a CIFAR depth (a key of `CIFAR_STAGES`)."""
    imagenet = variant in IMAGENET_STAGES
    register = register_model(
        task="classification",
        input_shape=(224, 224, 3) if imagenet else (32, 32, 3),
        num_classes=1000 if imagenet else 10,
        param_count=param_count,
        count_kind=count_kind,
        source=source,
        feature_maps=imagenet_feature_maps(variant) if imagenet else cifar_feature_maps(variant),
        imagenet_preprocessing="caffe" if imagenet and IMAGENET_STAGES[variant].imagenet else None,
    )

    def decorate(builder):
        builder.__kapps_count__ = (param_count, count_kind)
        return register(builder)

    return decorate


def _cifar_count(depth: int) -> int:
    """Trainable weights of the CIFAR net of depth 6n + 2: conv1 432 + BN 32, stage widths 16/32/64 with 2n 3x3
    convolutions each (the first of stages 2 and 3 reads half as many channels), each followed by a BN of
    2 * width, and the dense 64 * 10 + 10: 97,216 n - 21,926 (the paper's Table 6: 0.27M / 0.46M / 0.66M / 0.85M /
    1.7M for n = 3, 5, 7, 9, 18). Option-A shortcuts have no weights, so plainN has resnetN's count."""
    return 97_216 * CIFAR_STAGES[depth].blocks[0] - 21_926


def _basic_count(variant: str) -> int:
    """Trainable weights of the basic-block ImageNet net `variant` without conv biases: the 7x7 stem of s filters
    3 * 49 s + BN 2 s; a stage of width w reading c channels, 9 c w + 9 w^2 + 4 w for its first block (plus the
    projection c w + 2 w where c != w or the stride is 2) and 18 w^2 + 4 w for each further one; the dense layer
    1,000 w + 1,000. resnet18 and resnet34 give torchvision's 11,689,512 and 21,797,672 (tests/models)."""
    stages = IMAGENET_STAGES[variant]
    count = 3 * 49 * stages.stem + 2 * stages.stem
    reading = stages.stem
    for i, (blocks, width) in enumerate(zip(stages.blocks, stages.filters, strict=True)):
        first = 9 * reading * width + 9 * width**2 + 4 * width
        projection = reading * width + 2 * width if i > 0 or reading != width else 0
        count += first + projection + (blocks - 1) * (18 * width**2 + 4 * width)
        reading = width
    return count + 1_000 * reading + 1_000


# Decorators apply bottom-up: `_describe` runs after `_register` has recorded the count it quotes.


@_describe(
    f"ResNet-10 at half width ({_SOURCE}, Table 1's basic blocks): one block a stage, widths 32-64-128-256 and a "
    "32-filter stem, small enough to train a detector on a CPU; without conv biases.",
    keywords="ImageNet",
)
@_register(
    "resnet10_narrow",
    param_count=_basic_count("resnet10_narrow"),
    count_kind="trainable",
    source=f"computed ({_SOURCE}, Table 1: resnet18 with blocks 1-1-1-1 and half the widths)",
)
def resnet10_narrow(*, conv_bias: bool = False, zero_init_residual: bool = False, **kwargs: Any) -> keras.Model:
    return _imagenet_resnet(
        "resnet10_narrow",
        conv_bias=conv_bias,
        zero_init_residual=zero_init_residual,
        **{"name": "resnet10_narrow", **kwargs},
    )


@_describe(
    f"ResNet-18 ({_SOURCE}, Table 1): basic blocks 2-2-2-2; without conv biases, torchvision's.", keywords="ImageNet"
)
@_register("resnet18", param_count=11_689_512, count_kind="trainable", source="torchvision resnet18")
def resnet18(*, conv_bias: bool = False, zero_init_residual: bool = False, **kwargs: Any) -> keras.Model:
    return _imagenet_resnet(
        "resnet18", conv_bias=conv_bias, zero_init_residual=zero_init_residual, **{"name": "resnet18", **kwargs}
    )


@_describe(
    f"ResNet-34 ({_SOURCE}, Table 1): basic blocks 3-4-6-3; without conv biases, torchvision's.", keywords="ImageNet"
)
@_register("resnet34", param_count=21_797_672, count_kind="trainable", source="torchvision resnet34")
def resnet34(*, conv_bias: bool = False, zero_init_residual: bool = False, **kwargs: Any) -> keras.Model:
    return _imagenet_resnet(
        "resnet34", conv_bias=conv_bias, zero_init_residual=zero_init_residual, **{"name": "resnet34", **kwargs}
    )


@_describe(
    f"ResNet-50 ({_SOURCE}, Table 1): bottleneck blocks 3-4-6-3, keras.applications' layout.", keywords="ImageNet"
)
@_register("resnet50", param_count=25_636_712, count_kind="all", source="keras.applications ResNet50")
def resnet50(*, zero_init_residual: bool = False, **kwargs: Any) -> keras.Model:
    return _imagenet_resnet("resnet50", zero_init_residual=zero_init_residual, **{"name": "resnet50", **kwargs})


@_describe(
    f"ResNet-101 ({_SOURCE}, Table 1): bottleneck blocks 3-4-23-3, keras.applications' layout.", keywords="ImageNet"
)
@_register("resnet101", param_count=44_707_176, count_kind="all", source="keras.applications ResNet101")
def resnet101(*, zero_init_residual: bool = False, **kwargs: Any) -> keras.Model:
    return _imagenet_resnet("resnet101", zero_init_residual=zero_init_residual, **{"name": "resnet101", **kwargs})


@_describe(
    f"ResNet-152 ({_SOURCE}, Table 1): bottleneck blocks 3-8-36-3, keras.applications' layout.", keywords="ImageNet"
)
@_register("resnet152", param_count=60_419_944, count_kind="all", source="keras.applications ResNet152")
def resnet152(*, zero_init_residual: bool = False, **kwargs: Any) -> keras.Model:
    return _imagenet_resnet("resnet152", zero_init_residual=zero_init_residual, **{"name": "resnet152", **kwargs})


@_describe(f"ResNet-20 for CIFAR-10 ({_SOURCE}, Sec. 4.2): n = 3, option-A shortcuts.", keywords="CIFAR")
@_register(20, param_count=_cifar_count(20), count_kind="trainable", source=_COMPUTED)
def resnet20(*, zero_init_residual: bool = False, **kwargs: Any) -> keras.Model:
    return _cifar_resnet(20, residual=True, zero_init_residual=zero_init_residual, **{"name": "resnet20", **kwargs})


@_describe(f"ResNet-32 for CIFAR-10 ({_SOURCE}, Sec. 4.2): n = 5, option-A shortcuts.", keywords="CIFAR")
@_register(32, param_count=_cifar_count(32), count_kind="trainable", source=_COMPUTED)
def resnet32(*, zero_init_residual: bool = False, **kwargs: Any) -> keras.Model:
    return _cifar_resnet(32, residual=True, zero_init_residual=zero_init_residual, **{"name": "resnet32", **kwargs})


@_describe(f"ResNet-44 for CIFAR-10 ({_SOURCE}, Sec. 4.2): n = 7, option-A shortcuts.", keywords="CIFAR")
@_register(44, param_count=_cifar_count(44), count_kind="trainable", source=_COMPUTED)
def resnet44(*, zero_init_residual: bool = False, **kwargs: Any) -> keras.Model:
    return _cifar_resnet(44, residual=True, zero_init_residual=zero_init_residual, **{"name": "resnet44", **kwargs})


@_describe(f"ResNet-56 for CIFAR-10 ({_SOURCE}, Sec. 4.2): n = 9, option-A shortcuts.", keywords="CIFAR")
@_register(56, param_count=_cifar_count(56), count_kind="trainable", source=_COMPUTED)
def resnet56(*, zero_init_residual: bool = False, **kwargs: Any) -> keras.Model:
    return _cifar_resnet(56, residual=True, zero_init_residual=zero_init_residual, **{"name": "resnet56", **kwargs})


@_describe(f"ResNet-110 for CIFAR-10 ({_SOURCE}, Sec. 4.2): n = 18, option-A shortcuts.", keywords="CIFAR")
@_register(110, param_count=_cifar_count(110), count_kind="trainable", source=_COMPUTED)
def resnet110(*, zero_init_residual: bool = False, **kwargs: Any) -> keras.Model:
    return _cifar_resnet(110, residual=True, zero_init_residual=zero_init_residual, **{"name": "resnet110", **kwargs})


@_describe(f"The 20-layer plain net for CIFAR-10 ({_SOURCE}, Fig. 6): resnet20 without shortcuts.", keywords="CIFAR")
@_register(20, param_count=_cifar_count(20), count_kind="trainable", source=f"{_COMPUTED}: resnet20 without shortcuts")
def plain20(**kwargs: Any) -> keras.Model:
    return _cifar_resnet(20, residual=False, **{"name": "plain20", **kwargs})


@_describe(f"The 32-layer plain net for CIFAR-10 ({_SOURCE}, Fig. 6): resnet32 without shortcuts.", keywords="CIFAR")
@_register(32, param_count=_cifar_count(32), count_kind="trainable", source=f"{_COMPUTED}: resnet32 without shortcuts")
def plain32(**kwargs: Any) -> keras.Model:
    return _cifar_resnet(32, residual=False, **{"name": "plain32", **kwargs})


@_describe(f"The 44-layer plain net for CIFAR-10 ({_SOURCE}, Fig. 6): resnet44 without shortcuts.", keywords="CIFAR")
@_register(44, param_count=_cifar_count(44), count_kind="trainable", source=f"{_COMPUTED}: resnet44 without shortcuts")
def plain44(**kwargs: Any) -> keras.Model:
    return _cifar_resnet(44, residual=False, **{"name": "plain44", **kwargs})


@_describe(f"The 56-layer plain net for CIFAR-10 ({_SOURCE}, Fig. 6): resnet56 without shortcuts.", keywords="CIFAR")
@_register(56, param_count=_cifar_count(56), count_kind="trainable", source=f"{_COMPUTED}: resnet56 without shortcuts")
def plain56(**kwargs: Any) -> keras.Model:
    return _cifar_resnet(56, residual=False, **{"name": "plain56", **kwargs})
