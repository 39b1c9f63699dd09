"""A convolution in which each output map sees only some input maps (LeNet-5's C3 layer)."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="kapps")
class ConnectionTableConv2D(keras.layers.Layer):
    """2D convolution with a fixed connection table between input and output maps.

    Only the connected (input, output) pairs own a kernel, so the parameter count is the paper's: LeNet-5's C3
    has 60 connections of 5x5 weights plus 16 biases, 1,516 parameters. The sparse kernels are scattered into a
    dense kernel by a constant 0/1 tensor in `call`, which keeps the layer a plain convolution for export.

    Args:
        table: nested list, `table[i][j]` true when output map `j` reads input map `i`; shape (in, out).
        kernel_size: side of the square kernel.
        activation: activation applied to the output.
        padding: `"valid"` or `"same"`.

    Reference: LeCun et al., "Gradient-based learning applied to document recognition", Proc. IEEE 1998, Table I.
    """

    def __init__(self, table, kernel_size: int = 5, *, activation=None, padding: str = "valid", **kwargs):
        super().__init__(**kwargs)
        table = np.asarray(table, dtype=bool)
        if table.ndim != 2 or not table.any(axis=0).all():
            raise ValueError(
                "table must be a 2D (inputs, outputs) boolean table in which every output reads at least one input. "
                f"Received: table with shape {table.shape}"
            )
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same'. Received: padding={padding!r}")
        self.table = table
        self.kernel_size = int(kernel_size)
        self.activation = keras.activations.get(activation)
        self.padding = padding
        inputs, outputs = np.nonzero(table)
        scatter = np.zeros((len(inputs),) + table.shape, dtype="float32")
        scatter[np.arange(len(inputs)), inputs, outputs] = 1.0
        self._scatter = scatter  # (connections, in, out)

    @property
    def connections(self) -> int:
        return int(self.table.sum())

    def build(self, input_shape):
        if input_shape[-1] != self.table.shape[0]:
            raise ValueError(
                f"the connection table expects {self.table.shape[0]} input maps. Received: input_shape={input_shape}"
            )
        k = self.kernel_size
        self.kernel = self.add_weight(
            name="kernel", shape=(k, k, self.connections), initializer="glorot_uniform", trainable=True
        )
        self.bias = self.add_weight(name="bias", shape=(self.table.shape[1],), initializer="zeros", trainable=True)

    def call(self, inputs):
        scatter = ops.convert_to_tensor(self._scatter, dtype=self.kernel.dtype)
        kernel = ops.einsum("hwc,cio->hwio", self.kernel, scatter)  # (k, k, in, out), zero where unconnected
        kernel = ops.cast(kernel, inputs.dtype)
        x = ops.conv(inputs, kernel, strides=1, padding=self.padding)
        return self.activation(x + ops.cast(self.bias, inputs.dtype))

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        if self.padding == "valid":
            h = None if h is None else h - self.kernel_size + 1
            w = None if w is None else w - self.kernel_size + 1
        return (b, h, w, self.table.shape[1])

    def get_config(self):
        config = super().get_config()
        config.update(
            table=self.table.astype(int).tolist(),
            kernel_size=self.kernel_size,
            activation=keras.activations.serialize(self.activation),
            padding=self.padding,
        )
        return config
