"""Custom Keras layers, each registered as serializable under the package name `kapps`."""

from kapps.layers.connection_table import ConnectionTableConv2D

__all__ = ["ConnectionTableConv2D"]
