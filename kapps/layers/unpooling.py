"""Max pooling that remembers where each maximum was, and the unpooling that puts values back there (SegNet).

`tf.nn.max_pool_with_argmax` has no TFLite builtin, and its flat indices depend on the layout (NHWC or NCHW) a
converter picks (onnx2tf PRs #398/#580, tensorflow-onnx#1449). Here the switches are a mask of the encoder map's
own shape, 1 at the one position of each window the maximum came from and 0 elsewhere, built from ops every
runtime has: max pooling, repetition, equality, space-to-depth and depth-to-space, products. The mask carries the
encoder map's size, so the unpooling crops back to it after an odd size was pooled with padding.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops


def _check_pool_size(pool_size) -> int:
    if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 2:
        raise ValueError(f"pool_size must be an integer of at least 2. Received: pool_size={pool_size!r}")
    return pool_size


def _repeat(x, times: int):
    """(B, h, w, C) -> (B, times * h, times * w, C), each value copied to a times x times block."""
    return ops.repeat(ops.repeat(x, times, axis=1), times, axis=2)


def _pooled_size(size: int | None, pool_size: int) -> int | None:
    return None if size is None else -(-size // pool_size)


@keras.saving.register_keras_serializable(package="kapps")
class MaxPoolingWithSwitches(keras.layers.Layer):
    """Max pooling of non-overlapping `pool_size` x `pool_size` windows that also returns the pooling switches.

    Returns `[pooled, switches]`. `pooled` is the maximum of each window, of size ceil(H / k) x ceil(W / k): where
    H or W is not a multiple of k the last windows run past the bottom or right edge and cover the pixels there, as
    Caffe's pooling in SegNet does (for k = 2 this is `keras.layers.MaxPooling2D(2, padding="same")`). `switches`
    has the input's shape, with one 1 in each window and channel: at the position of the window's maximum, the
    first one in row-major order where several positions tie (a ReLU map has many zeros). It is made of the
    positions equal to their window's maximum (the pooled map repeated back over the window), whose ties a running
    "already taken" product in space-to-depth order breaks; no argmax op, so it converts to TFLite builtins and ONNX
    alike. The switches carry no gradient; `pooled` has max pooling's.

    Args:
        pool_size: side of the square windows, which are also the stride.

    Reference: Badrinarayanan, Kendall and Cipolla, "SegNet: A deep convolutional encoder-decoder architecture for
    image segmentation", IEEE TPAMI 2017, Sec. 3 (the max-pooling indices the decoder reuses).
    """

    def __init__(self, pool_size: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = _check_pool_size(pool_size)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                "MaxPoolingWithSwitches expects (batch, height, width, channels) with known channels. "
                f"Received: input_shape={tuple(input_shape)}"
            )

    def call(self, inputs):
        k = self.pool_size
        height, width = ops.shape(inputs)[1], ops.shape(inputs)[2]
        # The input padded at the bottom and right with k - 1 rows and columns of -inf, which no maximum comes from
        # and no maximum equals: "valid" pooling then covers every pixel with ceil(H / k) x ceil(W / k) windows
        # (TF's "same" pooling would pad a 3x3 window on both sides). Constant pads keep the channels known to the
        # converters, which computed ones hide from TFLite's Conv2D.
        pad = [[0, 0], [0, k - 1], [0, k - 1], [0, 0]]
        padded = ops.pad(inputs, pad, constant_values=float("-inf"))
        pooled = ops.max_pool(padded, k, strides=k, padding="valid")
        maxima = _repeat(pooled, k)  # (B, k*h, k*w, C): each window's maximum over the window
        windows = padded[:, : ops.shape(maxima)[1], : ops.shape(maxima)[2], :]
        is_max = ops.cast(ops.equal(windows, maxima), inputs.dtype)
        # (B, h, w, k*k*C): the window's positions in row-major order, one slice of C channels each.
        slots = tf.nn.space_to_depth(is_max, k)
        channels = inputs.shape[-1]
        taken = slots[..., :channels]  # the first position is the switch wherever it holds the maximum
        switches = [taken]
        for slot in range(1, k * k):
            candidate = slots[..., slot * channels : (slot + 1) * channels]
            switches.append(candidate * (1.0 - taken))
            taken = ops.maximum(taken, candidate)
        switches = tf.nn.depth_to_space(ops.concatenate(switches, axis=-1), k)
        return [pooled, ops.stop_gradient(switches[:, :height, :width, :])]

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        k = self.pool_size
        return [(b, _pooled_size(h, k), _pooled_size(w, k), c), tuple(input_shape)]

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=self.pool_size)
        return config


@keras.saving.register_keras_serializable(package="kapps")
class MaxUnpooling(keras.layers.Layer):
    """Places each value of a pooled-size map at its window's switch position; the rest of the window is zero.

    Called on `[values, switches]`: `values` (B, h, w, C) from the decoder, `switches` (B, H, W, C) from the
    `MaxPoolingWithSwitches` that pooled the encoder map to h x w. The output is the values repeated over their
    windows, cropped to H x W and multiplied by the switches: a sparse map of the encoder map's size (SegNet's
    upsampling, Badrinarayanan et al. 2017, Fig. 3). Gradients reach `values` through the one switch position of
    each window.

    Args:
        pool_size: the window side of the pooling whose switches are given.

    Reference: Badrinarayanan, Kendall and Cipolla, "SegNet: A deep convolutional encoder-decoder architecture for
    image segmentation", IEEE TPAMI 2017; Zeiler and Fergus, "Visualizing and understanding convolutional
    networks", ECCV 2014 (switches).
    """

    def __init__(self, pool_size: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = _check_pool_size(pool_size)

    def build(self, input_shape):
        values, switches = input_shape
        if len(values) != 4 or len(switches) != 4 or values[-1] != switches[-1]:
            raise ValueError(
                "MaxUnpooling expects [values, switches] of shapes (B, h, w, C) and (B, H, W, C) with the same C. "
                f"Received: input_shape={[tuple(values), tuple(switches)]}"
            )
        k = self.pool_size
        for axis in (1, 2):
            if None not in (values[axis], switches[axis]) and values[axis] != _pooled_size(switches[axis], k):
                raise ValueError(
                    f"values of size {tuple(values[1:3])} are not the {k}x{k} pooling of switches of size "
                    f"{tuple(switches[1:3])}. Received: input_shape={[tuple(values), tuple(switches)]}"
                )

    def call(self, inputs):
        values, switches = inputs
        height, width = ops.shape(switches)[1], ops.shape(switches)[2]
        spread = _repeat(values, self.pool_size)[:, :height, :width, :]
        return spread * ops.cast(switches, spread.dtype)

    def compute_output_shape(self, input_shape):
        values, switches = input_shape
        return (values[0], switches[1], switches[2], values[3])

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=self.pool_size)
        return config
