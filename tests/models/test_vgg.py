"""VGG: the six configurations of Table 1 and their batch-norm variants, keras.applications compatibility, LRN."""

import kapps.models
import kapps.models.vgg
from kapps.errors import ModelError
from kapps.layers.lrn import LocalResponseNormalization

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.legacy.saving import legacy_h5_format

from tests.models import parity

# ../shared/REFERENCE.md: 224x224x3, 1000 classes.
REFERENCE_COUNTS = {
    "vgg11": (132_863_336, "all"),
    "vgg11_lrn": (132_863_336, "all"),
    "vgg13": (133_047_848, "all"),
    "vgg16_c": (133_638_952, "all"),
    "vgg16": (138_357_544, "all"),
    "vgg19": (143_667_240, "all"),
    "vgg11_bn": (132_868_840, "trainable"),
    # vgg13 plus gamma and beta for each of B's 2*(64 + 128 + 256 + 512 + 512) = 2,944 conv channels; torchvision.
    "vgg13_bn": (133_047_848 + 2 * 2_944, "trainable"),
    "vgg16_bn": (138_365_992, "trainable"),
    "vgg19_bn": (143_678_248, "trainable"),
}
SMALL = {"input_shape": (32, 32, 3)}


def test_registered_reference_counts():
    # tests/models/test_registry.py builds each registered model and checks it against these numbers.
    assert {
        name: (kapps.models.info(name).param_count, kapps.models.info(name).count_kind) for name in REFERENCE_COUNTS
    } == (REFERENCE_COUNTS)


def test_vgg13_bn_count_is_torchvisions():
    assert REFERENCE_COUNTS["vgg13_bn"][0] == 133_053_736


@pytest.mark.parametrize(("name", "application"), [("vgg16", "VGG16"), ("vgg19", "VGG19")])
def test_same_layers_as_keras_applications(name, application):
    reference = getattr(keras.applications, application)(weights=None)
    model = kapps.models.build(name)
    assert [type(layer) for layer in model.layers] == [type(layer) for layer in reference.layers]
    assert [layer.name for layer in model.layers[1:]] == [layer.name for layer in reference.layers[1:]]
    assert [w.shape for w in model.weights] == [w.shape for w in reference.weights]
    keras.backend.clear_session()


def save_legacy_h5(model: keras.Model, path) -> None:
    """Write `model`'s weights as the keras.applications ImageNet files are written: Keras 2's HDF5 layout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


def no_network(*args, **kwargs):
    raise AssertionError("the weights must come from the Keras cache, never the network")


@pytest.mark.parametrize("include_top", [True, False])
def test_imagenet_weights_load_from_the_keras_cache(tmp_path, monkeypatch, include_top):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(keras.utils, "get_file", no_network)
    # 32x32 keeps fc1 small; the real top file is the same layout at 224x224.
    head = {"classifier_activation": None} if include_top else {"pooling": "avg"}
    kwargs = {"input_shape": (32, 32, 3), "include_top": include_top, **head}
    reference = keras.applications.VGG16(weights=None, **kwargs)
    rng = np.random.default_rng(0)
    # Random kernels and biases everywhere: at the defaults every bias is zero, so a loader that skipped them
    # would pass.
    parity.randomise_weights(reference, rng.uniform(-120, 150, size=(4, 32, 32, 3)).astype("float32"), seed=1)
    info = kapps.models.vgg.IMAGENET["D"]
    save_legacy_h5(reference, tmp_path / "models" / (info.top if include_top else info.notop))
    model = kapps.models.build("vgg16", weights="imagenet", **kwargs)
    for weight, loaded in zip(reference.weights, model.weights, strict=True):
        np.testing.assert_array_equal(loaded.numpy(), weight.numpy(), err_msg=weight.path)
    images = rng.uniform(-120, 150, size=(3, 32, 32, 3)).astype("float32")
    expected = reference.predict(images, verbose=0)
    assert np.std(expected) > 0.1
    np.testing.assert_allclose(model.predict(images, verbose=0), expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_imagenet_weights_missing_offline_say_so(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(ModelError, match="not in the Keras cache"):
        kapps.models.build("vgg19", weights="imagenet", include_top=False, input_shape=(32, 32, 3))


def test_imagenet_weights_only_for_keras_applications_architectures():
    with pytest.raises(ValueError, match="weights='imagenet' is offered only"):
        kapps.models.build("vgg16_bn", weights="imagenet", **SMALL)
    with pytest.raises(ValueError, match="weights='imagenet' is offered only"):
        kapps.models.build("vgg13", weights="imagenet", **SMALL)


def test_configurations_follow_table_one():
    kernels = {
        name: [layer.kernel.shape[0] for layer in kapps.models.build(name, **SMALL).layers if "conv" in layer.name]
        for name in ("vgg11", "vgg13", "vgg16_c", "vgg16", "vgg19")
    }
    assert kernels["vgg11"] == [3] * 8
    assert kernels["vgg13"] == [3] * 10
    assert kernels["vgg16_c"] == [3, 3, 3, 3] + [3, 3, 1] * 3
    assert kernels["vgg16"] == [3] * 13
    assert kernels["vgg19"] == [3] * 16


def test_lrn_follows_the_first_convolution():
    names = [layer.name for layer in kapps.models.build("vgg11_lrn", **SMALL).layers]
    assert names[1:4] == ["block1_conv1", "block1_lrn", "block1_pool"]


def test_batch_norm_layout_and_dropout():
    model = kapps.models.build("vgg11_bn", dropout=0.5, **SMALL)
    names = [layer.name for layer in model.layers]
    assert names[1:5] == ["block1_conv1", "block1_conv1_bn", "block1_conv1_relu", "block1_pool"]
    assert model.get_layer("block1_conv1").activation is keras.activations.linear
    assert names[-5:] == ["fc1", "fc1_dropout", "fc2", "fc2_dropout", "predictions"]
    assert model.get_layer("fc1_dropout").rate == 0.5
    assert model.get_layer("fc2").kernel.shape == (4096, 4096)
    assert kapps.models.build("vgg11", fc_units=512, **SMALL).get_layer("fc2").kernel.shape == (512, 512)
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in kapps.models.build("vgg11", **SMALL).layers)


def test_without_top():
    assert kapps.models.build("vgg16", include_top=False, **SMALL).output_shape == (None, 1, 1, 512)
    model = kapps.models.build("vgg19_bn", include_top=False, pooling="max", input_shape=(64, 48, 3))
    assert model.output_shape == (None, 512)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dropout": 1.0}, "dropout must be in [0, 1). Received: dropout=1.0"),
        ({"pooling": "mean", "include_top": False}, "pooling must be None, 'avg' or 'max'. Received: pooling='mean'"),
        ({"num_classes": 0}, "num_classes must be a positive integer"),
        ({"fc_units": 0}, "fc_units must be a positive integer. Received: fc_units=0"),
        ({"input_shape": (32, 32)}, "input_shape must be"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        kapps.models.build("vgg11", **{**SMALL, **kwargs})


def lrn_numpy(x: np.ndarray, *, size: int, alpha: float, beta: float, k: float) -> np.ndarray:
    """Krizhevsky et al. 2012, section 3.3: b_c = a_c / (k + alpha * sum_{|j-c| <= size//2} a_j^2) ** beta."""
    x = x.astype("float64")
    channels, radius = x.shape[-1], size // 2
    out = np.empty_like(x)
    for c in range(channels):
        window = x[..., max(0, c - radius) : min(channels, c + radius + 1)]
        out[..., c] = x[..., c] / (k + alpha * np.sum(window**2, axis=-1)) ** beta
    return out


@pytest.mark.parametrize(
    "params",
    [{"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}, {"size": 3, "alpha": 1e-3, "beta": 0.5, "k": 1.0}],
)
def test_lrn_is_the_alexnet_formula(params):
    # Activations of a few tens, as after VGG's first conv on mean-subtracted pixels, so the sum term matters.
    x = np.random.default_rng(1).normal(scale=40.0, size=(2, 5, 4, 9)).astype("float32")
    got = keras.ops.convert_to_numpy(LocalResponseNormalization(**params)(x))
    expected = lrn_numpy(x, **params)
    assert np.abs(expected - x / params["k"] ** params["beta"]).max() > 1.0
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # TensorFlow's op implements the same formula (alpha not divided by size).
    tf_lrn = tf.nn.local_response_normalization(
        x, depth_radius=params["size"] // 2, bias=params["k"], alpha=params["alpha"], beta=params["beta"]
    )
    np.testing.assert_allclose(got, tf_lrn.numpy(), rtol=1e-5, atol=1e-5)


def test_lrn_defaults_config_and_mixed_precision():
    layer = LocalResponseNormalization()
    assert (layer.size, layer.alpha, layer.beta, layer.k) == (5, 1e-4, 0.75, 2.0)
    clone = LocalResponseNormalization.from_config(LocalResponseNormalization(3, alpha=0.1, name="n").get_config())
    assert (clone.size, clone.alpha, clone.name) == (3, 0.1, "n")
    # Squares of 1000 overflow float16; the layer computes them in float32.
    half = LocalResponseNormalization(dtype="mixed_float16")
    y = keras.ops.convert_to_numpy(half(np.full((1, 2, 2, 8), 1000.0, "float16")))
    assert y.dtype == np.float16
    np.testing.assert_allclose(y, lrn_numpy(np.full((1, 2, 2, 8), 1000.0), size=5, alpha=1e-4, beta=0.75, k=2), 1e-2)
    with pytest.raises(ValueError, match="size must be a positive odd integer. Received: size=4"):
        LocalResponseNormalization(4)


def test_saves_and_loads_in_safe_mode(tmp_path):
    model = kapps.models.build("vgg11_lrn", num_classes=10, **SMALL)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    images = np.random.default_rng(2).uniform(-120, 150, size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(model.predict(images, verbose=0), loaded.predict(images, verbose=0), atol=1e-6)


def test_exports_match_keras(tmp_path):
    from tests.conftest import assert_exports_match

    # fc_units=256: the paper's 4096-wide dense layers are the same ops, but make 100 MB artifacts.
    model = kapps.models.build("vgg11_lrn", num_classes=10, fc_units=256, **SMALL)
    # Caffe-style mean-subtracted pixels, so the LRN divides by well more than k ** beta.
    images = np.random.default_rng(3).uniform(-120, 150, size=(4, 32, 32, 3)).astype("float32")
    assert_exports_match(model, images, tmp_path)


def test_batch_norm_exports_match_keras_on_logits_with_trained_statistics(tmp_path):
    # Random gamma, beta, moving mean and variance, compared on logits, float and quantised: see
    # tests/models/parity.py for the tolerances and why the defaults would hide a mis-folded batch norm.
    keras.utils.set_random_seed(3)
    model = kapps.models.build(
        "vgg16_c", batch_norm=True, num_classes=10, fc_units=256, classifier_activation=None, **SMALL
    )
    rng = np.random.default_rng(3)
    calibration = parity.varied_images(rng, 16, 32)
    parity.randomise_batch_norm(model, calibration, seed=0)
    images = parity.varied_images(rng, 8, 32)
    parity.assert_exports_match_logits(
        model, images, tmp_path, quantizations=("dynamic", "int8"), calibration=calibration
    )


@pytest.mark.parametrize("name", ["vgg19", "googlenet_paper"])
def test_deep_nets_without_batch_norm_keep_their_signal_at_initialisation(name):
    # Glorot's initialisation shrank vgg19's logits to ~2e-5 of the input's scale (googlenet_paper's to ~1e-3),
    # and both stayed at chance on digits; He's keeps the scale through all the ReLU layers.
    keras.utils.set_random_seed(0)
    model = kapps.models.build(name, input_shape=(32, 32, 1), num_classes=10, classifier_activation=None)
    images = np.random.default_rng(0).normal(size=(16, 32, 32, 1)).astype("float32")
    weighted = (keras.layers.Conv2D, keras.layers.Dense)
    hidden = [layer for layer in model.layers if isinstance(layer, weighted) and layer.name != "predictions"]
    assert len(hidden) > 15 and all(layer.kernel_initializer.__class__.__name__ == "HeNormal" for layer in hidden)
    assert np.std(model.predict(images, verbose=0)) > 0.05
