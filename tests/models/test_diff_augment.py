"""DiffAugment for the discriminator: each policy does what the paper's does, per image, from a seed, with
gradients; the GAN applies it in training only and saves it with itself."""

from kapps.models.generative.augment import check_policies, diff_augment

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.models.test_gan import NOISE, constant_images, tiny_gan

SEED = tf.constant([3, 7], tf.int64)


def ramp_images(batch: int = 16, side: int = 16, channels: int = 1) -> np.ndarray:
    """Images whose every pixel differs (so a shift or a hole can be read back), in (0, 1]."""
    values = np.arange(1, batch * side * side * channels + 1, dtype="float32")
    return (values / values.size).reshape(batch, side, side, channels)


def shifted(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """`image` moved down dy and right dx pixels, zeros shifted in."""
    out = np.zeros_like(image)
    h, w = image.shape[:2]
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def test_translation_shifts_each_image_by_whole_pixels_up_to_an_eighth():
    images = ramp_images()
    got = np.asarray(diff_augment(images, ("translation",), SEED))
    shifts = set()
    for image, out in zip(images, got, strict=True):
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if np.array_equal(out, shifted(image, dy, dx))]
        assert len(found) == 1, "each image is its input shifted by at most 16 / 8 = 2 pixels each way"
        shifts.add(found[0])
    assert len(shifts) > 4  # drawn per image


def test_cutout_zeroes_one_square_of_half_the_side_cut_at_the_edges():
    images = ramp_images(batch=32)
    got = np.asarray(diff_augment(images, ("cutout",), SEED))
    sizes = set()
    for image, out in zip(images, got, strict=True):
        zeroed = out[..., 0] == 0
        assert np.array_equal(out[~zeroed], image[~zeroed])
        rows, columns = np.nonzero(zeroed)
        box = (rows.min(), rows.max() + 1, columns.min(), columns.max() + 1)
        assert zeroed.sum() == (box[1] - box[0]) * (box[3] - box[2])  # a rectangle
        assert box[1] - box[0] <= 8 and box[3] - box[2] <= 8  # half of 16, less where cut by an edge
        sizes.add((box[1] - box[0], box[3] - box[2]))
    assert (8, 8) in sizes and len(sizes) > 2


def test_color_on_grey_images_is_an_affine_change_of_brightness_and_contrast():
    images = ramp_images(batch=32)
    got = np.asarray(diff_augment(images, ("color",), SEED), "float64")
    slopes = []
    for image, out in zip(images.astype("float64"), got, strict=True):
        slope, intercept = np.polyfit(image.ravel(), out.ravel(), 1)
        np.testing.assert_allclose(out, slope * image + intercept, atol=1e-5)
        slopes.append(slope)
    # Saturation does nothing to one channel; contrast scales by U(0.5, 1.5).
    assert min(slopes) >= 0.5 and max(slopes) <= 1.5 and np.std(slopes) > 0.1
    rgb = ramp_images(batch=4, channels=3)
    grey_kept = np.asarray(diff_augment(rgb, ("color",), SEED)).std(axis=-1)
    assert not np.allclose(grey_kept, rgb.std(axis=-1), atol=1e-4)  # saturation moves colours apart or together


def test_the_same_seed_gives_the_same_draws_and_gradients_flow():
    images = tf.constant(ramp_images())
    policies = check_policies("cutout, color,translation")
    assert policies == ("color", "translation", "cutout")  # applied in the paper's order
    first, again = diff_augment(images, policies, SEED), diff_augment(images, policies, SEED)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, diff_augment(images, policies, SEED + 1))
    with tf.GradientTape() as tape:
        tape.watch(images)
        out = diff_augment(images, ("translation", "cutout"), SEED)
        total = tf.reduce_sum(out)
    grads = np.asarray(tape.gradient(total, images))
    # Each pixel's gradient is 1 where it is still shown, 0 where it was shifted out or cut.
    assert set(np.unique(grads)) == {0.0, 1.0}
    assert grads.sum() == np.count_nonzero(np.asarray(out))


def test_unknown_policies_are_refused():
    with pytest.raises(
        ValueError, match=r"^augmentation policies are color, translation, cutout\. Received: \['flip'\]"
    ):
        check_policies(["translation", "flip"])
    assert check_policies(None) == check_policies("") == ()


def test_the_gan_augments_what_its_discriminator_sees_in_training_only(tmp_path):
    keras.utils.set_random_seed(0)
    gan = tiny_gan(augment="translation,cutout")
    logs = gan.train_on_batch(constant_images(8), return_dict=True)
    assert all(np.isfinite(v) for v in logs.values())
    # test_step scores the images as they are: the same as a GAN without augmentation of the same weights.
    twin = tiny_gan()
    for target, source in zip(
        twin.generator.weights + twin.discriminator.weights,
        gan.generator.weights + gan.discriminator.weights,
        strict=True,
    ):
        target.assign(source)
    real = constant_images(16)
    assert gan.evaluate(real, batch_size=16, return_dict=True, verbose=0) == pytest.approx(
        twin.evaluate(real, batch_size=16, return_dict=True, verbose=0)
    )
    gan.save(tmp_path / "gan.keras")
    loaded = keras.saving.load_model(tmp_path / "gan.keras", safe_mode=True)
    assert loaded.augment == ("translation", "cutout")
    np.testing.assert_array_equal(loaded(NOISE), gan(NOISE))
