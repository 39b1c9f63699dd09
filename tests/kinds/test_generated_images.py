"""The generated-image kind: its own noise inputs, the float and PSNR criteria worked by hand, the sample grid, the
predict fields and a pixel-space Frechet distance with a known answer."""

from kapps.errors import ModelError
from kapps.kinds import PredictOptions, kind_for
from kapps.kinds.generated_images import QUANTIZED_PSNR_DB, image_grid, image_psnr, to_uint8

import keras
import numpy as np
import pytest
import tensorflow as tf

KIND = kind_for("generative")


def test_it_makes_standard_normal_noise_of_its_own_a_split():
    assert KIND.own_inputs is not None and kind_for("classification").own_inputs is None
    test = KIND.inputs((100,), 4000, split="test")
    assert test.shape == (4000, 100) and test.dtype == np.float32
    np.testing.assert_array_equal(test, KIND.inputs((100,), 4000, split="test"))
    assert not np.array_equal(test[:10], KIND.inputs((100,), 10, split="train"))
    assert abs(test.mean()) < 0.01 and test.std() == pytest.approx(1, abs=0.01)
    with pytest.raises(TypeError, match="takes the data's images|take the data's images"):
        kind_for("classification").inputs((8, 8, 1), 1, split="test")


def test_outputs_are_one_batch_of_grey_or_rgb_images():
    KIND.check({"image": (None, 28, 28, 1)}, what="'g'")
    KIND.check({"image": (None, 64, 64, 3)}, what="'g'")
    for bad in ({"logit": (None, 1)}, {"image": (None, 8, 8, 2)}, {"a": (None, 8, 8, 1), "b": (None, 8, 8, 1)}):
        with pytest.raises(ModelError, match=r"^'g' is not an image generator: its outputs are .*, not one"):
            KIND.check(bad, what="'g'")


def test_float_artifacts_pass_within_1e_4_of_keras():
    expected = {"image": np.random.default_rng(0).uniform(-1, 1, (3, 4, 4, 1))}
    close = {"image": expected["image"] + 9e-5}
    entry = KIND.compare(close, expected, quantized=False, model=None)
    assert entry["passed"] and entry["image_agreement"] == 1.0 and entry["max_abs_diff"] == pytest.approx(9e-5)
    far = {"image": expected["image"].copy()}
    far["image"][1, 2, 3, 0] += 2e-4  # one pixel of one image
    entry = KIND.compare(far, expected, quantized=False, model=None)
    assert not entry["passed"] and entry["image_agreement"] == pytest.approx(2 / 3)
    assert "within 0.0001 of Keras's" in KIND.criterion(quantized=False)


def test_quantised_artifacts_pass_at_30_db_psnr():
    # An error of e on every pixel: MSE e^2, PSNR 10 log10(2^2 / e^2). e = 0.02 gives 40 dB; e = 0.1 gives
    # 10 log10(400) = 26.02 dB, under the 30 dB bar, whose RMS error is 2 / 10^1.5 = 0.0632.
    expected = {"image": np.zeros((2, 4, 4, 3))}
    assert QUANTIZED_PSNR_DB == 30
    good = KIND.compare({"image": expected["image"] + 0.02}, expected, quantized=True, model=None)
    assert good["min_psnr_db"] == pytest.approx(40.0) and good["passed"]
    mixed = {"image": np.stack([np.full((4, 4, 3), 0.02), np.full((4, 4, 3), -0.1)])}
    bad = KIND.compare(mixed, expected, quantized=True, model=None)
    assert bad["min_psnr_db"] == pytest.approx(10 * np.log10(400)) and bad["mean_psnr_db"] == pytest.approx(
        (40 + 10 * np.log10(400)) / 2
    )
    assert not bad["passed"] and KIND.agreement(bad) == 0.5
    assert "26.0 dB" in KIND.describe(bad)
    rms_at_the_bar = 2 / 10**1.5
    assert image_psnr(np.full((1, 2, 2, 1), rms_at_the_bar), np.zeros((1, 2, 2, 1)))[0] == pytest.approx(30.0)
    same = KIND.compare(expected, expected, quantized=True, model=None)
    assert same["passed"] and same["min_psnr_db"] is None and "infinite" in KIND.describe(same)


def test_grid_and_uint8():
    assert to_uint8(np.array([-1.5, -1.0, 0.0, 1.0])).tolist() == [0, 0, 128, 255]  # 127.5 rounds to even
    images = np.stack([np.full((3, 2, 1), v) for v in (-1.0, 0.0, 1.0, 1.0, -1.0)])
    grid = image_grid(images, gap=1)  # 5 images: 3 columns, 2 rows
    assert grid.shape == (2 * 3 + 1, 3 * 2 + 2, 1) and grid.dtype == np.uint8
    assert grid[0, 3, 0] == 128 and grid[4, 0, 0] == 255 and grid[4, 3, 0] == 0
    assert grid[3, :, 0].tolist() == [0] * 8  # the gap row
    assert grid[4:, 6:, 0].max() == 0  # the empty sixth place


def test_predict_fields_describe_the_image():
    image = np.linspace(-1, 1, 16, dtype="float32").reshape(1, 4, 4, 1)
    entry = KIND.result({"image": image}, class_name=str, width=4, height=4, options=PredictOptions())
    assert entry == {"generated": {"height": 4, "width": 4, "channels": 1, "min": -1.0, "max": 1.0, "mean": 0.0}}
    assert KIND.summary(entry) == "a 4x4x1 image, values -1.00 to 1.00"


def _noise_as_image_generator():
    """64 noise numbers as an 8x8 image, unchanged: its images are N(0, 1) pixels."""
    noise = keras.Input((64,))
    image = keras.layers.Reshape((8, 8, 1))(noise)
    return keras.Model(noise, image)


def test_evaluate_is_a_pixel_frechet_distance_with_the_closed_form():
    generator = _noise_as_image_generator()
    rng = np.random.default_rng(7)
    count = 4000
    same = rng.standard_normal((count, 8, 8, 1)).astype("float32")
    shifted = same + 0.5
    near = KIND.evaluate(generator, tf.data.Dataset.from_tensor_slices(same).batch(500))
    far = KIND.evaluate(generator, tf.data.Dataset.from_tensor_slices((shifted, np.zeros(count))).batch(500))
    assert near["count"] == far["count"] == count and near["pooled"] == [8, 8]
    # N(0, I_64) against N(0.5, I_64): 64 x 0.5^2 = 16. Estimated from 4,000 images a set, both carry the bias of
    # sample covariances, about d (d + 1) / (2 n) = 0.52 for d = 64 (measured 0.55 where the answer is 0), which
    # the shifted set (the same draws + 0.5) carries too.
    bias = near["pixel_frechet_distance"]
    assert 0.3 < bias < 0.8
    assert far["pixel_frechet_distance"] == pytest.approx(16.0 + bias, abs=0.2)
    assert far["real_mean"] == pytest.approx(0.5, abs=0.01) and far["generated_mean"] == pytest.approx(0, abs=0.01)
    limited = KIND.evaluate(generator, tf.data.Dataset.from_tensor_slices(same).batch(500), limit=600)
    assert limited["count"] == 600
