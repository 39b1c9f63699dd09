"""The layers of a recurrent instance segmenter unrolled in a functional graph: a convolutional LSTM cell called once
a step with its weights shared, the zero maps its first step starts from, a vector spread over maps (a state's
global summary at every position), and the stop that turns per-step confidences into a count.

Convolutional LSTM (Shi et al., "Convolutional LSTM network: a machine learning approach for precipitation
nowcasting", NeurIPS 2015): the LSTM's matrix products become convolutions, so the input, the hidden state and the
cell state are maps. Recurrent instance segmentation (Romera-Paredes & Torr, "Recurrent instance segmentation",
ECCV 2016) runs one over an FCN's features and reads one instance out of each step's hidden state.

Why a cell of kapps' own rather than `keras.layers.ConvLSTM2D`: TFLite has no ConvLSTM kernel (tensorflow#38220,
#42564), Keras 3's recurrent layers trace to a `tf.while_loop` over TensorLists that the builtin ops refuse
(`kapps.export.recurrent`), and tf2onnx has written wrong ConvLSTM2D graphs (tensorflow-onnx#1760, #1222, #1678).
Called once per step in the functional graph, this cell is two CONV_2D, an ADD, a SPLIT, LOGISTIC and TANH and
MUL: TFLite builtins, and ONNX Conv, Split, Sigmoid, Tanh and Mul. Its weights have ConvLSTM2D's layout and gate
order, so ConvLSTM2D is the reference it is tested against.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kapps")
class ConvLSTMCell(keras.layers.Layer):
    """One step of a convolutional LSTM without peepholes, as `keras.layers.ConvLSTM2D` computes it:

        z = W * x + U * h + b, split into (i, f, g, o) along the channels
        i, f, o = sigmoid(.), g = tanh(.)
        c' = f c + i g,  h' = o tanh(c')

    `*` a "same"-padded convolution of stride 1. Shi et al. 2015 add peephole terms (W_ci o c, ...) to the gates;
    Keras's ConvLSTM2D, whose weights this cell takes, has none, and neither has this cell.

    Called as `cell([x, h, c])` on `x (B, H, W, C)` and the state `h, c (B, H, W, filters)`; returns `[h', c']`.
    Calling the same cell at every step shares its weights: `kernel (k, k, C, 4 filters)`, `recurrent_kernel (k, k,
    filters, 4 filters)` and `bias (4 filters)`, gates in the order i, f, g, o, the forget gate's bias starting at
    1 (Jozefowicz et al. 2015, Keras's `unit_forget_bias`). Parameters: k^2 (C + filters) 4 filters + 4 filters.

    Args:
        filters: channels of the hidden and cell states.
        kernel_size: side of both convolutions' square kernels (odd).
    """

    def __init__(self, filters: int, kernel_size: int = 3, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(filters, int) or isinstance(filters, bool) or filters < 1:
            raise ValueError(f"filters must be a positive integer. Received: filters={filters!r}")
        if not isinstance(kernel_size, int) or isinstance(kernel_size, bool) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer. Received: kernel_size={kernel_size!r}")
        self.filters = filters
        self.kernel_size = kernel_size

    def build(self, input_shape):
        x_shape, h_shape, c_shape = input_shape
        if tuple(h_shape[-1:]) != (self.filters,) or tuple(c_shape[-1:]) != (self.filters,):
            raise ValueError(
                f"ConvLSTMCell's states must have {self.filters} channels. Received: {h_shape} and {c_shape}"
            )
        k, n = self.kernel_size, self.filters
        self.kernel = self.add_weight(name="kernel", shape=(k, k, x_shape[-1], 4 * n), initializer="glorot_uniform")
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel", shape=(k, k, n, 4 * n), initializer="orthogonal"
        )
        self.bias = self.add_weight(name="bias", shape=(4 * n,), initializer="zeros")
        self.bias.assign(ops.concatenate([ops.zeros((n,)), ops.ones((n,)), ops.zeros((2 * n,))]))

    def call(self, inputs):
        x, h, c = inputs
        z = ops.conv(x, self.kernel, padding="same") + ops.conv(h, self.recurrent_kernel, padding="same") + self.bias
        i, f, g, o = ops.split(z, 4, axis=-1)
        c = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g)
        return [ops.sigmoid(o) * ops.tanh(c), c]

    def compute_output_shape(self, input_shape):
        state = (*tuple(input_shape[0][:-1]), self.filters)
        return [state, state]

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size}


@keras.saving.register_keras_serializable(package="kapps")
class ZeroMaps(keras.layers.Layer):
    """Zeros `(B, H, W, channels)` with the batch and size of the input `(B, H, W, C)`: a recurrence's first state,
    or its first step's empty canvas. Computed as the input's first channel times 0 (a MUL, tiled), so the batch
    stays free in every converted graph."""

    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
            raise ValueError(f"channels must be a positive integer. Received: channels={channels!r}")
        self.channels = channels

    def call(self, inputs):
        zero = inputs[..., :1] * 0.0
        return ops.tile(zero, (1, 1, 1, self.channels)) if self.channels > 1 else zero

    def compute_output_shape(self, input_shape):
        return (*tuple(input_shape[:-1]), self.channels)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


@keras.saving.register_keras_serializable(package="kapps")
class StopSequence(keras.layers.Layer):
    """The stop of a sequence of instances: inference ends at the first step whose confidence is below `threshold`
    (Romera-Paredes & Torr 2016), applied as a mask so the graph keeps its fixed number of steps.

    Inputs: masks `(B, T, H, W)` and confidences `(B, T)`, both probabilities.
    Outputs: `[masks, count]`: the masks with every step from the first confidence below `threshold` on set to 0,
    and count `(B,)` float32, the steps kept. A step is kept when it and every step before it have a confidence of
    at least `threshold`: keep_t = (number of confidences below it among steps 0..t) == 0, a cumulative sum
    (TFLite's CUMSUM builtin, ONNX's CumSum).

    Args:
        threshold: the least confidence that goes on (0.5 in the paper).
    """

    def __init__(self, threshold: float = 0.5, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0 < threshold < 1:
            raise ValueError(f"threshold must be in (0, 1). Received: threshold={threshold!r}")
        self.threshold = float(threshold)

    def call(self, masks, confidences):
        below = ops.cast(ops.less(confidences, self.threshold), "float32")
        keep = ops.cast(ops.equal(ops.cumsum(below, axis=1), 0.0), "float32")  # (B, T)
        return [masks * keep[:, :, None, None], ops.sum(keep, axis=1)]

    def compute_output_shape(self, masks_shape, confidences_shape):
        return [tuple(masks_shape), (masks_shape[0],)]

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


@keras.saving.register_keras_serializable(package="kapps")
class SpreadVector(keras.layers.Layer):
    """A vector (B, C) copied to every position of maps (B, H, W, ...): `[vector, maps] -> (B, H, W, C)`, computed
    as the maps' first channel times 0 plus the vector (a MUL and a broadcast ADD), so the batch and the size stay
    free in every converted graph. A recurrent segmenter's step reads its previous state's global summary so."""

    def call(self, inputs):
        vector, maps = inputs
        return maps[..., :1] * 0.0 + vector[:, None, None, :]

    def compute_output_shape(self, input_shape):
        vector, maps = input_shape
        return (*tuple(maps[:-1]), vector[-1])
