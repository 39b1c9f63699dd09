"""Pieces of learned upsampling for dense prediction: the bilinear kernel a transposed convolution starts from, and
the crop that aligns an upsampled map with a finer one.

Long et al., "Fully convolutional networks for semantic segmentation", CVPR 2015, Sec. 3.3: upsampling by a
factor f is a transposed convolution of stride f, initialised to bilinear interpolation; Ronneberger et al.,
"U-Net: Convolutional networks for biomedical image segmentation", MICCAI 2015: "copy and crop" skips.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def bilinear_kernel(size: int, channels: int) -> np.ndarray:
    """The kernel of a transposed convolution that upsamples each of `channels` maps by bilinear interpolation.

    With factor f = ceil(size / 2) and centre c = f - 1 (odd `size`) or f - 0.5 (even), tap (i, j) is
    `(1 - |i - c| / f) (1 - |j - c| / f)`, the tent of width f on each axis. Used with stride f and kernel 2f, an
    input pixel i lands on output i f + f - 0.5, so the output is the input linearly interpolated on a grid f times
    finer, shifted by f / 2 output pixels (crop f // 2 to align it; see `CropLike`).

    Args:
        size: kernel height and width (2f for a factor f).
        channels: number of maps; channel c goes to channel c only.

    Returns:
        float32 array `(size, size, channels, channels)`, Keras's `Conv2DTranspose` kernel layout
        `(height, width, output channels, input channels)`, zero off the channel diagonal.
    """
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer. Received: size={size!r}")
    if not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be a positive integer. Received: channels={channels!r}")
    factor = (size + 1) // 2
    centre = factor - 1 if size % 2 else factor - 0.5
    tent = 1.0 - np.abs(np.arange(size) - centre) / factor
    kernel = np.zeros((size, size, channels, channels), dtype="float32")
    kernel[:, :, np.arange(channels), np.arange(channels)] = np.outer(tent, tent)[:, :, None]
    return kernel


@keras.saving.register_keras_serializable(package="kapps")
class BilinearUpsampling(keras.initializers.Initializer):
    """Initialiser of a square `Conv2DTranspose` kernel with as many output as input channels: `bilinear_kernel`."""

    def __call__(self, shape, dtype=None):
        height, width, outputs, inputs = shape
        if height != width or outputs != inputs:
            raise ValueError(
                f"a bilinear kernel is square with as many output as input channels. Received: shape={tuple(shape)}"
            )
        return ops.convert_to_tensor(bilinear_kernel(int(height), int(inputs)), dtype=dtype or "float32")

    def get_config(self):
        return {}


@keras.saving.register_keras_serializable(package="kapps")
class CropLike(keras.layers.Layer):
    """Crop a map to the height and width of a reference map: `x[:, oy:oy + h, ox:ox + w, :]`.

    Called on `[x, reference]`. With static shapes the slice is static (a builtin STRIDED_SLICE in TFLite, a
    Slice in ONNX); with free sizes it follows the tensors' sizes at run time.

    Args:
        offset: the crop's top-left corner: an int for both axes, a pair `(oy, ox)`, or None to centre the crop
            (U-Net's "copy and crop", rounding the offset down).
    """

    def __init__(self, offset: int | tuple[int, int] | None = 0, **kwargs):
        super().__init__(**kwargs)
        if offset is not None:
            pair = (offset, offset) if isinstance(offset, int) else tuple(offset)
            if len(pair) != 2 or not all(isinstance(o, int) and o >= 0 for o in pair):
                raise ValueError(f"offset must be None, an int >= 0 or a pair of them. Received: offset={offset!r}")
            offset = pair
        self.offset = offset

    def build(self, input_shape):
        (_, height, width, _), (_, ref_height, ref_width, _) = input_shape
        oy, ox = self.offset or (0, 0)
        for axis, size, ref, o in (("height", height, ref_height, oy), ("width", width, ref_width, ox)):
            if size is not None and ref is not None and size < ref + o:
                raise ValueError(
                    f"a map of {axis} {size} cannot be cropped to {ref} at offset {o}. Received: "
                    f"input_shape={input_shape}"
                )

    def call(self, inputs):
        x, reference = inputs
        height, width = ops.shape(reference)[1], ops.shape(reference)[2]
        if self.offset is None:
            oy, ox = (ops.shape(x)[1] - height) // 2, (ops.shape(x)[2] - width) // 2
        else:
            oy, ox = self.offset
        return x[:, oy : oy + height, ox : ox + width, :]

    def compute_output_shape(self, input_shape):
        (batch, _, _, channels), (_, height, width, _) = input_shape
        return (batch, height, width, channels)

    def get_config(self):
        config = super().get_config()
        config.update(offset=self.offset)
        return config
