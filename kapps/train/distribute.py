"""tf.distribute strategies by name; nothing home-made."""

from __future__ import annotations

from kapps.errors import OptionError

import tensorflow as tf

STRATEGIES = ("auto", "default", "mirrored", "multi-worker", "tpu")


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """The tf.distribute strategy `name` stands for.

    Args:
        name: `"auto"` (a TPU if one is attached, `mirrored` on more than one GPU, else `default`),
            `"default"` (one device), `"mirrored"` (all local GPUs, or else every logical CPU device), `"multi-worker"`
            (MultiWorkerMirroredStrategy, cluster from `TF_CONFIG`) or `"tpu"`.

    Returns:
        The strategy; build the model, optimizer and metrics inside its `scope()`.
    """
    if name not in STRATEGIES:
        raise OptionError(f"Unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}.")
    if name == "auto":
        if _tpu_resolver(required=False) is not None:
            return _tpu_strategy()
        if len(tf.config.list_logical_devices("GPU")) > 1:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        # Without GPUs, every logical CPU device: one, unless the CPU was split before TensorFlow started.
        devices = devices or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return _tpu_strategy()


def _tpu_resolver(*, required: bool):
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        resolver.master()
        return resolver
    except (ValueError, tf.errors.NotFoundError, RuntimeError):
        if required:
            raise OptionError("No TPU was found; use --strategy auto, default or mirrored on this machine.") from None
        return None


def _tpu_strategy() -> tf.distribute.Strategy:
    resolver = _tpu_resolver(required=True)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
