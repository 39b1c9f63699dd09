"""Segmentation metrics against numbers worked out by hand: the confusion matrix with the ignore label, pixel
accuracy, IoU and Dice per class and their means over the classes present, streamed over batches and inside
`Model.evaluate`; the boundary F-score on hand-drawn squares."""

from kapps.segmentation_metrics import (
    MeanDice,
    MeanIoU,
    PixelAccuracy,
    boundary_f_score,
    confusion_matrix,
    segmentation_scores,
)

import keras
import numpy as np
import pytest

# Two 2x3 masks; 255 is ignored. Counted pixels (truth, predicted): (0,0) (0,1) (1,1) (1,1) (2,1) | (3,3) (3,3)
# (0,0) (1,1) (1,2), class 4 in neither.
TRUTH = np.array([[[0, 0, 1], [1, 2, 255]], [[3, 3, 0], [1, 1, 255]]])
PREDICTED = np.array([[[0, 1, 1], [1, 1, 2]], [[3, 3, 0], [1, 2, 0]]])
CONFUSION = [
    [2, 1, 0, 0, 0],
    [0, 3, 1, 0, 0],
    [0, 1, 0, 0, 0],
    [0, 0, 0, 2, 0],
    [0, 0, 0, 0, 0],
]
# IoU = TP / (row + column - TP): 2/3, 3/6, 0/2, 2/2; Dice = 2 TP / (row + column): 4/5, 6/9, 0/2, 4/4
IOU = [2 / 3, 3 / 6, 0.0, 1.0]
DICE = [4 / 5, 6 / 9, 0.0, 1.0]


def test_confusion_matrix_counts_pixels_and_skips_the_ignore_label():
    np.testing.assert_array_equal(confusion_matrix(TRUTH, PREDICTED, num_classes=5), CONFUSION)
    # a truth outside the classes is not counted either
    assert confusion_matrix([7, 1], [1, 1], num_classes=5).sum() == 1


def test_scores_leave_out_classes_absent_from_truth_and_predictions():
    scores = segmentation_scores(CONFUSION)
    assert scores["pixel_accuracy"] == pytest.approx(7 / 10) and scores["pixels"] == 10
    assert scores["class_iou"][:4] == pytest.approx(IOU) and scores["class_iou"][4] is None
    assert scores["class_dice"][:4] == pytest.approx(DICE) and scores["class_dice"][4] is None
    assert scores["mean_iou"] == pytest.approx(np.mean(IOU))  # over 4 classes, not 5
    assert scores["mean_dice"] == pytest.approx(np.mean(DICE))
    assert segmentation_scores(np.zeros((3, 3)))["mean_iou"] is None


def one_hot_logits(classes: np.ndarray, num_classes: int = 5) -> np.ndarray:
    return np.eye(num_classes, dtype="float32")[classes] * 4.0 - 2.0


@pytest.mark.parametrize(
    ("metric", "expected"), [(PixelAccuracy, 0.7), (MeanIoU, np.mean(IOU)), (MeanDice, np.mean(DICE))]
)
def test_keras_metrics_stream_over_batches_from_scores_or_indices(metric, expected):
    from_scores = metric(num_classes=5)
    for i in range(2):  # one image a batch
        from_scores.update_state(TRUTH[i : i + 1, ..., None], one_hot_logits(PREDICTED[i : i + 1]))
    assert float(from_scores.result()) == pytest.approx(expected, abs=1e-6)
    np.testing.assert_array_equal(from_scores.confusion(), CONFUSION)
    assert from_scores.scores()["class_iou"][:4] == pytest.approx(IOU)
    from_indices = metric(num_classes=5)
    from_indices.update_state(TRUTH, PREDICTED)
    assert float(from_indices.result()) == pytest.approx(expected, abs=1e-6)
    from_indices.reset_state()
    assert float(from_indices.result()) == 0.0 and from_indices.confusion().sum() == 0
    restored = metric.from_config(from_scores.get_config())
    assert (restored.num_classes, restored.ignore_label, restored.name) == (5, 255, from_scores.name)


def test_mean_iou_agrees_with_keras_own_and_weights_scale_images():
    ours = MeanIoU(num_classes=5)
    ours.update_state(TRUTH, one_hot_logits(PREDICTED))
    theirs = keras.metrics.MeanIoU(num_classes=5, ignore_class=255, sparse_y_pred=False)
    theirs.update_state(TRUTH, one_hot_logits(PREDICTED))
    assert float(ours.result()) == pytest.approx(float(theirs.result()), abs=1e-6)
    weighted = MeanIoU(num_classes=5)
    weighted.update_state(TRUTH, PREDICTED, sample_weight=np.array([1.0, 0.0]))  # the second image weighs nothing
    np.testing.assert_array_equal(weighted.confusion(), confusion_matrix(TRUTH[:1], PREDICTED[:1], num_classes=5))


def test_metrics_work_in_model_evaluate():
    # the identity on one-hot logits: the model predicts PREDICTED, evaluated against TRUTH
    inputs = keras.Input((2, 3, 5))
    model = keras.Model(inputs, keras.layers.Activation("linear")(inputs))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255)
    model.compile(loss=loss, metrics=[MeanIoU(num_classes=5), PixelAccuracy(num_classes=5), MeanDice(num_classes=5)])
    logs = model.evaluate(one_hot_logits(PREDICTED), TRUTH, batch_size=1, verbose=0, return_dict=True)
    assert logs["mean_iou"] == pytest.approx(np.mean(IOU), abs=1e-6)
    assert logs["pixel_accuracy"] == pytest.approx(0.7, abs=1e-6)
    assert logs["mean_dice"] == pytest.approx(np.mean(DICE), abs=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="^num_classes must be an integer of at least 2"):
        MeanIoU(num_classes=1)
    with pytest.raises(ValueError, match=r"^y_pred must be scores \(B, H, W, C\) or class indices"):
        MeanIoU(num_classes=3).update_state(np.zeros((1, 4, 4)), np.zeros((1, 4)))


def square(x1: int, y1: int, x2: int, y2: int, *, size: int = 32, label: int = 1) -> np.ndarray:
    mask = np.zeros((size, size), np.int32)
    mask[y1:y2, x1:x2] = label
    return mask


def test_boundary_f_score_of_a_square_moved_by_one_pixel():
    truth, moved = square(5, 5, 15, 15), square(6, 5, 16, 15)
    perfect = boundary_f_score(truth, truth, num_classes=2)
    assert perfect["mean_bf"] == 1.0 and perfect["class_bf"] == [1.0, 1.0]
    # within one pixel every boundary pixel matches
    assert boundary_f_score(truth, moved, num_classes=2, tolerance=1)["mean_bf"] == 1.0
    # exact matches only: the square's 36 boundary pixels share the 9 + 9 of rows 5 and 14 at columns 6..14, so
    # P = R = 18/36; the background's 40 (4-neighbours of the square) share the 9 + 9 of rows 4 and 15: 18/40
    exact = boundary_f_score(truth, moved, num_classes=2, tolerance=0)
    assert exact["class_bf"] == pytest.approx([18 / 40, 18 / 36])
    assert exact["mean_bf"] == pytest.approx((18 / 40 + 18 / 36) / 2)


def test_boundary_f_score_counts_wrong_classes_and_skips_absent_ones():
    truth = square(5, 5, 15, 15)
    predicted = square(5, 5, 15, 15, label=2)  # the right shape, the wrong class
    result = boundary_f_score(truth, predicted, num_classes=4)
    # background matches; class 1 is only in the truth and class 2 only in the prediction: 0 each; class 3 absent
    assert result["class_bf"] == [1.0, 0.0, 0.0, None]
    assert result["mean_bf"] == pytest.approx(1 / 3)
    # two images: the mean over images, per class over the images it is in
    both = boundary_f_score(np.stack([truth, truth]), np.stack([truth, predicted]), num_classes=4)
    assert both["mean_bf"] == pytest.approx((1 + 1 / 3) / 2) and both["class_bf"][:3] == pytest.approx([1, 0.5, 0])
    assert both["images"] == 2


def test_boundary_f_score_with_ignored_pixels():
    # VOC: an object with a 2-pixel ignored band around it; a prediction that fills the band is right
    truth = square(5, 5, 15, 15, label=255)
    truth[7:13, 7:13] = 1
    result = boundary_f_score(truth, square(5, 5, 15, 15), num_classes=2)
    assert result["class_bf"] == [1.0, 1.0]
    # predicted edges on ignored pixels are not counted: a blob where the truth is unknown costs nothing ...
    truth = square(10, 10, 20, 20)
    truth[:6] = 255
    predicted = square(10, 10, 20, 20)
    predicted[1:4, 12:16] = 1
    assert boundary_f_score(truth, predicted, num_classes=2)["class_bf"][1] == 1.0
    # ... and the same blob where the truth is background costs its 10 edge pixels: P = 36 / 46, R = 1
    truth[:6] = 0
    expected = 2 * (36 / 46) / (36 / 46 + 1)
    assert boundary_f_score(truth, predicted, num_classes=2)["class_bf"][1] == pytest.approx(expected)
    with pytest.raises(ValueError, match="^truth and predicted must both be"):
        boundary_f_score(truth, predicted[None], num_classes=2)
