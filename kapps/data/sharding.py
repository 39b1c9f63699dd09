"""Which share of the input a worker of multi-worker training reads, and how a pipeline says which it is.

Under `MultiWorkerMirroredStrategy` each worker process has its own input pipeline. kapps shards them two ways:

- **by data**, for the embedded sources (digits, shapes, wheat, leaves...): every worker builds the same stream of
  global batches (same seed, so the same shuffle order and augmentation draws) and tf.distribute keeps each
  worker's slice of every batch (`AutoShardPolicy.DATA`, which `kapps.data.pipeline` sets). A step then sees
  exactly the global batch one process would see, so multi-worker training computes what `MirroredStrategy`
  computes on one machine. The price is that every worker prepares every example; for data held in memory and
  generated or decoded cheaply, that is little.
- **by file**, for the training splits of `folder:` and `tfds:` sources: a worker reads and decodes only its own
  share of the files (every N-th image file of a folder; its share of the TFRecord files of a tensorflow-datasets
  split, which tfds deals out itself), since reading and decoding is the expensive part that sharding by data
  would repeat on every worker. `kapps.data.splits` builds such a worker's stream from its files
  (`Data.worker_train`) in per-replica batches (the global batch divided by the replicas of all workers) and marks
  it with `AutoShardPolicy.OFF`; the engine gives it to tf.distribute as the worker's own input, neither sharded nor
  re-batched again. Each step still trains on a global batch, made of the workers' own shuffled shares. A tfds
  split with fewer files than workers (MNIST's training set is one file) is read by data. tf.data's own FILE policy
  cannot do this here: kapps' training stream is an endless `flat_map` of epochs, which hides the reader datasets
  from tf.data's auto-sharding, and a folder source reads its files with `tf.io.read_file` inside a map, which is
  no reader dataset at all.

Validation and test splits are always sharded by data, so their metrics are those of the whole split, the same on
every worker.

The strategy (`kapps.train.make_strategy("multi-worker")`) sets this process's place with `set_input_workers`
before any data is loaded; without it every process reads everything, as one process should.
"""

from __future__ import annotations

from kapps.errors import DataError

import tensorflow as tf

_workers = (1, 0, 1)


def set_input_workers(count: int, index: int, *, replicas: int) -> None:
    """Record that this process is worker `index` (0 is the chief) of `count` workers training together, with
    `replicas` replicas in all (a worker has as many as it has devices)."""
    if not 0 <= index < count or replicas % count:
        raise ValueError(
            "index must be in [0, count) and replicas a multiple of count. "
            f"Received: count={count}, index={index}, replicas={replicas}"
        )
    global _workers
    _workers = (count, index, replicas)


def input_workers() -> tuple[int, int]:
    """`(count, index)`: how many workers train together and which one this process is; `(1, 0)` alone."""
    return _workers[:2]


def replica_batch_size(batch_size: int) -> int:
    """The batch of one replica when `batch_size` is the global batch of the workers of `input_workers`.

    Raises:
        DataError: the global batch does not split evenly between the replicas.
    """
    replicas = _workers[2]
    if batch_size % replicas:
        raise DataError(
            f"The batch size {batch_size} does not split evenly between the {replicas} replicas of the "
            f"{_workers[0]} workers; use a multiple of {replicas}."
        )
    return batch_size // replicas


def with_policy(ds: tf.data.Dataset, policy: tf.data.experimental.AutoShardPolicy) -> tf.data.Dataset:
    """`ds` with tf.distribute's auto-shard policy set to `policy`."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = policy
    return ds.with_options(options)


def is_worker_share(ds) -> bool:
    """Whether `ds` is already this worker's own input, in per-replica batches (see the module's docstring)."""
    return (
        isinstance(ds, tf.data.Dataset)
        and ds.options().experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.OFF
    )
