"""The shared training engine, for any task: seed, precision, strategy, callbacks, the run folder, resume, tests."""

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

from kapps.errors import OptionError
from kapps.provenance import stamp
from kapps.train.backup import Backup
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
    val: tf.data.Dataset | None = None,
    test: tf.data.Dataset | None = None,
    loss=None,
    loss_weights=None,
    metrics: Sequence | dict = (),
    optimizer: Callable[[], keras.optimizers.Optimizer] | None = None,
    monitor: str | None = "val_loss",
    mode: str = "min",
    config: dict | None = None,
    evaluate_each_epoch: dict[str, tf.data.Dataset] | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    export_model: Callable[[keras.Model], keras.Model] | None = None,
    evaluate_test: Callable[[keras.Model], dict] | None = None,
) -> Run:
    """Train `build_model()` on batched `train`, keep the best epoch by `monitor` and test it.

    The run folder `opts.out` receives `config.json` (the options, `config`, versions), `history.csv`, `logs/`
    (TensorBoard), `model.keras` (the kept epoch), `metrics.json` and `plots/curves.png`. While training,
    `backup/` holds the last finished epoch (weights, every optimizer's state, the seed generators' states and the
    position in `train`, see `kapps.train.backup.Backup`), so a killed run started again with the same `--out`
    (and `--resume`, the default) goes on from there and ends with the weights an uninterrupted run ends with.

    Two kinds of model train here:

    - compiled by the engine: pass `loss` (and `metrics`, `loss_weights`, `optimizer`); `build_model` returns an
      uncompiled model, and the engine compiles it with them inside the strategy scope;
    - compiled by itself: pass no `loss`; `build_model` returns a model it has compiled, with its own
      `train_step`/`test_step` and optimizers (a GAN), and the engine trains it as it is. Its `compile()` builds
      its optimizers (`optimizer.build(variables)`), so that a resumed run can restore their state; only a
      `model.optimizer` that updates all trainable variables may be left for Keras to build.

    Which epoch `model.keras` keeps:

    - `monitor="val_..."` (needs `val`): the epoch of best validation `monitor`, by `mode`;
    - any other logged quantity (`monitor="loss"`, a metric the `train_step` returns, one a callback adds): the
      epoch of best `monitor`; this is the way to pick an epoch without `val`;
    - `monitor=None`: the last epoch.

    A `monitor` that the first epoch's logs do not hold stops the run with a `ValueError` naming what they hold.

    Args:
        opts: the shared recipe options.
        build_model: returns the model; called inside the strategy scope and under the dtype policy.
        train: batched training dataset (global batch size); may be endless, as `kapps.data.pipeline` makes it.
        train_steps: batches in one training epoch (`opts.epoch_steps(examples)`).
        val: batched validation dataset, evaluated after every epoch; None: no validation.
        test: batched test dataset that the kept model is scored on once training ends; None (and no
            `evaluate_test`): metrics.json holds no test metrics.
        loss: the Keras loss (a dict by output name for a model with several outputs); None for a model that
            compiles itself.
        loss_weights: weights of the outputs' losses, as `keras.Model.compile` takes them.
        metrics: Keras metrics, compiled with the model (a dict by output name for a model with several outputs).
        optimizer: returns the optimizer (inside the scope); Adam at `opts.lr` when omitted.
        monitor: the logged quantity that picks the kept epoch (see above), or None to keep the last epoch.
        mode: `"min"` or `"max"`: whether lower or higher `monitor` is better.
        config: more JSON-ready facts for config.json (model name and arguments, data description...).
        evaluate_each_epoch: more splits to evaluate after every epoch, by prefix (`{"test": test}` logs
            `test_loss`, `test_accuracy`... into history.csv), for curves such as He et al.'s test error.
        callbacks: more Keras callbacks; they run before the checkpoint and the CSV logger, so a metric one of
            them adds to the epoch's logs (`val_map50`) can be monitored and is logged.
        export_model: turns the trained model into the one users run, when they differ: GoogLeNet without its
            auxiliary heads, a detector with decoding and NMS. The training model's kept epoch is then saved in
            `training_model.keras` and `model.keras` holds `export_model(best)`.
        evaluate_test: scores the model of `model.keras` and returns JSON-ready metrics; by default that model is
            evaluated on `test` (compiled with `loss` and `metrics`, or, for a model that compiles itself, with the
            trained model's own `test_step`) and the metrics are prefixed `test_`.

    Returns:
        The `Run`, with the model that `model.keras` holds (not compiled) and metrics.json's metrics:
        `test_...` (when tested), `best_epoch` (the kept epoch, from 0), `epochs_run` and
        `train_seconds_this_session`.

    Raises:
        ValueError: arguments that do not go together (a `val_` monitor without `val`, `metrics` or `optimizer`
            without `loss`, a compiled model with `loss`), or a `monitor` that training does not log.
    """
    _check_arguments(
        val=val, loss=loss, loss_weights=loss_weights, metrics=metrics, optimizer=optimizer, monitor=monitor, mode=mode
    )
    out = _prepare_folder(Path(opts.out), resume=opts.resume)
    seed_everything(opts.seed, deterministic=opts.deterministic)
    strategy = make_strategy(opts.strategy)
    policy = resolve_precision(opts.precision, strategy=strategy)
    backup = Backup(out / BACKUP_DIR)
    initial_epoch = backup.finished_epochs()
    resuming = initial_epoch > 0
    if resuming:
        _drop_history_after(out / HISTORY_FILE, epochs=initial_epoch)
    _write_json(
        out / CONFIG_FILE,
        {
            "options": opts.to_dict(),
            "precision_policy": policy,
            "strategy": type(strategy).__name__,
            "replicas": strategy.num_replicas_in_sync,
            **(config or {}),
            "versions": versions(),
        },
    )
    self_compiled = loss is None
    _metrics = dict(metrics) if isinstance(metrics, dict) else list(metrics)
    with precision_policy(policy), strategy.scope():
        model = build_model()
        _check_compiled(model, self_compiled=self_compiled)
        if not self_compiled:
            model.compile(
                optimizer=optimizer() if optimizer else keras.optimizers.Adam(opts.lr),
                loss=loss,
                loss_weights=loss_weights,
                metrics=_metrics,
            )
    checkpoint_file = out / (TRAINING_MODEL_FILE if export_model else MODEL_FILE)
    keep = []
    if monitor is not None:
        keep = [
            CheckMonitor(monitor),
            KeepBest(
                checkpoint_file,
                monitor=monitor,
                mode=mode,
                initial=_best_in_history(out / HISTORY_FILE, monitor, mode) if resuming else None,
            ),
        ]
    all_callbacks = [
        *(EvaluateEachEpoch(ds, prefix) for prefix, ds in (evaluate_each_epoch or {}).items()),
        *callbacks,  # before the checkpoint and the logger, which read the metrics these may add to the logs
        *keep,
        keras.callbacks.CSVLogger(str(out / HISTORY_FILE), append=resuming),
        keras.callbacks.TensorBoard(str(out / "logs")),
        keras.callbacks.TerminateOnNaN(),
        # Last: an epoch is backed up only once everything above has logged and checkpointed it, so a run killed
        # in between does that epoch again rather than resuming with a gap in history.csv.
        backup,
    ]
    start = time.perf_counter()
    model.fit(
        backup.replay(train, steps_per_epoch=train_steps),
        validation_data=val,
        epochs=opts.epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=train_steps,
        callbacks=all_callbacks,
        shuffle=False,  # the pipeline shuffles
        verbose=2,
    )
    seconds = time.perf_counter() - start
    if monitor is None or not checkpoint_file.exists():  # the last epoch, or no epoch improved on the resumed best
        _save_atomically(model, checkpoint_file)
    with strategy.scope():
        # The optimizer's state is of no use for testing; loading without compiling skips restoring it.
        best = keras.saving.load_model(checkpoint_file, compile=False, safe_mode=True)
        if export_model:
            best = export_model(best)
            _save_atomically(best, out / MODEL_FILE)
        if evaluate_test is not None:
            test_metrics = evaluate_test(best)
        elif test is None:
            test_metrics = {}
        elif self_compiled:
            # Its own test_step, with the kept epoch's weights.
            if monitor is not None:
                model.load_weights(checkpoint_file)
            test_metrics = _evaluate(model, test)
        else:
            best.compile(loss=loss, loss_weights=loss_weights, metrics=_metrics)
            test_metrics = _evaluate(best, test)
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


def _evaluate(model: keras.Model, test: tf.data.Dataset) -> dict:
    return {f"test_{k}": float(v) for k, v in model.evaluate(test, return_dict=True, verbose=0).items()}


def _check_arguments(*, val, loss, loss_weights, metrics, optimizer, monitor, mode) -> None:
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max'. Received: mode={mode!r}")
    if monitor is not None and monitor.startswith("val_") and val is None:
        raise ValueError(
            f"monitor={monitor!r} needs a validation split: pass val, monitor a training quantity (monitor='loss') "
            f"or keep the last epoch (monitor=None)."
        )
    if loss is None:
        for name, value in (("metrics", metrics or None), ("loss_weights", loss_weights), ("optimizer", optimizer)):
            if value is not None:
                raise ValueError(
                    f"{name} is given without a loss: a model that compiles itself takes none of loss, metrics, "
                    f"loss_weights and optimizer. Received: {name}={value!r}"
                )


def _check_compiled(model: keras.Model, *, self_compiled: bool) -> None:
    if self_compiled and not model.compiled:
        raise ValueError(
            "build_model returned a model that is not compiled, and no loss was given: pass loss (and metrics), "
            "or compile the model in build_model."
        )
    if not self_compiled and model.compiled:
        raise ValueError(
            "build_model returned a compiled model, and a loss was given: pass no loss for a model that compiles "
            "itself, or return it uncompiled."
        )


class CheckMonitor(keras.callbacks.Callback):
    """Stops training with a `ValueError` at the end of the first epoch if the logs do not hold `monitor`.

    `KeepBest` skips an epoch whose logs lack the monitor, and the run would then end without a kept epoch.
    """

    def __init__(self, monitor: str):
        super().__init__()
        self.monitor = monitor
        self.checked = False

    def on_train_begin(self, logs=None):
        self.checked = False

    def on_epoch_end(self, epoch, logs=None):
        if not self.checked and self.monitor not in (logs or {}):
            raise ValueError(
                f"monitor={self.monitor!r} is not a quantity this training logs; it logs "
                f"{', '.join(sorted(logs or {}))}."
            )
        self.checked = True


class KeepBest(keras.callbacks.Callback):
    """Saves the model to `path` after each epoch whose `monitor` beats every earlier one (and `initial`).

    `keras.callbacks.ModelCheckpoint(save_best_only=True)` without its one flaw for a run that may be killed: it
    writes the file in place, so a kill while it writes leaves a broken model that the resumed run would keep.
    This writes a copy beside it and renames it over the file.
    """

    def __init__(self, path: Path, *, monitor: str, mode: str, initial: float | None = None):
        super().__init__()
        self.path = Path(path)
        self.monitor = monitor
        self.better = np.less if mode == "min" else np.greater
        self.best = initial

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(value):
            return
        if self.best is None or self.better(value, self.best):
            self.best = float(value)
            _save_atomically(self.model, self.path)


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


def versions() -> dict:
    """What a run folder's config.json records under "versions": kapps' version and, from a git checkout, its
    commit (`kapps.provenance.stamp`), and the versions of TensorFlow, Keras, NumPy and Python."""
    return {
        **stamp(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _read_history(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        # CSVLogger writes "NA" for the val_ columns it adds when an epoch has no validation
        return [{k: float(v) for k, v in row.items() if v not in ("", "NA", None)} for row in csv.DictReader(f)]


def _drop_history_after(path: Path, *, epochs: int) -> None:
    """Keep the first `epochs` rows of history.csv: a process killed after the CSV logger wrote an epoch and before
    the backup kept it trains that epoch again, which would log it twice."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = [row for row in reader if int(float(row["epoch"])) < epochs]
        fields = reader.fieldnames
    if not fields:
        return
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, path)


def _best_epoch(history: list[dict], monitor: str | None, mode: str) -> int | None:
    if monitor is None:
        return int(history[-1]["epoch"]) if history else None
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
