"""A generative adversarial network trained with `fit` (Goodfellow et al., "Generative Adversarial Nets", NIPS 2014),
in the form DCGAN trains it (Radford et al. 2015: Adam at 2e-4 with beta1 0.5 for both networks)."""

from __future__ import annotations

from collections.abc import Sequence

from kapps.models.generative.augment import check_policies, diff_augment

import keras
import numpy as np
import tensorflow as tf

LEARNING_RATE = 2e-4
BETA_1 = 0.5
METRICS = ("d_loss", "g_loss", "d_real", "d_fake")
REPLICA_SEED_STEP = 1_000_003  # apart the replicas' noise seeds


def adam(name: str) -> keras.optimizers.Optimizer:
    """DCGAN's optimizer (Radford et al. 2015, sec. 4): Adam, learning rate 2e-4, beta1 0.5."""
    return keras.optimizers.Adam(LEARNING_RATE, beta_1=BETA_1, name=name)


def _bce(labels_are_real: bool, logits, *, real_label: float = 1.0):
    """Mean binary cross-entropy of logits against all-real (`real_label`, 1 unless smoothed) or all-fake (0)
    labels, in float32."""
    logits = tf.cast(logits, tf.float32)
    labels = tf.fill(tf.shape(logits), real_label) if labels_are_real else tf.zeros_like(logits)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


@keras.saving.register_keras_serializable(package="kapps")
class GAN(keras.Model):
    """A generator and a discriminator trained against each other by `fit`, one step of each per batch.

    A training step draws noise from the model's own seed generator, then

    - updates the discriminator on the batch of real images and one of generated images, the sum of the binary
      cross-entropies (from logits) of "real" on the real ones and "fake" on the generated ones, each batch through
      the discriminator on its own, as the DCGAN authors' code does (so batch norm sees one kind at a time);
    - updates the generator on fresh noise with the non-saturating loss, the cross-entropy of "real" on its
      images (Goodfellow et al. 2014, sec. 3: maximise log D(G(z)) rather than minimise log(1 - D(G(z)))).

    The metrics are `d_loss`, `g_loss`, and `d_real` and `d_fake`, the discriminator's mean probability that the
    real and the generated images are real (both near 0.5 at the game's equilibrium). `test_step` measures them
    without training, on noise from a fixed seed. Calling the model runs the generator: noise in, images out.

    With `average` set, the model also keeps an exponential moving average of the generator's weights, updated
    after every generator step (`averaged <- d * averaged + (1 - d) * weight`, with the decay `d` warmed up as
    `min(average, (1 + t) / (10 + t))` at step t, as `tf.train.ExponentialMovingAverage` does with its number of
    updates). Averaging the iterates of a GAN's generator damps the cycling of the two-player game (Yazici et al.,
    "The unusual effectiveness of averaging in GAN training", ICLR 2019; Karras et al. 2018 draw every sample of
    progressive GANs from such an average); `averaged_generator()` is a copy of the generator with those weights.
    The batch-norm moving statistics are averaged with the rest. Training itself never reads the average.

    With `augment` set, every image the discriminator sees in training, real or generated, in its step and in the
    generator's, first goes through the same kinds of random, differentiable transformations (DiffAugment, Zhao et
    al. 2020; `kapps.models.generative.augment`), drawn per image from a seed generator of the model's: on a few
    thousand real images the discriminator otherwise learns them by heart and stops teaching the generator.
    `test_step` scores the images as they are.

    A batch is images, or `(images, anything)` (labels are ignored). Losses are divided by the strategy's replicas,
    as Keras's own losses are, since the optimizers sum the replicas' gradients. Under `mixed_float16`, `compile`
    wraps each optimizer in a `LossScaleOptimizer`, which `scale_loss` and `apply` use; the networks' outputs are
    float32 (the DCGAN builders make them so), and so are the losses.

    Args:
        generator: noise `(B, latent_dim)` -> images.
        discriminator: images -> `(B, 1)` logits.
        seed: the seed of the noise the training step draws.
        average: the decay of the moving average of the generator's weights (0.999 and the like), or None for
            none.
        augment: DiffAugment's policies for the discriminator's inputs, some of "color", "translation" and
            "cutout" (a sequence or a comma-separated string), or None for none.
        label_smoothing: one-sided label smoothing (Salimans et al., "Improved techniques for training GANs", 2016):
            the discriminator's target for real images is `1 - label_smoothing` rather than 1, so that it is not
            rewarded for ever more confident logits on images it has learnt; generated images keep the target 0,
            and the generator's loss is unchanged. 0 is the plain loss.
        r1_gamma: the weight of the R1 penalty (Mescheder et al., "Which training methods for GANs do actually
            converge?", ICML 2018): the discriminator's loss gains `r1_gamma / 2` times the mean squared norm of
            the gradient of its logit with respect to each real image, so that it stays flat on the data rather
            than sharpening without end around the images it has learnt (the logged `d_loss` includes it). 0 is
            none.
    """

    def __init__(
        self,
        generator: keras.Model,
        discriminator: keras.Model,
        *,
        seed: int = 0,
        average: float | None = None,
        augment: Sequence[str] | str | None = None,
        label_smoothing: float = 0.0,
        r1_gamma: float = 0.0,
        **kwargs,
    ):
        kwargs.setdefault("name", "gan")
        super().__init__(**kwargs)
        if tuple(generator.output_shape[1:]) != tuple(discriminator.input_shape[1:]):
            raise ValueError(
                f"generator's images {tuple(generator.output_shape[1:])} must be the discriminator's input "
                f"{tuple(discriminator.input_shape[1:])}. Received: generator={generator.name!r}, "
                f"discriminator={discriminator.name!r}"
            )
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = int(generator.input_shape[-1])
        self.seed = int(seed)
        self.noise_seed = keras.random.SeedGenerator(self.seed, name="noise_seed")
        self.trackers = {key: keras.metrics.Mean(name=key) for key in METRICS}
        self.augment = check_policies(augment)
        if self.augment:
            self.augment_seed = keras.random.SeedGenerator(self.seed + 1, name="augment_seed")
        if average is not None and not 0 < average < 1:
            raise ValueError(f"average must be a decay between 0 and 1, or None. Received: average={average}")
        self.average = None if average is None else float(average)
        if not 0 <= label_smoothing < 0.5:
            raise ValueError(
                f"label_smoothing must be from 0 to below 0.5. Received: label_smoothing={label_smoothing}"
            )
        self.label_smoothing = float(label_smoothing)
        if not r1_gamma >= 0:
            raise ValueError(f"r1_gamma must be 0 or more. Received: r1_gamma={r1_gamma}")
        self.r1_gamma = float(r1_gamma)
        # One variable a generator weight; each replica computes the same update, so the first replica's is kept.
        self.averages = [
            self.add_weight(
                shape=weight.shape,
                dtype=weight.dtype,
                initializer=keras.initializers.Constant(np.asarray(weight)),
                trainable=False,
                aggregation="only_first_replica",
                name=f"average_{i}",
            )
            for i, weight in enumerate(generator.weights if average is not None else ())
        ]
        self.built = True  # every weight is the two networks', built with them

    def call(self, noise, training=False):
        return self.generator(noise, training=training)

    def compile(
        self,
        *,
        d_optimizer: keras.optimizers.Optimizer | None = None,
        g_optimizer: keras.optimizers.Optimizer | None = None,
        **kwargs,
    ):
        """Set and build the two optimizers (DCGAN's Adam by default), so that a resumed run restores their state.

        Args:
            d_optimizer: the discriminator's optimizer.
            g_optimizer: the generator's optimizer.
            **kwargs: passed to `keras.Model.compile` (`jit_compile`, `steps_per_execution`...); no loss.
        """
        if "loss" in kwargs or "optimizer" in kwargs:
            raise ValueError(
                "a GAN compiles with d_optimizer and g_optimizer, and computes its own losses. "
                f"Received: {sorted(k for k in kwargs if k in ('loss', 'optimizer'))}"
            )
        super().compile(optimizer=None, **kwargs)
        self.d_optimizer = self._scaled(d_optimizer or adam("d_adam"))
        self.g_optimizer = self._scaled(g_optimizer or adam("g_adam"))
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)

    def _scaled(self, optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
        """The optimizer, wrapped for dynamic loss scaling when the networks compute in float16."""
        float16 = self.generator.dtype_policy.compute_dtype == "float16"
        if float16 and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            return keras.optimizers.LossScaleOptimizer(optimizer, name=f"{optimizer.name}_loss_scale")
        return optimizer

    @property
    def metrics(self):
        return list(self.trackers.values())

    def noise(self, batch_size, *, seed=None):
        """`(batch_size, latent_dim)` standard normal noise: from the model's seed generator, each replica of a
        distribution strategy drawing its own, or from the integer `seed`."""
        if seed is not None:
            return keras.random.normal((batch_size, self.latent_dim), seed=seed)
        return tf.random.stateless_normal((batch_size, self.latent_dim), seed=_replica_seed(self.noise_seed))

    def _seen(self, images):
        """Images as the discriminator sees them in training: through DiffAugment's policies when it has some."""
        if not self.augment:
            return images
        return diff_augment(images, self.augment, _replica_seed(self.augment_seed))

    def train_step(self, data):
        real = _images(data)
        batch = tf.shape(real)[0]
        replicas = tf.distribute.get_strategy().num_replicas_in_sync

        with tf.GradientTape() as tape:
            fake = self.generator(self.noise(batch), training=True)
            real_logits, r1_term = self._real_logits(self._seen(real))
            fake_logits = self.discriminator(self._seen(fake), training=True)
            d_loss = _bce(True, real_logits, real_label=1 - self.label_smoothing) + _bce(False, fake_logits) + r1_term
            scaled = self.d_optimizer.scale_loss(d_loss / replicas)
        variables = self.discriminator.trainable_variables
        self.d_optimizer.apply(tape.gradient(scaled, variables), variables)

        with tf.GradientTape() as tape:
            logits = self.discriminator(self._seen(self.generator(self.noise(batch), training=True)), training=True)
            g_loss = _bce(True, logits)
            scaled = self.g_optimizer.scale_loss(g_loss / replicas)
        variables = self.generator.trainable_variables
        self.g_optimizer.apply(tape.gradient(scaled, variables), variables)
        if self.averages:
            self._average_step()
        return self._update(d_loss, g_loss, real_logits, fake_logits)

    def _real_logits(self, real):
        """The discriminator's logits on the real images, and the R1 term of its loss: `r1_gamma / 2` times the mean
        over the batch of the squared norm of each image's gradient of its logit (0.0 without `r1_gamma`)."""
        if not self.r1_gamma:
            return self.discriminator(real, training=True), 0.0
        real = tf.cast(real, tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(real)
            logits = self.discriminator(real, training=True)
            total = tf.reduce_sum(tf.cast(logits, tf.float32))
        gradients = tape.gradient(total, real)
        squared_norms = tf.reduce_sum(tf.square(gradients), axis=tf.range(1, tf.rank(gradients)))
        return logits, 0.5 * self.r1_gamma * tf.reduce_mean(squared_norms)

    def _average_step(self):
        """Move the average of the generator's weights towards their values after this step."""
        step = tf.cast(self.g_optimizer.iterations, tf.float32)  # already counts this step
        decay = tf.minimum(self.average, (1.0 + step) / (10.0 + step))
        for average, weight in zip(self.averages, self.generator.weights, strict=True):
            average.assign(decay * average + (1.0 - decay) * tf.cast(weight, average.dtype))

    def averaged_generator(self) -> keras.Model:
        """The generator with the moving average of its weights: a copy of the same name, or, without `average`,
        the generator itself."""
        if not self.averages:
            return self.generator
        copy = keras.models.clone_model(self.generator)
        copy.set_weights([np.asarray(average) for average in self.averages])
        return copy

    def test_step(self, data):
        real = _images(data)
        fake = self.generator(self.noise(tf.shape(real)[0], seed=self.seed + 1), training=False)
        real_logits = self.discriminator(real, training=False)
        fake_logits = self.discriminator(fake, training=False)
        d_loss = _bce(True, real_logits) + _bce(False, fake_logits)
        return self._update(d_loss, _bce(True, fake_logits), real_logits, fake_logits)

    def _update(self, d_loss, g_loss, real_logits, fake_logits) -> dict:
        values = {
            "d_loss": d_loss,
            "g_loss": g_loss,
            "d_real": tf.reduce_mean(tf.sigmoid(tf.cast(real_logits, tf.float32))),
            "d_fake": tf.reduce_mean(tf.sigmoid(tf.cast(fake_logits, tf.float32))),
        }
        for key, value in values.items():
            self.trackers[key].update_state(value)
        return {key: tracker.result() for key, tracker in self.trackers.items()}

    def get_config(self):
        return {
            **super().get_config(),
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
            "seed": self.seed,
            "average": self.average,
            "augment": list(self.augment) or None,
            "label_smoothing": self.label_smoothing,
            "r1_gamma": self.r1_gamma,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("generator", "discriminator"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def _replica_seed(seed_generator: keras.random.SeedGenerator):
    """The generator's next stateless seed, apart for each replica of a distribution strategy (so that each draws
    its own noise or augmentation)."""
    context = tf.distribute.get_replica_context()  # None in a strategy's cross-replica context
    replica = context.replica_id_in_sync_group if context is not None else 0
    offset = tf.stack([REPLICA_SEED_STEP * tf.cast(replica, tf.int64), tf.constant(0, tf.int64)])
    return tf.cast(seed_generator.next(), tf.int64) + offset


def _images(data):
    """The images of a batch: the batch itself, or its first element (`(x, y)` from a dataset, `(x, None, None)`
    from `train_on_batch`)."""
    return data[0] if isinstance(data, (tuple, list)) else data
