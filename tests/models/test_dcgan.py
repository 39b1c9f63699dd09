"""DCGAN builders: the paper's layer sizes, parameter counts recomputed term by term, the architecture guidelines
(batch norm placement, no pooling, activations), the N(0, 0.02) initialisation and the sizes derived from images."""

import kapps.models
from kapps.models.generative import dcgan_discriminator, dcgan_generator, scale_steps
from kapps.train.precision import precision_policy

import keras
import numpy as np
import pytest


def _bn(channels: int) -> int:
    return 4 * channels  # gamma, beta, moving mean, moving variance


def test_the_paper_generator_has_the_lsun_sizes_and_the_computed_count():
    model = dcgan_generator()
    shapes = [model.get_layer(n).output.shape[1:] for n in ("projection_relu", "up1_relu", "up2_relu", "up3_relu")]
    assert shapes == [(4, 4, 1024), (8, 8, 512), (16, 16, 256), (32, 32, 128)]
    assert model.output_shape == (None, 64, 64, 3)
    weights = 100 * 4 * 4 * 1024 + 25 * (1024 * 512 + 512 * 256 + 256 * 128) + 25 * 128 * 3 + 3
    norms = _bn(1024) + _bn(512) + _bn(256) + _bn(128)
    assert weights + norms == 18_858_883 == kapps.models.info("dcgan_generator").param_count
    assert model.count_params() == 18_858_883
    assert kapps.models.count_params(model, "trainable") == weights + norms // 2 == 18_855_043


def test_the_discriminator_mirrors_it():
    model = dcgan_discriminator()
    shapes = [model.get_layer(f"down{i}_lrelu").output.shape[1:] for i in range(1, 5)]
    assert shapes == [(32, 32, 128), (16, 16, 256), (8, 8, 512), (4, 4, 1024)]
    assert model.output_shape == (None, 1)
    weights = 25 * 3 * 128 + 128 + 25 * (128 * 256 + 256 * 512 + 512 * 1024) + 4 * 4 * 1024 + 1
    norms = _bn(256) + _bn(512) + _bn(1024)
    assert weights + norms == 17_236_481 == kapps.models.info("dcgan_discriminator").param_count
    assert model.count_params() == 17_236_481
    assert kapps.models.count_params(model, "trainable") == weights + norms // 2 == 17_232_897


def test_digits_sized_networks_take_two_steps_from_7x7():
    generator = dcgan_generator(latent_dim=64, image_shape=(28, 28, 1), base_filters=32)
    assert generator.get_layer("projection_reshape").output.shape[1:] == (7, 7, 64)
    assert generator.get_layer("up1_relu").output.shape[1:] == (14, 14, 32)
    assert generator.output_shape == (None, 28, 28, 1)
    assert generator.count_params() == 64 * 49 * 64 + _bn(64) + 25 * 64 * 32 + _bn(32) + 25 * 32 * 1 + 1
    discriminator = dcgan_discriminator(image_shape=(28, 28, 1), base_filters=32)
    assert discriminator.get_layer("down2_lrelu").output.shape[1:] == (7, 7, 64)
    assert discriminator.count_params() == 25 * 32 + 32 + 25 * 32 * 64 + _bn(64) + 49 * 64 + 1
    assert dcgan_generator(image_shape=(32, 32, 3), base_filters=16).get_layer("projection_reshape").output.shape[
        1:
    ] == (4, 4, 64)


@pytest.mark.parametrize(("shape", "steps"), [((64, 64, 3), 4), ((32, 32, 3), 3), ((28, 28, 1), 2), ((8, 12, 1), 1)])
def test_steps_come_from_the_image_size(shape, steps):
    assert scale_steps(shape) == steps


@pytest.mark.parametrize("shape", [(28, 32, 1), (7, 7, 1), (6, 6, 1), (64, 64), (64.0, 64, 3)])
def test_sizes_without_a_common_number_of_steps_are_refused(shape):
    with pytest.raises(ValueError, match=r"^image_shape"):
        dcgan_generator(image_shape=shape)


def test_bad_widths_are_refused():
    with pytest.raises(ValueError, match=r"^base_filters must be a positive integer. Received: base_filters=0"):
        dcgan_discriminator(image_shape=(32, 32, 1), base_filters=0)
    with pytest.raises(ValueError, match=r"^latent_dim must be a positive integer. Received: latent_dim=True"):
        dcgan_generator(latent_dim=True)


def test_the_architecture_guidelines():
    generator = dcgan_generator(image_shape=(32, 32, 3), base_filters=16)
    discriminator = dcgan_discriminator(image_shape=(32, 32, 3), base_filters=16)
    for model in (generator, discriminator):
        types = {type(layer).__name__ for layer in model.layers}
        assert not any("Pooling" in t for t in types), types
        # One dense layer: the generator's projection, the discriminator's output.
        assert [type(layer).__name__ for layer in model.layers].count("Dense") == 1
    # Batch norm after the projection and every hidden step, not on the output; ReLU there, tanh on the output.
    assert [layer.name for layer in generator.layers if "bn" in layer.name] == ["projection_bn", "up1_bn", "up2_bn"]
    assert generator.get_layer("up3_conv").use_bias and not generator.get_layer("up2_conv").use_bias
    assert generator.get_layer("generated").activation is keras.activations.tanh
    # No batch norm on the discriminator's input layer, LeakyReLU 0.2 everywhere.
    assert [layer.name for layer in discriminator.layers if "bn" in layer.name] == ["down2_bn", "down3_bn"]
    assert discriminator.get_layer("down1_conv").use_bias and not discriminator.get_layer("down2_conv").use_bias
    slopes = [layer.negative_slope for layer in discriminator.layers if isinstance(layer, keras.layers.LeakyReLU)]
    assert slopes == pytest.approx([0.2, 0.2, 0.2])
    images = generator(np.random.default_rng(0).normal(size=(8, 100)).astype("float32"))
    assert float(np.max(np.abs(images))) <= 1.0


def test_weights_start_from_n_0_0_02():
    keras.utils.set_random_seed(0)
    model = dcgan_generator()
    kernel = np.asarray(model.get_layer("up1_conv").kernel)  # 13,107,200 draws: the std is known to 1e-5
    assert abs(kernel.mean()) < 1e-4 and kernel.std() == pytest.approx(0.02, rel=0.01)
    gamma = np.asarray(model.get_layer("up1_bn").gamma)
    assert gamma.mean() == pytest.approx(1.0, abs=0.01) and gamma.std() == pytest.approx(0.02, rel=0.2)


def test_outputs_are_float32_under_mixed_precision():
    with precision_policy("mixed_bfloat16"):
        generator = dcgan_generator(image_shape=(28, 28, 1), base_filters=8)
        discriminator = dcgan_discriminator(image_shape=(28, 28, 1), base_filters=8)
    assert generator.get_layer("up1_conv").compute_dtype == "bfloat16"
    assert generator.output.dtype == "float32" and discriminator.output.dtype == "float32"
