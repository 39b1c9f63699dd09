"""kapps: the architectures of modern computer vision as Keras functional-API builders.

`kapps.models` holds the builders and their registry, `kapps.data` the tf.data pipelines, `kapps.train` the
shared training engine and `kapps.export` the verified SavedModel, TFLite and ONNX writers.

Importing kapps imports TensorFlow with its C++ start-up chatter (CUDA probing on a machine without a GPU, absl's
pre-initialisation warning) kept off stderr, and sets `TF_CPP_MIN_LOG_LEVEL=3` unless it is set already. Set
`KAPPS_TF_LOGS=1` to see all of it. It also registers kapps' custom layers and losses, so that after `import kapps`
`keras.saving.load_model` reads any model a kapps recipe saved.
"""

import os


def _import_tensorflow_quietly() -> None:
    import sys

    if "tensorflow" in sys.modules or os.environ.get("KAPPS_TF_LOGS") == "1":
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    sys.stderr.flush()
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_import_tensorflow_quietly()

import kapps.layers  # noqa: E402, F401  (registers the serializable layers, so any .keras file of kapps loads)
import kapps.losses  # noqa: E402, F401  (and the losses a training model is compiled with)
from kapps.errors import KappsError  # noqa: E402

__version__ = "0.1.0"

__all__ = ["KappsError", "__version__"]
