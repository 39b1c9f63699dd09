"""The dtype policy: mixed_float16 on a capable GPU, mixed_bfloat16 on TPU, float32 elsewhere."""

from __future__ import annotations

import contextlib

from kapps.errors import OptionError

import keras
import tensorflow as tf

PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


def resolve_precision(precision: str = "auto", *, strategy: tf.distribute.Strategy | None = None) -> str:
    """The Keras dtype policy name that `precision` stands for on this machine.

    `"auto"` picks `mixed_bfloat16` under a TPU strategy, `mixed_float16` when every visible GPU has compute
    capability 7.0 or more (tensor cores), and `float32` otherwise.
    """
    if precision not in PRECISIONS:
        raise OptionError(f"Unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}.")
    if precision != "auto":
        return precision
    if strategy is not None and isinstance(strategy, tf.distribute.TPUStrategy):
        return "mixed_bfloat16"
    gpus = tf.config.list_physical_devices("GPU")
    if gpus and all(
        tf.config.experimental.get_device_details(g).get("compute_capability", (0, 0)) >= (7, 0) for g in gpus
    ):
        return "mixed_float16"
    return "float32"


@contextlib.contextmanager
def precision_policy(policy: str):
    """Set the global Keras dtype policy inside the block and restore the previous one after it."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield keras.mixed_precision.global_policy()
    finally:
        keras.mixed_precision.set_global_policy(previous)
