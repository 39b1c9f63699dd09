"""Transfer-learning helpers on a small resnet20: cut, freeze, new head, unfreeze the top blocks."""

import kapps.models
from kapps.train.transfer import attach_head, block_names, cut_backbone, freeze, last_stage, unfreeze_top

import keras
import numpy as np
import pytest

SHAPE = (16, 16, 1)
CONV4 = {f"conv4_block{b}_{i}_conv" for b in (1, 2, 3) for i in (1, 2)}


def weighted(model, *, trainable):
    return {layer.name for layer in model.layers if layer.weights and layer.trainable == trainable}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A resnet20 trained for a few steps on random images, saved and loaded back as the recipe does."""
    keras.utils.set_random_seed(0)
    model = kapps.models.build("resnet20", input_shape=SHAPE, num_classes=4)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    images = np.random.default_rng(0).random((32, *SHAPE), dtype="float32")
    model.fit(images, np.arange(32) % 4, batch_size=16, epochs=2, verbose=0)
    path = tmp_path_factory.mktemp("transfer") / "model.keras"
    model.save(path)
    return model, path, images


def test_a_cut_backbone_gives_the_original_pooled_features(trained):
    model, path, images = trained
    backbone = cut_backbone(keras.saving.load_model(path, compile=False, safe_mode=True))
    assert backbone.output.shape == (None, 64) and backbone.name == "resnet20_backbone"
    pooled = keras.Model(model.input, model.get_layer("avg_pool").output)
    np.testing.assert_allclose(backbone.predict(images, verbose=0), pooled.predict(images, verbose=0), atol=1e-5)
    named = cut_backbone(model, features="conv3_block3_out")
    assert named.output.shape == (None, 8, 8, 32)
    with pytest.raises(ValueError, match="features must name a layer of 'resnet20'. Received: features='nope'"):
        cut_backbone(model, features="nope")


def test_frozen_backbone_with_a_new_head_trains_only_the_head(trained):
    _, path, images = trained
    model = attach_head(freeze(cut_backbone(keras.saving.load_model(path, compile=False))), num_classes=7)
    assert model.output.shape == (None, 7) and model.name == "resnet20"
    assert weighted(model, trainable=True) == {"predictions"}
    assert [w.path for w in model.trainable_weights] == ["predictions/kernel", "predictions/bias"]
    assert model.get_layer("predictions").dtype_policy.compute_dtype == "float32"
    probabilities = model.predict(images[:4], verbose=0)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)
    maps = attach_head(cut_backbone(model, features="conv4_block3_out"), num_classes=2, dropout=0.5, name="maps")
    assert maps.get_layer("head_pool") and maps.get_layer("head_dropout") and maps.output.shape == (None, 2)
    with pytest.raises(ValueError, match="num_classes must be a positive integer. Received: num_classes=0"):
        attach_head(cut_backbone(model), num_classes=0)


def test_unfreeze_top_opens_exactly_the_last_stage(trained):
    _, path, images = trained
    model = attach_head(freeze(cut_backbone(keras.saving.load_model(path, compile=False))), num_classes=3)
    assert block_names(model) == [f"conv{s}_block{b}" for s in (2, 3, 4) for b in (1, 2, 3)]
    assert last_stage(model) == ["conv4_block1", "conv4_block2", "conv4_block3"]
    unfrozen = unfreeze_top(model)
    assert set(unfrozen) == CONV4  # batch normalisation stays frozen; option-A shortcuts have no weights
    assert weighted(model, trainable=True) == CONV4 | {"predictions"}
    assert len(model.trainable_weights) == 6 + 2

    # One step changes the unfrozen convolutions and the head, and nothing else (not even BN statistics).
    before = {w.path: np.array(w) for w in model.weights}
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    model.fit(images, np.arange(32) % 3, batch_size=32, epochs=1, verbose=0)
    changed = {w.path.split("/")[0] for w in model.weights if not np.array_equal(before[w.path], np.array(w))}
    assert changed == CONV4 | {"predictions"}


def test_unfreeze_a_number_of_blocks_and_batch_norm(trained):
    model = attach_head(freeze(cut_backbone(trained[0], name="b")), num_classes=3)
    assert unfreeze_top(model, 1) == ["conv4_block3_1_conv", "conv4_block3_2_conv"]
    model = attach_head(freeze(cut_backbone(trained[0], name="b")), num_classes=3)
    with_bn = unfreeze_top(model, 4, train_batch_norm=True)
    assert with_bn[:4] == ["conv3_block3_1_conv", "conv3_block3_1_bn", "conv3_block3_2_conv", "conv3_block3_2_bn"]
    assert len(with_bn) == 16
    with pytest.raises(ValueError, match="blocks must be None or an integer from 1 to 9. Received: blocks=10"):
        unfreeze_top(model, 10)
