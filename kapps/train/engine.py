"""The shared training engine: seed, precision, strategy, callbacks, the run folder, resume and test metrics."""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import kapps
from kapps.errors import OptionError
from kapps.train.distribute import make_strategy
from kapps.train.options import TrainOptions
from kapps.train.precision import precision_policy, resolve_precision
from kapps.viz import plot_curves

import keras
import numpy as np
import tensorflow as tf

MODEL_FILE = "model.keras"
TRAINING_MODEL_FILE = "training_model.keras"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
BACKUP_DIR = "backup"


@dataclass
class Run:
    """A finished run: its folder, its best model and its test metrics."""

    path: Path
    model: keras.Model
    metrics: dict
    history: list[dict]


def fit_classifier(
    opts: TrainOptions,
    data,
    *,
    build_model: Callable[[], keras.Model],
    augment: Callable | None = None,
    config: dict | None = None,
) -> Run:
    """`fit` a softmax classifier on a classification `Data`: Adam along a cosine decay from `opts.lr` to zero over
    `opts.epochs`, sparse categorical cross-entropy, the epoch of best validation accuracy kept.

    Args:
        opts: the options of this run (its `out`, `epochs` and `lr` included).
        data: `(image, label)` splits and their sizes (`kapps.data.Data`).
        build_model: returns the model, built inside the run's strategy scope.
        augment: a batched `(images, labels) -> (images, labels)` function for the training batches.
        config: recorded in `config.json`, with the data's description added as `"data"`.
    """
    from kapps.data.pipeline import pipeline

    steps = opts.epoch_steps(data.sizes["train"])
    schedule = keras.optimizers.schedules.CosineDecay(opts.lr, decay_steps=opts.epochs * steps)
    return fit(
        opts,
        build_model=build_model,
        train=pipeline(data.train, batch_size=opts.batch_size, training=True, augment=augment, seed=opts.seed),
        train_steps=steps,
        val=pipeline(data.val, batch_size=256, training=False),
        test=pipeline(data.test, batch_size=256, training=False),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
        optimizer=lambda: keras.optimizers.Adam(schedule),
        monitor="val_accuracy",
        mode="max",
        config={**(config or {}), "data": data.describe()},
    )


def warmup_cosine(lr: float, *, epochs: int, steps: int) -> keras.optimizers.schedules.CosineDecay:
    """A learning rate that warms up from lr/10 to `lr` over the first epoch (at most a tenth of training), then
    decays to zero along a cosine over `epochs` epochs of `steps` steps."""
    return keras.optimizers.schedules.CosineDecay(
        lr / 10, decay_steps=epochs * steps, warmup_target=lr, warmup_steps=min(steps, epochs * steps // 10)
    )


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed Python, NumPy, TensorFlow and Keras; with `deterministic`, make TensorFlow's ops deterministic too."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def fit(
    opts: TrainOptions,
    *,
    build_model: Callable[[], keras.Model],
    train: tf.data.Dataset,
    train_steps: int,
    val: tf.data.Dataset,
    test: tf.data.Dataset,
    loss,
    loss_weights=None,
    metrics: Sequence | dict = (),
    optimizer: Callable[[], keras.optimizers.Optimizer] | None = None,
    monitor: str = "val_loss",
    mode: str = "min",
    config: dict | None = None,
    evaluate_each_epoch: dict[str, tf.data.Dataset] | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    export_model: Callable[[keras.Model], keras.Model] | None = None,
    evaluate_test: Callable[[keras.Model], dict] | None = None,
) -> Run:
    """Train `build_model()` on batched `train`, keep the best epoch by `monitor` and test it.

    The run folder `opts.out` receives `config.json` (the options, `config`, versions), `history.csv`, `logs/`
    (TensorBoard), `model.keras` (the best epoch), `metrics.json` (test metrics) and `plots/curves.png`. While
    training, `backup/` holds the last finished epoch, so a killed run started again with the same `--out` (and
    `--resume`, the default) goes on from there.

    Args:
        opts: the shared recipe options.
        build_model: returns the model; called inside the strategy scope and under the dtype policy.
        train, val, test: batched datasets (global batch size); `train` may be endless, as
            `kapps.data.pipeline` makes it.
        train_steps: batches in one training epoch (`opts.epoch_steps(examples)`).
        loss: the Keras loss (a dict by output name for a model with several outputs).
        loss_weights: weights of the outputs' losses, as `keras.Model.compile` takes them.
        metrics: Keras metrics, compiled with the model (a dict by output name for a model with several outputs).
        optimizer: returns the optimizer (inside the scope); Adam at `opts.lr` when omitted.
        monitor, mode: the validation quantity that picks the best epoch, and whether lower or higher is better.
        config: more JSON-ready facts for config.json (model name and arguments, data description...).
        evaluate_each_epoch: more splits to evaluate after every epoch, by prefix (`{"test": test}` logs
            `test_loss`, `test_accuracy`... into history.csv), for curves such as He et al.'s test error.
        callbacks: more Keras callbacks; they run before the checkpoint and the CSV logger, so a metric one of
            them adds to the epoch's logs (`val_map50`) can be monitored and is logged.
        export_model: turns the trained model into the one users run, when they differ: GoogLeNet without its
            auxiliary heads, a detector with decoding and NMS. The training model's best epoch is then kept in
            `training_model.keras` and `model.keras` holds `export_model(best)`.
        evaluate_test: scores the model of `model.keras` on the test split and returns JSON-ready metrics;
            by default the model is compiled with `loss` and `metrics` and evaluated on `test`, and the metrics
            are prefixed `test_`.

    Returns:
        The `Run`, with the model that `model.keras` holds.
    """
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max'. Received: mode={mode!r}")
    out = _prepare_folder(Path(opts.out), resume=opts.resume)
    seed_everything(opts.seed, deterministic=opts.deterministic)
    strategy = make_strategy(opts.strategy)
    policy = resolve_precision(opts.precision, strategy=strategy)
    resuming = (out / BACKUP_DIR).exists()
    _write_json(
        out / CONFIG_FILE,
        {
            "options": opts.to_dict(),
            "precision_policy": policy,
            "strategy": type(strategy).__name__,
            "replicas": strategy.num_replicas_in_sync,
            **(config or {}),
            "versions": _versions(),
        },
    )
    _metrics = dict(metrics) if isinstance(metrics, dict) else list(metrics)
    with precision_policy(policy), strategy.scope():
        model = build_model()
        model.compile(
            optimizer=optimizer() if optimizer else keras.optimizers.Adam(opts.lr),
            loss=loss,
            loss_weights=loss_weights,
            metrics=_metrics,
        )
    checkpoint_file = out / (TRAINING_MODEL_FILE if export_model else MODEL_FILE)
    best_so_far = _best_in_history(out / HISTORY_FILE, monitor, mode) if resuming else None
    checkpoint = keras.callbacks.ModelCheckpoint(
        checkpoint_file,
        monitor=monitor,
        mode=mode,
        save_best_only=True,
        initial_value_threshold=best_so_far,
    )
    all_callbacks = [
        *(EvaluateEachEpoch(ds, prefix) for prefix, ds in (evaluate_each_epoch or {}).items()),
        *callbacks,  # before the checkpoint and the logger, which read the metrics these may add to the logs
        checkpoint,
        keras.callbacks.CSVLogger(str(out / HISTORY_FILE), append=resuming),
        keras.callbacks.TensorBoard(str(out / "logs")),
        keras.callbacks.TerminateOnNaN(),
        # Last: an epoch is backed up only once everything above has logged and checkpointed it, so a run killed
        # in between does that epoch again rather than resuming with a gap in history.csv.
        keras.callbacks.BackupAndRestore(str(out / BACKUP_DIR)),
    ]
    start = time.perf_counter()
    model.fit(
        train,
        validation_data=val,
        epochs=opts.epochs,
        steps_per_epoch=train_steps,
        callbacks=all_callbacks,
        shuffle=False,  # the pipeline shuffles
        verbose=2,
    )
    seconds = time.perf_counter() - start
    if not checkpoint_file.exists():  # the monitored value never improved on the resumed best, or was NaN
        model.save(checkpoint_file)
    with strategy.scope():
        # The optimizer's state is of no use for testing; loading without compiling skips restoring it.
        best = keras.saving.load_model(checkpoint_file, compile=False, safe_mode=True)
        if export_model:
            best = export_model(best)
            _save_atomically(best, out / MODEL_FILE)
        if evaluate_test is None:
            best.compile(loss=loss, loss_weights=loss_weights, metrics=_metrics)
            test_metrics = {f"test_{k}": float(v) for k, v in best.evaluate(test, return_dict=True, verbose=0).items()}
        else:
            test_metrics = evaluate_test(best)
    history = _read_history(out / HISTORY_FILE)
    run_metrics = {
        **test_metrics,
        "best_epoch": _best_epoch(history, monitor, mode),
        "epochs_run": len(history),
        "train_seconds_this_session": round(seconds, 2),
    }
    _write_json(out / METRICS_FILE, run_metrics)
    plot_curves(history, out / "plots" / "curves.png", title=out.name)
    return Run(path=out, model=best, metrics=run_metrics, history=history)


class EvaluateEachEpoch(keras.callbacks.Callback):
    """Evaluate the model on one more split after every epoch and add `<prefix>_<metric>` to the epoch's logs."""

    def __init__(self, dataset: tf.data.Dataset, prefix: str):
        super().__init__()
        self.dataset = dataset
        self.prefix = prefix

    def on_epoch_end(self, epoch, logs=None):
        results = self.model.evaluate(self.dataset, return_dict=True, verbose=0)
        if logs is not None:
            logs.update({f"{self.prefix}_{k}": float(v) for k, v in results.items()})


def _save_atomically(model: keras.Model, path: Path) -> None:
    partial = path.with_name(path.name + ".partial.keras")
    model.save(partial)
    os.replace(partial, path)


def _prepare_folder(out: Path, *, resume: bool) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise OptionError(f"The run folder {str(out)!r} cannot be written ({err.strerror}).") from None
    if not resume:
        for name in (BACKUP_DIR, HISTORY_FILE, MODEL_FILE, TRAINING_MODEL_FILE, METRICS_FILE, "logs", "plots"):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    return out


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def _versions() -> dict:
    return {
        "kapps": kapps.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _read_history(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def _best_epoch(history: list[dict], monitor: str, mode: str) -> int | None:
    scored = [(row[monitor], int(row["epoch"])) for row in history if math.isfinite(row.get(monitor, math.nan))]
    if not scored:
        return None
    return (min(scored) if mode == "min" else max(scored, key=lambda s: (s[0], -s[1])))[1]


def _best_in_history(path: Path, monitor: str, mode: str) -> float | None:
    history = _read_history(path)
    epoch = _best_epoch(history, monitor, mode)
    if epoch is None:
        return None
    return next(row[monitor] for row in history if int(row["epoch"]) == epoch)
