"""SobelEdges: against a direct NumPy cross-correlation on real photographs, its errors, saving and exports."""

import re

from kapps.layers.sobel import SobelEdges

import keras
import numpy as np
import pytest
import skimage.data

from tests.conftest import assert_exports_match

GX = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype="float64")
GY = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype="float64")


def cross_correlate(image: np.ndarray, kernel: np.ndarray, padding: str) -> np.ndarray:
    """out[i, j] = sum_{u, v} image[i + u, j + v] * kernel[u, v], after zero padding of 1 for 'same'."""
    if padding == "same":
        image = np.pad(image, 1)
    out = np.zeros((image.shape[0] - 2, image.shape[1] - 2))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = np.sum(image[i : i + 3, j : j + 3] * kernel)
    return out


def reference(image: np.ndarray, padding: str) -> np.ndarray:
    grey = image[..., 0] if image.shape[-1] == 1 else image @ np.array([0.299, 0.587, 0.114])
    gx, gy = cross_correlate(grey, GX, padding), cross_correlate(grey, GY, padding)
    return np.stack([gx, gy, np.hypot(gx, gy)], axis=-1)


def photo(channels: int) -> np.ndarray:
    """A 40x48 crop of a scikit-image photograph in [0, 1]: the cameraman's head, or the astronaut's face."""
    if channels == 1:
        return skimage.data.camera()[60:100, 200:248, None].astype("float32") / 255.0
    return skimage.data.astronaut()[80:120, 180:228].astype("float32") / 255.0


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_matches_a_direct_cross_correlation(channels, padding):
    image = photo(channels)
    got = keras.ops.convert_to_numpy(SobelEdges(padding=padding)(image[None]))[0]
    expected = reference(image.astype("float64"), padding)
    assert got.shape == ((40, 48, 3) if padding == "same" else (38, 46, 3))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert expected[..., 2].max() > 1.0  # the crop has real edges, not a flat patch


def test_a_vertical_step_edge():
    # Dark left half, bright right half: gx = 1 + 2 + 1 = 4 on the two columns beside the step, gy = 0.
    image = np.zeros((1, 5, 6, 1), "float32")
    image[..., 3:, :] = 1.0
    out = keras.ops.convert_to_numpy(SobelEdges(padding="valid")(image))[0]
    np.testing.assert_array_equal(out[..., 0], [[0, 4, 4, 0]] * 3)
    np.testing.assert_array_equal(out[..., 1], np.zeros((3, 4)))
    np.testing.assert_array_equal(out[..., 2], out[..., 0])


def test_rgb_is_its_luma():
    rgb = photo(3)
    luma = (rgb @ np.array([0.299, 0.587, 0.114], "float32"))[..., None]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(SobelEdges()(rgb[None])),
        keras.ops.convert_to_numpy(SobelEdges()(luma[None])),
        atol=1e-5,
    )


def tiny_model(channels: int, padding: str) -> keras.Model:
    inputs = keras.Input(shape=(16, 20, channels), name="image")
    return keras.Model(inputs, SobelEdges(padding=padding, name="edges")(inputs))


def test_has_no_weights():
    model = tiny_model(3, "same")
    assert model.count_params() == 0
    assert model.trainable_weights == [] and model.non_trainable_weights == []
    assert model.output_shape == (None, 16, 20, 3)
    assert tiny_model(1, "valid").output_shape == (None, 14, 18, 3)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SobelEdges(padding="full"), "padding must be 'same' or 'valid'. Received: padding='full'"),
        (lambda: SobelEdges()(np.zeros((1, 8, 8, 2), "float32")), "Received: input_shape=(1, 8, 8, 2)"),
    ],
)
def test_bad_arguments(build, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build()


def test_saves_and_loads_in_safe_mode(tmp_path):
    model = tiny_model(3, "valid")
    model.save(tmp_path / "sobel.keras")
    loaded = keras.saving.load_model(tmp_path / "sobel.keras", safe_mode=True)
    assert loaded.get_layer("edges").get_config()["padding"] == "valid"
    assert isinstance(loaded.get_layer("edges"), SobelEdges)
    x = photo(3)[None, :16, :20]
    np.testing.assert_array_equal(model(x), loaded(x))


@pytest.mark.parametrize(("channels", "padding"), [(3, "same"), (1, "valid")])
def test_exports_match(tmp_path, channels, padding):
    rng = np.random.default_rng(0)
    images = np.concatenate([photo(channels)[None, :16, :20], rng.uniform(size=(1, 16, 20, channels))])
    diffs = assert_exports_match(tiny_model(channels, padding), images.astype("float32"), tmp_path)
    assert set(diffs) == {"saved_model", "tflite", "onnx"}
