"""The detection kind: detections compared pair by pair, checked by shape, listed in pixels, scored by COCO AP."""

from kapps.errors import ModelError
from kapps.kinds import PredictOptions, detection, kind_for

import keras
import numpy as np
import pytest
import tensorflow as tf


def detections(boxes, scores, classes, k=3):
    """One image's detector outputs, padded to k rows as the inference models pad them."""
    n = len(scores)
    padded_boxes = np.zeros((1, k, 4), "float32")
    padded_boxes[0, :n] = np.reshape(boxes, (-1, 4))
    return {
        "boxes": padded_boxes,
        "scores": np.array([list(scores) + [0.0] * (k - n)], "float32"),
        "classes": np.array([list(classes) + [-1] * (k - n)], "int32"),
        "num_detections": np.array([n], "int32"),
    }


def stack(*images):
    return {k: np.concatenate([d[k] for d in images]) for k in images[0]}


def test_detections_are_compared_row_by_row_not_as_raw_tensors():
    reference = detections([[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]], [0.9, 0.8], [0, 2])
    close = detections([[0.1005, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]], [0.9008, 0.8], [0, 2])
    close["boxes"][0, 2] = 0.7  # a padding row differs: it is not a detection, so it does not count
    result = detection.compare_detections(close, reference, exact=True)
    assert result["detection_agreement"] == 1.0 and result["count_agreement"] == 1.0
    assert result["max_box_diff"] == pytest.approx(0.0005, abs=1e-7)
    assert result["max_score_diff"] == pytest.approx(0.0008, abs=1e-7)
    assert result["max_abs_diff"] == result["max_score_diff"]


def test_detections_disagree_on_count_class_box_or_score():
    reference = detections([[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]], [0.9, 0.8], [0, 2])
    other_class = detections([[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]], [0.9, 0.8], [0, 1])
    moved = detections([[0.1, 0.1, 0.5, 0.5], [0.62, 0.6, 0.9, 0.9]], [0.9, 0.8], [0, 2])
    fewer = detections([[0.1, 0.1, 0.5, 0.5]], [0.9], [0])
    got = stack(reference, other_class, moved, fewer)
    result = detection.compare_detections(got, stack(*[reference] * 4), exact=True)
    assert result["detection_agreement"] == 0.25  # only the first image
    assert result["count_agreement"] == 0.75
    assert result["max_box_diff"] == pytest.approx(0.02, abs=1e-6)
    # Quantised rule: the moved box still overlaps at IoU 0.28 * 0.3 / (0.3 * 0.3) = 0.933 >= 0.5, same class.
    loose = detection.compare_detections(got, stack(*[reference] * 4), exact=False)
    assert loose["detection_agreement"] == 0.5


def test_quantised_detections_pair_in_any_order_at_iou_half():
    reference = detections([[0.0, 0.0, 0.4, 0.4], [0.5, 0.5, 1.0, 1.0]], [0.9, 0.8], [1, 1])
    swapped = detections([[0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 0.4, 0.4]], [0.81, 0.79], [1, 1])
    # IoU of [0, 0, 0.4, 0.4] and [0, 0, 0.4, 0.2] is 0.5 exactly: still a pair; [0, 0, 0.4, 0.19] is 0.475: not.
    half = detections([[0.0, 0.0, 0.4, 0.2], [0.5, 0.5, 1.0, 1.0]], [0.9, 0.8], [1, 1])
    under = detections([[0.0, 0.0, 0.4, 0.19], [0.5, 0.5, 1.0, 1.0]], [0.9, 0.8], [1, 1])
    result = detection.compare_detections(stack(swapped, half, under), stack(*[reference] * 3), exact=False)
    assert result["detection_agreement"] == pytest.approx(2 / 3)
    assert detection.compare_detections(swapped, reference, exact=True)["detection_agreement"] == 0.0


def test_float_detections_pair_in_any_order_and_may_differ_at_the_score_threshold():
    three = [[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9], [0.2, 0.6, 0.3, 0.7]]
    reference = detections(three, [0.5, 0.5, 0.0105], [0, 1, 2])
    # the two near-equal scores swap places, and the detection just above the threshold (0.01) falls below it
    swapped = detections([[0.6, 0.6, 0.9, 0.9], [0.1, 0.1, 0.5, 0.5]], [0.5002, 0.4999], [1, 0])
    # a detection well above the threshold may not go missing, nor may an extra one appear
    missing = detections([[0.1, 0.1, 0.5, 0.5], [0.2, 0.6, 0.3, 0.7]], [0.5, 0.0105], [0, 2])
    extra = detections(three, [0.5, 0.5, 0.02], [0, 1, 2])
    result = detection.compare_detections(
        stack(swapped, missing, extra), stack(*[reference] * 3), exact=True, score_threshold=0.01
    )
    assert result["detection_agreement"] == pytest.approx(1 / 3)
    # without a threshold to be near, the dropped detection counts against the first image too
    assert detection.compare_detections(swapped, reference, exact=True)["detection_agreement"] == 0.0


def test_float_detections_may_differ_at_the_cut_of_an_image_whose_rows_are_full():
    boxes = [[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9], [0.2, 0.6, 0.3, 0.7]]
    reference = detections(boxes, [0.9, 0.4, 0.3], [0, 1, 2])  # 3 detections in 3 rows: the count cut them
    # the third candidate and a fourth scored 0.3 within 1e-8: the other runtime kept the fourth
    other_third = detections([*boxes[:2], [0.0, 0.0, 0.2, 0.2]], [0.9, 0.4, 0.3], [0, 1, 0])
    # well above the lowest score, a detection may not be exchanged
    other_second = detections([boxes[0], [0.0, 0.0, 0.2, 0.2], boxes[2]], [0.9, 0.4, 0.3], [0, 0, 2])
    result = detection.compare_detections(stack(other_third, other_second), stack(reference, reference), exact=True)
    assert result["detection_agreement"] == 0.5
    # with a free row the third detection was not cut by the count, so it may not go missing
    roomy = detection.compare_detections(
        detections(other_third["boxes"][0], [0.9, 0.4, 0.3], [0, 1, 0], k=4),
        detections(boxes, [0.9, 0.4, 0.3], [0, 1, 2], k=4),
        exact=True,
    )
    assert roomy["detection_agreement"] == 0.0


def test_quantised_detections_are_compared_above_the_score_floor():
    reference = detections([[0.0, 0.0, 0.4, 0.4], [0.5, 0.5, 1.0, 1.0]], [0.9, 0.02], [1, 0])
    # the low-scoring detection is lost and another appears below the floor (0.25): the image still agrees
    tail_moved = detections([[0.0, 0.0, 0.4, 0.4], [0.1, 0.6, 0.2, 0.7]], [0.88, 0.2], [1, 2])
    # a detection above the floor that Keras does not have: disagrees
    new_above = detections([[0.0, 0.0, 0.4, 0.4], [0.1, 0.6, 0.2, 0.7]], [0.88, 0.3], [1, 2])
    result = detection.compare_detections(stack(tail_moved, new_above), stack(reference, reference), exact=False)
    assert result["detection_agreement"] == 0.5 and detection.QUANTIZED_SCORE_FLOOR == 0.25


def test_no_detections_anywhere_agree():
    empty = detections([], [], [])
    result = detection.compare_detections(empty, empty, exact=True)
    assert result == {
        "detection_agreement": 1.0,
        "count_agreement": 1.0,
        "max_box_diff": 0.0,
        "max_score_diff": 0.0,
        "max_abs_diff": 0.0,
    }


KIND = kind_for("detection")


def test_outputs_are_checked_by_shape():
    good = {"boxes": (2, 5, 4), "scores": (2, 5), "classes": (2, 5), "num_detections": (2,)}
    KIND.check(good, what="'d'")
    KIND.check({k: (None, *v[1:]) for k, v in good.items()}, what="'d'")  # a Keras model's free batch axis
    with pytest.raises(ModelError, match=r"'d' has outputs that the detection kind does not compare \(masks\)"):
        KIND.check({**good, "masks": (2, 5, 28, 28)}, what="'d'")
    for bad in ({**good, "boxes": (2, 5, 5)}, {**good, "scores": (2, 6)}, {"predictions": (2, 10)}):
        with pytest.raises(ModelError, match=r"^'d' is not a detector: its outputs are .*num_detections \(B,\)\.$"):
            KIND.check(bad, what="'d'")


def test_compare_states_its_verdict_by_the_criterion():
    reference = detections([[0.1, 0.1, 0.5, 0.5]], [0.9], [0])
    moved = detections([[0.12, 0.1, 0.5, 0.5]], [0.9], [0])  # IoU 0.95: a quantised artifact may do this
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])  # no NMS layer: no score threshold
    float_entry = KIND.compare(moved, reference, quantized=False, model=model)
    quantized_entry = KIND.compare(moved, reference, quantized=True, model=model)
    assert (float_entry["passed"], quantized_entry["passed"]) == (False, True)
    assert float_entry["max_box_diff"] == pytest.approx(0.02, abs=1e-6) and float_entry["top1_agreement"] is None
    assert KIND.agreement(float_entry) == 0.0 and KIND.agreement(quantized_entry) == 1.0
    assert "IoU >= 0.5" in KIND.criterion(quantized=True) and "90%" in KIND.criterion(quantized=True)
    assert "within 0.001" in KIND.criterion(quantized=False)


def test_result_lists_detections_in_pixels_above_the_threshold():
    outputs = detections([[0.1, 0.2, 0.5, 1.2], [0.0, 0.0, 0.1, 0.1], [0.5, 0.5, 0.6, 0.6]], [0.3, 0.9, 0.1], [1, 0, 1])
    fields = KIND.result(
        outputs, class_name=["cat", "dog"].__getitem__, width=200, height=100, options=PredictOptions()
    )
    assert fields == {
        "detections": [
            {"box": [0.0, 0.0, 20.0, 10.0], "class_id": 0, "class": "cat", "score": pytest.approx(0.9)},
            {"box": [20.0, 20.0, 100.0, 100.0], "class_id": 1, "class": "dog", "score": pytest.approx(0.3)},
        ]
    }
    assert KIND.summary({"task": "detection", **fields}) == "2 detections, cat 0.90, dog 0.30"


class Answers:
    """A stand-in detector that returns fixed detections for every image, as an inference model's dict."""

    def __init__(self, outputs):
        self.outputs = {k: tf.constant(v) for k, v in outputs.items()}

    def __call__(self, images, training=False):
        return self.outputs


def test_evaluate_is_coco_ap_of_the_detections():
    boxes = np.array([[[0.1, 0.1, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0]]], "float32")
    targets = {"boxes": boxes, "classes": np.array([[1, -1]], "int32")}
    dataset = tf.data.Dataset.from_tensor_slices((np.zeros((1, 32, 32, 3), "float32"), targets)).batch(1)
    right = Answers(detections([[0.1, 0.1, 0.5, 0.5]], [0.8], [1]))
    wrong_class = Answers(detections([[0.1, 0.1, 0.5, 0.5]], [0.8], [0]))
    assert KIND.evaluate(right, dataset, class_names=["a", "b"])["map50"] == pytest.approx(1.0)
    assert KIND.evaluate(wrong_class, dataset, class_names=["a", "b"])["map50"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="class_names must name each class id"):
        KIND.evaluate(right, dataset)


def test_the_description_says_what_the_difference_is_over():
    # Nothing pairs when every class differs: the difference of 0 is over no detections, and the line says so.
    reference = detections([[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]], [0.9, 0.8], [0, 2])
    other = detections([[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9], [0.2, 0.2, 0.3, 0.3]], [0.9, 0.8, 0.7], [1, 1, 1])
    entry = detection.compare_detections(stack(reference, other), stack(reference, reference), exact=True)
    assert KIND.describe(entry) == (
        "max abs diff 0 over the paired detections, the same number of detections on 50.0% of images, detections "
        "agree on 50.0%"
    )
