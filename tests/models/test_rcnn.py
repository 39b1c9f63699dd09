"""kapps.models.detection.rcnn and rcnn_heads: hard negative mining, the SVMs' training sets, the box regression
targets, and an `RCNN` that saves, loads and detects like the other kapps detectors."""

import re

from kapps.data.regions import scene_arrays
from kapps.data.scenes import load_shapes
from kapps.detection import decode
from kapps.metrics import evaluate_detector
from kapps.models.detection import rcnn_heads
from kapps.models.detection.rcnn import RCNN, RCNNSettings, feature_model

import keras
import numpy as np
import pytest
import tensorflow as tf


def test_hard_negatives_are_the_uncached_ones_above_the_margin():
    scores = np.array([-3.0, -1.0, -0.5, 0.7, 2.0, -0.9])
    cached = np.array([False, False, True, False, False, False])
    # -1.0 sits on the margin (not hard), -0.5 is hard but cached already.
    np.testing.assert_array_equal(rcnn_heads.hard_negatives(scores, cached), [3, 4, 5])
    np.testing.assert_array_equal(rcnn_heads.hard_negatives(scores, cached, threshold=0.0), [3, 4])
    with pytest.raises(ValueError, match="one entry per negative"):
        rcnn_heads.hard_negatives(scores, cached[:2])


def test_train_svm_mines_the_negatives_that_the_first_cache_missed():
    # Positives around x = +1; many easy negatives around x = -3 and a few hard ones at x = +0.3, which a first cache
    # of 20 random negatives misses. Mining must add them, and the final SVM must reject them.
    rng = np.random.default_rng(0)
    positives = np.column_stack([rng.normal(1.0, 0.05, 50), rng.normal(0, 1, 50)])
    easy = np.column_stack([rng.normal(-3.0, 0.05, 2000), rng.normal(0, 1, 2000)])
    hard = np.column_stack([rng.normal(0.3, 0.05, 10), rng.normal(0, 1, 10)])
    negatives = np.concatenate([easy, hard]).astype("float32")
    svm, log = rcnn_heads.train_svm(positives, negatives, C=10.0, first_negatives=20, seed=0)
    assert log[0] == {"cached": 20, "added": 20, "dropped": 0}
    assert len(log) >= 2 and log[1]["added"] >= 10
    assert np.all(svm(hard)[:, 0] < 0) and np.all(svm(positives)[:, 0] > 0)
    without_mining, _ = rcnn_heads.train_svm(positives, negatives, C=10.0, first_negatives=20, rounds=0, seed=0)
    assert np.sum(without_mining(hard)[:, 0] > 0) > 0  # the first cache alone lets some hard negatives through


def test_fit_svms_takes_true_boxes_as_positives_and_proposals_below_0_3_as_negatives(monkeypatch):
    regions = {
        "is_gt": np.array([True, True, False, False, False, False]),
        "class": np.array([0, 1, 0, 1, 0, -1]),
        "class_iou": np.array([[1, 0], [0, 1], [0.7, 0], [0.2, 0.35], [0.29, 0], [0, 0]], "float32"),
    }
    seen = []

    def record(positives, negatives, **options):
        seen.append((positives[:, 0].tolist(), sorted(negatives[:, 0].tolist())))
        return rcnn_heads.Linear(np.zeros((1, 1), "float32"), np.zeros(1, "float32")), [{"cached": len(negatives)}]

    monkeypatch.setattr(rcnn_heads, "train_svm", record)
    features = np.arange(6, dtype="float32")[:, None] + 1  # row i has feature i + 1, before scaling
    svms, logs = rcnn_heads.fit_svms(features, regions, num_classes=2)
    scale = svms.scale
    np.testing.assert_allclose(scale, 20.0 / 3.5)
    # class 0: true box row 0; negatives rows 3, 4 (IoU < 0.3), 5; not row 2 (0.7). class 1: row 1; rows 2, 4, 5.
    np.testing.assert_allclose(seen[0][0], [1 * scale], rtol=1e-6)
    np.testing.assert_allclose(seen[0][1], [4 * scale, 5 * scale, 6 * scale], rtol=1e-6)
    np.testing.assert_allclose(seen[1][0], [2 * scale], rtol=1e-6)
    np.testing.assert_allclose(seen[1][1], [3 * scale, 5 * scale, 6 * scale], rtol=1e-6)
    assert svms.weights.shape == (1, 2) and logs[1] == [{"cached": 3}]


def test_box_targets_are_the_papers_and_decode_inverts_them():
    proposal = [[0.2, 0.2, 0.6, 0.4]]  # centre (0.4, 0.3), size 0.4 x 0.2
    truth = [[0.3, 0.2, 0.7, 0.6]]  # centre (0.5, 0.4), size 0.4 x 0.4
    targets = rcnn_heads.box_targets(proposal, truth)
    np.testing.assert_allclose(targets, [[0.1 / 0.4, 0.1 / 0.2, 0.0, np.log(2.0)]], atol=1e-6)
    rng = np.random.default_rng(1)
    corners = rng.uniform(0, 0.6, (2, 40, 2))
    proposals, boxes = np.concatenate([corners, corners + rng.uniform(0.05, 0.4, (2, 40, 2))], -1).astype("float32")
    back = decode(rcnn_heads.box_targets(proposals, boxes), proposals, variances=(1, 1, 1, 1))
    np.testing.assert_allclose(np.asarray(back), boxes, atol=1e-6)


def test_box_regressors_learn_each_class_from_its_near_proposals_only():
    rng = np.random.default_rng(2)
    n = 400
    corners = rng.uniform(0.1, 0.5, (n, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(0.1, 0.3, (n, 2))], 1).astype("float32")
    true_boxes = boxes + rng.normal(0, 0.02, (n, 4)).astype("float32")
    targets = rcnn_heads.box_targets(boxes, true_boxes)
    features = np.concatenate([targets, rng.normal(0, 1, (n, 4))], 1)  # the targets are in the features
    regions = {
        "is_gt": np.arange(n) < 10,
        "iou": np.where(np.arange(n) % 4 == 0, 0.5, 0.8),  # every 4th too far to learn from
        "class": np.zeros(n, int),
        "boxes": boxes,
        "gt_boxes": true_boxes,
    }
    regressors, counts = rcnn_heads.fit_box_regressors(features, regions, num_classes=2, alpha=1e-3)
    assert counts == {0: int(np.sum((np.arange(n) >= 10) & (np.arange(n) % 4 != 0))), 1: 0}
    predicted = regressors(features)
    np.testing.assert_allclose(predicted[:, :4], targets, atol=1e-3)
    assert np.all(predicted[:, 4:] == 0)  # no class-1 proposal: no move


@pytest.fixture(scope="module")
def scenes():
    return scene_arrays(load_shapes(image_size=(96, 96), sizes=(0, 0, 3), seed=1).test)


@pytest.fixture(scope="module")
def pipeline():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((24, 24, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    cnn = keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="predictions")(x))
    rng = np.random.default_rng(0)
    svms = rcnn_heads.Linear(rng.normal(0, 1, (4, 3)).astype("float32"), np.full(3, 0.5, "float32"), scale=3.0)
    boxes = rcnn_heads.Linear(rng.normal(0, 0.01, (11 * 11 * 4, 12)).astype("float32"), np.zeros(12, "float32"))
    settings = RCNNSettings(context=4, max_proposals=50, score_threshold=-5.0, max_detections=20)
    return RCNN(cnn, class_names=["circle", "square", "triangle"], svms=svms, boxes=boxes, settings=settings)


def test_features_are_fc7_and_pool5_places(pipeline):
    extractor = feature_model(pipeline.cnn)
    assert [tuple(output.shape) for output in extractor.outputs] == [(None, 4), (None, 11, 11, 4)]


def test_rcnn_saves_and_loads_to_identical_detections(pipeline, scenes, tmp_path):
    images = scenes[0].astype("float32") / 255.0
    before = pipeline(images)
    assert before["boxes"].shape == (3, 20, 4) and before["classes"].shape == (3, 20)
    assert np.all(before["num_detections"] > 0)
    for i, count in enumerate(before["num_detections"]):
        assert np.all(np.diff(before["scores"][i, :count]) <= 0) and np.all(before["classes"][i, count:] == -1)
    folder = pipeline.save(tmp_path / "rcnn")
    assert sorted(p.name for p in folder.iterdir()) == ["cnn.keras", "heads.npz", "rcnn.json"]
    with np.load(folder / "heads.npz", allow_pickle=False) as heads:  # plain arrays, no pickles
        assert sorted(heads) == [
            "boxes_bias",
            "boxes_scale",
            "boxes_weights",
            "svms_bias",
            "svms_scale",
            "svms_weights",
        ]
    loaded = RCNN.load(folder)
    assert loaded.settings == pipeline.settings and loaded.class_names == pipeline.class_names
    after = loaded(images)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])


def test_rcnn_is_evaluated_by_the_detectors_evaluation(pipeline, scenes):
    images, boxes, classes = scenes
    dataset = tf.data.Dataset.from_tensor_slices(
        (images.astype("float32") / 255.0, {"boxes": boxes, "classes": np.minimum(classes, 2)})
    ).batch(2)
    result = evaluate_detector(pipeline, dataset, class_names=pipeline.class_names)
    assert 0.0 <= result["map50"] <= 1.0


def test_rcnn_refuses_heads_of_the_wrong_size(pipeline):
    message = "svms must score 2 classes and boxes regress 4 numbers for each. Received: svms (4, 3), boxes (484, 12)"
    with pytest.raises(ValueError, match=re.escape(message)):
        RCNN(pipeline.cnn, class_names=["a", "b"], svms=pipeline.svms, boxes=pipeline.boxes)
