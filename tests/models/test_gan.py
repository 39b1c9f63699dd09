"""The GAN model: its training step moves the generated distribution to the data's, its losses are the stated
cross-entropies, it saves and loads, it steps under mixed precision, and the engine trains and resumes it."""

import json
import os
import subprocess
import sys

import kapps.train
from kapps.models.generative import GAN, dcgan_discriminator, dcgan_generator
from kapps.models.generative.gan import METRICS
from kapps.train.backup import model_optimizers
from kapps.train.precision import precision_policy

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import ROOT

SHAPE = (8, 8, 1)
LATENT = 4
LEVEL_MEAN, LEVEL_STD = 0.4, 0.1


def tiny_gan(*, seed: int = 1, compile: bool = True, **options) -> GAN:
    """A GAN of 8 x 8 images; `options` are the GAN's (`average`, `augment`, `label_smoothing`, `r1_gamma`)."""
    generator = dcgan_generator(latent_dim=LATENT, image_shape=SHAPE, base_filters=8, name="tiny_generator")
    discriminator = dcgan_discriminator(image_shape=SHAPE, base_filters=8, name="tiny_discriminator")
    gan = GAN(generator, discriminator, seed=seed, **options)
    if compile:
        gan.compile()
    return gan


def constant_images(count: int, seed: int = 0) -> np.ndarray:
    """Images of one grey level each, the levels N(0.4, 0.1): what the generator must learn to draw."""
    levels = np.random.default_rng(seed).normal(LEVEL_MEAN, LEVEL_STD, size=(count, 1, 1, 1)).astype("float32")
    return np.broadcast_to(levels, (count, *SHAPE)).copy()


def stream(count: int = 1024, batch: int = 32) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(constant_images(count)).shuffle(count, seed=0).repeat().batch(batch)


NOISE = np.random.default_rng(5).normal(size=(256, LATENT)).astype("float32")


def test_training_moves_the_generated_levels_to_the_datas():
    keras.utils.set_random_seed(0)
    gan = tiny_gan()
    before = np.asarray(gan(NOISE)).mean(axis=(1, 2, 3))
    # At the start the tanh of small N(0, 0.02) weights: every image near 0.
    assert abs(before.mean()) < 0.05 and before.std() < 0.01
    history = gan.fit(stream(), steps_per_epoch=100, epochs=3, verbose=0).history
    assert set(history) == {"d_loss", "g_loss", "d_real", "d_fake"}
    levels = np.asarray(gan(NOISE)).mean(axis=(1, 2, 3))
    # Measured (seed 0): mean 0.414, spread 0.100 after 300 steps.
    assert levels.mean() == pytest.approx(LEVEL_MEAN, abs=0.05)
    assert levels.std() == pytest.approx(LEVEL_STD, abs=0.05)
    # Near the equilibrium the discriminator is unsure of both: D(x) and D(G(z)) near 1/2, d_loss near 2 log 2.
    assert history["d_real"][-1] == pytest.approx(0.5, abs=0.1)
    assert history["d_fake"][-1] == pytest.approx(0.5, abs=0.1)
    assert history["d_loss"][-1] == pytest.approx(2 * np.log(2), abs=0.2)


def test_test_step_measures_the_stated_losses():
    keras.utils.set_random_seed(0)
    gan = tiny_gan(seed=3)
    real = constant_images(16)
    got = gan.evaluate(real, batch_size=16, return_dict=True, verbose=0)
    fake = gan.generator(keras.random.normal((16, LATENT), seed=4), training=False)  # test_step's noise: seed + 1
    real_p = 1 / (1 + np.exp(-np.asarray(gan.discriminator(real, training=False), "float64")))
    fake_p = 1 / (1 + np.exp(-np.asarray(gan.discriminator(fake, training=False), "float64")))
    assert got["d_real"] == pytest.approx(real_p.mean(), abs=1e-5)
    assert got["d_fake"] == pytest.approx(fake_p.mean(), abs=1e-5)
    assert got["d_loss"] == pytest.approx(-np.mean(np.log(real_p)) - np.mean(np.log(1 - fake_p)), abs=1e-5)
    assert got["g_loss"] == pytest.approx(-np.mean(np.log(fake_p)), abs=1e-5)  # non-saturating: -log D(G(z))


def test_each_optimizer_trains_only_its_network():
    keras.utils.set_random_seed(0)
    gan = tiny_gan()
    assert float(gan.d_optimizer.learning_rate) == pytest.approx(2e-4) and gan.d_optimizer.beta_1 == 0.5
    assert float(gan.g_optimizer.learning_rate) == pytest.approx(2e-4) and gan.g_optimizer.beta_1 == 0.5
    assert set(model_optimizers(gan)) == {"d_optimizer", "g_optimizer"}
    assert gan.d_optimizer.built and gan.g_optimizer.built  # so that a resumed run restores them
    gan.train_on_batch(constant_images(8))
    assert int(gan.d_optimizer.iterations) == int(gan.g_optimizer.iterations) == 1
    d_slots = {id(v) for v in gan.discriminator.trainable_variables}
    assert len(gan.d_optimizer.variables) == 2 * len(d_slots) + 2  # two moments a weight, iterations, rate
    with pytest.raises(ValueError, match="a GAN compiles with d_optimizer and g_optimizer"):
        gan.compile(loss="mse")


def test_save_and_load_give_the_same_generator(tmp_path):
    keras.utils.set_random_seed(0)
    gan = tiny_gan()
    gan.fit(stream(), steps_per_epoch=3, epochs=1, verbose=0)
    gan.save(tmp_path / "gan.keras")
    loaded = keras.saving.load_model(tmp_path / "gan.keras", safe_mode=True)
    assert isinstance(loaded, GAN) and loaded.seed == 1 and loaded.latent_dim == LATENT
    np.testing.assert_array_equal(loaded(NOISE), gan(NOISE))
    np.testing.assert_array_equal(loaded.discriminator(constant_images(4)), gan.discriminator(constant_images(4)))
    assert loaded.generator.name == "tiny_generator"


def test_the_average_of_the_generators_weights_follows_the_stated_update():
    keras.utils.set_random_seed(0)
    gan = tiny_gan(average=0.9)
    weights = gan.generator.weights
    assert len(gan.averages) == len(weights) > len(gan.generator.trainable_weights)  # batch-norm statistics too
    expected = [np.asarray(w, "float64") for w in weights]  # the average starts at the initial weights
    np.testing.assert_array_equal(expected[0], gan.averages[0])
    for step in (1, 2, 3, 84):  # the decay warms up, (1 + t) / (10 + t): 2/11, 3/12, 4/13, ... 0.9 from step 80
        if step == 84:
            for _ in range(80):
                gan.train_on_batch(constant_images(8))
            expected = [np.asarray(a, "float64") for a in gan.averages]
        gan.train_on_batch(constant_images(8))
        decay = min(0.9, (1 + step) / (10 + step))
        expected = [decay * e + (1 - decay) * np.asarray(w, "float64") for e, w in zip(expected, weights, strict=True)]
        for got, want in zip(gan.averages, expected, strict=True):
            np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)
    # The copy with the average draws other images than the generator, the same as a generator given those weights.
    averaged = gan.averaged_generator()
    assert averaged.name == gan.generator.name and averaged is not gan.generator
    assert not np.allclose(averaged(NOISE), gan.generator(NOISE), atol=1e-4)
    gan.generator.set_weights([np.asarray(a) for a in gan.averages])
    np.testing.assert_array_equal(averaged(NOISE), gan.generator(NOISE))


def test_the_average_is_saved_and_optional(tmp_path):
    keras.utils.set_random_seed(0)
    gan = tiny_gan(average=0.99)
    gan.fit(stream(), steps_per_epoch=3, epochs=1, verbose=0)
    gan.save(tmp_path / "gan.keras")
    loaded = keras.saving.load_model(tmp_path / "gan.keras", safe_mode=True)
    assert loaded.average == 0.99
    for got, saved in zip(loaded.averages, gan.averages, strict=True):
        np.testing.assert_array_equal(got, saved)
    np.testing.assert_array_equal(loaded.averaged_generator()(NOISE), gan.averaged_generator()(NOISE))
    plain = tiny_gan()
    assert plain.averages == [] and plain.averaged_generator() is plain.generator
    with pytest.raises(ValueError, match=r"^average must be a decay between 0 and 1, or None\. Received: average=1"):
        tiny_gan(average=1)


def test_one_sided_label_smoothing_is_the_stated_discriminator_loss(tmp_path):
    """With smoothing s the discriminator's loss on real images is the cross-entropy against 1 - s,
    -(1 - s) log p - s log(1 - p), and on generated ones it is unchanged: two GANs of the same seeds, one smoothed,
    take one step on a batch of one image (so D's probability p is the same for every real image), and their
    losses differ by exactly the real term's change."""
    real = np.repeat(constant_images(1), 8, axis=0)
    keras.utils.set_random_seed(0)
    plain = tiny_gan().train_on_batch(real, return_dict=True)
    keras.utils.set_random_seed(0)
    gan = tiny_gan(label_smoothing=0.1)
    smoothed = gan.train_on_batch(real, return_dict=True)
    p = float(plain["d_real"])
    assert float(smoothed["d_real"]) == pytest.approx(p, abs=1e-6) and 0.05 < p < 0.95
    fake_term = float(plain["d_loss"]) + np.log(p)
    expected = -0.9 * np.log(p) - 0.1 * np.log(1 - p) + fake_term
    assert float(smoothed["d_loss"]) == pytest.approx(expected, abs=1e-5)
    gan.save(tmp_path / "gan.keras")
    assert keras.saving.load_model(tmp_path / "gan.keras", safe_mode=True).label_smoothing == pytest.approx(0.1)
    with pytest.raises(ValueError, match=r"^label_smoothing must be from 0 to below 0\.5"):
        tiny_gan(label_smoothing=0.5)


def test_the_r1_penalty_is_the_stated_gradient_norm(tmp_path):
    """With `r1_gamma` the discriminator's loss gains gamma / 2 times the mean over the real images of the squared
    norm of the gradient of each one's logit with respect to its pixels, computed here apart with a tape on the
    same networks (two GANs of the same seeds take one step on the same batch). D's probabilities, read before
    its update, are unchanged; the generator's loss, read after it, is not."""
    real = constant_images(8) + np.random.default_rng(1).normal(0, 0.1, size=(8, *SHAPE)).astype("float32")
    keras.utils.set_random_seed(0)
    plain = tiny_gan()
    images = tf.constant(real)
    with tf.GradientTape() as tape:
        tape.watch(images)
        total = tf.reduce_sum(plain.discriminator(images, training=True))
    gradients = tape.gradient(total, images).numpy()
    penalty = float(np.mean(np.sum(gradients.reshape(8, -1) ** 2, axis=1)))
    plain_logs = plain.train_on_batch(real, return_dict=True)
    keras.utils.set_random_seed(0)
    gan = tiny_gan(r1_gamma=1000.0)  # a new discriminator's small weights give small gradients
    logs = gan.train_on_batch(real, return_dict=True)
    assert 500.0 * penalty > 0.05  # large enough that the loss shows it
    assert float(logs["d_loss"]) == pytest.approx(float(plain_logs["d_loss"]) + 500.0 * penalty, rel=1e-4)
    for key in ("d_real", "d_fake"):
        assert float(logs[key]) == pytest.approx(float(plain_logs[key]), abs=1e-6), key
    gan.save(tmp_path / "gan.keras")
    assert keras.saving.load_model(tmp_path / "gan.keras", safe_mode=True).r1_gamma == pytest.approx(1000.0)
    with pytest.raises(ValueError, match=r"^r1_gamma must be 0 or more\. Received: r1_gamma=-1"):
        tiny_gan(r1_gamma=-1)


def test_mismatched_networks_are_refused():
    generator = dcgan_generator(latent_dim=LATENT, image_shape=(16, 16, 1), base_filters=4)
    with pytest.raises(ValueError, match=r"^generator's images \(16, 16, 1\) must be the discriminator's input"):
        GAN(generator, dcgan_discriminator(image_shape=SHAPE, base_filters=4))


@pytest.mark.parametrize("r1_gamma", [0.0, 0.1])
@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_a_step_under_mixed_precision(policy, r1_gamma):
    keras.utils.set_random_seed(0)
    with precision_policy(policy):
        gan = tiny_gan(r1_gamma=r1_gamma)
        before = [np.asarray(w) for w in gan.generator.trainable_weights]
        logs = gan.train_on_batch(constant_images(8), return_dict=True)
    assert gan.generator.get_layer("projection").compute_dtype == policy.split("_")[1]
    assert gan(NOISE).dtype == "float32"
    assert all(np.isfinite(v) for v in logs.values()), logs
    if policy == "mixed_float16":  # dynamic loss scaling, applied by the wrapped optimizers
        assert isinstance(gan.g_optimizer, keras.optimizers.LossScaleOptimizer)
        assert isinstance(gan.d_optimizer, keras.optimizers.LossScaleOptimizer)
    else:
        assert not isinstance(gan.g_optimizer, keras.optimizers.LossScaleOptimizer)
    after = gan.generator.trainable_weights
    assert all(not np.array_equal(b, np.asarray(w)) for b, w in zip(before, after, strict=True))


def _train(out, *, epochs: int, callbacks=()) -> kapps.train.Run:
    opts = kapps.train.TrainOptions(epochs=epochs, batch_size=16, out=str(out), seed=0, precision="float32")
    return kapps.train.fit(
        opts,
        build_model=tiny_gan,
        train=stream(256, 16),
        train_steps=4,
        monitor=None,
        callbacks=callbacks,
    )


class StopAt(keras.callbacks.Callback):
    """Raises in the first batch of `epoch`: the epochs before it are backed up, as when a process dies."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_the_engine_trains_and_resumes_it(tmp_path):
    whole = _train(tmp_path / "whole", epochs=3)
    assert {"model.keras", "config.json", "history.csv", "metrics.json"} <= {p.name for p in whole.path.iterdir()}
    assert not (whole.path / "backup").exists()
    assert set(whole.history[0]) == {"epoch", "d_loss", "g_loss", "d_real", "d_fake"}
    assert whole.metrics["epochs_run"] == 3
    assert isinstance(whole.model, GAN)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "resumed", epochs=3, callbacks=[StopAt(2)])
    assert json.loads((tmp_path / "resumed" / "backup" / "state.json").read_text())["epochs"] == 2
    resumed = _train(tmp_path / "resumed", epochs=3)
    assert [row["epoch"] for row in resumed.history] == [0, 1, 2]
    # Op determinism on: a resume that restores weights, both Adams and the noise seed ends bit-identical.
    for got, expected in zip(resumed.model.weights, whole.model.weights, strict=True):
        np.testing.assert_array_equal(got, expected, err_msg=got.path)
    assert [row["g_loss"] for row in resumed.history] == [row["g_loss"] for row in whole.history]


def test_it_trains_under_a_mirrored_strategy():
    process = subprocess.run(
        [sys.executable, "-m", "tests.models.gan_mirrored"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    facts = json.loads(process.stdout.strip().splitlines()[-1])
    assert facts["replicas"] == 2
    first, second = (np.asarray(n) for n in facts["noise"])
    assert first.shape == second.shape == (2, LATENT)
    assert np.min(np.abs(first - second)) > 0  # each replica draws noise of its own
    assert set(facts["metrics"]) == set(METRICS)
    assert all(np.isfinite(v) for v in facts["metrics"].values())
    assert 0 < facts["metrics"]["d_real"] < 1 and 0 < facts["metrics"]["d_fake"] < 1
    # The replicas' average is the one a single process computes from the same weights after each step.
    np.testing.assert_allclose(facts["average"], facts["expected_average"], rtol=1e-5, atol=1e-7)
