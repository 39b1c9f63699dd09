"""tf.distribute strategies by name, nothing home-made; and what training under MultiWorkerMirroredStrategy needs
around it: which worker is the chief, where the others write (`output_folder`), the input each worker reads, the
epoch they all resume at, and a work-around for Keras 3 (`fit_keras_to_cluster`)."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

from kapps.data.sharding import is_worker_share, set_input_workers
from kapps.errors import OptionError

import keras
import tensorflow as tf

STRATEGIES = ("auto", "default", "mirrored", "multi-worker", "tpu")

# A process holds one MultiWorkerMirroredStrategy: it configures the collective ops of TensorFlow's context, which
# can be done once, before the context starts.
_multi_worker: tf.distribute.MultiWorkerMirroredStrategy | None = None
_stand_ins: dict[Path, Path] = {}


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """The tf.distribute strategy `name` stands for.

    Args:
        name: `"auto"` (a TPU if one is attached, `mirrored` on more than one GPU, else `default`),
            `"default"` (one device), `"mirrored"` (all local GPUs, or else every logical CPU device), `"multi-worker"`
            (MultiWorkerMirroredStrategy, cluster from `TF_CONFIG`) or `"tpu"`.

    Returns:
        The strategy; build the model, optimizer and metrics inside its `scope()`.

    `"multi-worker"` must be made before TensorFlow runs its first operation (loading data included), since the
    strategy configures TensorFlow's collective operations, which a started context cannot take: recipes make it as
    their options are read, and a program of one's own calls `make_strategy("multi-worker")` first. Later calls
    return the same strategy. It also tells `kapps.data` this worker's share of the input
    (`kapps.data.sharding.input_workers`).

    Raises:
        OptionError: an unknown name, no TPU for `"tpu"`, a malformed `TF_CONFIG`, or `"multi-worker"` made after
            TensorFlow started.
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
        return _multi_worker_strategy()
    return _tpu_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files: the chief of a multi-worker cluster (the "chief" task, or
    worker 0 when there is none), and the one process of every other strategy."""
    return bool(strategy.extended.should_checkpoint)


def worker_count(strategy: tf.distribute.Strategy) -> int:
    """How many processes train together under `strategy`: the chief and workers of its cluster, else 1."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return 1
    cluster = resolver.cluster_spec().as_dict()
    return len(cluster.get("chief", [])) + len(cluster.get("worker", []))


def output_folder(run_folder: str | Path) -> Path:
    """The folder where this process writes the files of the run folder `run_folder`.

    That is `run_folder` itself, but for a worker of a multi-worker run that is not the chief: it computes what the
    chief computes, and writes it to a temporary stand-in of its own, one per run folder, removed when the process
    ends; so the run folder is written once, by the chief. Paths that name a run (the `--out` of a sub-run such as
    a pre-training phase, a backup to restore) stay the run folder's.
    """
    run_folder = Path(run_folder)
    if _multi_worker is None or is_chief(_multi_worker):
        return run_folder
    key = run_folder.absolute()
    if key not in _stand_ins:
        _stand_ins[key] = Path(tempfile.mkdtemp(prefix="kapps-worker-"))
        atexit.register(shutil.rmtree, _stand_ins[key], ignore_errors=True)
    return _stand_ins[key]


def distribute_input(strategy: tf.distribute.Strategy, dataset):
    """The training input to give Keras under `strategy`.

    A dataset of global batches is returned as it is: Keras has tf.distribute split each batch between the
    replicas, sharded by data. A worker's own share of a file source (`kapps.data.sharding.is_worker_share`), in
    per-replica batches, becomes that worker's input as it is, through `distribute_datasets_from_function`.
    """
    if not is_worker_share(dataset) or worker_count(strategy) == 1:
        return dataset
    return strategy.distribute_datasets_from_function(lambda context: dataset)


def batches_a_step(strategy: tf.distribute.Strategy, train) -> int:
    """Batches one training step takes from `train`: one global batch, or, from a worker's own share of a file
    source, one batch for each of the worker's replicas."""
    return strategy.num_replicas_in_sync // worker_count(strategy) if is_worker_share(train) else 1


def agreed_epoch(strategy: tf.distribute.Strategy, epoch: int, *, run_folder: Path) -> int:
    """`epoch`, the epoch this process resumes at, once every worker of a multi-worker run found the same one.

    Workers that disagreed would train different numbers of epochs and the first to finish would leave the others
    waiting in a collective step; they stop instead, all of them, with one sentence.
    """
    if worker_count(strategy) == 1:
        return epoch

    def this_worker():
        return tf.constant([epoch], tf.int64)

    @tf.function(autograph=False)
    def every_worker():
        return strategy.gather(strategy.run(this_worker), axis=0)

    found = every_worker().numpy()
    if found.min() != found.max():
        raise OptionError(
            f"The workers found backups of different epochs ({found.min()} and {found.max()}) in "
            f"{str(run_folder)!r}: the run folder must be on storage every worker reads."
        )
    return epoch


def fit_keras_to_cluster(model: keras.Model, strategy: tf.distribute.Strategy) -> keras.Model:
    """`model`, made to train and evaluate under a multi-worker strategy; under any other it is left as it is.

    Keras 3 (3.15) gets two things wrong across workers (keras-team/keras#20585, open), each of which stops `fit`
    and `evaluate` at once:

    - before the first step it averages one batch over every replica with `strategy.reduce` to learn its shapes,
      and across workers that reduction fails on a tuple (`(images, labels)`). Only the shapes matter, so the model
      is given this worker's own part of the batch instead;
    - after each step it averages the replicas' logs with `strategy.reduce("MEAN", value, axis=0)`, which fails on
      the scalars that losses and metrics are. The steps return each scalar as a vector of one, whose mean over
      axis 0 and the replicas is the mean of the replicas' values, as on one machine. (The epoch's logs are read
      from the metrics' variables, summed over all replicas, as everywhere.)
    """
    if worker_count(strategy) == 1 or getattr(model, "_kapps_cluster_steps", False):
        return model
    if not hasattr(model, "_maybe_symbolic_build"):
        raise RuntimeError(
            f"Keras {keras.__version__} builds models otherwise than the Keras 3.15 this work-around was written for; "
            "check whether keras-team/keras#20585 is fixed and drop it."
        )
    build, train_step, test_step = model._maybe_symbolic_build, model.train_step, model.test_step

    def local_symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(_local_part(strategy), next(batches))
                break
        return build(data_batch=data_batch)

    model._maybe_symbolic_build = local_symbolic_build
    model.train_step = lambda data: tf.nest.map_structure(_as_vector, train_step(data))
    model.test_step = lambda data: tf.nest.map_structure(_as_vector, test_step(data))
    model._kapps_cluster_steps = True
    return model


def _local_part(strategy):
    def local(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    return local


def _as_vector(value):
    return tf.reshape(value, [1]) if tf.is_tensor(value) and value.shape.rank == 0 else value


def _multi_worker_strategy() -> tf.distribute.MultiWorkerMirroredStrategy:
    global _multi_worker
    if _multi_worker is not None:
        return _multi_worker
    _check_tf_config(os.environ.get("TF_CONFIG"))
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as err:
        if "startup" not in str(err):
            raise
        raise OptionError(
            "--strategy multi-worker must be set up before TensorFlow runs anything: call "
            "kapps.train.make_strategy('multi-worker') at the start of the program."
        ) from None
    resolver = strategy.cluster_resolver
    if resolver.task_type is not None:
        cluster = resolver.cluster_spec().as_dict()
        chiefs = len(cluster.get("chief", []))
        index = resolver.task_id + (chiefs if resolver.task_type == "worker" else 0)
        set_input_workers(worker_count(strategy), index, replicas=strategy.num_replicas_in_sync)
    _multi_worker = strategy
    return strategy


def _check_tf_config(text: str | None) -> None:
    """One sentence for a `TF_CONFIG` that MultiWorkerMirroredStrategy would fail on with a traceback."""
    if not text:
        return
    try:
        config = json.loads(text)
    except json.JSONDecodeError:
        raise OptionError("TF_CONFIG is not valid JSON.") from None
    cluster, task = (config.get("cluster"), config.get("task")) if isinstance(config, dict) else (None, None)
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise OptionError('TF_CONFIG must hold {"cluster": {"worker": [...]}, "task": {"type": ..., "index": ...}}.')
    kind, index = task.get("type"), task.get("index")
    tasks = cluster.get(kind)
    if kind not in ("chief", "worker") or not isinstance(tasks, list):
        raise OptionError(f"TF_CONFIG's task type {kind!r} is not a chief or worker of its cluster.")
    if not isinstance(index, int) or not 0 <= index < len(tasks):
        raise OptionError(f"TF_CONFIG's task index {index!r} is not one of its cluster's {len(tasks)} {kind} tasks.")


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
