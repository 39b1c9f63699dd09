"""LeNet-5 on digits through the engine as `recipes/lenet5.py` trains it (digit augmentation, dropout, Adam on a
cosine decay), with the state it ends with saved to `out/final_state.npz`.

The tests train it in-process, and as `python -m tests.train.lenet_process OUT`: a process they kill with SIGKILL
and start again, one that trains on `--logical-cpus 2` under MirroredStrategy, which must be set before
TensorFlow first lists its devices, so before anything in this process trains, or a worker of a local cluster
(`--strategy multi-worker`, under `kapps.train.local_cluster`).
"""

from __future__ import annotations

import argparse
import atexit
import os
import tempfile
from pathlib import Path

import kapps.data
import kapps.models
import kapps.train
from kapps.data.sharding import input_workers

import keras
import tensorflow as tf

from tests.train.custom_step_model import FINAL_STATE, SaveFinalState

BATCH = 32


def train(
    out: Path,
    *,
    epochs: int,
    steps: int,
    lr: float = 2e-3,
    sgd: bool = False,
    augment: bool = True,
    dropout: float = 0.25,
    strategy: str = "default",
    mode: str = "min",
) -> kapps.train.Run:
    """Train LeNet-5 for `epochs` epochs of `steps` batches of 32 and keep the epoch of lowest validation loss
    (`mode="max"`: the highest).

    `sgd` trains with plain SGD at `lr` instead of Adam on a cosine decay: SGD's step grows with the gradient, so
    a gradient summed over replicas instead of averaged shows in the weights (Adam's step does not change).
    """
    opts = kapps.train.TrainOptions(
        epochs=epochs, batch_size=BATCH, lr=lr, out=str(out), steps_per_epoch=steps, seed=0, strategy=strategy
    )
    data = kapps.data.load("digits", image_size=(32, 32), seed=opts.seed)
    splits = kapps.data.splits(
        data,
        batch_size=BATCH,
        seed=opts.seed,
        augment=kapps.data.digit_augment(seed=opts.seed) if augment else None,
    )
    if sgd:
        optimizer = lambda: keras.optimizers.SGD(lr)  # noqa: E731
    else:
        schedule = keras.optimizers.schedules.CosineDecay(lr, decay_steps=epochs * steps, alpha=0.01)
        optimizer = lambda: keras.optimizers.Adam(schedule)  # noqa: E731
    return kapps.train.fit(
        opts,
        build_model=lambda: kapps.models.build("lenet5", dropout=dropout),
        train=splits.train,
        train_steps=steps,
        val=splits.val,
        test=splits.test,
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
        optimizer=optimizer,
        monitor="val_loss",
        mode=mode,
        callbacks=[SaveFinalState(final_state_path(Path(out)))],
    )


def final_state_path(out: Path) -> Path:
    """Where the state a run ends with is saved: `out/final_state.npz`, and beside the run folder for a worker of a
    multi-worker run that is not the chief (`out.worker1.final_state.npz`), which writes nothing into it."""
    index = input_workers()[1]
    return out / FINAL_STATE if index == 0 else out.with_name(f"{out.name}.worker{index}.{FINAL_STATE}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out")
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--sgd", action="store_true")
    parser.add_argument("--no-augment", dest="augment", action="store_false")
    parser.add_argument("--dropout", type=float, default=0.25)
    parser.add_argument("--strategy", default="default")
    parser.add_argument("--mode", default="min")
    parser.add_argument("--logical-cpus", type=int, default=1)
    parser.add_argument("--show-tmpdir", action="store_true", help="Print what the temporary folder holds at the end.")
    parser.add_argument("--folder-per-worker", action="store_true", help="Train in OUT/worker<index>: no shared run.")
    args = parser.parse_args()
    if args.show_tmpdir:  # registered first, so it runs last, after the engine removed its stand-in folders
        atexit.register(lambda: print(f"temporary folder holds: {sorted(os.listdir(tempfile.gettempdir()))}"))
    if args.strategy == "multi-worker":
        kapps.train.make_strategy("multi-worker")  # before anything runs in TensorFlow
    if args.logical_cpus > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * args.logical_cpus)
    out = Path(args.out) / f"worker{input_workers()[1]}" if args.folder_per_worker else Path(args.out)
    train(
        out,
        epochs=args.epochs,
        steps=args.steps,
        lr=args.lr,
        sgd=args.sgd,
        augment=args.augment,
        dropout=args.dropout,
        strategy=args.strategy,
        mode=args.mode,
    )
