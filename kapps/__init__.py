"""kapps: the architectures of modern computer vision as Keras functional-API builders.

`kapps.models` holds the builders and their registry, `kapps.data` the tf.data pipelines, `kapps.train` the
shared training engine and `kapps.export` the verified SavedModel, TFLite and ONNX writers.
"""

from kapps.errors import KappsError

__version__ = "0.1.0"

__all__ = ["KappsError", "__version__"]
