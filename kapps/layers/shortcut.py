"""The parameter-free "option A" shortcut of the CIFAR ResNets: subsample, then zero-pad the new channels."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kapps")
class ChannelPadShortcut(keras.layers.Layer):
    """Identity shortcut for a block that changes shape: keep every `stride`-th pixel, append zero channels.

    The output is `x[:, ::stride, ::stride, :]` followed by `filters - channels` channels of zeros, so the shortcut
    has no weights ("option A" of He et al. 2016, Sec. 4.2: "the shortcut still performs identity mapping, with
    extra zero entries padded for increasing dimensions"). The kept pixels are the ones a 3x3, stride-2
    convolution padded by one on each side is centred on.

    Args:
        filters: number of output channels, at least the number of input channels.
        stride: spatial subsampling factor.

    Reference: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
    """

    def __init__(self, filters: int, stride: int = 1, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(filters, int) or filters < 1:
            raise ValueError(f"filters must be a positive integer. Received: filters={filters!r}")
        if not isinstance(stride, int) or stride < 1:
            raise ValueError(f"stride must be a positive integer. Received: stride={stride!r}")
        self.filters = filters
        self.stride = stride

    def build(self, input_shape):
        if input_shape[-1] is None or input_shape[-1] > self.filters:
            raise ValueError(
                f"the shortcut pads up to {self.filters} channels and cannot drop any. "
                f"Received: input_shape={input_shape}"
            )

    def call(self, inputs):
        s = self.stride
        x = inputs[:, ::s, ::s, :] if s > 1 else inputs
        extra = self.filters - inputs.shape[-1]
        if extra:
            x = ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, extra]])
        return x

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        s = self.stride
        return (b, None if h is None else -(-h // s), None if w is None else -(-w // s), self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, stride=self.stride)
        return config
