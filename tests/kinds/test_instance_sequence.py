"""The instance-sequence kind on hand-made outputs: which outputs fit, the count and mask comparison with its
borderline rule, the predict fields in step order, the drawing, and the CVPPP scores of `evaluate`."""

import io

from kapps.errors import ModelError
from kapps.instance_metrics import leaf_scores
from kapps.kinds import PredictOptions, instance_sequence, kind_for

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

KIND = kind_for("instance_sequence")


def outputs(confidences, masks) -> dict:
    """Outputs as the model makes them: counts from the confidences, masks zeroed from the stop on."""
    confidences = np.asarray(confidences, "float32")
    keep = np.cumprod(confidences >= 0.5, axis=1).astype("float32")
    masks = np.asarray(masks, "float32") * keep[:, :, None, None]
    return {"masks": masks, "confidences": confidences, "count": keep.sum(axis=1)}


def two_images():
    rng = np.random.default_rng(0)
    masks = rng.uniform(0, 1, (2, 3, 4, 4)).astype("float32")
    return outputs([[0.9, 0.8, 0.2], [0.7, 0.3, 0.9]], masks)


def test_check_wants_masks_confidences_and_count():
    KIND.check({"masks": (None, 20, 64, 64), "confidences": (None, 20), "count": (None,)}, what="'m'")
    for bad in (
        {"masks": (None, 20, 64, 64), "confidences": (None, 19), "count": (None,)},
        {"masks": (None, 20, 64, 64), "confidences": (None, 20)},
        {"boxes": (None, 5, 4)},
    ):
        with pytest.raises(ModelError, match=r"^'m' is not a recurrent instance segmenter: its outputs are"):
            KIND.check(bad, what="'m'")


def test_identical_and_slightly_moved_outputs_pass():
    expected = two_images()
    entry = KIND.compare(expected, expected, quantized=False, model=None)
    assert entry["passed"] and entry["count_agreement"] == 1.0 and entry["mask_pairs"] == 3
    assert entry["mean_mask_iou"] == 1.0 and entry["decisive_images"] == 2
    moved = {k: v + 1e-6 for k, v in expected.items()}
    assert KIND.compare(moved, expected, quantized=False, model=None)["passed"]


def test_a_different_count_fails_unless_its_confidence_is_on_the_threshold():
    expected = two_images()
    fewer = dict(expected, count=np.array([1.0, 1.0], "float32"))  # image 0 stops a step early
    entry = KIND.compare(fewer, expected, quantized=False, model=None)
    assert not entry["passed"] and entry["count_agreement"] == 0.5 and entry["decisive_count_agreement"] == 0.5
    assert "Keras's count on 50.0% of images (50.0% of the decisive ones)" in KIND.describe(entry)
    # The same disagreement where Keras's deciding confidence is 0.5 + 5e-5: a float difference may cross it.
    close = dict(expected, confidences=expected["confidences"].copy())
    close["confidences"][0, 1] = 0.50005
    entry = KIND.compare(fewer, close, quantized=False, model=None)
    assert entry["passed"] and entry["decisive_images"] == 1 and entry["count_agreement"] == 0.5
    # A confidence after the stop decides nothing.
    late = dict(expected, confidences=expected["confidences"].copy())
    late["confidences"][1, 2] = 0.50001
    assert KIND.compare(expected, late, quantized=False, model=None)["decisive_images"] == 2


def test_masks_must_agree_at_0_5_on_the_kept_steps():
    expected = two_images()
    flipped = {k: v.copy() for k, v in expected.items()}
    masks = flipped["masks"]
    masks[0, 0] = 1 - masks[0, 0]  # one kept step's mask inverted
    entry = KIND.compare(flipped, expected, quantized=False, model=None)
    assert not entry["passed"] and entry["min_mask_iou"] == 0.0 and entry["mean_mask_iou"] < 0.99
    # masks past the stop are zero and not compared
    after = {k: v.copy() for k, v in expected.items()}
    after["masks"][1, 2] = 1.0
    assert KIND.compare(after, expected, quantized=False, model=None)["mask_pairs"] == 3


def test_quantisation_is_refused():
    assert set(KIND.unsupported_quantizations) == {"dynamic", "float16", "int8"}
    entry = KIND.compare(two_images(), two_images(), quantized=True, model=None)
    assert not entry["passed"]


def test_result_lists_the_instances_in_step_order_at_the_images_size():
    masks = np.zeros((1, 4, 4, 4), "float32")
    masks[0, 0, :2, :2] = 0.9  # 4 pixels at 4x4, 16 at 8x8
    masks[0, 1, 2:, :] = 0.8  # 8, then 32
    masks[0, 2, :, 3] = 0.7  # stopped before: not listed
    fields = KIND.result(
        outputs([[0.9, 0.6, 0.4, 0.9]], masks), class_name=str, width=8, height=8, options=PredictOptions()
    )
    assert fields["count"] == 2
    assert [(i["step"], i["pixels"]) for i in fields["instances"]] == [(1, 16), (2, 32)]
    assert [i["confidence"] for i in fields["instances"]] == pytest.approx([0.9, 0.6])
    assert fields["instances"][0]["mask"]["size"] == [8, 8]
    assert KIND.summary(fields) == "2 instances: 1: 16 px (0.90), 2: 32 px (0.60)"
    file = io.BytesIO()
    KIND.draw(np.zeros((8, 8, 3), "uint8"), fields, file)
    assert Image.open(io.BytesIO(file.getvalue())).format == "PNG"


class Fixed:
    """A stand-in model that returns given outputs whatever the images."""

    def __init__(self, values):
        self.values = values

    def __call__(self, images, training=False):
        return {k: tf.constant(v) for k, v in self.values.items()}


def test_evaluate_gives_the_cvppp_scores_of_the_kept_masks():
    truth = np.zeros((2, 4, 4), "int32")
    truth[0, :2, :2], truth[0, 2:, :] = 1, 2
    truth[1, :, :2] = 1
    masks = np.zeros((2, 2, 4, 4), "float32")
    masks[0, 0, :2, :2] = masks[0, 1, 2:, :2] = 0.9  # the second leaf half found
    masks[1, 0, :, :] = 0.8  # one leaf found twice as large
    masks[1, 1, :, :2] = 0.9  # stopped: not counted
    model = Fixed(outputs([[0.9, 0.9], [0.9, 0.1]], masks))
    dataset = tf.data.Dataset.from_tensors((np.zeros((2, 4, 4, 3), "float32"), {"labels": truth}))
    scores = KIND.evaluate(model, dataset)
    predicted = [np.array([[1, 1, 0, 0]] * 2 + [[2, 2, 0, 0]] * 2), np.ones((4, 4), "int64")]
    expected = leaf_scores(list(truth), predicted)
    assert scores == {**expected, "count_accuracy": 1.0, "count": 2}
    assert scores["sbd"] == pytest.approx(np.mean([(1 + 2 * 4 / 12) / 2, 2 * 8 / 24]))
    with pytest.raises(ValueError, match="limit must be None or a positive number"):
        KIND.evaluate(model, dataset, limit=0)


def test_the_threshold_is_read_from_the_models_stop_layer():
    from kapps.models import recurrent_instance_segmenter

    model = recurrent_instance_segmenter(
        input_shape=(8, 8, 3), max_instances=2, encoder_filters=(2,), lstm_filters=2, stop_threshold=0.7
    )
    assert instance_sequence.stop_threshold(model) == 0.7
    assert instance_sequence.stop_threshold(None) == 0.5
