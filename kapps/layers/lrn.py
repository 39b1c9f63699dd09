"""Local response normalisation across channels (AlexNet's LRN, used by VGG's configuration A-LRN)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kapps")
class LocalResponseNormalization(keras.layers.Layer):
    """Divides each activation by a power of the summed squares of its neighbours across channels.

    For channel `c` of `C`, with `r = size // 2` and the window clipped at the first and last channel:

        y[..., c] = x[..., c] / (k + alpha * sum(x[..., j] ** 2 for j in [c - r, c + r])) ** beta

    This is the formula of Krizhevsky et al. (2012), section 3.3, and of TensorFlow's
    `tf.nn.local_response_normalization(depth_radius=r, bias=k, alpha=alpha, beta=beta)`: `alpha` multiplies the
    sum itself. PyTorch's `nn.LocalResponseNorm`, Caffe and ONNX's `LRN` divide `alpha` by `size` instead; to
    reproduce one of those, pass their `alpha / size` here.

    The window sum is `size` shifted slices of the zero-padded squares, so the layer is plain pad, slice, add and
    power ops: it runs under any backend and exports to SavedModel, TFLite builtins and ONNX alike. It computes
    in float32 under a mixed-precision policy, since squares of float16 activations overflow above 256.

    Args:
        size: number of channels in the window, odd (5 in AlexNet and VGG).
        alpha: scale of the sum of squares (1e-4).
        beta: exponent (0.75).
        k: additive bias (2).

    Reference: Krizhevsky, Sutskever and Hinton, "ImageNet classification with deep convolutional neural
    networks", NeurIPS 2012; Simonyan and Zisserman, "Very deep convolutional networks for large-scale image
    recognition", ICLR 2015 (configuration A-LRN).
    """

    def __init__(self, size: int = 5, *, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(size, int) or size < 1 or size % 2 == 0:
            raise ValueError(f"size must be a positive odd integer. Received: size={size!r}")
        if beta < 0:
            raise ValueError(f"beta must be non-negative. Received: beta={beta!r}")
        if k <= 0:
            raise ValueError(f"k must be positive, so the denominator is never zero. Received: k={k!r}")
        self.size = size
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.k = float(k)

    def build(self, input_shape):
        if input_shape[-1] is None:
            raise ValueError(f"the channel axis must be known. Received: input_shape={input_shape}")

    def call(self, inputs):
        channels = inputs.shape[-1]
        radius = self.size // 2
        x = ops.cast(inputs, "float32")
        squares = ops.pad(ops.square(x), [[0, 0]] * (len(x.shape) - 1) + [[radius, radius]])
        window_sum = squares[..., :channels]
        for shift in range(1, self.size):
            window_sum = window_sum + squares[..., shift : shift + channels]
        y = x / ops.power(self.k + self.alpha * window_sum, self.beta)
        return ops.cast(y, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(size=self.size, alpha=self.alpha, beta=self.beta, k=self.k)
        return config
