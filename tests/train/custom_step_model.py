"""A model that compiles itself: its own train_step and test_step, two optimizers, dropout and noise draws.

The tests train it through `kapps.train.fit` in-process, and as `python -m tests.train.custom_step_model OUT`, a
process that `--kill-epoch` makes kill itself with SIGKILL in the middle of an epoch, to be resumed.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

import kapps.data
import kapps.train
from kapps.train.backup import model_optimizers, seed_states

import keras
import numpy as np
import tensorflow as tf

EXAMPLES = 96
BATCH = 16
STEPS = EXAMPLES // BATCH
FINAL_STATE = "final_state.npz"


@keras.saving.register_keras_serializable(package="kapps_tests")
class TwoOptimizerClassifier(keras.Model):
    """A small convolutional classifier whose features and head are trained by two optimizers of their own.

    The training step adds Gaussian noise to the images (drawn from the model's own seed generator) and returns
    the loss and a custom metric, `agreement` (accuracy); `compile()` builds both optimizers, as the engine needs.
    """

    def __init__(self, *, image_shape=(8, 8, 1), num_classes=2, filters=16, dropout=0.25, noise=0.05, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(image_shape)
        self.num_classes = num_classes
        self.filters = filters
        self.dropout = dropout
        self.noise = noise
        self.features = keras.Sequential(
            [
                keras.layers.Conv2D(filters, 3, activation="relu", name="conv"),
                keras.layers.GlobalAveragePooling2D(name="pool"),
                keras.layers.Dropout(dropout, name="dropout"),
            ],
            name="features",
        )
        self.head = keras.layers.Dense(num_classes, name="head")
        self.noise_seed = keras.random.SeedGenerator(7, name="noise_seed")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.agreement = keras.metrics.SparseCategoricalAccuracy(name="agreement")
        self.build((None, *self.image_shape))

    def build(self, input_shape):
        self.features.build(input_shape)
        self.head.build(self.features.compute_output_shape(input_shape))
        self.built = True

    def call(self, images, training=False):
        return self.head(self.features(images, training=training))

    def compile(self, *, features_optimizer, head_optimizer):
        super().compile()
        self.features_optimizer = features_optimizer
        self.head_optimizer = head_optimizer
        features_optimizer.build(self.features.trainable_variables)
        head_optimizer.build(self.head.trainable_variables)

    @property
    def metrics(self):
        return [self.loss_tracker, self.agreement]

    def train_step(self, data):
        images, labels = data
        images = images + self.noise * keras.random.normal(tf.shape(images), seed=self.noise_seed)
        with tf.GradientTape(persistent=True) as tape:
            logits = self(images, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
        for optimizer, part in ((self.features_optimizer, self.features), (self.head_optimizer, self.head)):
            optimizer.apply(tape.gradient(loss, part.trainable_variables), part.trainable_variables)
        return self._update(loss, labels, logits)

    def test_step(self, data):
        images, labels = data
        logits = self(images, training=False)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
        return self._update(loss, labels, logits)

    def _update(self, loss, labels, logits):
        self.loss_tracker.update_state(loss)
        self.agreement.update_state(labels, logits)
        return {"loss": self.loss_tracker.result(), "agreement": self.agreement.result()}

    def get_config(self):
        return {
            **super().get_config(),
            "image_shape": self.image_shape,
            "num_classes": self.num_classes,
            "filters": self.filters,
            "dropout": self.dropout,
            "noise": self.noise,
        }


def build_compiled(*, lr: float = 0.05) -> TwoOptimizerClassifier:
    """The model, compiled by itself: Adam for the features, SGD with momentum for the head."""
    model = TwoOptimizerClassifier()
    model.compile(
        features_optimizer=keras.optimizers.Adam(lr, name="features_adam"),
        head_optimizer=keras.optimizers.SGD(lr, momentum=0.9, name="head_sgd"),
    )
    return model


def examples(seed: int) -> tf.data.Dataset:
    """Random 8x8 images on a random brightness, labelled 1 where it is above the middle: flips and shifts keep
    the label."""
    rng = np.random.default_rng(seed)
    brightness = rng.uniform(size=(EXAMPLES, 1, 1, 1)).astype("float32")
    images = 0.5 * brightness + 0.5 * rng.uniform(size=(EXAMPLES, 8, 8, 1)).astype("float32")
    labels = (brightness[:, 0, 0, 0] > 0.5).astype("int32")
    return tf.data.Dataset.from_tensor_slices((images, labels))


def state_of(model: keras.Model) -> dict[str, np.ndarray]:
    """Every number that decides how training would go on: weights, each optimizer's variables, seed states."""
    # Keyed by position: automatic names (seed_generator_2) count the objects a process made before.
    state = {f"weights/{i}": v for i, v in enumerate(model.weights)}
    for name, optimizer in model_optimizers(model).items():
        state.update({f"{name}/{i}": v for i, v in enumerate(optimizer.variables)})
    state.update({f"seeds/{i}": v for i, v in enumerate(seed_states(model))})
    return {key: keras.ops.convert_to_numpy(v) for key, v in state.items()}


class SaveFinalState(keras.callbacks.Callback):
    """Writes `state_of(model)` to `path` when training ends."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = Path(path)

    def on_train_end(self, logs=None):
        np.savez(self.path, **state_of(self.model))


class KillDuring(keras.callbacks.Callback):
    """Kills its own process with SIGKILL after the second batch of `epoch`: epochs before it are backed up."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch
        self.current = None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch == 1:
            os.kill(os.getpid(), signal.SIGKILL)


def train(out: Path, *, epochs: int = 5, kill_epoch: int | None = None, **fit_kwargs) -> kapps.train.Run:
    """Train the model through the engine for `epochs` epochs of STEPS batches, without val or test by default;
    the state it ends with goes to `out/final_state.npz`."""
    opts = kapps.train.TrainOptions(epochs=epochs, batch_size=BATCH, out=str(out), seed=0)
    augment = kapps.data.cifar_augment(pad=1, size=8, seed=opts.seed)
    callbacks = [SaveFinalState(Path(out) / FINAL_STATE)]
    if kill_epoch is not None:
        callbacks.append(KillDuring(kill_epoch))
    return kapps.train.fit(
        opts,
        build_model=build_compiled,
        train=kapps.data.pipeline(examples(1), batch_size=BATCH, training=True, augment=augment, seed=opts.seed),
        train_steps=STEPS,
        callbacks=callbacks,
        **{"monitor": "agreement", "mode": "max", **fit_kwargs},
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--kill-epoch", type=int, default=None)
    args = parser.parse_args()
    train(Path(args.out), epochs=args.epochs, kill_epoch=args.kill_epoch)
