"""ResNet (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016): the ImageNet and CIFAR-10 nets.

ImageNet models (`resnet18` ... `resnet152`, Table 1 of the paper) take these keywords:

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
        lr 0.05 on digits began at a loss of 2.4 with it, 3.8 without, chance being 2.3), but on a budget of a few
        hundred steps it slows the CIFAR nets (resnet20 on digits, 10 epochs: 78.9% with it, 98.3% without).
    name: model name.

CIFAR-10 models (`resnet20` ... `resnet110`, and the plain nets `plain20` ... `plain56` without shortcuts, Sec. 4.2)
take the same keywords except `conv_bias` (never any bias; the plain nets have no `zero_init_residual` either),
with (32, 32, 3) inputs and 10 classes by default, and `bn_momentum` (0.9: the batch-norm moving statistics follow
the batches closely enough for the few hundred steps of a small data set; Keras's default 0.99 left them so far
off after 200 steps on digits that inference scored at chance).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from kapps.layers.shortcut import ChannelPadShortcut
from kapps.models._common import ImagenetWeights, classifier_head, load_weights, model_input, set_bn_momentum
from kapps.registry import register_model

import keras

BLOCKS = ("basic", "bottleneck")
BN_EPSILON = 1.001e-5  # keras.applications' value, which its ImageNet weights were converted with
BOTTLENECK_EXPANSION = 4  # a bottleneck block outputs 4x its width
KA_ORIGIN = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"


@dataclass(frozen=True)
class Stages:
    """The body of a ResNet: one kind of block, stacked in stages.

    Attributes:
        block: `"basic"` (two 3x3 convolutions) or `"bottleneck"` (1x1 reduce, 3x3, 1x1 expand by 4).
        blocks: number of blocks in each stage.
        filters: width of each stage (a bottleneck block's output has 4x as many channels).
        imagenet: the keras.applications ImageNet files where that layout exists.
    """

    block: str
    blocks: tuple[int, ...]
    filters: tuple[int, ...]
    imagenet: ImagenetWeights | None = None


def _ka_weights(name: str) -> ImagenetWeights:
    prefix = f"{name}_weights_tf_dim_ordering_tf_kernels"
    return ImagenetWeights(top=f"{prefix}.h5", notop=f"{prefix}_notop.h5", origin=KA_ORIGIN)


IMAGENET_WIDTHS = (64, 128, 256, 512)

# Table 1 of the paper: conv2_x ... conv5_x.
IMAGENET_STAGES = {
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


def _conv_bn(
    x, filters: int, kernel_size: int, *, stride: int = 1, conv_bias: bool, zero_gamma: bool = False, name: str
):
    """Convolution then batch normalisation, as `{name}_conv` and `{name}_bn` (whose scale starts at 0 with
    `zero_gamma`).

    A strided 3x3 convolution pads one pixel on every side (`{name}_pad`) so that its outputs sit on the same pixels
    as a strided 1x1 convolution or subsampling shortcut; `"same"` would pad only the bottom and right.
    """
    padding = "same"
    if stride > 1 and kernel_size > 1:
        x = keras.layers.ZeroPadding2D(kernel_size // 2, name=f"{name}_pad")(x)
        padding = "valid"
    x = keras.layers.Conv2D(
        filters, kernel_size, strides=stride, padding=padding, use_bias=conv_bias, name=f"{name}_conv"
    )(x)
    gamma = "zeros" if zero_gamma else "ones"
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, gamma_initializer=gamma, name=f"{name}_bn")(x)


def _shortcut(x, filters: int, *, stride: int, conv_shortcut: bool | None, conv_bias: bool, name: str):
    """The shortcut branch: a projection (1x1 conv + BN, `{name}_0_*`), the identity, or option A (`{name}_0_pad`).

    `conv_shortcut=None` projects only when the shape changes; `False` never projects, so a change of shape is
    bridged by subsampling and zero channels.
    """
    changes_shape = stride != 1 or x.shape[-1] != filters
    if conv_shortcut is None:
        conv_shortcut = changes_shape
    if conv_shortcut:
        return _conv_bn(x, filters, 1, stride=stride, conv_bias=conv_bias, name=f"{name}_0")
    if changes_shape:
        return ChannelPadShortcut(filters, stride, name=f"{name}_0_pad")(x)
    return x


def _merge(shortcut, x, *, name: str):
    """Add the shortcut (unless the block is plain, `shortcut is None`) and apply the block's last ReLU."""
    if shortcut is not None:
        x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.Activation("relu", name=f"{name}_out")(x)


def _check_block(stride: int, conv_shortcut, residual: bool, zero_init_residual: bool, name: str) -> None:
    if zero_init_residual and not residual:
        raise ValueError("zero_init_residual needs residual=True: without a shortcut the branch is the only path.")
    if not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be a positive integer. Received: stride={stride!r}")
    if conv_shortcut not in (None, True, False):
        raise ValueError(f"conv_shortcut must be None, True or False. Received: conv_shortcut={conv_shortcut!r}")
    if not name:
        raise ValueError(f"name must be a non-empty string. Received: name={name!r}")


def basic_block(
    x,
    filters: int,
    *,
    stride: int = 1,
    conv_shortcut: bool | None = None,
    residual: bool = True,
    conv_bias: bool = False,
    zero_init_residual: bool = False,
    name: str,
):
    """Two 3x3 convolutions with batch normalisation, plus the shortcut (He et al. 2016, Fig. 2 and Fig. 5 left).

    Layers: `{name}_1_conv/_1_bn/_1_relu`, `{name}_2_conv/_2_bn`, the shortcut `{name}_0_conv/_0_bn` (projection)
    or `{name}_0_pad` (option A), `{name}_add` and `{name}_out`.

    Args:
        x: input tensor (batch, height, width, channels).
        filters: output channels.
        stride: stride of the first convolution (and of the shortcut).
        conv_shortcut: `None` projects the shortcut only when the shape changes, `True` always projects, `False`
            never does: a change of shape then subsamples and pads zero channels ("option A").
        residual: `False` drops the shortcut, giving the block of the paper's plain nets.
        conv_bias: whether the convolutions have biases.
        zero_init_residual: start the scale (gamma) of the residual branch's last batch norm at 0, so the block
            begins as its shortcut (Goyal et al. 2017, Sec. 5.1). Only with `residual`.
        name: prefix of every layer name, e.g. `"conv2_block1"`.

    Returns:
        The block's output, (batch, ceil(height / stride), ceil(width / stride), filters).
    """
    _check_block(stride, conv_shortcut, residual, zero_init_residual, name)
    shortcut = None
    if residual:
        shortcut = _shortcut(x, filters, stride=stride, conv_shortcut=conv_shortcut, conv_bias=conv_bias, name=name)
    x = _conv_bn(x, filters, 3, stride=stride, conv_bias=conv_bias, name=f"{name}_1")
    x = keras.layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = _conv_bn(x, filters, 3, conv_bias=conv_bias, zero_gamma=zero_init_residual, name=f"{name}_2")
    return _merge(shortcut, x, name=name)


def bottleneck_block(
    x,
    filters: int,
    *,
    stride: int = 1,
    conv_shortcut: bool | None = None,
    residual: bool = True,
    conv_bias: bool = False,
    zero_init_residual: bool = False,
    name: str,
):
    """1x1 reduce, 3x3, 1x1 expand to `4 * filters`, each with batch normalisation (He et al. 2016, Fig. 5 right).

    The stride is on the first 1x1 convolution, as in the paper's released models and keras.applications (whose
    layer names and order this follows: `{name}_0_conv/_0_bn` for a projection, then `{name}_1_*`, `{name}_2_*`,
    `{name}_3_*`, `{name}_add`, `{name}_out`). torchvision's "v1.5" moves it to the 3x3; the weights are the same.

    Args:
        x: input tensor (batch, height, width, channels).
        filters: width of the 1x1 reduction and the 3x3 convolution; the block outputs `4 * filters` channels.
        stride: stride of the first 1x1 convolution (and of the shortcut).
        conv_shortcut: `None` projects the shortcut only when the shape changes, `True` always projects, `False`
            never does: a change of shape then subsamples and pads zero channels ("option A").
        residual: `False` drops the shortcut (a plain block).
        conv_bias: whether the convolutions have biases (keras.applications: yes; the paper and torchvision: no).
        zero_init_residual: start the scale (gamma) of the residual branch's last batch norm at 0, so the block
            begins as its shortcut (Goyal et al. 2017, Sec. 5.1). Only with `residual`.
        name: prefix of every layer name, e.g. `"conv3_block1"`.

    Returns:
        The block's output, (batch, ceil(height / stride), ceil(width / stride), 4 * filters).
    """
    _check_block(stride, conv_shortcut, residual, zero_init_residual, name)
    out = BOTTLENECK_EXPANSION * filters
    shortcut = None
    if residual:
        shortcut = _shortcut(x, out, stride=stride, conv_shortcut=conv_shortcut, conv_bias=conv_bias, name=name)
    x = _conv_bn(x, filters, 1, stride=stride, conv_bias=conv_bias, name=f"{name}_1")
    x = keras.layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = _conv_bn(x, filters, 3, conv_bias=conv_bias, name=f"{name}_2")
    x = keras.layers.Activation("relu", name=f"{name}_2_relu")(x)
    x = _conv_bn(x, out, 1, conv_bias=conv_bias, zero_gamma=zero_init_residual, name=f"{name}_3")
    return _merge(shortcut, x, name=name)


_BLOCK_FNS = {"basic": basic_block, "bottleneck": bottleneck_block}


def stage(
    x,
    block: str,
    filters: int,
    blocks: int,
    *,
    stride: int = 2,
    conv_shortcut: bool | None = None,
    residual: bool = True,
    conv_bias: bool = False,
    zero_init_residual: bool = False,
    name: str,
):
    """A stage: `blocks` blocks of one kind, the first with `stride`, named `{name}_block1` ... `{name}_blockN`.

    Args:
        x: input tensor.
        block: `"basic"` or `"bottleneck"`.
        filters: the blocks' `filters`.
        blocks: number of blocks.
        stride: stride of the first block.
        conv_shortcut: the blocks' `conv_shortcut`.
        residual: `False` for a plain stage without shortcuts.
        conv_bias: whether the convolutions have biases.
        zero_init_residual: the blocks' `zero_init_residual`.
        name: stage name, e.g. `"conv3"`.

    Returns:
        The stage's output tensor.
    """
    if block not in _BLOCK_FNS:
        raise ValueError(f"block must be one of {BLOCKS}. Received: block={block!r}")
    if not isinstance(blocks, int) or blocks < 1:
        raise ValueError(f"blocks must be a positive integer. Received: blocks={blocks!r}")
    block_fn = _BLOCK_FNS[block]
    for i in range(1, blocks + 1):
        x = block_fn(
            x,
            filters,
            stride=stride if i == 1 else 1,
            conv_shortcut=conv_shortcut,
            residual=residual,
            conv_bias=conv_bias,
            zero_init_residual=zero_init_residual,
            name=f"{name}_block{i}",
        )
    return x


def _body(x, stages: Stages, **block_kwargs):
    """The stages `conv2`, `conv3`, ... of `stages`: the first at stride 1 (the stem has downsampled), the others
    halving the resolution; `block_kwargs` go to every block."""
    for i, (blocks, filters) in enumerate(zip(stages.blocks, stages.filters, strict=True)):
        x = stage(x, stages.block, filters, blocks, stride=1 if i == 0 else 2, name=f"conv{i + 2}", **block_kwargs)
    return x


def _top(x, *, include_top: bool, num_classes: int, pooling, classifier_activation):
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return classifier_head(
        x,
        include_top=include_top,
        num_classes=num_classes,
        pooling=pooling,
        classifier_activation=classifier_activation,
    )


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
    # Stem: 7x7/2 convolution and 3x3/2 max pooling, (H/4, W/4, 64).
    x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = keras.layers.Conv2D(64, 7, strides=2, use_bias=conv_bias, name="conv1_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name="conv1_bn")(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    x = _body(x, stages, conv_bias=conv_bias, zero_init_residual=zero_init_residual)
    x = _top(
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
    x = _conv_bn(inputs, stages.filters[0], 3, conv_bias=False, name="conv1")
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    x = _body(x, stages, conv_shortcut=False, residual=residual, conv_bias=False, zero_init_residual=zero_init_residual)
    x = _top(
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


_register_imagenet = partial(register_model, task="classification", input_shape=(224, 224, 3), num_classes=1000)
_register_cifar = partial(
    register_model, task="classification", input_shape=(32, 32, 3), num_classes=10, count_kind="trainable"
)

# ImageNet models. Counts: torchvision (trainable weights, no conv biases) and keras.applications (all weights).


@_register_imagenet(param_count=11_689_512, count_kind="trainable", source="torchvision resnet18")
def resnet18(
    *, conv_bias: bool = False, zero_init_residual: bool = False, name: str = "resnet18", **kwargs
) -> keras.Model:
    """ResNet-18 (He et al. 2016, Table 1): basic blocks 2-2-2-2, projection shortcuts where the shape changes.

    Args:
        zero_init_residual: start each residual branch's last batch-norm scale at 0 (the module docstring).
        conv_bias: whether the convolutions have biases; without them (the default) the model is torchvision's.
        name: model name.
        **kwargs: the ImageNet keywords of the module docstring.

    Returns:
        A functional `keras.Model`; 11,689,512 trainable parameters at the defaults.
    """
    return _imagenet_resnet("resnet18", conv_bias=conv_bias, zero_init_residual=zero_init_residual, name=name, **kwargs)


@_register_imagenet(param_count=21_797_672, count_kind="trainable", source="torchvision resnet34")
def resnet34(
    *, conv_bias: bool = False, zero_init_residual: bool = False, name: str = "resnet34", **kwargs
) -> keras.Model:
    """ResNet-34 (He et al. 2016, Table 1): basic blocks 3-4-6-3, projection shortcuts where the shape changes.

    Args:
        zero_init_residual: start each residual branch's last batch-norm scale at 0 (the module docstring).
        conv_bias: whether the convolutions have biases; without them (the default) the model is torchvision's.
        name: model name.
        **kwargs: the ImageNet keywords of the module docstring.

    Returns:
        A functional `keras.Model`; 21,797,672 trainable parameters at the defaults.
    """
    return _imagenet_resnet("resnet34", conv_bias=conv_bias, zero_init_residual=zero_init_residual, name=name, **kwargs)


@_register_imagenet(param_count=25_636_712, source="keras.applications ResNet50")
def resnet50(*, zero_init_residual: bool = False, name: str = "resnet50", **kwargs) -> keras.Model:
    """ResNet-50 (He et al. 2016, Table 1): bottleneck blocks 3-4-6-3, layer for layer keras.applications'.

    Args:
        zero_init_residual: start each residual branch's last batch-norm scale at 0 (the module docstring).
        name: model name.
        **kwargs: the ImageNet keywords of the module docstring; `conv_bias=False` gives torchvision's
            parameterisation (25,557,032 trainable parameters).

    Returns:
        A functional `keras.Model`; 25,636,712 parameters at the defaults.
    """
    return _imagenet_resnet("resnet50", zero_init_residual=zero_init_residual, name=name, **kwargs)


@_register_imagenet(param_count=44_707_176, source="keras.applications ResNet101")
def resnet101(*, zero_init_residual: bool = False, name: str = "resnet101", **kwargs) -> keras.Model:
    """ResNet-101 (He et al. 2016, Table 1): bottleneck blocks 3-4-23-3, layer for layer keras.applications'.

    Args:
        zero_init_residual: start each residual branch's last batch-norm scale at 0 (the module docstring).
        name: model name.
        **kwargs: the ImageNet keywords of the module docstring.

    Returns:
        A functional `keras.Model`; 44,707,176 parameters at the defaults.
    """
    return _imagenet_resnet("resnet101", zero_init_residual=zero_init_residual, name=name, **kwargs)


@_register_imagenet(param_count=60_419_944, source="keras.applications ResNet152")
def resnet152(*, zero_init_residual: bool = False, name: str = "resnet152", **kwargs) -> keras.Model:
    """ResNet-152 (He et al. 2016, Table 1): bottleneck blocks 3-8-36-3, layer for layer keras.applications'.

    Args:
        zero_init_residual: start each residual branch's last batch-norm scale at 0 (the module docstring).
        name: model name.
        **kwargs: the ImageNet keywords of the module docstring.

    Returns:
        A functional `keras.Model`; 60,419,944 parameters at the defaults.
    """
    return _imagenet_resnet("resnet152", zero_init_residual=zero_init_residual, name=name, **kwargs)


# CIFAR-10 models (Sec. 4.2). Trainable weights of depth 6n + 2: conv1 432 + BN 32, stage widths 16/32/64 with 2n
# 3x3 convolutions each (the first of stages 2 and 3 reads half as many channels), each followed by a BN of
# 2 * width, and the dense 64 * 10 + 10: 97,216 n - 21,926 = 269,722 / 464,154 / 658,586 / 853,018 / 1,727,962
# for n = 3 / 5 / 7 / 9 / 18 (the paper's Table 6: 0.27M / 0.46M / 0.66M / 0.85M / 1.7M). Option-A shortcuts
# have no weights, so plainN has resnetN's count. Every builder takes the keywords of the module docstring
# except conv_bias.


@_register_cifar(param_count=269_722, source="computed (He et al. 2016, Sec. 4.2)")
def resnet20(*, zero_init_residual: bool = False, name: str = "resnet20", **kwargs) -> keras.Model:
    """ResNet-20 for CIFAR-10 (He et al. 2016, Sec. 4.2): n = 3, option-A shortcuts.

    Args:
        zero_init_residual: start each residual branch's last batch-norm scale at 0 (the module docstring).
        name: model name.
        **kwargs: the CIFAR keywords of the module docstring.

    Returns:
        A functional `keras.Model`; 269,722 trainable parameters at the defaults.
    """
    return _cifar_resnet(20, residual=True, zero_init_residual=zero_init_residual, name=name, **kwargs)


@_register_cifar(param_count=464_154, source="computed (He et al. 2016, Sec. 4.2)")
def resnet32(*, zero_init_residual: bool = False, name: str = "resnet32", **kwargs) -> keras.Model:
    """ResNet-32 for CIFAR-10 (He et al. 2016, Sec. 4.2): n = 5, option-A shortcuts.

    Args:
        zero_init_residual: start each residual branch's last batch-norm scale at 0 (the module docstring).
        name: model name.
        **kwargs: the CIFAR keywords of the module docstring.

    Returns:
        A functional `keras.Model`; 464,154 trainable parameters at the defaults.
    """
    return _cifar_resnet(32, residual=True, zero_init_residual=zero_init_residual, name=name, **kwargs)


@_register_cifar(param_count=658_586, source="computed (He et al. 2016, Sec. 4.2)")
def resnet44(*, zero_init_residual: bool = False, name: str = "resnet44", **kwargs) -> keras.Model:
    """ResNet-44 for CIFAR-10 (He et al. 2016, Sec. 4.2): n = 7, option-A shortcuts.

    Args:
        zero_init_residual: start each residual branch's last batch-norm scale at 0 (the module docstring).
        name: model name.
        **kwargs: the CIFAR keywords of the module docstring.

    Returns:
        A functional `keras.Model`; 658,586 trainable parameters at the defaults.
    """
    return _cifar_resnet(44, residual=True, zero_init_residual=zero_init_residual, name=name, **kwargs)


@_register_cifar(param_count=853_018, source="computed (He et al. 2016, Sec. 4.2)")
def resnet56(*, zero_init_residual: bool = False, name: str = "resnet56", **kwargs) -> keras.Model:
    """ResNet-56 for CIFAR-10 (He et al. 2016, Sec. 4.2): n = 9, option-A shortcuts.

    Args:
        zero_init_residual: start each residual branch's last batch-norm scale at 0 (the module docstring).
        name: model name.
        **kwargs: the CIFAR keywords of the module docstring.

    Returns:
        A functional `keras.Model`; 853,018 trainable parameters at the defaults.
    """
    return _cifar_resnet(56, residual=True, zero_init_residual=zero_init_residual, name=name, **kwargs)


@_register_cifar(param_count=1_727_962, source="computed (He et al. 2016, Sec. 4.2)")
def resnet110(*, zero_init_residual: bool = False, name: str = "resnet110", **kwargs) -> keras.Model:
    """ResNet-110 for CIFAR-10 (He et al. 2016, Sec. 4.2): n = 18, option-A shortcuts.

    Args:
        zero_init_residual: start each residual branch's last batch-norm scale at 0 (the module docstring).
        name: model name.
        **kwargs: the CIFAR keywords of the module docstring.

    Returns:
        A functional `keras.Model`; 1,727,962 trainable parameters at the defaults.
    """
    return _cifar_resnet(110, residual=True, zero_init_residual=zero_init_residual, name=name, **kwargs)


@_register_cifar(param_count=269_722, source="computed: resnet20 without its shortcuts (He et al. 2016, Fig. 6)")
def plain20(*, name: str = "plain20", **kwargs) -> keras.Model:
    """The 20-layer plain net for CIFAR-10 (He et al. 2016, Sec. 4.2, Fig. 6): resnet20 without shortcuts.

    Args:
        name: model name.
        **kwargs: the CIFAR keywords of the module docstring.

    Returns:
        A functional `keras.Model`; 269,722 trainable parameters at the defaults.
    """
    return _cifar_resnet(20, residual=False, name=name, **kwargs)


@_register_cifar(param_count=464_154, source="computed: resnet32 without its shortcuts (He et al. 2016, Fig. 6)")
def plain32(*, name: str = "plain32", **kwargs) -> keras.Model:
    """The 32-layer plain net for CIFAR-10 (He et al. 2016, Sec. 4.2, Fig. 6): resnet32 without shortcuts.

    Args:
        name: model name.
        **kwargs: the CIFAR keywords of the module docstring.

    Returns:
        A functional `keras.Model`; 464,154 trainable parameters at the defaults.
    """
    return _cifar_resnet(32, residual=False, name=name, **kwargs)


@_register_cifar(param_count=658_586, source="computed: resnet44 without its shortcuts (He et al. 2016, Fig. 6)")
def plain44(*, name: str = "plain44", **kwargs) -> keras.Model:
    """The 44-layer plain net for CIFAR-10 (He et al. 2016, Sec. 4.2, Fig. 6): resnet44 without shortcuts.

    Args:
        name: model name.
        **kwargs: the CIFAR keywords of the module docstring.

    Returns:
        A functional `keras.Model`; 658,586 trainable parameters at the defaults.
    """
    return _cifar_resnet(44, residual=False, name=name, **kwargs)


@_register_cifar(param_count=853_018, source="computed: resnet56 without its shortcuts (He et al. 2016, Fig. 6)")
def plain56(*, name: str = "plain56", **kwargs) -> keras.Model:
    """The 56-layer plain net for CIFAR-10 (He et al. 2016, Sec. 4.2, Fig. 6): resnet56 without shortcuts.

    Args:
        name: model name.
        **kwargs: the CIFAR keywords of the module docstring.

    Returns:
        A functional `keras.Model`; 853,018 trainable parameters at the defaults.
    """
    return _cifar_resnet(56, residual=False, name=name, **kwargs)
