"""Backbones: every classifier's body as named feature maps with the strides and channels the registry declares,
and weights that carry between a classifier, its backbone and a detector built on it."""

import kapps.models
from kapps.errors import ModelError

import h5py
import keras
import numpy as np
import pytest

# One of each layout whose layer names differ: batch norm or not, LRN or not, basic or bottleneck blocks.
REPRESENTATIVES = [
    "lenet5",
    "vgg11_lrn",
    "vgg16_bn",
    "googlenet",
    "googlenet_paper",
    "inception_v3",
    "resnet10_narrow",
    "resnet18",
    "resnet50",
    "resnet20",
    "plain20",
    "darknet24",
    "darknet_small",
]
STEP = 64  # more input pixels: a map of stride s grows by STEP / s, whatever the valid convolutions cut


def test_every_image_classifier_offers_a_backbone():
    classifiers = kapps.models.list_models(task="classification")
    images = {name for name in classifiers if len(kapps.models.info(name).input_shape) == 3}
    assert set(kapps.models.list_backbones()) == images
    # sequence classifiers (steps, features) have no feature maps
    assert {"rnn_classifier", "lstm_classifier", "gru_classifier"} == set(classifiers) - images
    assert "yolo_v1" not in kapps.models.list_backbones()


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_maps_have_the_declared_strides_and_channels(name):
    info = kapps.models.info(name)
    channels = info.input_shape[-1]
    model = kapps.models.backbone(name, input_shape=(None, None, channels))
    assert model.name == f"{name}_backbone"
    assert list(model.output) == [f.name for f in info.feature_maps]
    base = 96 if name == "inception_v3" else 64  # inception_v3 takes at least 75x75
    small = model.compute_output_spec(keras.KerasTensor((1, base, base + STEP, channels)))
    large = model.compute_output_spec(keras.KerasTensor((1, base + STEP, base + 2 * STEP, channels)))
    for feature in info.feature_maps:
        rows = large[feature.name].shape[1] - small[feature.name].shape[1]
        columns = small[feature.name].shape[2] - small[feature.name].shape[1]
        assert rows * feature.stride == STEP and columns * feature.stride == STEP, feature
        assert small[feature.name].shape[-1] == feature.channels, feature


def test_a_backbone_shares_the_classifiers_layer_names_and_weight_order():
    classifier = kapps.models.build("resnet50")
    body = kapps.models.backbone("resnet50")
    top = {"avg_pool", "predictions"}
    assert [layer.name for layer in body.layers] == [layer.name for layer in classifier.layers if layer.name not in top]
    without_top = kapps.models.build("resnet50", include_top=False)
    assert [w.path for w in body.weights] == [w.path for w in without_top.weights]


def _randomised(model, seed):
    """Random weights everywhere, batch-norm statistics included, so that a mix-up of any two shows."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in model.get_weights()])
    return model


@pytest.mark.parametrize(
    ("name", "shape", "kwargs"), [("resnet20", (32, 32, 3), {}), ("vgg11_bn", (32, 32, 3), {"fc_units": 8})]
)
def test_weights_of_a_trained_classifier_give_its_features(tmp_path, name, shape, kwargs):
    classifier = _randomised(kapps.models.build(name, input_shape=shape, num_classes=4, **kwargs), 1)
    path = tmp_path / "classifier.keras"
    classifier.save(path)
    body = kapps.models.backbone(name, input_shape=shape, weights=path)
    images = np.random.default_rng(2).uniform(size=(2, *shape)).astype("float32")
    got = body(images)
    for feature in kapps.models.feature_maps(name):
        expected = keras.Model(classifier.input, classifier.get_layer(feature.layer).output)(images)
        np.testing.assert_allclose(got[feature.name], expected, rtol=1e-5, atol=1e-5, err_msg=feature.name)
    # A backbone saved as .weights.h5 loads into the same backbone.
    body.save_weights(tmp_path / "body.weights.h5")
    again = kapps.models.backbone(name, input_shape=shape, weights=tmp_path / "body.weights.h5", maps=["C2"])
    np.testing.assert_allclose(again(images)["C2"], got["C2"], rtol=1e-6)


def test_imagenet_weights_load_without_the_top(tmp_path, monkeypatch):
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    reference = _randomised(keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3)), 3)
    (tmp_path / "models").mkdir()
    with h5py.File(tmp_path / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", "w") as f:
        save_weights_to_hdf5_group(f, reference)
    body = kapps.models.backbone("resnet50", input_shape=(64, 64, 3), weights="imagenet", maps=["C4", "C5"])
    images = np.random.default_rng(4).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    expected = keras.Model(reference.input, reference.get_layer("conv4_block6_out").output)(images)
    np.testing.assert_allclose(body(images)["C4"], expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(body(images)["C5"], reference(images), rtol=1e-4, atol=1e-4)


def test_a_pretrained_backbone_moves_into_a_detector():
    classifier = kapps.models.build("darknet_small", input_shape=(48, 48, 3), num_classes=4, batch_norm=True)
    for layer in classifier.layers:
        if layer.weights:
            layer.set_weights([np.full(w.shape, 0.5, np.float32) for w in layer.get_weights()])
    detector = kapps.models.build(
        "yolo_v1", input_shape=(112, 112, 3), num_classes=4, backbone="small", batch_norm=True, head="conv"
    )
    copied = kapps.models.transfer_backbone(classifier, detector, backbone_name="darknet_small", batch_norm=True)
    assert copied == 18  # 9 convolutions and their batch norms
    np.testing.assert_array_equal(detector.get_layer("backbone_conv5").get_weights()[0], 0.5)
    assert not np.all(detector.get_layer("grid").get_weights()[0] == 0.5)


def test_stages_split_the_body_at_the_maps():
    model = kapps.models.build("resnet20")
    stages = kapps.models.stage_layers(model, kapps.models.feature_maps("resnet20"))
    assert [len(s) > 0 for s in stages] == [True, True, True]
    assert all(name.startswith("conv4_") for name in stages[2])
    assert {"conv4_block1_1_conv", "conv4_block3_out"} <= set(stages[2])
    assert "image" in stages[0] and "conv1_conv" in stages[0]
    assert not {"avg_pool", "predictions"} & {name for stage in stages for name in stage}


def test_bad_requests_are_one_sentence():
    with pytest.raises(ModelError, match="'yolo_v1' has no backbone feature maps; models with them: darknet24"):
        kapps.models.backbone("yolo_v1")
    with pytest.raises(ModelError, match="has the maps C0, C1, C2 and no map or layer named C5"):
        kapps.models.backbone("resnet20", maps=["C5"])
    with pytest.raises(ValueError, match="pooling belongs to the classifier's head"):
        kapps.models.backbone("resnet20", pooling="avg")
    with pytest.raises(ModelError, match="does not exist"):
        kapps.models.backbone("resnet20", weights="/nonexistent.keras")
    other = kapps.models.build("lenet5")
    with pytest.raises(ModelError, match="has no layer 'conv1_conv'"):
        kapps.models.copy_weights(other, kapps.models.build("resnet20"), layers=["conv1_conv"])


def test_vgg_fully_connected_layers_become_the_equal_convolutions():
    from kapps.models.vgg import fully_convolutional

    keras.utils.set_random_seed(5)
    classifier = kapps.models.build("vgg11", input_shape=(64, 64, 3), num_classes=3, fc_units=16)
    fcn = fully_convolutional(classifier)
    assert fcn.get_layer("fc6").kernel.shape == (2, 2, 512, 16)  # fc1 read the flattened 2x2x512 pool5
    image = np.random.default_rng(6).uniform(size=(1, 64, 64, 3)).astype("float32")
    scores = fcn(image)["scores"]
    assert scores.shape == (1, 1, 1, 3)
    np.testing.assert_allclose(scores[0, 0, 0], classifier(image)[0], rtol=1e-5, atol=1e-6)
    larger = fcn(np.random.default_rng(7).uniform(size=(1, 128, 160, 3)).astype("float32"))
    assert larger["scores"].shape == (1, 3, 4, 3) and larger["C4"].shape == (1, 8, 10, 512)
    np.testing.assert_allclose(np.asarray(larger["scores"]).sum(-1), 1.0, rtol=1e-5)  # a softmax per window
    with pytest.raises(ValueError, match="classifier must be a VGG with its top"):
        fully_convolutional(kapps.models.build("vgg11", input_shape=(64, 64, 3), include_top=False))
