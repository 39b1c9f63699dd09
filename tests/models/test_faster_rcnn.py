"""Faster R-CNN: its layers against NumPy references, the losses against their formulas, the model's structure, and
a trainer that learns a few scenes and saves and loads with its detector."""

import kapps.models
from kapps.detection import decode
from kapps.layers.two_stage import ClassBoxes, Proposals, level_anchors
from kapps.losses import box_head_losses, rpn_losses
from kapps.models.detection.two_stage import FasterRCNNTrainer, faster_rcnn

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.detection.test_suppression import iou_matrix

SIZE = 64


def small_detector(**kwargs) -> keras.Model:
    options = {
        "input_shape": (SIZE, SIZE, 3),
        "num_classes": 3,
        "backbone": "resnet10_narrow",
        "fpn_channels": 16,
        "anchor_sizes": [[6], [12], [24], [48], [96]],
        "pre_nms_top_n": 200,
        "proposals": 40,
        "head_units": 32,
        **kwargs,
    }
    return faster_rcnn(**options)


def test_the_detector_has_the_fpn_layout_and_outputs_detections():
    model = small_detector()
    anchors = model.get_layer("proposals").anchors
    # P2 .. P6 of a 64-pixel input: 16, 8, 4, 2, 1 cells a side, 3 ratios each
    assert anchors.shape == (3 * (16**2 + 8**2 + 4**2 + 2**2 + 1), 4)
    assert model.get_layer("rpn_objectness").output.shape == (None, anchors.shape[0])
    assert model.get_layer("roi_pool").output.shape == (None, 40, 7, 7, 16)
    out = model(np.random.default_rng(0).uniform(size=(2, SIZE, SIZE, 3)).astype("float32"))
    assert out["boxes"].shape == (2, 100, 4) and out["classes"].shape == (2, 100)


def test_without_fpn_the_detector_reads_one_map_with_nine_anchors_a_cell():
    model = small_detector(fpn=False, feature_map="C4", anchor_sizes=[[8, 16, 32]])
    assert model.get_layer("proposals").anchors.shape == (4 * 4 * 9, 4)  # C4 of 64 pixels: 4x4
    assert model.get_layer("roi_pool").output.shape[-1] == 128  # resnet10_narrow's C4


def test_bad_arguments():
    with pytest.raises(ValueError, match="fixed input size"):
        faster_rcnn(input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="anchor_sizes must give 5"):
        small_detector(anchor_sizes=[[8]])
    with pytest.raises(ValueError, match="num_classes"):
        small_detector(num_classes=0)


def greedy(boxes: np.ndarray, scores: np.ndarray, *, iou_threshold: float, keep: int) -> list[int]:
    overlaps = iou_matrix(boxes)
    kept: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        area = (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
        if area > 0 and overlaps[i, kept].max(initial=0.0) <= iou_threshold:
            kept.append(int(i))
    return kept[:keep]


def test_proposals_are_decoded_clipped_ranked_and_suppressed():
    rng = np.random.default_rng(1)
    layer = Proposals(
        image_size=(32, 32), feature_sizes=[(4, 4), (2, 2)], sizes=[[8], [16]], pre_nms_top_n=30, post_nms_top_n=12
    )
    count = layer.anchors.shape[0]
    assert count == 3 * (16 + 4)
    objectness = rng.normal(size=(2, count)).astype("float32")
    deltas = rng.normal(scale=0.4, size=(2, count, 4)).astype("float32")
    got = keras.ops.convert_to_numpy(layer(objectness, deltas))
    for image in range(2):
        top = np.argsort(-objectness[image], kind="stable")[:30]
        boxes = np.clip(
            keras.ops.convert_to_numpy(decode(deltas[image, top], layer.anchors[top], variances=(1,) * 4)), 0, 1
        )
        kept = greedy(boxes, objectness[image, top], iou_threshold=0.7, keep=12)
        np.testing.assert_allclose(got[image, : len(kept)], boxes[kept], atol=1e-6)
        assert not got[image, len(kept) :].any()


def test_level_anchors_follow_the_heads_reshaped_outputs():
    anchors = level_anchors(image_size=(32, 32), feature_sizes=[(2, 2), (1, 1)], sizes=[[8], [16]], aspect_ratios=[1.0])
    expected = np.array([[4, 4, 12, 12], [20, 4, 28, 12], [4, 20, 12, 28], [20, 20, 28, 28], [8, 8, 24, 24]]) / 32
    np.testing.assert_allclose(anchors, expected, atol=1e-7)


def test_class_boxes_decode_one_box_per_class_and_drop_the_background():
    rng = np.random.default_rng(2)
    proposals = np.array([[[0.1, 0.2, 0.5, 0.6], [0.3, 0.3, 0.9, 0.7]]], "float32")
    logits = rng.normal(size=(1, 2, 4)).astype("float32")
    deltas = rng.normal(size=(1, 2, 12)).astype("float32")
    out = ClassBoxes(3)(proposals, logits, deltas)
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(out["class_scores"], probabilities[..., 1:], atol=1e-6)
    for c in range(3):
        expected = decode(deltas[0, :, 4 * c : 4 * c + 4], proposals[0], variances=(0.1, 0.1, 0.2, 0.2))
        np.testing.assert_allclose(out["boxes"][0, :, c], np.clip(expected, 0, 1), atol=1e-6)


def smooth_l1(x: np.ndarray, beta: float) -> np.ndarray:
    return np.where(np.abs(x) < beta, 0.5 * x**2 / beta, np.abs(x) - 0.5 * beta)


def test_rpn_losses_are_the_papers_terms_over_the_sampled_anchors():
    rng = np.random.default_rng(3)
    labels = np.array([[1, 0, -1, 0, 1], [-1, -1, 0, 1, 0]], "int32")
    targets, deltas = rng.normal(size=(2, 2, 5, 4)).astype("float32")
    logits = rng.normal(size=(2, 5)).astype("float32")
    class_loss, box_loss = rpn_losses(labels, targets, logits, deltas)
    sampled, positive = labels >= 0, labels == 1
    p = 1 / (1 + np.exp(-logits))
    log_loss = -(positive * np.log(p) + (1 - positive) * np.log(1 - p))
    assert float(class_loss) == pytest.approx(log_loss[sampled].sum() / sampled.sum(), rel=1e-5)
    box = smooth_l1(deltas - targets, 1 / 9).sum(-1)
    assert float(box_loss) == pytest.approx(box[positive].sum() / sampled.sum(), rel=1e-5)


def test_box_head_losses_regress_only_the_true_class_of_foreground_rois():
    rng = np.random.default_rng(4)
    labels = np.array([[2, 0, 1, -1]], "int32")
    targets = rng.normal(size=(1, 4, 4)).astype("float32")
    logits = rng.normal(size=(1, 4, 3)).astype("float32")
    deltas = rng.normal(size=(1, 4, 8)).astype("float32")
    class_loss, box_loss = box_head_losses(labels, targets, logits, deltas)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    assert float(class_loss) == pytest.approx(-(log_p[0, 0, 2] + log_p[0, 1, 0] + log_p[0, 2, 1]) / 3, rel=1e-5)
    expected = (
        smooth_l1(deltas[0, 0, 4:8] - targets[0, 0], 1.0).sum()
        + smooth_l1(deltas[0, 2, 0:4] - targets[0, 2], 1.0).sum()
    )
    assert float(box_loss) == pytest.approx(expected / 3, rel=1e-5)


def scenes(count: int = 4):
    """Squares of class 0 and discs of class 1 on a noisy background, two objects an image."""
    rng = np.random.default_rng(5)
    images = rng.uniform(0.0, 0.2, size=(count, SIZE, SIZE, 3)).astype("float32")
    boxes = np.zeros((count, 3, 4), "float32")
    classes = np.full((count, 3), -1, "int32")
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for i in range(count):
        for k, (cls, x, y, side) in enumerate([(0, 6 + 3 * i, 8, 20), (1, 34, 30 - 2 * i, 24)]):
            if cls == 0:
                images[i, y : y + side, x : x + side] = (0.9, 0.2, 0.2)
            else:
                r = side / 2
                images[i, (yy - y - r + 0.5) ** 2 + (xx - x - r + 0.5) ** 2 <= r * r] = (0.2, 0.9, 0.2)
            boxes[i, k] = np.array([x, y, x + side, y + side]) / SIZE
            classes[i, k] = cls
    return images, {"boxes": boxes, "classes": classes}


def test_the_trainer_learns_a_few_scenes_and_saves_with_its_detector(tmp_path):
    keras.utils.set_random_seed(0)
    # momentum 0.9: 80 steps are too few for the default 0.99's moving statistics, which inference reads
    detector = kapps.models.set_bn_momentum(small_detector(score_threshold=0.3), 0.9)
    trainer = FasterRCNNTrainer(detector, rpn_samples=64, roi_samples=32, train_proposals=60, train_pre_nms_top_n=200)
    trainer.compile(optimizer=keras.optimizers.Adam(3e-3))
    images, targets = scenes()
    data = tf.data.Dataset.from_tensor_slices((images, targets)).batch(4).repeat()
    history = trainer.fit(data, steps_per_epoch=20, epochs=4, verbose=0).history
    assert history["loss"][-1] < 0.5 * history["loss"][0], history["loss"]
    found = trainer.detector(images)
    for i in range(len(images)):
        for box, cls in zip(targets["boxes"][i][:2], targets["classes"][i][:2], strict=True):
            same = found["classes"][i].numpy() == cls
            best = iou_matrix(np.concatenate([box[None], found["boxes"][i].numpy()[same]]))[0, 1:].max(initial=0)
            assert best >= 0.5, (i, cls)
    path = tmp_path / "trainer.keras"
    trainer.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    again = loaded.detector(images)
    for key in ("boxes", "scores", "classes", "num_detections"):
        np.testing.assert_array_equal(again[key], found[key])


def test_the_registered_default_is_the_fpn_papers_detector():
    info = kapps.models.info("faster_rcnn")
    assert info.task == "detection" and info.input_shape == (800, 800, 3) and info.count_kind == "trainable"
    # torchvision's fasterrcnn_resnet50_fpn: 41,755,286 at 91 classes; see the registry's source for the rest
    assert info.param_count == 41_755_286 + 53_120 + 26_560 - 4_100
