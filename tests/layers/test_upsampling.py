"""Bilinear transposed-convolution kernels (Long et al. 2015, Sec. 3.3) and the crop that aligns maps."""

from kapps.layers import BilinearUpsampling, CropLike, bilinear_kernel

import keras
import numpy as np
import pytest


def test_bilinear_kernel_is_the_closed_form():
    # factor 2 (kernel 4): centre 1.5, taps 1 - |k - 1.5| / 2; kernel 3: factor 2, centre 1, taps 1 - |k - 1| / 2
    four = np.array([0.25, 0.75, 0.75, 0.25])
    three = np.array([0.5, 1.0, 0.5])
    kernel = bilinear_kernel(4, 3)
    assert kernel.shape == (4, 4, 3, 3) and kernel.dtype == np.float32
    for c in range(3):
        np.testing.assert_array_equal(kernel[:, :, c, c], np.outer(four, four))
    off_diagonal = kernel * (1 - np.eye(3))[None, None]
    assert not off_diagonal.any()
    np.testing.assert_array_equal(bilinear_kernel(3, 1)[:, :, 0, 0], np.outer(three, three))
    # factor 32 (kernel 64): tap k = 1 - |k - 31.5| / 32, so taps k and k + 32 share every input between two
    # neighbours: a partition of unity, which is what makes it interpolate
    tent = 1 - np.abs(np.arange(64) - 31.5) / 32
    np.testing.assert_allclose(bilinear_kernel(64, 1)[:, :, 0, 0], np.outer(tent, tent), rtol=1e-6)
    np.testing.assert_allclose(tent[:32] + tent[32:], 1.0, rtol=1e-6)


@pytest.mark.parametrize("factor", [2, 8, 32])
def test_upsampling_with_the_kernel_is_bilinear_interpolation_away_from_the_borders(factor):
    # A smooth 2-channel map, upsampled by a transposed convolution of stride f and kernel 2f, cropped from f / 2:
    # output pixel j is the input linearly interpolated at (j + 0.5) / f - 0.5 (pixel centres), per axis.
    n = 6
    u, v = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    maps = np.stack([np.sin(0.9 * u) + np.cos(0.7 * v), u * v / 5.0], axis=-1).astype("float32")
    up = keras.layers.Conv2DTranspose(
        2, 2 * factor, strides=factor, use_bias=False, kernel_initializer=BilinearUpsampling()
    )
    out = np.asarray(up(maps[None]))[0]
    assert out.shape == ((n + 1) * factor, (n + 1) * factor, 2)
    out = out[factor // 2 : factor // 2 + n * factor, factor // 2 : factor // 2 + n * factor]

    coordinate = (np.arange(n * factor) + 0.5) / factor - 0.5
    inside = (coordinate >= 0) & (coordinate <= n - 1)  # between the outermost input centres

    def interpolate(channel):  # separable linear interpolation, rows then columns
        rows = np.stack([np.interp(coordinate, np.arange(n), maps[:, j, channel]) for j in range(n)], axis=1)
        return np.stack([np.interp(coordinate, np.arange(n), rows[i]) for i in range(n * factor)])

    for channel in range(2):
        expected = interpolate(channel)
        np.testing.assert_allclose(out[inside][:, inside, channel], expected[inside][:, inside], atol=1e-5)
    # at the borders the transposed convolution fades to the zeros outside: not interpolation there
    assert abs(out[0, 0, 0] - maps[0, 0, 0]) > 0.1


def test_bilinear_initialiser_checks_the_shape():
    with pytest.raises(ValueError, match="square with as many output as input channels"):
        BilinearUpsampling()((4, 4, 2, 3))
    with pytest.raises(ValueError, match="size must be a positive integer. Received: size=0"):
        bilinear_kernel(0, 2)


def test_crop_like_crops_at_the_offset_or_the_centre():
    x = np.arange(2 * 9 * 10 * 3, dtype="float32").reshape(2, 9, 10, 3)
    reference = np.zeros((2, 4, 5, 1), "float32")
    np.testing.assert_array_equal(CropLike(1)([x, reference]), x[:, 1:5, 1:6])
    np.testing.assert_array_equal(CropLike((2, 3))([x, reference]), x[:, 2:6, 3:8])
    np.testing.assert_array_equal(CropLike(None)([x, reference]), x[:, 2:6, 2:7])  # (9 - 4) // 2, (10 - 5) // 2


def test_crop_like_follows_free_sizes_and_saves(tmp_path):
    image = keras.Input((None, None, 3))
    coarse = keras.Input((None, None, 2))
    model = keras.Model([image, coarse], CropLike(2, name="crop")([image, coarse]))
    x = np.random.default_rng(0).uniform(size=(1, 11, 7, 3)).astype("float32")
    np.testing.assert_array_equal(model([x, np.zeros((1, 5, 3, 2))]), x[:, 2:7, 2:5])
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert loaded.get_layer("crop").offset == (2, 2)
    np.testing.assert_array_equal(loaded([x, np.zeros((1, 6, 4, 2))]), x[:, 2:8, 2:6])


def test_crop_like_refuses_what_it_cannot_crop():
    with pytest.raises(ValueError, match="cannot be cropped to 8 at offset 1"):
        CropLike(1)([keras.Input((8, 8, 1)), keras.Input((8, 8, 1))])
    with pytest.raises(ValueError, match="offset must be None, an int >= 0 or a pair of them"):
        CropLike(-1)
