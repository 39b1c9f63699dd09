"""COCO-style AP through pycocotools on hand-built cases, and the DetectionMetrics callback inside model.fit.

Images are 100 x 100 pixels unless said otherwise, so a normalised coordinate of 0.01 is one pixel. pycocotools
(the reference evaluator) matches a detection at IoU threshold t when IoU >= t, interpolates precision as the
best precision at any recall >= r, and reads it at the 101 recall points 0, 0.01, ..., 1 (searchsorted "left":
recall point r takes the first detection whose cumulative recall reaches r).
"""

from __future__ import annotations

import csv
import math

import kapps.metrics as km

import keras
import numpy as np
import pytest
import tensorflow as tf

SIZE = (100, 100)
NAMES = ["circle", "square"]
A = [0.0, 0.0, 0.5, 0.5]  # 50 x 50 px: medium (32**2 < 2500 < 96**2)
B = [0.5, 0.5, 0.9, 0.9]  # 40 x 40 px: medium
SMALL = [0.1, 0.6, 0.3, 0.8]  # 20 x 20 px: small
FAR = [0.7, 0.0, 0.9, 0.2]  # overlaps neither A nor B
# Same left, top and width as A, 31.25 px tall instead of 50: IoU = 1562.5 / 2500 = 0.625 exactly, which passes
# the IoU thresholds 0.50, 0.55 and 0.60 and fails 0.65 ... 0.95 (0.625 keeps clear of the thresholds themselves,
# where floating-point rounding of a computed IoU of exactly 0.6 could fall either side).
A_625 = [0.0, 0.0, 0.5, 0.3125]


def approx(expected):
    """pycocotools computes precision as tp / (tp + fp + eps), so a perfect AP reads 1 - 2e-16."""
    return pytest.approx(expected, abs=1e-12)


def truth(boxes, classes, *, crowd=None, pad=0, **size):
    """Ground truth for one image, with `pad` padding rows as the detection sources write them."""
    boxes = np.array(list(boxes) + [[0.0] * 4] * pad, np.float32).reshape(-1, 4)
    item = {"boxes": boxes, "classes": np.array(list(classes) + [-1] * pad, np.int32), **size}
    if crowd is not None:
        item["crowd"] = np.array(list(crowd) + [False] * pad)
    return item


def found(boxes, scores, classes, *, pad=0):
    """Detections for one image, padded as the inference model pads them (boxes 0, scores 0, classes -1)."""
    count = len(scores)
    return {
        "boxes": np.array(list(boxes) + [[0.0] * 4] * pad, np.float32).reshape(-1, 4),
        "scores": np.array(list(scores) + [0.0] * pad, np.float32),
        "classes": np.array(list(classes) + [-1] * pad, np.int32),
        "num_detections": np.int32(count),
    }


def evaluate(ground_truth, detections, names=NAMES, **kwargs):
    return km.coco_evaluate(ground_truth, detections, class_names=names, image_size=SIZE, **kwargs)


def test_perfect_detections_score_one_and_empty_images_change_nothing():
    ground_truth = [truth([A, B], [0, 1], pad=3), truth([], [], pad=5), truth([SMALL], [0], pad=1)]
    detections = [found([B, A], [0.9, 0.8], [1, 0], pad=4), found([], [], [], pad=6), found([SMALL], [0.7], [0])]
    result = evaluate(ground_truth, detections)
    assert result["map"] == approx(1.0)
    assert result["map50"] == approx(1.0)
    assert result["map75"] == approx(1.0)
    assert result["map_small"] == approx(1.0)
    assert result["map_medium"] == approx(1.0)
    assert result["map_large"] is None  # no object above 96 x 96 px: pycocotools' -1
    assert result["per_class_ap"] == approx({"circle": 1.0, "square": 1.0})
    assert result["per_class_ap50"] == approx({"circle": 1.0, "square": 1.0})
    assert all(type(v) is float for k, v in result.items() if k.startswith("map") and v is not None)


def test_iou_0625_counts_at_three_of_ten_thresholds():
    result = evaluate([truth([A], [0])], [found([A_625], [0.9], [0])])
    # One object, one detection: AP is 1 at each threshold it passes (0.50, 0.55, 0.60) and 0 at the other 7.
    assert result["map50"] == approx(1.0)
    assert result["map75"] == approx(0.0)
    assert result["map"] == approx(3 / 10)


def test_false_positive_ranked_above_two_true_positives():
    result = evaluate([truth([A, B], [0, 0])], [found([FAR, A, B], [0.9, 0.8, 0.7], [0, 0, 0])])
    # By score: FP, TP, TP. Precision 0/1, 1/2, 2/3 at recall 0, 1/2, 1. The best precision at recall >= r is 2/3
    # for every r in [0, 1], so all 101 recall points read 2/3.
    assert result["map50"] == approx(2 / 3)
    assert result["map"] == approx(2 / 3)


def test_false_positive_between_two_true_positives_hand_computed_101_point_ap():
    result = evaluate([truth([A, B], [0, 0])], [found([A, FAR, B], [0.9, 0.8, 0.7], [0, 0, 0])])
    # By score: TP, FP, TP. Precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1. Interpolated: 1 for recall <= 0.5,
    # 2/3 above. Recall points 0.00 ... 0.50 are 51 points at 1, 0.51 ... 1.00 are 50 points at 2/3:
    # AP = (51 * 1 + 50 * 2/3) / 101 = 253 / 303 = 0.834983...
    assert result["map50"] == approx(253 / 303)
    assert result["map"] == approx(253 / 303)


def test_wrong_class_is_a_miss_and_its_class_has_no_ap():
    result = evaluate([truth([A], [0])], [found([A], [0.9], [1])])
    assert result["map"] == approx(0.0)
    assert result["map50"] == approx(0.0)
    assert result["per_class_ap"] == approx({"circle": 0.0, "square": None})


def test_per_class_ap_for_two_classes_of_different_quality():
    ground_truth = [truth([A], [0]), truth([A], [1])]
    detections = [found([A], [0.9], [0]), found([A_625], [0.9], [1])]
    result = evaluate(ground_truth, detections)
    assert result["per_class_ap"]["circle"] == approx(1.0)
    assert result["per_class_ap"]["square"] == approx(0.3)
    assert result["per_class_ap50"] == approx({"circle": 1.0, "square": 1.0})
    assert result["map"] == approx((1.0 + 0.3) / 2)
    assert result["map50"] == approx(1.0)


def test_no_detections_at_all_scores_zero():
    ground_truth = [truth([A, B], [0, 1], pad=2), truth([SMALL], [1])]
    empty = {"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0), "classes": np.zeros(0, np.int32)}
    result = evaluate(ground_truth, [found([], [], [], pad=4), empty])
    assert result["map"] == approx(0.0)
    assert result["map50"] == approx(0.0)
    assert result["per_class_ap"] == approx({"circle": 0.0, "square": 0.0})


def test_class_absent_from_ground_truth_is_left_out_of_the_mean():
    ground_truth = [truth([A, B], [0, 1])]
    detections = [found([FAR, A, B], [0.95, 0.9, 0.8], [2, 0, 1])]  # a "triangle" where there is none
    result = evaluate(ground_truth, detections, names=["circle", "square", "triangle"])
    assert result["per_class_ap"] == approx({"circle": 1.0, "square": 1.0, "triangle": None})
    assert result["map"] == approx(1.0)


def test_crowd_boxes_are_ignored():
    crowd_box = [0.5, 0.5, 1.0, 1.0]
    inside = [0.6, 0.6, 0.8, 0.8]  # IoU with the crowd box 400 / 2500 = 0.16; all of it inside the crowd box
    detections = [found([inside, A], [0.9, 0.8], [0, 0])]
    as_crowd = evaluate([truth([A, crowd_box], [0, 0], crowd=[False, True])], detections)
    # The crowd box is no object to find, and the detection on it is neither hit nor false positive.
    assert as_crowd["map"] == approx(1.0)
    as_object = evaluate([truth([A, crowd_box], [0, 0], crowd=[False, False])], detections)
    # As an ordinary object: FP then TP, precision 0 and 1/2 at recall 0 and 1/2; recall points 0 ... 0.5
    # (51 of 101) read 1/2, the rest 0: AP = 25.5 / 101.
    assert as_object["map"] == approx(25.5 / 101)


def test_per_image_size_decides_the_area_range():
    result = km.coco_evaluate([truth([A], [0], height=20, width=20)], [found([A], [0.9], [0])], class_names=NAMES)
    assert result["map_small"] == approx(1.0)  # 10 x 10 px
    assert result["map_medium"] is None


def test_quiet_unless_verbose(capsys):
    evaluate([truth([A], [0])], [found([A], [0.9], [0])])
    assert capsys.readouterr().out == ""
    evaluate([truth([A], [0])], [found([A], [0.9], [0])], verbose=True)
    assert "Average Precision" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ground_truth": [truth([A], [0])], "detections": []}, "one entry per image"),
        ({"ground_truth": [truth([A], [5])], "detections": [found([], [], [])]}, "class ids \\[5\\] and 2 class_names"),
        ({"ground_truth": [truth([A], [0])], "detections": [found([], [], [])], "image_size": None}, "image_size"),
    ],
)
def test_bad_arguments(kwargs, message):
    kwargs = {"image_size": SIZE, **kwargs}
    with pytest.raises(ValueError, match=message):
        km.coco_evaluate(class_names=NAMES, **kwargs)


class FixedDetections(keras.layers.Layer):
    """Test stand-in for a detector: the same detections for every image of the batch, whatever its pixels."""

    def __init__(self, boxes, scores, classes, **kwargs):
        super().__init__(**kwargs)
        self.boxes, self.scores, self.classes = boxes, scores, classes

    def call(self, images):
        batch = keras.ops.shape(images)[0]

        def tile(values, dtype):
            row = keras.ops.convert_to_tensor(np.array(values, dtype))[None]
            return keras.ops.repeat(row, batch, axis=0)

        return {
            "boxes": tile(self.boxes, np.float32),
            "scores": tile(self.scores, np.float32),
            "classes": tile(self.classes, np.int32),
            "num_detections": keras.ops.full((batch,), len(self.scores), "int32"),
        }


def fixed_detector(boxes, scores, classes) -> keras.Model:
    images = keras.Input((8, 8, 3))
    return keras.Model(images, FixedDetections(boxes, scores, classes)(images))


def validation_set(count=4, batch=2) -> tf.data.Dataset:
    images = np.random.default_rng(0).random((count, 8, 8, 3), np.float32)
    targets = {"boxes": np.tile(np.array([[A, [0.0] * 4]], np.float32), (count, 1, 1)), "classes": [[0, -1]] * count}
    return tf.data.Dataset.from_tensor_slices((images, targets)).batch(batch)


def test_evaluate_detector_and_collect_detections():
    model = fixed_detector([A_625, FAR], [0.9, 0.5], [0, 1])
    result = km.evaluate_detector(model, validation_set(), class_names=NAMES, limit=3)
    # In each image the circle is found at IoU 0.625 (AP 0.3, AP50 1); the square box has no square to match,
    # and with no square anywhere that class has no AP and stays out of the mean.
    assert result["per_class_ap"] == approx({"circle": 0.3, "square": None})
    assert result["map"] == approx(0.3)
    assert result["map50"] == approx(1.0)
    ground_truth, detections = km.collect_detections(model, validation_set(), limit=3)
    assert len(ground_truth) == len(detections) == 3
    np.testing.assert_array_equal(detections[2]["classes"], [0, 1])
    np.testing.assert_allclose(ground_truth[2]["boxes"][0], A)


def test_split_batch_drops_padding_rows():
    outputs = {
        "boxes": np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4),
        "scores": np.array([[0.9, 0.8, 0.0], [0.7, 0.0, 0.0]], np.float32),
        "classes": np.array([[1, 0, -1], [2, -1, -1]], np.int32),
        "num_detections": np.array([2, 1], np.int32),
    }
    first, second = km.split_batch(outputs)
    np.testing.assert_array_equal(first["classes"], [1, 0])
    np.testing.assert_array_equal(second["boxes"], [[12, 13, 14, 15]])


def test_callback_writes_map_into_the_logs_of_fit(tmp_path):
    # Three inference models of known quality on 4 images, each holding one circle at A, handed out in turn:
    # exact boxes (AP 1); a far false positive scored above the exact box in every image (by score: 4 FP, then TPs
    # at precision 1/5, 2/6, 3/7, 4/8; interpolated 1/2 at every recall point: AP50 1/2); wrong class (AP 0).
    detectors = [
        fixed_detector([A], [0.9], [0]),
        fixed_detector([FAR, A], [0.9, 0.8], [0, 0]),
        fixed_detector([A], [0.9], [1]),
    ]
    built = []

    def inference_model(training_model):
        assert isinstance(training_model, keras.Model)
        built.append(detectors[len(built)])
        return built[-1]

    images = keras.Input((8, 8, 3))
    model = keras.Model(images, keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(images)))
    model.compile(optimizer="sgd", loss="mse")
    train = tf.data.Dataset.from_tensor_slices((np.zeros((4, 8, 8, 3), np.float32), np.zeros((4, 1)))).batch(2)
    metrics = km.DetectionMetrics(validation_set(), class_names=NAMES, inference_model=inference_model, every=3)
    history_file = tmp_path / "history.csv"
    callbacks = [
        metrics,
        keras.callbacks.ModelCheckpoint(tmp_path / "best.keras", monitor="val_map50", mode="max", save_best_only=True),
        keras.callbacks.CSVLogger(str(history_file)),
    ]
    history = model.fit(train, epochs=4, callbacks=callbacks, shuffle=False, verbose=0)
    # Epoch 1: the first of this fit; 2: skipped, repeats epoch 1; 3: every third; 4: the last.
    assert len(built) == 3
    assert history.history["val_map50"] == approx([1.0, 1.0, 0.5, 0.0])
    assert history.history["val_map"] == approx([1.0, 1.0, 0.5, 0.0])
    with history_file.open() as f:
        rows = list(csv.DictReader(f))
    assert [float(row["val_map50"]) for row in rows] == approx([1.0, 1.0, 0.5, 0.0])
    assert (tmp_path / "best.keras").exists()


def test_callback_identity_model_and_nan_without_ground_truth():
    model = fixed_detector([A], [0.9], [0])
    images = np.zeros((2, 8, 8, 3), np.float32)
    empty = {"boxes": np.zeros((2, 1, 4), np.float32), "classes": np.full((2, 1), -1, np.int32)}
    callback = km.DetectionMetrics(
        tf.data.Dataset.from_tensor_slices((images, empty)).batch(2), class_names=NAMES, prefix="test_"
    )
    callback.set_model(model)
    callback.set_params({"epochs": 1})
    logs = {}
    callback.on_epoch_end(0, logs)
    assert set(logs) == {"test_map", "test_map50"}
    assert math.isnan(logs["test_map50"])


def test_callback_rejects_bad_every():
    with pytest.raises(ValueError, match="every=0"):
        km.DetectionMetrics(validation_set(), class_names=NAMES, every=0)
