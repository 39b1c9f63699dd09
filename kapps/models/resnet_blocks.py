"""ResNet's building blocks (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016): the basic and
bottleneck blocks, their shortcuts, and a stage of blocks. `kapps.models.resnet` stacks them into the nets."""

from __future__ import annotations

from kapps.layers.shortcut import ChannelPadShortcut

import keras

BLOCKS = ("basic", "bottleneck")
BN_EPSILON = 1.001e-5  # keras.applications' value, which its ImageNet weights were converted with
BOTTLENECK_EXPANSION = 4  # a bottleneck block outputs 4x its width


def conv_bn(
    x, filters: int, kernel_size: int, *, stride: int = 1, conv_bias: bool, zero_gamma: bool = False, name: str
):
    """Convolution then batch normalisation, as `{name}_conv` and `{name}_bn` (whose scale starts at 0 with
    `zero_gamma`); the convolution has a bias only with `conv_bias`.

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
        return conv_bn(x, filters, 1, stride=stride, conv_bias=conv_bias, name=f"{name}_0")
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
    x = conv_bn(x, filters, 3, stride=stride, conv_bias=conv_bias, name=f"{name}_1")
    x = keras.layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = conv_bn(x, filters, 3, conv_bias=conv_bias, zero_gamma=zero_init_residual, name=f"{name}_2")
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
    x = conv_bn(x, filters, 1, stride=stride, conv_bias=conv_bias, name=f"{name}_1")
    x = keras.layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = conv_bn(x, filters, 3, conv_bias=conv_bias, name=f"{name}_2")
    x = keras.layers.Activation("relu", name=f"{name}_2_relu")(x)
    x = conv_bn(x, out, 1, conv_bias=conv_bias, zero_gamma=zero_init_residual, name=f"{name}_3")
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
