"""Transfer-learning helpers on a small resnet20: its backbone with trained weights, frozen, a new head, the top
stages unfrozen."""

import kapps.models
from kapps.train.transfer import attach_head, freeze, unfreeze_top

import keras
import numpy as np
import pytest

SHAPE = (16, 16, 1)
MAPS = kapps.models.feature_maps("resnet20")
CONV4 = {f"conv4_block{b}_{i}_conv" for b in (1, 2, 3) for i in (1, 2)}
CONV3 = {f"conv3_block{b}_{i}_conv" for b in (1, 2, 3) for i in (1, 2)}


def weighted(model, *, trainable):
    return {layer.name for layer in model.layers if layer.weights and layer.trainable == trainable}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A resnet20 trained for a few steps on random images, saved as a run folder's model.keras is."""
    keras.utils.set_random_seed(0)
    model = kapps.models.build("resnet20", input_shape=SHAPE, num_classes=4)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    images = np.random.default_rng(0).random((32, *SHAPE), dtype="float32")
    model.fit(images, np.arange(32) % 4, batch_size=16, epochs=2, verbose=0)
    path = tmp_path_factory.mktemp("transfer") / "model.keras"
    model.save(path)
    return model, path, images


def backbone(path):
    return kapps.models.backbone("resnet20", input_shape=SHAPE, weights=path)


def test_a_new_head_on_the_backbone_is_the_classifier_again(trained):
    model, path, images = trained
    rebuilt = attach_head(backbone(path), num_classes=4)
    assert rebuilt.name == "resnet20" and rebuilt.output.shape == (None, 4)
    rebuilt.get_layer("predictions").set_weights(model.get_layer("predictions").get_weights())
    np.testing.assert_allclose(rebuilt.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-5)


def test_frozen_backbone_with_a_new_head_trains_only_the_head(trained):
    _, path, images = trained
    model = attach_head(freeze(backbone(path)), num_classes=7)
    assert model.output.shape == (None, 7)
    assert weighted(model, trainable=True) == {"predictions"}
    assert [w.path for w in model.trainable_weights] == ["predictions/kernel", "predictions/bias"]
    assert model.get_layer("predictions").dtype_policy.compute_dtype == "float32"
    np.testing.assert_allclose(model.predict(images[:4], verbose=0).sum(-1), 1.0, rtol=1e-5)
    maps = attach_head(backbone(path), num_classes=2, dropout=0.5, feature_map="C1", name="maps")
    assert maps.get_layer("head_pool").input.shape == (None, 8, 8, 32) and maps.get_layer("head_dropout")
    assert "conv4_block1_1_conv" not in {layer.name for layer in maps.layers}
    with pytest.raises(ValueError, match="num_classes must be a positive integer. Received: num_classes=0"):
        attach_head(backbone(path), num_classes=0)
    with pytest.raises(
        ValueError, match="feature_map must be one of \\['C0', 'C1', 'C2'\\]. Received: feature_map='C5'"
    ):
        attach_head(backbone(path), num_classes=2, feature_map="C5")


def test_unfreeze_top_opens_exactly_the_last_stage(trained, tmp_path):
    _, path, images = trained
    model = attach_head(freeze(backbone(path)), num_classes=3)
    model.save(tmp_path / "frozen.keras")  # the recipe fine-tunes phase 1's saved model
    model = keras.saving.load_model(tmp_path / "frozen.keras", compile=False, safe_mode=True)
    unfrozen = unfreeze_top(model, MAPS)
    assert set(unfrozen) == CONV4  # batch normalisation stays frozen; option-A shortcuts have no weights
    assert weighted(model, trainable=True) == CONV4 | {"predictions"}
    assert len(model.trainable_weights) == 6 + 2

    # One step changes the unfrozen convolutions and the head, and nothing else (not even BN statistics).
    before = {w.path: np.array(w) for w in model.weights}
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    model.fit(images, np.arange(32) % 3, batch_size=32, epochs=1, verbose=0)
    changed = {w.path.split("/")[0] for w in model.weights if not np.array_equal(before[w.path], np.array(w))}
    assert changed == CONV4 | {"predictions"}


def test_unfreeze_two_stages_and_batch_norm(trained):
    model = attach_head(freeze(backbone(trained[1])), num_classes=3)
    with_bn = unfreeze_top(model, MAPS, stages=2, train_batch_norm=True)
    assert set(with_bn) >= CONV3 | CONV4 and "conv3_block1_1_bn" in with_bn
    assert len(with_bn) == 24  # 12 convolutions and their batch norms
    with pytest.raises(ValueError, match="stages must be an integer from 1 to 3. Received: stages=4"):
        unfreeze_top(model, MAPS, stages=4)
