"""Convolution arithmetic: output sizes, "same" padding, a convolution unrolled into a dense matrix, parameter counts.

The sizes follow the usual formula for one spatial dimension (Dumoulin & Visin, "A guide to convolution arithmetic
for deep learning", 2016): `floor((n + 2p - d(k - 1) - 1) / s) + 1` for input size n, kernel k, padding p, stride s
and dilation d. `apply_kernel` and `max_pool` run Keras layers and check their output against that formula.

>>> conv_output_size(224, 7, stride=2, padding=3)
112
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import keras
import numpy as np


def _integer(name: str, value, minimum: int) -> int:
    """`value` as an int >= minimum, else a ValueError naming the argument."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer >= {minimum}. Received: {name}={value!r}") from None
    if number < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}. Received: {name}={value!r}")
    return number


def conv_output_size(size: int, kernel: int, *, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """The output size of a convolution or pooling window along one spatial dimension.

    Args:
        size: input size n (pixels), >= 1.
        kernel: kernel (or pooling window) size k, >= 1.
        stride: step s between two windows, >= 1.
        padding: zeros p added on each side, >= 0.
        dilation: spacing d between kernel taps, >= 1 (1 is an ordinary kernel).

    Returns:
        `floor((n + 2p - d(k - 1) - 1) / s) + 1`, e.g. 5 for a 5x5 input, a 3x3 kernel and padding 1, and 28 for
        LeNet-5's C1 (32x32 input, 5x5 kernel, no padding; LeCun et al. 1998).

    Raises:
        ValueError: an argument is not an integer in its range, or the (dilated) kernel is larger than the padded
            input, so that not even one window fits.
    """
    size = _integer("size", size, 1)
    kernel = _integer("kernel", kernel, 1)
    stride = _integer("stride", stride, 1)
    padding = _integer("padding", padding, 0)
    dilation = _integer("dilation", dilation, 1)
    span = dilation * (kernel - 1) + 1
    if span > size + 2 * padding:
        raise ValueError(
            f"kernel spans {span} pixels (kernel={kernel}, dilation={dilation}), more than the padded input's "
            f"{size + 2 * padding} (size={size}, padding={padding}). Received: kernel={kernel}"
        )
    return (size + 2 * padding - span) // stride + 1


def same_padding(kernel: int, dilation: int = 1) -> int:
    """The padding on each side that keeps a stride-1 convolution's output as large as its input.

    Args:
        kernel: kernel size k, odd once dilated: `d(k - 1) + 1` must be odd for a symmetric padding to exist.
        dilation: spacing d between kernel taps.

    Returns:
        `d(k - 1) / 2`: 1 for a 3x3 kernel, 2 for 5x5, 3 for 7x7, 2 for a 3x3 kernel dilated by 2.

    Raises:
        ValueError: a value out of range, or an even (dilated) kernel, which needs more padding on one side
            (Keras' `padding="same"` then pads the bottom and right by one more).
    """
    kernel = _integer("kernel", kernel, 1)
    dilation = _integer("dilation", dilation, 1)
    span = dilation * (kernel - 1) + 1
    if span % 2 == 0:
        raise ValueError(
            f"kernel must span an odd number of pixels for a symmetric 'same' padding; kernel={kernel} with "
            f"dilation={dilation} spans {span}. Received: kernel={kernel}"
        )
    return (span - 1) // 2


def _kernel_4d(kernel) -> np.ndarray:
    """A kernel as (kh, kw, in, out): a 2D kernel is one input and one output channel."""
    kernel = np.asarray(kernel, dtype="float32")
    if kernel.ndim == 2:
        kernel = kernel[:, :, None, None]
    if kernel.ndim != 4 or 0 in kernel.shape:
        raise ValueError(
            "kernel must be (height, width) or (height, width, in_channels, out_channels) like a Conv2D kernel. "
            f"Received: kernel with shape {kernel.shape}"
        )
    return kernel


def conv_as_dense(kernel, input_shape, *, stride: int = 1, padding: int = 0) -> np.ndarray:
    """A 2D convolution (cross-correlation, as Conv2D computes it) written as the weight matrix of a Dense layer.

    Every column is one output value; it holds the kernel's weights at the rows of the input pixels the kernel
    covers there and zeros elsewhere. So the matrix shows the two ideas that make a convolution cheap: its weights
    are sparse (each output sees k*k*in inputs) and shared (every column holds the same k*k*in*out numbers).

    Args:
        kernel: (kh, kw) for one input and one output channel, or (kh, kw, in_channels, out_channels).
        input_shape: (height, width) or (height, width, in_channels).
        stride: step between windows, the same along both axes.
        padding: zeros added on each side of both axes.

    Returns:
        A float32 matrix of shape (H * W * in, OH * OW * out) such that `x.reshape(-1) @ matrix` is the convolution
        of the (H, W, in) image x flattened in (row, column, channel) order, as `keras.layers.Flatten` and a
        (OH, OW, out) `keras.layers.Reshape` lay it out. It has H * W * in * OH * OW * out entries, so it is for
        small inputs: the point is to look at it, not to compute with it.

    Raises:
        ValueError: a kernel or input shape of the wrong rank, channels that disagree, or sizes that do not fit.
    """
    kernel = _kernel_4d(kernel)
    kh, kw, cin, cout = kernel.shape
    shape = tuple(input_shape)
    if len(shape) == 2:
        shape = (*shape, 1)
    if len(shape) != 3 or shape[2] != cin:
        raise ValueError(
            f"input_shape must be (height, width) or (height, width, {cin}) for a kernel with {cin} input "
            f"channel(s). Received: input_shape={tuple(input_shape)!r}"
        )
    height, width, _ = shape
    out_h = conv_output_size(height, kh, stride=stride, padding=padding)
    out_w = conv_output_size(width, kw, stride=stride, padding=padding)
    matrix = np.zeros((height, width, cin, out_h, out_w, cout), dtype="float32")
    oy, ox = np.meshgrid(np.arange(out_h), np.arange(out_w), indexing="ij")
    for ky in range(kh):
        for kx in range(kw):
            iy, ix = oy * stride + ky - padding, ox * stride + kx - padding
            inside = (iy >= 0) & (iy < height) & (ix >= 0) & (ix < width)  # taps on the padding read zeros
            matrix[iy[inside], ix[inside], :, oy[inside], ox[inside], :] = kernel[ky, kx]
    return matrix.reshape(height * width * cin, out_h * out_w * cout)


@dataclass(frozen=True)
class ParameterCounts:
    """A convolution's parameters against those of the dense layer that computes the same map.

    Attributes:
        conv: weights and biases of the convolution, `k*k*in*out + out`.
        dense: weights and biases of a Dense layer from the flattened input to the flattened output,
            `(H*W*in) * (OH*OW*out) + OH*OW*out`.
        ratio: `dense / conv`.
        output_hw: the convolution's output (height, width).
    """

    conv: int
    dense: int
    ratio: float
    output_hw: tuple[int, int]


def parameter_counts(
    kernel_size,
    in_channels: int,
    out_channels: int,
    input_hw,
    *,
    stride: int = 1,
    padding: int | None = None,
    use_bias: bool = True,
) -> ParameterCounts:
    """Compare a convolution's parameter count with that of the equivalent fully connected layer.

    Args:
        kernel_size: k or (kh, kw).
        in_channels: input channels.
        out_channels: output channels (filters).
        input_hw: input (height, width).
        stride: step between windows.
        padding: zeros on each side; None is the "same" padding of an odd kernel (`same_padding`).
        use_bias: whether both layers have one bias per output value (per channel for the convolution).

    Returns:
        A `ParameterCounts`. A 3x3 convolution from 3 to 64 channels on 224x224 has 1,792 parameters; the dense
        layer with the same input and output has about 4.8e11.
    """
    kernel_hw = (kernel_size, kernel_size) if np.ndim(kernel_size) == 0 else tuple(kernel_size)
    if len(kernel_hw) != 2:
        raise ValueError(f"kernel_size must be k or (kh, kw). Received: kernel_size={kernel_size!r}")
    kh, kw = kernel_hw
    if np.ndim(input_hw) != 1 or len(input_hw) != 2:
        raise ValueError(f"input_hw must be (height, width). Received: input_hw={input_hw!r}")
    in_channels = _integer("in_channels", in_channels, 1)
    out_channels = _integer("out_channels", out_channels, 1)
    height, width = input_hw
    pad_h = same_padding(kh) if padding is None else padding
    pad_w = same_padding(kw) if padding is None else padding
    out_h = conv_output_size(height, kh, stride=stride, padding=pad_h)
    out_w = conv_output_size(width, kw, stride=stride, padding=pad_w)
    outputs = out_h * out_w * out_channels
    conv = kh * kw * in_channels * out_channels + (out_channels if use_bias else 0)
    dense = height * width * in_channels * outputs + (outputs if use_bias else 0)
    return ParameterCounts(conv=conv, dense=dense, ratio=dense / conv, output_hw=(out_h, out_w))


def kernel_model(kernel, input_shape, *, stride: int = 1, padding: int = 0, name: str = "fixed_conv") -> keras.Model:
    """A Keras model that applies a fixed kernel: `ZeroPadding2D(padding)` then a frozen, bias-free `Conv2D`.

    The padding is symmetric, as in the formula of `conv_output_size` (Keras' own `padding="same"` pads the bottom
    and right more when the stride does not divide the input).

    Args:
        kernel: (kh, kw) or (kh, kw, in_channels, out_channels).
        input_shape: (height, width, in_channels) of one image.
        stride: step between windows.
        padding: zeros on each side.
        name: model name; its layers are `{name}_pad` and `{name}_conv`.
    """
    kernel = _kernel_4d(kernel)
    padding = _integer("padding", padding, 0)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = keras.layers.ZeroPadding2D(padding, name=f"{name}_pad")(inputs) if padding else inputs
    conv = keras.layers.Conv2D(
        kernel.shape[-1], kernel.shape[:2], strides=stride, use_bias=False, trainable=False, name=f"{name}_conv"
    )
    outputs = conv(x)
    conv.set_weights([kernel])
    return keras.Model(inputs, outputs, name=name)


def apply_kernel(images, kernel, *, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Convolve a batch of images with a fixed kernel through Keras, checking the size against `conv_output_size`.

    Args:
        images: (batch, height, width, in_channels).
        kernel: (kh, kw) or (kh, kw, in_channels, out_channels).
        stride: step between windows.
        padding: zeros on each side.

    Returns:
        The (batch, OH, OW, out_channels) float32 output.
    """
    images = np.asarray(images, dtype="float32")
    kernel = _kernel_4d(kernel)
    model = kernel_model(kernel, images.shape[1:], stride=stride, padding=padding)
    outputs = keras.ops.convert_to_numpy(model(images))
    sizes = zip(images.shape[1:3], kernel.shape[:2], strict=True)
    expected = tuple(conv_output_size(n, k, stride=stride, padding=padding) for n, k in sizes)
    _check_size(outputs, expected)
    return outputs


def max_pool(images, *, pool: int = 2, stride: int = 2) -> np.ndarray:
    """Max pooling through `keras.layers.MaxPooling2D` (no padding), checking the size against `conv_output_size`.

    Args:
        images: (batch, height, width, channels).
        pool: side of the square window.
        stride: step between windows.

    Returns:
        The (batch, OH, OW, channels) float32 output.
    """
    images = np.asarray(images, dtype="float32")
    outputs = keras.ops.convert_to_numpy(keras.layers.MaxPooling2D(pool, strides=stride)(images))
    _check_size(outputs, tuple(conv_output_size(n, pool, stride=stride) for n in images.shape[1:3]))
    return outputs


def _check_size(outputs: np.ndarray, expected: tuple[int, int]) -> None:
    if outputs.shape[1:3] != expected:
        raise RuntimeError(f"Keras gave {outputs.shape[1:3]} where the arithmetic says {expected}")
