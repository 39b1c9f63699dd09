"""The semantic-mask kind: class maps compared pixel by pixel (float: every decisive pixel; quantised: 99% of pixels
and mean IoU within 0.01), predict JSON as COCO RLE per class at the image's size, the overlay picture, and the
evaluation's numbers."""

import io
import json

from kapps.errors import ModelError
from kapps.kinds import PredictOptions, kind_for, semantic_masks
from kapps.segmentation_metrics import boundary_f_score, confusion_matrix, segmentation_scores

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from pycocotools import mask as mask_utils

KIND = kind_for("segmentation")


def scores_of(classes: np.ndarray, num_classes: int = 3, *, lead: float = 0.5) -> np.ndarray:
    """Softmax-like scores (B, H, W, C) whose best class is `classes`, leading the others by `lead`."""
    scores = np.full((*classes.shape, num_classes), (1 - lead) / num_classes, "float32")
    np.put_along_axis(scores, classes[..., None], (1 - lead) / num_classes + lead, axis=-1)
    return scores


def halves(size: int = 20) -> np.ndarray:
    """One image, class 0 on the left half and 1 on the right."""
    classes = np.zeros((1, size, size), "int64")
    classes[:, :, size // 2 :] = 1
    return classes


def test_the_kind_is_recognised_by_its_task_and_checks_the_output():
    assert isinstance(KIND, semantic_masks.SemanticMasks) and KIND.legend == "pixels with Keras's class"
    KIND.check({"scores": (None, 8, 8, 3)}, what="'m'")
    for bad in ({"p": (None, 10)}, {"p": (None, 8, 8, 1)}, {"a": (None, 8, 8, 3), "b": (None, 8, 8, 3)}, {}):
        with pytest.raises(ModelError, match=r"^'m' is not a semantic segmenter: its outputs are .*, not one \(B, H"):
            KIND.check(bad, what="'m'")


def test_float_artifacts_agree_on_every_pixel_keras_decides():
    expected = scores_of(halves())
    expected[0, 3, 3] = [0.40004, 0.39998, 0.19998]  # class 0 leads by 6e-5: a float difference may swap it
    expected[0, 5, 5] = [0.4002, 0.3998, 0.2]  # leads by 4e-4: decided
    swapped = expected.copy()
    swapped[0, 3, 3] = [0.39998, 0.40004, 0.19998]
    entry = KIND.compare({"s": swapped}, {"s": expected}, quantized=False, model=None)
    assert entry["passed"] and entry["decisive_pixel_agreement"] == 1.0
    assert entry["pixel_agreement"] == pytest.approx(399 / 400) and entry["decisive_pixels"] == pytest.approx(399 / 400)
    assert entry["max_abs_diff"] == pytest.approx(6e-5, rel=1e-3) and entry["top1_agreement"] is None
    swapped[0, 5, 5] = [0.3998, 0.4002, 0.2]
    entry = KIND.compare({"s": swapped}, {"s": expected}, quantized=False, model=None)
    assert not entry["passed"] and entry["decisive_pixel_agreement"] == pytest.approx(398 / 399)
    assert KIND.criterion(quantized=False) == (
        "the class is Keras's on every pixel where Keras's best score leads the second by more than 0.0001"
    )


def test_quantised_artifacts_need_99_percent_of_pixels_and_mean_iou_within_001():
    keras_map = halves()
    expected = {"s": scores_of(keras_map)}

    def compare(classes):
        return KIND.compare({"s": scores_of(classes)}, expected, quantized=True, model=None)

    edge = keras_map.copy()
    edge[0, :2, 10] = 0  # two of 400 pixels move across the edge: IoU 200/202 and 198/200
    entry = compare(edge)
    assert entry["pixel_agreement"] == pytest.approx(398 / 400)
    assert entry["mean_iou"] == pytest.approx((200 / 202 + 198 / 200) / 2) and entry["passed"]
    # a small class vanishing keeps 99.25% of the pixels but not the mean IoU
    keras_map[0, 5:8, 15] = 2
    expected = {"s": scores_of(keras_map)}
    entry = compare(halves())
    assert entry["pixel_agreement"] == pytest.approx(397 / 400)
    assert entry["mean_iou"] == pytest.approx((1 + 197 / 200 + 0) / 3) and not entry["passed"]
    # five pixels wrong: 98.75%, below 99%, although the mean IoU stays at 0.99
    spread = keras_map.copy()
    spread[0, 10:15, 4] = 1
    entry = compare(spread)
    assert entry["pixel_agreement"] == pytest.approx(395 / 400) and not entry["passed"]
    assert KIND.describe(entry).startswith("max abs diff 0.5, Keras's class on 98.75% of pixels")
    assert KIND.agreement(entry) == entry["pixel_agreement"]


def test_thresholds_are_read_where_documented(monkeypatch):
    keras_map = halves()
    moved = keras_map.copy()
    moved[0, :6, 10] = 0  # 98.5% of the pixels
    monkeypatch.setattr(semantic_masks, "QUANTIZED_PIXELS", 0.98)
    monkeypatch.setattr(semantic_masks, "QUANTIZED_IOU_DROP", 0.05)
    assert KIND.compare({"s": scores_of(moved)}, {"s": scores_of(keras_map)}, quantized=True, model=None)["passed"]
    assert KIND.criterion(quantized=True) == (
        "the class is Keras's on at least 98% of the pixels and the mean IoU against Keras's class map is at least 0.95"
    )


def test_class_maps_are_resized_as_tensorflow_resizes_masks():
    classes = np.random.default_rng(0).integers(0, 5, (7, 5))
    for size in [(13, 9), (3, 2), (20, 11)]:
        expected = tf.image.resize(classes[..., None], size, method="nearest").numpy()[..., 0]
        np.testing.assert_array_equal(semantic_masks.resize_class_map(classes, height=size[0], width=size[1]), expected)


def test_predict_json_has_one_rle_per_class_at_the_image_size():
    classes = np.array([[[0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 0, 0]]])  # 3x4, class 1 absent
    outputs = {"scores": scores_of(classes)}
    names = ["background", "circle", "square"]
    entry = KIND.result(outputs, class_name=names.__getitem__, width=8, height=6, options=PredictOptions())
    entry = json.loads(json.dumps(entry))  # the JSON form
    assert [(m["class_id"], m["class"], m["pixels"]) for m in entry["mask"]] == [
        (0, "background", 32),
        (2, "square", 16),
    ]
    big = np.repeat(np.repeat(classes[0], 2, axis=0), 2, axis=1)  # twice the rows and columns
    for m in entry["mask"]:
        assert m["rle"]["size"] == [6, 8]
        decoded = mask_utils.decode({"size": m["rle"]["size"], "counts": m["rle"]["counts"].encode("ascii")})
        np.testing.assert_array_equal(decoded, big == m["class_id"])
    assert KIND.summary(entry) == "2 classes: background 66.7%, square 33.3%"
    drawn, plain = io.BytesIO(), io.BytesIO()
    pixels = np.full((6, 8, 3), 255, "uint8")
    KIND.draw(pixels, entry, drawn)
    KIND.draw(pixels, {"mask": []}, plain)
    assert drawn.getvalue().startswith(b"\x89PNG")
    # the square's class colour tints the white image where it is, nowhere when nothing is drawn
    tinted = np.asarray(Image.open(drawn).convert("RGB")).astype(int)
    untinted = np.asarray(Image.open(plain).convert("RGB")).astype(int)
    assert tinted.shape == untinted.shape and np.abs(tinted - untinted).sum(-1).max() > 100


def test_evaluate_gives_pixel_accuracy_iou_dice_and_boundary_f_score():
    # the model returns its input: images are one-hot class scores, so the prediction is known
    inputs = keras.Input((12, 12, 3))
    model = keras.Model(inputs, keras.layers.Activation("linear")(inputs))
    rng = np.random.default_rng(1)
    truth = np.zeros((5, 12, 12), "int32")
    truth[:, 3:9, 2:8] = 1
    truth[:, 8:, 8:] = 2
    truth[0, 0, 0] = 255
    predicted = np.where(rng.random(truth.shape) < 0.1, rng.integers(0, 3, truth.shape), np.minimum(truth, 2))
    images = np.eye(3, dtype="float32")[predicted]
    dataset = tf.data.Dataset.from_tensor_slices((images, truth)).batch(2)
    result = KIND.evaluate(model, dataset, class_names=["background", "a", "b"])
    expected = segmentation_scores(confusion_matrix(truth, predicted, num_classes=3))
    assert {k: result[k] for k in expected} == expected  # the same counts, batch by batch
    assert result["boundary_f_score"] == pytest.approx(boundary_f_score(truth, predicted, num_classes=3)["mean_bf"])
    assert result["count"] == 5 and result["class_names"] == ["background", "a", "b"]
    assert 0.5 < result["mean_iou"] < 1.0 and result["pixels"] == 5 * 144 - 1
    assert KIND.evaluate(model, dataset, limit=3)["count"] == 3
