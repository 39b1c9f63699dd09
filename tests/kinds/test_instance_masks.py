"""The instance-mask kind: detections compared as the detection kind does and masks pixel by pixel, masks in predict
JSON as COCO RLE, drawn as overlays, and scored by pycocotools' segm evaluation."""

import io
import json

from kapps.errors import ModelError
from kapps.kinds import PredictOptions, instance_masks, kind_for
from kapps.metrics import coco_evaluate

import numpy as np
import pytest
from pycocotools import mask as mask_utils

KIND = kind_for("instance_segmentation")
SIZE = 32


def square(x1, y1, x2, y2, size=SIZE) -> np.ndarray:
    mask = np.zeros((size, size), "float32")
    mask[y1:y2, x1:x2] = 0.9
    return mask


def outputs(masks, classes, scores=None, k=3):
    """One image's Mask R-CNN outputs, boxes from the masks, padded to k rows."""
    n = len(masks)
    scores = [0.9 - 0.1 * i for i in range(n)] if scores is None else scores
    boxes = np.zeros((1, k, 4), "float32")
    padded = np.zeros((1, k, SIZE, SIZE), "float32")
    for i, mask in enumerate(masks):
        ys, xs = np.nonzero(mask >= 0.5)
        boxes[0, i] = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]) / SIZE
        padded[0, i] = mask
    return {
        "boxes": boxes,
        "scores": np.array([list(scores) + [0.0] * (k - n)], "float32"),
        "classes": np.array([list(classes) + [-1] * (k - n)], "int32"),
        "num_detections": np.array([n], "int32"),
        "masks": padded,
    }


def test_the_kind_is_recognised_by_its_task_and_checks_the_masks():
    assert isinstance(KIND, instance_masks.InstanceMasks)
    shapes = {k: v.shape for k, v in outputs([square(2, 2, 9, 9)], [0]).items()}
    KIND.check(shapes, what="m")
    with pytest.raises(ModelError, match="not an instance segmenter"):
        KIND.check({k: v for k, v in shapes.items() if k != "masks"}, what="m")
    with pytest.raises(ModelError, match="does not compare"):  # the detection kind refuses the masks
        kind_for("detection").check(shapes, what="m")


class Model:
    layers = ()


def test_float_artifacts_need_every_paired_mask_at_iou_099():
    reference = outputs([square(2, 2, 12, 12), square(14, 14, 30, 30)], [0, 1])
    reference["masks"][0, 0, 2, 2:4] = 0.5004
    same = {k: v.copy() for k, v in reference.items()}
    same["masks"][0, 0, 2, 2:4] = 0.4998  # pixels Keras puts within 1e-3 of 0.5 may cross it: left out
    same["masks"][0, 2] = 0.8  # a padding row's mask is not a detection
    result = KIND.compare(same, reference, quantized=False, model=Model())
    assert result["passed"] and result["min_mask_iou"] == 1.0 and result["mask_pairs"] == 2
    shifted = {k: v.copy() for k, v in reference.items()}
    shifted["masks"][0, 1] = square(15, 14, 31, 30)  # one column off: IoU 240 / 272 = 0.88
    result = KIND.compare(shifted, reference, quantized=False, model=Model())
    assert not result["passed"] and result["min_mask_iou"] == pytest.approx(240 / 272)
    assert result["detection_agreement"] == 1.0  # the boxes were not touched: the masks decide
    # quantised: the mean over the pairs, (1 + 0.88) / 2 = 0.94 >= 0.9, passes; a mask gone does not
    assert KIND.compare(shifted, reference, quantized=True, model=Model())["passed"]
    gone = {k: v.copy() for k, v in reference.items()}
    gone["masks"][0, 1] = 0.3
    result = KIND.compare(gone, reference, quantized=True, model=Model())
    assert not result["passed"] and result["mean_mask_iou"] == pytest.approx(0.5)
    assert "mask has IoU >= 0.99" in KIND.criterion(quantized=False) and "mean mask IoU" in KIND.criterion(
        quantized=True
    )


def test_predict_json_carries_each_mask_as_coco_rle_at_image_resolution():
    found = outputs([square(2, 2, 12, 12), square(16, 8, 30, 24)], [0, 1], scores=[0.6, 0.95])
    entry = KIND.result(found, class_name=str, width=64, height=48, options=PredictOptions(score_threshold=0.25))
    entry = json.loads(json.dumps(entry))  # the JSON form
    assert [d["class_id"] for d in entry["detections"]] == [1, 0]  # by score
    for d, source in zip(entry["detections"], [found["masks"][0, 1], found["masks"][0, 0]], strict=True):
        assert d["mask"]["size"] == [48, 64]
        decoded = mask_utils.decode({"size": d["mask"]["size"], "counts": d["mask"]["counts"].encode("ascii")})
        # the 32x32 mask stretched to 64 x 48: the square's pixels scaled by 2 across and 1.5 down
        expected = instance_masks.resize_masks(source[None], height=48, width=64)[0] >= 0.5
        np.testing.assert_array_equal(decoded, expected)
        assert decoded.sum() == pytest.approx((source >= 0.5).sum() * 3, rel=0.15)
    file = io.BytesIO()
    KIND.draw(np.zeros((48, 64, 3), "uint8"), entry, file)
    assert file.getvalue().startswith(b"\x89PNG")
    low = KIND.result(found, class_name=str, width=64, height=48, options=PredictOptions(score_threshold=0.9))
    assert [d["class_id"] for d in low["detections"]] == [1]


def test_segm_evaluation_scores_masks_not_boxes():
    truth = [
        {
            "boxes": np.array([[2, 2, 12, 12], [14, 14, 30, 30]]) / SIZE,
            "classes": np.array([0, 1]),
            "masks": np.stack([square(2, 2, 12, 12), square(14, 14, 30, 30)]),
        }
    ]
    perfect = [{**truth[0], "scores": np.array([0.9, 0.8])}]
    options = {"class_names": ["a", "b"], "image_size": (SIZE, SIZE)}
    assert coco_evaluate(truth, perfect, iou_type="segm", **options)["map"] == pytest.approx(1.0)
    # the same boxes, masks shifted by 3 pixels: box AP stays 1, mask AP drops
    shifted = [{**perfect[0], "masks": np.stack([square(5, 2, 15, 12), square(17, 14, 32, 30)])}]
    assert coco_evaluate(truth, shifted, **options)["map"] == pytest.approx(1.0)
    masks = coco_evaluate(truth, shifted, iou_type="segm", **options)
    assert masks["map50"] == pytest.approx(1.0) and masks["map"] < 0.6
    with pytest.raises(ValueError, match="iou_type"):
        coco_evaluate(truth, perfect, iou_type="keypoints", **options)
