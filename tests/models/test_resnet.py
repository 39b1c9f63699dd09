"""ResNet: pinned parameter counts, keras.applications layer compatibility, ImageNet weight files, option-A
shortcuts, serialisation and export parity."""

import functools

import kapps.models
from kapps.errors import ModelError
from kapps.layers.shortcut import ChannelPadShortcut
from kapps.models import resnet
from kapps.registry import count_params

import h5py
import keras
import numpy as np
import pytest

from tests.models import parity

RESNETS = [name for name in kapps.models.list_models() if kapps.models.info(name).builder.__module__ == resnet.__name__]


@functools.cache
def _default(name):
    """The registered model at its defaults, built once for the count and the keras.applications tests."""
    return kapps.models.build(name)


def test_every_variant_is_registered():
    assert sorted(RESNETS) == sorted(
        [f"resnet{d}" for d in (18, 34, 50, 101, 152, 20, 32, 44, 56, 110)]
        + [f"plain{d}" for d in (20, 32, 44, 56)]
        + ["resnet10_narrow"]
    )


def test_reference_counts():
    # REFERENCE.md: torchvision (trainable) and keras.applications (all) counts; tests/models/test_registry.py
    # builds every registered model and checks it against its entry.
    expected = {
        "resnet18": 11_689_512,
        "resnet34": 21_797_672,
        "resnet50": 25_636_712,
        "resnet101": 44_707_176,
        "resnet152": 60_419_944,
        "resnet20": 269_722,
        "resnet56": 853_018,
        "resnet10_narrow": 1_487_240,
    }
    assert {name: kapps.models.info(name).param_count for name in expected} == expected


def test_cifar_counts_follow_from_depth():
    # Trainable weights of depth 6n + 2 (see resnet.py): 97,216 n - 21,926; plain nets have the same weights.
    for depth in (20, 32, 44, 56, 110):
        n = (depth - 2) // 6
        assert kapps.models.info(f"resnet{depth}").param_count == 97_216 * n - 21_926
    for depth in (20, 32, 44, 56):
        assert kapps.models.info(f"plain{depth}").param_count == kapps.models.info(f"resnet{depth}").param_count


def test_basic_block_counts_follow_from_the_widths():
    # Trainable weights without conv biases: stem 3 * 49 s + BN 2 s; a block of width w reading c channels
    # 9 c w + 9 w^2 + BNs 4 w, plus a projection c w + BN 2 w when the shape changes; dense 1000 w + 1000.
    # The rule gives torchvision's resnet18 and resnet34, then the narrow net's count.
    def count(stem, blocks, widths):
        total, reading = 3 * 49 * stem + 2 * stem, stem
        for i, (n, w) in enumerate(zip(blocks, widths, strict=True)):
            for b in range(n):
                c = reading if b == 0 else w
                total += 9 * c * w + 9 * w * w + 4 * w + (c * w + 2 * w if b == 0 and i > 0 else 0)
            reading = w
        return total + 1000 * reading + 1000

    assert count(64, (2, 2, 2, 2), (64, 128, 256, 512)) == 11_689_512
    assert count(64, (3, 4, 6, 3), (64, 128, 256, 512)) == 21_797_672
    assert count(32, (1, 1, 1, 1), (32, 64, 128, 256)) == kapps.models.info("resnet10_narrow").param_count
    assert {name: resnet._basic_count(name) for name in ("resnet18", "resnet34")} == {
        "resnet18": 11_689_512,
        "resnet34": 21_797_672,
    }


def test_narrow_net_halves_the_stem_and_the_stages():
    model = kapps.models.backbone("resnet10_narrow", input_shape=(128, 128, 3))
    assert model.get_layer("conv1_conv").filters == 32
    assert {name: tuple(x.shape[1:]) for name, x in model.output.items()} == {
        "C1": (64, 64, 32),
        "C2": (32, 32, 32),
        "C3": (16, 16, 64),
        "C4": (8, 8, 128),
        "C5": (4, 4, 256),
    }
    assert not any(layer.name.startswith("conv2_block1_0_") for layer in model.layers)  # no projection: 32 -> 32


def test_resnet50_without_conv_biases_is_torchvision():
    model = kapps.models.build("resnet50", conv_bias=False)
    assert count_params(model, "trainable") == 25_557_032  # torchvision resnet50


def _layout(model):
    # Without the input layer, whose name is the exported signature's ("image" in kapps).
    return [(layer.name, type(layer).__name__, [tuple(w.shape) for w in layer.weights]) for layer in model.layers[1:]]


@pytest.mark.parametrize(
    ("name", "reference", "kwargs"),
    [
        ("resnet50", keras.applications.ResNet50, {}),
        ("resnet50", keras.applications.ResNet50, {"include_top": False, "pooling": "max"}),
        ("resnet101", keras.applications.ResNet101, {}),
    ],
)
def test_layers_are_those_of_keras_applications(name, reference, kwargs):
    ours = kapps.models.build(name, **kwargs) if kwargs else _default(name)
    theirs = reference(weights=None, **kwargs)
    assert _layout(ours) == _layout(theirs)
    assert ours.get_layer("conv1_bn").epsilon == theirs.get_layer("conv1_bn").epsilon == 1.001e-5


def _save_legacy_weights(model, path):
    """The Keras-2 `.h5` layout of the keras.applications ImageNet files."""
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        save_weights_to_hdf5_group(f, model)


def test_imagenet_weights_load_from_the_keras_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def no_network(*args, **kwargs):
        raise AssertionError("the weights must come from the cache")

    monkeypatch.setattr(keras.utils, "get_file", no_network)
    keras.utils.set_random_seed(0)
    shape = (64, 64, 3)
    reference = keras.applications.ResNet50(weights=None, input_shape=shape, classifier_activation=None)
    rng = np.random.default_rng(0)
    # Random values in every weight, batch-norm statistics included: at the defaults (gamma = variance = 1,
    # beta = mean = 0, zero biases) a loader that swaps or drops them reads the same numbers.
    parity.randomise_weights(reference, rng.uniform(-120, 150, size=(8, *shape)).astype("float32"), seed=1)
    _save_legacy_weights(reference, tmp_path / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels.h5")
    model = kapps.models.build("resnet50", weights="imagenet", input_shape=shape, classifier_activation=None)
    for weight, loaded in zip(reference.weights, model.weights, strict=True):
        np.testing.assert_array_equal(loaded.numpy(), weight.numpy(), err_msg=weight.path)
    images = rng.uniform(-120, 150, size=(2, *shape)).astype("float32")  # caffe-style, as the file expects
    expected = keras.ops.convert_to_numpy(reference(images))
    assert np.std(expected) > 0.1
    np.testing.assert_allclose(model(images), expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_imagenet_weights_missing_offline_name_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(ModelError, match="Keras cache"):
        kapps.models.build("resnet50", weights="imagenet", include_top=False, input_shape=(64, 64, 3))


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("resnet18", {"weights": "imagenet"}, "only for the keras.applications architectures"),
        ("resnet50", {"weights": "imagenet", "conv_bias": False}, "Received: conv_bias=False"),
        ("resnet50", {"weights": "imagenet", "num_classes": 10}, "Received: num_classes=10"),
        ("resnet20", {"include_top": False, "pooling": "mean"}, "Received: pooling='mean'"),
    ],
)
def test_bad_arguments_name_the_argument(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        kapps.models.build(name, **kwargs)


def test_option_a_shortcut_subsamples_and_pads_zero_channels():
    x = np.random.default_rng(1).normal(size=(2, 7, 6, 16)).astype("float32")
    y = keras.ops.convert_to_numpy(ChannelPadShortcut(32, 2)(x))
    assert y.shape == (2, 4, 3, 32)
    np.testing.assert_array_equal(y[..., :16], x[:, ::2, ::2, :])
    np.testing.assert_array_equal(y[..., 16:], 0.0)
    assert ChannelPadShortcut(32, 2).compute_output_shape((None, 7, 6, 16)) == (None, 4, 3, 32)
    with pytest.raises(ValueError, match="cannot drop any"):
        ChannelPadShortcut(8, 2)(x)


def test_strided_convolution_is_centred_on_the_shortcut_pixels():
    # A 3x3, stride-2 convolution whose kernel is the identity at its centre must return x[:, ::2, ::2, :], the
    # pixels option A keeps; "same" padding would return x[:, 1::2, 1::2, :] on even sizes.
    inputs = keras.Input((8, 8, 4))
    model = keras.Model(inputs, resnet.basic_block(inputs, 4, stride=2, conv_shortcut=False, name="b"))
    kernel = np.zeros((3, 3, 4, 4), "float32")
    kernel[1, 1] = np.eye(4)
    model.get_layer("b_1_conv").set_weights([kernel])
    probe = keras.Model(inputs, model.get_layer("b_1_conv").output)
    x = np.random.default_rng(4).normal(size=(1, 8, 8, 4)).astype("float32")
    np.testing.assert_allclose(probe(x), x[:, ::2, ::2, :], atol=1e-6)
    np.testing.assert_allclose(keras.Model(inputs, model.get_layer("b_0_pad").output)(x), x[:, ::2, ::2, :])


def test_cifar_nets_have_option_a_shortcuts_and_plain_nets_none():
    model = kapps.models.build("resnet20")
    shapes = {layer.name: layer.output.shape[1:] for layer in model.layers[1:]}
    assert shapes["conv2_block3_out"] == (32, 32, 16)
    assert shapes["conv3_block1_0_pad"] == (16, 16, 32)
    assert shapes["conv4_block1_0_pad"] == (8, 8, 64)
    assert shapes["avg_pool"] == (64,)
    assert sum(isinstance(layer, ChannelPadShortcut) for layer in model.layers) == 2
    assert sum(isinstance(layer, keras.layers.Add) for layer in model.layers) == 9
    assert not any(layer.name.endswith("_0_conv") for layer in model.layers)
    plain = kapps.models.build("plain20")
    assert not any(isinstance(layer, (keras.layers.Add, ChannelPadShortcut)) for layer in plain.layers)
    assert [w.shape for w in plain.weights] == [w.shape for w in model.weights]
    # The 20 weighted layers of the paper: 19 convolutions and the dense layer.
    assert sum(isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) for layer in model.layers) == 20


def test_blocks_project_only_when_the_shape_changes():
    x = keras.Input((8, 8, 64))
    y = resnet.basic_block(x, 64, name="same")
    z = resnet.bottleneck_block(y, 32, stride=2, name="down")
    model = keras.Model(x, z)
    names = {layer.name for layer in model.layers}
    assert "same_0_conv" not in names
    assert {"down_0_conv", "down_0_bn"} <= names
    assert model.output_shape == (None, 4, 4, 128)
    with pytest.raises(ValueError, match="Received: block='wide'"):
        resnet.stage(x, "wide", 64, 2, name="bad")


def test_zero_init_residual_starts_each_block_as_its_shortcut():
    inputs = keras.Input((8, 8, 64))
    x = resnet.basic_block(inputs, 64, zero_init_residual=True, name="basic")
    x = resnet.bottleneck_block(x, 16, zero_init_residual=True, name="bneck")
    model = keras.Model(inputs, x)
    gammas = {layer.name: keras.ops.convert_to_numpy(layer.gamma) for layer in model.layers if "_bn" in layer.name}
    assert {name for name, gamma in gammas.items() if not gamma.any()} == {"basic_2_bn", "bneck_3_bn"}
    assert all((gamma == 1).all() for name, gamma in gammas.items() if name not in {"basic_2_bn", "bneck_3_bn"})
    # Each branch adds zero, so on a non-negative input (a ReLU's output) both blocks pass it through, in training
    # mode (batch statistics) as in inference.
    x = np.random.default_rng(5).uniform(size=(2, 8, 8, 64)).astype("float32")
    np.testing.assert_allclose(model(x, training=True), x, atol=1e-6)
    np.testing.assert_allclose(model(x), x, atol=1e-6)


def test_zero_init_residual_changes_no_weight_and_plain_nets_refuse_it():
    model = kapps.models.build("resnet50", zero_init_residual=True)
    assert [w.shape for w in model.weights] == [w.shape for w in _default("resnet50").weights]
    zeroed = [layer.name for layer in model.layers if "_bn" in layer.name and not keras.ops.any(layer.gamma)]
    assert len(zeroed) == 16 and all(name.endswith("_3_bn") for name in zeroed)  # one per bottleneck block
    with pytest.raises(ValueError, match="zero_init_residual needs residual=True"):
        kapps.models.build("plain20", zero_init_residual=True)


def test_saves_and_loads_in_safe_mode(tmp_path):
    model = kapps.models.build("resnet20", num_classes=4)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    x = np.random.default_rng(2).uniform(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(model(x), loaded(x), atol=1e-6)


@pytest.mark.parametrize(
    ("name", "kwargs", "size", "quantizations"),
    [
        # quantised on the small net only: the batch-norm folds are the same ops in both
        ("resnet20", {}, 32, ("dynamic", "int8")),
        ("resnet18", {"input_shape": (64, 64, 3), "num_classes": 10}, 64, ()),
    ],
)
def test_exports_match_keras_on_logits_with_trained_statistics(tmp_path, name, kwargs, size, quantizations):
    # Random gamma, beta, moving mean and variance, compared on logits: see tests/models/parity.py for the
    # tolerances and why the defaults would hide a converter that drops or mis-folds the statistics.
    keras.utils.set_random_seed(3)
    model = kapps.models.build(name, classifier_activation=None, **kwargs)
    rng = np.random.default_rng(3)
    calibration = parity.varied_images(rng, 16, size)
    parity.randomise_batch_norm(model, calibration, seed=0)
    images = parity.varied_images(rng, 8 if quantizations else 2, size)
    parity.assert_exports_match_logits(model, images, tmp_path, quantizations=quantizations, calibration=calibration)


def test_cifar_nets_use_batch_norm_momentum_0_9_and_save_it(tmp_path):
    model = kapps.models.build("resnet20")
    momenta = {layer.momentum for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)}
    assert momenta == {0.9}
    model.save(tmp_path / "r.keras")
    loaded = keras.saving.load_model(tmp_path / "r.keras", safe_mode=True)
    assert {layer.momentum for layer in loaded.layers if isinstance(layer, keras.layers.BatchNormalization)} == {0.9}
    assert kapps.models.build("plain20", bn_momentum=0.99).get_layer("conv1_bn").momentum == 0.99
    with pytest.raises(ValueError, match="bn_momentum must be in"):
        kapps.models.build("resnet20", bn_momentum=1.0)


def test_set_bn_momentum_reaches_nested_models_and_leaves_weights_alone():
    inner = kapps.models.build("resnet20", bn_momentum=0.99)
    outer = keras.Sequential([keras.Input((32, 32, 3)), inner, keras.layers.BatchNormalization(name="outer_bn")])
    before = [w.numpy() for w in outer.weights]
    assert kapps.models.set_bn_momentum(outer, 0.5) is outer
    assert outer.get_layer("outer_bn").momentum == 0.5 and inner.get_layer("conv1_bn").momentum == 0.5
    assert all((a == w.numpy()).all() for a, w in zip(before, outer.weights, strict=True))
