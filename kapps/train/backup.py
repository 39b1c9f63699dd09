"""Backing up a run at the end of each epoch, so that a killed run resumes to what an uninterrupted one computes."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

STATE_FILE = "state.json"


class Backup(keras.callbacks.Callback):
    """Backs up the training state after every epoch and restores it when the run is started again.

    Like `keras.callbacks.BackupAndRestore`, it keeps the model's weights and the state of every optimizer the model
    holds as an attribute (`model.optimizer`, and a GAN's `d_optimizer` and `g_optimizer`), as `save_weights` does.
    It also keeps the two states that BackupAndRestore leaves out, each of which alone made a resumed run differ:

    - the seed generators' states (`Dropout`, a `train_step`'s `keras.random` draws): they are variables but not
      weights, so `save_weights` skips them and a resumed run would draw the first epoch's dropout masks again;
    - the position in the training stream: Keras opens a new iterator on the dataset, which starts at its first
      batch. `replay` skips the batches the finished epochs consumed, so an endless stream (`kapps.data.pipeline`)
      goes on with the batches, shuffle order and augmentation draws an uninterrupted run would have seen.

    Each epoch's state is written to files of its own, then `state.json`, which names them, is replaced in one
    step: a process killed while writing leaves the previous epoch's backup whole. The folder is removed when
    training ends.

    Place it last among the callbacks, so an epoch is backed up only once the others have logged it.

    In multi-worker training the chief backs up and every worker restores from the chief's folder, which must be
    on storage they all read (as for `keras.callbacks.BackupAndRestore`); the others pass `writes=False`.

    Args:
        folder: the backup folder; it holds nothing else.
        writes: back up after each epoch and remove the folder at the end; with False, only restore from it.
    """

    def __init__(self, folder: Path, *, writes: bool = True):
        super().__init__()
        self.folder = Path(folder)
        self.writes = writes

    def finished_epochs(self) -> int:
        """How many epochs the backup holds: the epoch a resumed `fit` starts at (0 without a backup)."""
        state = self._read_state()
        return state["epochs"] if state else 0

    def replay(self, dataset: tf.data.Dataset, *, steps_per_epoch: int) -> tf.data.Dataset:
        """`dataset` past the batches that the backed-up epochs took from it.

        Keras reads an endless (or unknown-length) training dataset with one iterator across epochs, so a resumed
        run must skip what the finished epochs read. tf.data computes the skipped batches (that is how the
        augmentation's seed state gets where it was) without training on them. A finite dataset is read anew
        every epoch and is returned as it is.

        Exact under the default strategy. Under any other (MirroredStrategy, even on one device), Keras first
        reads a batch through an iterator of its own, which runs through the skipped batches too, so an
        augmentation that draws from a seed generator shared by all iterators (`kapps.data.digit_augment`)
        draws differently after a resume (the weights of a 4-epoch run killed after 2 differed by up to 0.015).
        """
        skip = self.finished_epochs() * steps_per_epoch
        if skip == 0 or dataset.cardinality() >= 0:
            return dataset
        return dataset.skip(skip)

    def on_train_begin(self, logs=None):
        optimizers = model_optimizers(self.model)
        unbuilt = [name for name, optimizer in optimizers.items() if name != "optimizer" and not optimizer.built]
        if unbuilt:
            raise ValueError(
                f"The model's optimizer {unbuilt[0]!r} has no variables when training starts, so a resumed run "
                f"could not restore it: build it in the model's compile() with optimizer.build(variables)."
            )
        state = self._read_state()
        if state is None:
            return
        if state["optimizer_built"] and "optimizer" in optimizers and not optimizers["optimizer"].built:
            # Keras builds model.optimizer at the first step over the trainable variables; a restore comes first.
            optimizers["optimizer"].build(self.model.trainable_variables)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.model.load_weights(self.folder / state["weights"])
        skipped = [str(w.message) for w in caught if "Skipping variable loading" in str(w.message)]
        if skipped:
            raise ValueError(f"The backup in {str(self.folder)!r} does not fit the model: {skipped[0]}")
        seeds = seed_states(self.model)
        if len(seeds) != len(state["seeds"]):
            raise ValueError(
                f"The backup in {str(self.folder)!r} holds {len(state['seeds'])} seed generators, "
                f"the model has {len(seeds)}."
            )
        with np.load(self.folder / state["seed_values"]) as saved:
            for i, variable in enumerate(seeds):
                variable.assign(saved[str(i)])

    def on_epoch_end(self, epoch, logs=None):
        if not self.writes:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        previous = self._read_state()
        stem = f"epoch-{epoch + 1:05d}"
        weights, seed_values = f"{stem}.weights.h5", f"{stem}.seeds.npz"
        self.model.save_weights(self.folder / weights, overwrite=True)
        seeds = seed_states(self.model)
        np.savez(self.folder / seed_values, **{str(i): keras.ops.convert_to_numpy(v) for i, v in enumerate(seeds)})
        state = {
            "epochs": epoch + 1,
            "weights": weights,
            "seed_values": seed_values,
            "seeds": [v.path for v in seeds],
            "optimizer_built": bool(getattr(self.model, "optimizer", None) and self.model.optimizer.built),
        }
        partial = self.folder / f"{STATE_FILE}.partial"
        partial.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(partial, self.folder / STATE_FILE)
        if previous is not None and previous["weights"] != weights:
            for name in (previous["weights"], previous["seed_values"]):
                (self.folder / name).unlink(missing_ok=True)

    def on_train_end(self, logs=None):
        if self.writes:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _read_state(self) -> dict | None:
        path = self.folder / STATE_FILE
        return json.loads(path.read_text()) if path.exists() else None


def model_optimizers(model: keras.Model) -> dict[str, keras.optimizers.Optimizer]:
    """The optimizers a model holds as attributes, by attribute name (`model.optimizer` as `"optimizer"`)."""
    found = {"optimizer": model.optimizer} if getattr(model, "optimizer", None) is not None else {}
    for name, value in vars(model).items():
        if isinstance(value, keras.optimizers.Optimizer) and all(value is not known for known in found.values()):
            found[name] = value
    return found


def seed_states(model: keras.Model) -> list:
    """The state variables of the model's seed generators: what `model.variables` holds beyond its weights."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]
