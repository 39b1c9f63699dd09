"""A fixed Sobel edge detector as a Keras layer: horizontal and vertical gradients and their magnitude."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

# Cross-correlation kernels (what Conv2D computes): gx grows when the image brightens to the right, gy downwards.
SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype="float32")
SOBEL_Y = SOBEL_X.T.copy()

# ITU-R BT.601 luma weights of R, G and B.
LUMA_BT601 = np.array([0.299, 0.587, 0.114], dtype="float32")


@keras.saving.register_keras_serializable(package="kapps")
class SobelEdges(keras.layers.Layer):
    """Sobel gradients of a grey or RGB image: output channels `(gx, gy, sqrt(gx**2 + gy**2))`.

    An RGB input is first reduced to its ITU-R BT.601 luma `0.299 R + 0.587 G + 0.114 B`, so both kinds of input
    give one set of edges (an edge is where brightness changes, whatever the colour). The conversion is folded into
    the kernel: one (3, 3, channels, 2) convolution computes `gx` and `gy`, which is the same as converting first
    because both steps are linear. The layer computes a cross-correlation, as `keras.layers.Conv2D` does, and keeps
    the input's scale (no normalisation). It owns no weights, trainable or not. The magnitude's gradient is
    undefined where gx = gy = 0, so put the layer on inputs rather than behind trainable layers.

    Args:
        padding: `"same"` (zero padding of 1 pixel, output as large as the input) or `"valid"` (no padding, output
            2 pixels smaller in each dimension).

    Reference: I. Sobel and G. Feldman, "A 3x3 isotropic gradient operator for image processing", talk at the
    Stanford Artificial Intelligence Project, 1968.
    """

    def __init__(self, padding: str = "same", **kwargs):
        super().__init__(**kwargs)
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid'. Received: padding={padding!r}")
        self.padding = padding
        self._kernel = None

    def build(self, input_shape):
        channels = input_shape[-1]
        if len(input_shape) != 4 or channels not in (1, 3):
            raise ValueError(
                "SobelEdges expects (batch, height, width, 1 or 3) images, grey or RGB. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        mix = np.ones(1, "float32") if channels == 1 else LUMA_BT601
        # (3, 3, channels, 2): the luma mix times each Sobel kernel.
        self._kernel = np.einsum("c,hwo->hwco", mix, np.stack([SOBEL_X, SOBEL_Y], axis=-1)).astype("float32")

    def call(self, inputs):
        kernel = ops.convert_to_tensor(self._kernel, dtype=inputs.dtype)
        gradients = ops.conv(inputs, kernel, strides=1, padding=self.padding)  # (B, H', W', 2)
        magnitude = ops.sqrt(ops.sum(ops.square(gradients), axis=-1, keepdims=True))
        return ops.concatenate([gradients, magnitude], axis=-1)

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        if self.padding == "valid":
            h = None if h is None else h - 2
            w = None if w is None else w - 2
        return (b, h, w, 3)

    def get_config(self):
        config = super().get_config()
        config.update(padding=self.padding)
        return config
