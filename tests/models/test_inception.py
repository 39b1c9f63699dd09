"""GoogLeNet and Inception v3: counts from the papers' tables, auxiliary heads, keras.applications compatibility."""

import urllib.error

import kapps.models
import kapps.models.inception
from kapps.errors import ModelError
from kapps.models.inception import GOOGLENET_MODULES, googlenet, googlenet_paper, inception_module, inception_v3

import h5py
import keras
import numpy as np
import pytest

from tests.models import parity

# Table 1 of Szegedy et al. 2015, typed in again here: input channels, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5,
# pool proj, so the counts below do not depend on kapps' own table.
TABLE_1 = {
    "3a": (192, 64, 96, 128, 16, 32, 32),
    "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64),
    "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64),
    "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}


def _conv(cin, cout, k, batch_norm):
    # bias-free kernel + gamma and beta, or kernel + bias
    return k * k * cin * cout + (2 * cout if batch_norm else cout)


def googlenet_count(*, batch_norm: bool, k5: int) -> int:
    total = _conv(3, 64, 7, batch_norm) + _conv(64, 64, 1, batch_norm) + _conv(64, 192, 3, batch_norm)
    for cin, c1, r3, c3, r5, c5, proj in TABLE_1.values():
        total += _conv(cin, c1, 1, batch_norm) + _conv(cin, r3, 1, batch_norm) + _conv(r3, c3, 3, batch_norm)
        total += _conv(cin, r5, 1, batch_norm) + _conv(r5, c5, k5, batch_norm) + _conv(cin, proj, 1, batch_norm)
    return total + 1024 * 1000 + 1000


def aux_head_count(cin: int, num_classes: int, *, batch_norm: bool = True) -> int:
    # 4x4x128 after the 5x5/3 pooling of a 14x14 map (224x224 input)
    return _conv(cin, 128, 1, batch_norm) + 2048 * 1024 + 1024 + 1024 * num_classes + num_classes


def test_googlenet_counts_by_arithmetic():
    assert googlenet_count(batch_norm=True, k5=3) == 6_624_904  # torchvision googlenet, aux_logits=False
    assert googlenet_count(batch_norm=True, k5=5) == 7_005_832
    assert googlenet_count(batch_norm=False, k5=5) == 6_998_552  # the paper's form
    # torchvision's googlenet with its aux heads: 13,004,888
    assert 6_624_904 + aux_head_count(512, 1000) + aux_head_count(528, 1000) == 13_004_888


def test_googlenet_matches_torchvision_count():
    model = googlenet()
    assert kapps.models.count_params(model, "trainable") == 6_624_904
    assert kapps.models.info("googlenet").count_kind == "trainable"
    assert model.get_layer("inception_3a_5x5").kernel.shape == (3, 3, 16, 32)


def test_googlenet_paper_form():
    model = googlenet_paper()
    assert model.count_params() == googlenet_count(batch_norm=False, k5=5) == 6_998_552
    assert model.get_layer("inception_3a_5x5").kernel.shape == (5, 5, 16, 32)
    assert {"pool1_lrn", "conv2_lrn"} <= {layer.name for layer in model.layers}
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    assert kapps.models.count_params(googlenet(branch_5x5_kernel=5), "trainable") == 7_005_832


def test_googlenet_grid_follows_table_1():
    model = googlenet()
    shapes = {layer.name: layer.output.shape[1:] for layer in model.layers[1:]}
    assert shapes["pool1"] == (56, 56, 64)
    assert shapes["pool2"] == (28, 28, 192)
    expected = {"3a": 256, "3b": 480, "4a": 512, "4b": 512, "4c": 512, "4d": 528, "4e": 832, "5a": 832, "5b": 1024}
    grid = {"3": 28, "4": 14, "5": 7}
    for stage, channels in expected.items():
        assert shapes[f"inception_{stage}"] == (grid[stage[0]], grid[stage[0]], channels)
    assert list(GOOGLENET_MODULES) == list(TABLE_1)
    assert model.output_shape == (None, 1000)
    assert model.get_layer("dropout").rate == 0.4


def test_inception_module_concatenates_four_branches():
    x = keras.Input((28, 28, 192))
    y = inception_module(
        x,
        filters_1x1=64,
        filters_3x3_reduce=96,
        filters_3x3=128,
        filters_5x5_reduce=16,
        filters_5x5=32,
        pool_proj=32,
        batch_norm=False,
        branch_5x5_kernel=5,
        name="m",
    )
    assert y.shape == (None, 28, 28, 256)
    cin, c1, r3, c3, r5, c5, proj = TABLE_1["3a"]
    module = keras.Model(x, y)
    assert module.count_params() == sum(
        _conv(*a, False) for a in ((cin, c1, 1), (cin, r3, 1), (r3, c3, 3), (cin, r5, 1), (r5, c5, 5), (cin, proj, 1))
    )


def test_aux_heads_are_extra_outputs_and_leave_the_main_one_unchanged():
    plain = googlenet()
    model = googlenet(aux_logits=True)
    assert model.output_names == ["aux1", "aux2", "predictions"]
    assert len(model.outputs) == 3
    extra = aux_head_count(512, 1000) + aux_head_count(528, 1000)
    assert kapps.models.count_params(model, "trainable") == 6_624_904 + extra == 13_004_888
    aux_layers = {layer.name for layer in model.layers if layer.name.startswith(("aux1", "aux2"))}
    assert {layer.name for layer in model.layers} - aux_layers == {layer.name for layer in plain.layers}
    assert model.get_layer("aux1_pool").output.shape[1:] == (4, 4, 512)
    assert model.get_layer("aux2_dropout").rate == 0.7


def sparse_crossentropy(probabilities, labels) -> float:
    """Mean -log p(label), written here rather than taken from Keras."""
    probabilities = np.asarray(probabilities, "float64")
    return float(-np.mean(np.log(probabilities[np.arange(len(labels)), labels])))


def test_aux_heads_train_with_loss_weights():
    keras.utils.set_random_seed(0)
    model = googlenet(input_shape=(96, 96, 3), num_classes=5, aux_logits=True, dropout=0.0)
    # No dropout (the auxiliary heads' 70% has no option), so the training-mode pass below is the very one the
    # train step makes: batch statistics are deterministic, dropout masks are not.
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0
    model.compile(
        optimizer="sgd",
        run_eagerly=True,  # one step: tracing the train function would cost more than running it
        loss=dict.fromkeys(model.output_names, "sparse_categorical_crossentropy"),
        loss_weights={"aux1": 0.3, "aux2": 0.3, "predictions": 1.0},
    )
    images = np.random.default_rng(0).uniform(size=(4, 96, 96, 3)).astype("float32")
    labels = np.array([0, 1, 2, 3])
    targets = dict.fromkeys(model.output_names, labels)
    before = {head: sparse_crossentropy(p, labels) for head, p in model(images, training=True).items()}
    logs = model.train_on_batch(images, targets, return_dict=True)
    # train_on_batch reports the losses of the pass before its update: each head's own, and their sum weighted
    # as the paper trains (section 5), main + 0.3 (aux1 + aux2).
    for head, loss in before.items():
        assert logs[f"{head}_loss"] == pytest.approx(loss, rel=1e-5)
    assert logs["loss"] == pytest.approx(before["predictions"] + 0.3 * (before["aux1"] + before["aux2"]), rel=1e-5)
    assert abs(logs["loss"] - sum(before.values())) > 0.5  # what unweighted heads would report
    after = {head: sparse_crossentropy(p, labels) for head, p in model(images, training=True).items()}
    assert after["predictions"] + 0.3 * (after["aux1"] + after["aux2"]) < logs["loss"]  # the step descends
    predictions = model(images, training=False)
    assert set(predictions) == {"aux1", "aux2", "predictions"}
    assert all(v.shape == (4, 5) and v.dtype == "float32" for v in predictions.values())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"branch_5x5_kernel": 4}, "branch_5x5_kernel must be 3 or 5. Received: branch_5x5_kernel=4"),
        ({"aux_logits": True, "include_top": False}, "aux_logits=True needs include_top=True"),
        ({"aux_logits": True, "input_shape": (64, 64, 3)}, "aux_logits=True needs a known input of at least 65x65"),
        ({"dropout": 1.0}, "dropout must be in"),
        ({"weights": "imagenet"}, "weights='imagenet' is offered only"),
    ],
)
def test_googlenet_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        googlenet(**kwargs)


def test_inception_v3_is_keras_applications_layer_for_layer():
    model = inception_v3()
    reference = keras.applications.InceptionV3(weights=None)
    assert model.count_params() == reference.count_params() == 23_851_784
    assert [w.shape for w in model.weights] == [w.shape for w in reference.weights]
    ours = [type(layer).__name__ for layer in model.layers if layer.weights]
    theirs = [type(layer).__name__ for layer in reference.layers if layer.weights]
    assert ours == theirs
    assert not any(layer.scale for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    for name in (*(f"mixed{i}" for i in range(11)), "avg_pool", "predictions"):
        assert model.get_layer(name).output.shape == reference.get_layer(name).output.shape
    assert model.get_layer("mixed4_7x7_1").kernel.shape == (1, 7, 128, 128)


def test_inception_v3_loads_keras_imagenet_file_offline(tmp_path, monkeypatch):
    from keras.src.legacy.saving import legacy_h5_format

    # the top file (the notop one differs only by `predictions`), compared on logits
    shape = (75, 75, 3)
    reference = keras.applications.InceptionV3(weights=None, input_shape=shape, classifier_activation=None)
    rng = np.random.default_rng(0)
    # random weights everywhere, so a layer loaded into the wrong place shows in the outputs
    values = [
        rng.uniform(0.5, 1.5, w.shape) if "variance" in w.path else rng.normal(0, 0.1, w.shape)
        for w in reference.weights
    ]
    reference.set_weights(values)
    info = kapps.models.inception.INCEPTION_V3_IMAGENET
    (tmp_path / "models").mkdir()
    with h5py.File(tmp_path / "models" / info.top, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, reference)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    model = inception_v3(weights="imagenet", input_shape=shape, classifier_activation=None)
    images = rng.uniform(-1, 1, size=(2, *shape)).astype("float32")
    expected = keras.ops.convert_to_numpy(reference(images))
    assert np.std(expected) > 0.1
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(images)), expected, rtol=1e-4, atol=1e-4)


def test_inception_v3_imagenet_without_cache_says_so(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(ModelError, match="not in the Keras cache"):
        inception_v3(weights="imagenet", include_top=False, input_shape=(75, 75, 3))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_shape": (74, 75, 3)}, "input_shape must be at least 75x75"),
        ({"weights": "imagenet", "num_classes": 10}, "needs num_classes=1000"),
        ({"include_top": False, "pooling": "sum"}, "pooling must be None, 'avg' or 'max'"),
    ],
)
def test_inception_v3_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        inception_v3(**kwargs)


def test_inception_v3_without_top():
    assert inception_v3(include_top=False, input_shape=(75, 75, 3)).output_shape == (None, 1, 1, 2048)
    assert inception_v3(include_top=False, pooling="avg", input_shape=(None, None, 3)).output_shape == (None, 2048)


# The converters' time (TFLite, tf2onnx: ~60 and ~95 convolutions) hardly depends on the input, so the smallest
# inputs the nets take (GoogLeNet's grid ends at 1x1 from 32x32) and two images; float only, as the quantised
# batch-norm folds are checked on resnet20 and vgg16_c.
@pytest.mark.parametrize(("builder", "size"), [(googlenet, 32), (inception_v3, 75)])
def test_exports_match_keras_on_logits_with_trained_statistics(tmp_path, builder, size):
    keras.utils.set_random_seed(1)
    model = builder(input_shape=(size, size, 3), num_classes=10, classifier_activation=None)
    rng = np.random.default_rng(2)
    # Inception v3's batch norm has no gamma (scale=False, as keras'): beta, mean and variance are random.
    parity.randomise_batch_norm(model, parity.varied_images(rng, 8, size), seed=0)
    parity.assert_exports_match_logits(model, parity.varied_images(rng, 2, size), tmp_path)
