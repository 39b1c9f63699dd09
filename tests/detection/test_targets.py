"""kapps.detection.targets: yolo_v1_targets on hand-placed objects; rpn_targets and roi_targets against NumPy
references of Faster R-CNN's rules, on hand-placed ties and on random scenes, and their random samples."""

import re

from kapps.detection import anchors, decode, roi_targets, rpn_targets, yolo_v1_targets

import numpy as np
import pytest
import tensorflow as tf


def test_targets_put_each_object_in_the_cell_of_its_centre():
    boxes = np.array([[[0.1, 0.1, 0.4, 0.3], [0.6, 0.5, 0.9, 1.0], [0, 0, 0, 0]]], np.float32)
    classes = np.array([[1, 0, -1]], np.int32)
    targets = np.asarray(yolo_v1_targets(boxes, classes, grid_size=2, num_classes=2))
    # centre (0.25, 0.2): cell row 0, column 0, offsets (0.5, 0.4); centre (0.75, 0.75): cell (1, 1), (0.5, 0.5)
    np.testing.assert_allclose(targets[0, 0, 0], [0.5, 0.4, 0.3, 0.2, 1, 0, 1], atol=1e-6)
    np.testing.assert_allclose(targets[0, 1, 1], [0.5, 0.5, 0.3, 0.5, 1, 1, 0], atol=1e-6)
    assert not targets[0, 0, 1].any() and not targets[0, 1, 0].any()


def test_targets_keep_the_larger_of_two_objects_in_one_cell():
    boxes = np.array([[[0.2, 0.2, 0.3, 0.3], [0.05, 0.05, 0.45, 0.45], [0.1, 0.1, 0.4, 0.4]]], np.float32)
    classes = np.array([[0, 1, 0]], np.int32)
    targets = np.asarray(yolo_v1_targets(boxes, classes, grid_size=2, num_classes=2))
    np.testing.assert_allclose(targets[0, 0, 0], [0.5, 0.5, 0.4, 0.4, 1, 0, 1], atol=1e-6)
    assert targets[..., 4].sum() == 1


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Every pair's IoU of `[x1, y1, x2, y2]` boxes, in float64; 0 against a box without area."""
    a, b = a.astype("float64")[:, None], b.astype("float64")[None]
    inter = np.prod(np.clip(np.minimum(a[..., 2:], b[..., 2:]) - np.maximum(a[..., :2], b[..., :2]), 0, None), -1)
    union = np.prod(a[..., 2:] - a[..., :2], -1) + np.prod(b[..., 2:] - b[..., :2], -1) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def rpn_reference(anchor_boxes, boxes, classes, *, positive_iou, negative_iou):
    """Faster R-CNN's anchor labels before sampling, image by image: `(labels, matched)` with labels 1, 0 or -1."""
    labels, matched = [], []
    for image_boxes, image_classes in zip(boxes, classes, strict=True):
        rows = np.flatnonzero(image_classes >= 0)
        overlaps = iou_matrix(anchor_boxes, image_boxes[rows])  # (A, g)
        best = overlaps.max(axis=1, initial=0.0)
        positive = best >= positive_iou
        for column in overlaps.T:
            if column.max() > 0:
                positive |= column == column.max()
        negative = ~positive & (best < negative_iou)
        labels.append(np.where(positive, 1, np.where(negative, 0, -1)))
        matched.append(np.where(positive, rows[overlaps.argmax(axis=1)] if len(rows) else -1, -1))
    return np.array(labels), np.array(matched)


def assert_no_near_ties(overlaps: np.ndarray, thresholds) -> None:
    """The float32 IoUs under test are off by ~1e-7 from these float64 ones: no IoU is that near a threshold (0
    aside, which is exact), and no two of a box's or candidate's best are that near without being equal, so a
    difference from the reference is a rule's."""
    for t in thresholds:
        assert t == 0.0 or np.abs(overlaps - t).min() > 1e-5, t
    for line in [*overlaps, *overlaps.T]:
        gaps = line.max() - line
        assert not ((gaps > 0) & (gaps < 1e-5)).any()


def to_numpy(targets: dict) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in targets.items()}


SEED = tf.constant([7, 1])

# Anchors and boxes on multiples of 1/16, so every IoU, and every tie, is exact in float32 and float64.
HAND_ANCHORS = np.array(
    [
        [0.0, 0.0, 0.25, 0.25],  # 0: IoU 0.8 with box 0
        [0.25, 0.0, 0.5, 0.25],  # 1: IoU 1/3 with box 1, tied with anchor 2 as its best
        [0.5, 0.0, 0.75, 0.25],  # 2: IoU 1/3 with box 1
        [0.75, 0.75, 1.0, 1.0],  # 3: in the corner, under a padding row only
        [0.0, 0.5, 0.5, 1.0],  # 4: IoU 0.75 with box 3 at the border
        [0.0, 0.75, 0.5, 1.0],  # 5: IoU 2/3 with box 3, not its best: ignored
    ],
    np.float32,
)
HAND_BOXES = np.array(
    [
        [
            [0.0, 0.0, 0.25, 0.3125],
            [0.375, 0.0, 0.625, 0.25],
            [0.75, 0.75, 1.0, 1.0],  # padding (class -1) over anchor 3
            [0.0, 0.625, 0.5, 1.0],
            [0.6, 0.3, 0.7, 0.4],  # overlaps no anchor: has no best anchor
            [0.0, 0.0, 0.0, 0.0],
        ],
        np.zeros((6, 4)),
    ],
    np.float32,
)
HAND_CLASSES = np.array([[0, 4, -1, 1, 2, -1], [-1] * 6], np.int32)


def test_rpn_labels_follow_the_papers_rules():
    """Above 0.7, each box's best anchors (both of a tie), no best anchor for a box no anchor touches, padding
    rows ignored, an image without boxes all negative; with 256 samples every labelled anchor is sampled."""
    out = to_numpy(rpn_targets(HAND_ANCHORS, HAND_BOXES, HAND_CLASSES, seed=SEED))
    np.testing.assert_array_equal(out["labels"], [[1, 1, 1, 0, 1, -1], [0] * 6])
    np.testing.assert_array_equal(out["matched"], [[0, 1, 1, -1, 3, -1], [-1] * 6])
    expected = rpn_reference(HAND_ANCHORS, HAND_BOXES, HAND_CLASSES, positive_iou=0.7, negative_iou=0.3)
    np.testing.assert_array_equal(out["labels"], expected[0])
    np.testing.assert_array_equal(out["matched"], expected[1])
    # deltas with variances 1 are eq. 2 itself: anchor 0 to box 0 moves the centre by 1/32 down, 1.25 x taller.
    np.testing.assert_allclose(out["deltas"][0, 0], [0.0, 0.125, 0.0, np.log(1.25)], atol=1e-6)
    assert not out["deltas"][0, [3, 5]].any() and not out["deltas"][1].any()


def random_boxes(rng, count: int, *, low: float, high: float) -> np.ndarray:
    """`(count, 4)` boxes of sides in [low, high), centres anywhere, clipped to the image: many touch its border."""
    centres = rng.uniform(0.0, 1.0, (count, 2))
    half = rng.uniform(low, high, (count, 2)) / 2
    return np.concatenate([centres - half, centres + half], -1).clip(0.0, 1.0).astype("float32")


def rpn_scene(seed: int = 0):
    """Anchors of a 4 x 4 map (96, the outer ones cross the border), three images: three boxes and a padding row,
    one box at the border and three padding rows, no boxes."""
    rng = np.random.default_rng(seed)
    anchor_boxes = np.asarray(anchors(feature_size=(4, 4), image_size=(64, 64), sizes=(16, 32)))
    boxes = np.zeros((3, 4, 4), np.float32)
    boxes[0, :3] = random_boxes(rng, 3, low=0.2, high=0.6)
    boxes[1, 0] = [0.55, 0.7, 1.0, 1.0]
    classes = np.array([[3, 0, 1, -1], [2, -1, -1, -1], [-1, -1, -1, -1]], np.int32)
    return anchor_boxes, boxes, classes


@pytest.mark.parametrize(("positive_iou", "negative_iou"), [(0.7, 0.3), (0.5, 0.4)])
@pytest.mark.parametrize("traced", [False, True], ids=["eager", "traced"])
def test_rpn_targets_match_a_numpy_reference(positive_iou, negative_iou, traced):
    anchor_boxes, boxes, classes = rpn_scene()
    for image_boxes in boxes[:2]:
        assert_no_near_ties(iou_matrix(anchor_boxes, image_boxes), (positive_iou, negative_iou))
    variances = (0.1, 0.1, 0.2, 0.2)
    run = tf.function(rpn_targets) if traced else rpn_targets
    out = to_numpy(
        run(
            anchor_boxes,
            boxes,
            classes,
            seed=SEED,
            positive_iou=positive_iou,
            negative_iou=negative_iou,
            num_samples=96,
            positive_fraction=1.0,
            variances=variances,
        )
    )
    labels, matched = rpn_reference(anchor_boxes, boxes, classes, positive_iou=positive_iou, negative_iou=negative_iou)
    assert (labels[0] == 1).sum() >= 3 and (labels[0] == -1).any() and (labels[1] == 1).any()
    np.testing.assert_array_equal(out["labels"], labels)
    np.testing.assert_array_equal(out["matched"], matched)
    positive = labels == 1
    decoded = np.asarray(decode(out["deltas"], anchor_boxes[None], variances=variances))
    np.testing.assert_allclose(decoded[positive], boxes[np.nonzero(positive)[0], matched[positive]], atol=1e-5)
    assert not out["deltas"][~positive].any()


def test_rpn_sample_counts_and_seeds():
    anchor_boxes, boxes, classes = rpn_scene()
    labels, _ = rpn_reference(anchor_boxes, boxes, classes, positive_iou=0.5, negative_iou=0.3)
    settings = dict(positive_iou=0.5, negative_iou=0.3, num_samples=12, positive_fraction=0.25)
    first = to_numpy(rpn_targets(anchor_boxes, boxes, classes, seed=SEED, **settings))["labels"]
    # Image 0 has more positives than its quota of 3, image 1 fewer: negatives fill up to 12.
    assert (labels[0] == 1).sum() > 3 and 0 < (labels[1] == 1).sum() < 3
    np.testing.assert_array_equal((first == 1).sum(axis=1), [3, (labels[1] == 1).sum(), 0])
    np.testing.assert_array_equal((first >= 0).sum(axis=1), [12, 12, 12])
    assert (labels[first == 1] == 1).all() and (labels[first == 0] == 0).all()
    again = to_numpy(tf.function(rpn_targets)(anchor_boxes, boxes, classes, seed=SEED, **settings))["labels"]
    other = to_numpy(rpn_targets(anchor_boxes, boxes, classes, seed=tf.constant([7, 2]), **settings))["labels"]
    np.testing.assert_array_equal(again, first)
    assert (other != first).any()


def test_rpn_samples_every_candidate_sometimes():
    """One image 200 times in a batch, each its own draw: all of its positives and negatives get sampled."""
    anchor_boxes, boxes, classes = rpn_scene()
    labels, _ = rpn_reference(anchor_boxes, boxes[:1], classes[:1], positive_iou=0.5, negative_iou=0.3)
    out = rpn_targets(
        anchor_boxes,
        np.repeat(boxes[:1], 200, 0),
        np.repeat(classes[:1], 200, 0),
        seed=SEED,
        positive_iou=0.5,
        negative_iou=0.3,
        num_samples=16,
        positive_fraction=0.25,
    )
    sampled = np.asarray(out["labels"])
    assert len({row.tobytes() for row in sampled}) == 200
    np.testing.assert_array_equal((sampled == 1).any(axis=0), labels[0] == 1)
    np.testing.assert_array_equal((sampled == 0).any(axis=0), labels[0] == 0)


def roi_reference(proposals, boxes, classes, *, positive_iou, background_iou, add_ground_truth):
    """Per image: the candidates `(n, 4)` (proposals with area, then real boxes), and for each whether it is
    foreground, whether background, and the row of its best box."""
    images = []
    for image_proposals, image_boxes, image_classes in zip(proposals, boxes, classes, strict=True):
        rows = np.flatnonzero(image_classes >= 0)
        candidates = image_proposals[(image_proposals[:, 2:] > image_proposals[:, :2]).all(axis=1)]
        if add_ground_truth:
            candidates = np.concatenate([candidates, image_boxes[rows]])
        overlaps = iou_matrix(candidates, image_boxes[rows])
        best = overlaps.max(axis=1, initial=0.0)
        foreground = best >= positive_iou
        background = ~foreground & (best >= background_iou[0]) & (best < background_iou[1])
        best_rows = rows[overlaps.argmax(axis=1)] if len(rows) else np.full(len(candidates), -1)
        images.append((candidates, foreground, background, best_rows))
    return images


def roi_scene(seed: int = 0):
    """Three images of 40 proposals, some of them all-zero padding, around two boxes, one box, no box."""
    rng = np.random.default_rng(seed)
    boxes = np.zeros((3, 3, 4), np.float32)
    boxes[0, :2] = random_boxes(rng, 2, low=0.3, high=0.5)
    boxes[1, 1] = random_boxes(rng, 1, low=0.3, high=0.5)
    classes = np.array([[5, 0, -1], [-1, 2, -1], [-1, -1, -1]], np.int32)
    # proposals jittered around each image's boxes (or anywhere), so that there is foreground and background
    near = np.stack([boxes[0, 0], boxes[1, 1], [0.3, 0.3, 0.6, 0.6]])[:, None]  # (3, 1, 4)
    proposals = (near + rng.normal(0.0, 0.08, (3, 40, 4))).astype("float32")
    proposals[:, 20:] = [random_boxes(rng, 20, low=0.05, high=0.6) for _ in range(3)]
    proposals = np.concatenate([proposals[..., :2], np.maximum(proposals[..., 2:], proposals[..., :2] + 0.01)], -1)
    proposals[:, 35:] = 0.0
    return proposals.clip(0.0, 1.0), boxes, classes


def check_rois(out, reference, classes, *, num_samples, quota, positive_iou, variances, everything=False):
    """Each image's rows against the reference: foreground, background, padding in that order, the sample's sizes,
    labels, matched rows, IoUs and decodable deltas; with `everything`, all candidates are in the sample."""
    for i, (candidates, foreground, background, best_rows) in enumerate(reference):
        take_foreground = min(foreground.sum(), quota)
        take_background = min(background.sum(), num_samples - take_foreground)
        kinds = np.repeat(
            [1, 0, -1], [take_foreground, take_background, num_samples - take_foreground - take_background]
        )
        np.testing.assert_array_equal(np.sign(out["labels"][i]), kinds)
        picked = [np.flatnonzero((candidates == roi).all(axis=1)) for roi in out["rois"][i][kinds >= 0]]
        assert all(len(p) == 1 for p in picked), "every sampled region is exactly one candidate"
        picked = np.array([p[0] for p in picked], int)
        assert len(set(picked)) == len(picked)
        np.testing.assert_array_equal(foreground[picked], kinds[kinds >= 0] == 1)
        np.testing.assert_array_equal(background[picked], kinds[kinds >= 0] == 0)
        if everything:
            assert set(picked) == set(np.flatnonzero(foreground | background))
        rows = best_rows[picked[:take_foreground]]
        np.testing.assert_array_equal(out["matched"][i, :take_foreground], rows)
        assert (out["matched"][i, take_foreground:] == -1).all()
        np.testing.assert_array_equal(out["labels"][i, :take_foreground], classes[i, rows] + 1)
        assert not out["rois"][i][kinds < 0].any() and not out["deltas"][i][kinds < 1].any()
        gt = out["boxes"][i, rows]
        rois = out["rois"][i, :take_foreground]
        assert (np.diag(iou_matrix(rois, gt)) >= positive_iou).all()
        np.testing.assert_allclose(
            np.asarray(decode(out["deltas"][i, :take_foreground], rois, variances=variances)), gt, atol=1e-5
        )


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"background_iou": (0.1, 0.5), "positive_iou": 0.6},
        {"add_ground_truth": False, "variances": (1.0, 1.0, 1.0, 1.0)},
    ],
)
@pytest.mark.parametrize("traced", [False, True], ids=["eager", "traced"])
def test_roi_targets_match_a_numpy_reference(settings, traced):
    proposals, boxes, classes = roi_scene()
    settings = {
        "positive_iou": 0.5,
        "background_iou": (0.0, 0.5),
        "add_ground_truth": True,
        "variances": (0.1, 0.1, 0.2, 0.2),
        **settings,
    }
    reference = roi_reference(
        proposals,
        boxes,
        classes,
        positive_iou=settings["positive_iou"],
        background_iou=settings["background_iou"],
        add_ground_truth=settings["add_ground_truth"],
    )
    for (candidates, *_), image_boxes in zip(reference, boxes, strict=True):
        assert_no_near_ties(
            iou_matrix(candidates, image_boxes), (settings["positive_iou"], *settings["background_iou"])
        )
    run = tf.function(roi_targets) if traced else roi_targets
    for num_samples, positive_fraction in ((128, 1.0), (16, 0.25)):
        out = to_numpy(
            run(
                proposals,
                boxes,
                classes,
                seed=SEED,
                num_samples=num_samples,
                positive_fraction=positive_fraction,
                **settings,
            )
        )
        assert {k: (v.shape, v.dtype) for k, v in out.items()} == {
            "rois": ((3, num_samples, 4), np.float32),
            "labels": ((3, num_samples), np.int32),
            "deltas": ((3, num_samples, 4), np.float32),
            "matched": ((3, num_samples), np.int32),
        }
        check_rois(
            {**out, "boxes": boxes},
            reference,
            classes,
            num_samples=num_samples,
            quota=int(num_samples * positive_fraction),
            positive_iou=settings["positive_iou"],
            variances=settings["variances"],
            everything=num_samples == 128,
        )
    assert reference[0][1].sum() > 4  # image 0 has more foreground than its quota of 16 * 0.25


def test_roi_sample_is_seeded():
    proposals, boxes, classes = roi_scene()
    settings = dict(num_samples=16, positive_fraction=0.25)
    first = to_numpy(roi_targets(proposals, boxes, classes, seed=SEED, **settings))
    again = to_numpy(tf.function(roi_targets)(proposals, boxes, classes, seed=SEED, **settings))
    other = to_numpy(roi_targets(proposals, boxes, classes, seed=tf.constant([7, 2]), **settings))
    for key in first:  # the traced deltas may differ in the last bit: graph optimisations reorder float ops
        np.testing.assert_allclose(again[key], first[key], atol=1e-6 if key == "deltas" else 0, err_msg=key)
    assert (other["rois"] != first["rois"]).any()


def test_no_gradient_reaches_the_proposals():
    """The regions and their targets are constants to the loss, as in Faster R-CNN's approximate joint training."""
    proposals, boxes, classes = roi_scene()
    proposals = tf.Variable(proposals)
    with tf.GradientTape() as tape:
        out = roi_targets(proposals, boxes, classes, seed=SEED, num_samples=16)
        total = tf.reduce_sum(out["rois"]) + tf.reduce_sum(out["deltas"])
    assert tape.gradient(total, proposals) is None


def test_roi_sample_pads_when_short():
    """Four candidates: a proposal and both boxes are foreground (the boxes as candidates themselves), one
    proposal is background, and two all-zero proposals and a padding row (class -1, whatever its box) are none;
    the quota of 8 * 0.25 leaves one foreground out."""
    boxes = np.array([[[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9], [0.1, 0.6, 0.4, 0.9]]], np.float32)
    proposals = np.array([[[0.1, 0.1, 0.5, 0.55], [0.55, 0.0, 0.95, 0.3], [0, 0, 0, 0], [0, 0, 0, 0]]], np.float32)
    classes = np.array([[3, 1, -1]], np.int32)
    out = to_numpy(roi_targets(proposals, boxes, classes, seed=SEED, num_samples=8))
    np.testing.assert_array_equal(np.sign(out["labels"][0]), [1, 1, 0, -1, -1, -1, -1, -1])
    np.testing.assert_array_equal(out["rois"][0, 2:], [proposals[0, 1]] + [[0, 0, 0, 0]] * 5)
    np.testing.assert_array_equal(out["matched"][0, 2:], [-1] * 6)
    wider = to_numpy(roi_targets(proposals, boxes, classes, seed=SEED, num_samples=8, positive_fraction=0.5))
    np.testing.assert_array_equal(wider["labels"][0, 3:], [0, -1, -1, -1, -1])
    assert sorted(wider["labels"][0, :3]) == [2, 4, 4]
    alone = to_numpy(roi_targets(proposals, boxes, classes, seed=SEED, num_samples=8, add_ground_truth=False))
    np.testing.assert_array_equal(alone["labels"][0], [4, 0, -1, -1, -1, -1, -1, -1])


def test_targets_of_a_batch_padded_to_no_boxes():
    """G = 0, as a batch of images without objects pads to: RPN all negative, RoI all background."""
    anchor_boxes, _, _ = rpn_scene()
    proposals, _, _ = roi_scene()
    no_boxes, no_classes = np.zeros((3, 0, 4), np.float32), np.zeros((3, 0), np.int32)
    rpn = to_numpy(tf.function(rpn_targets)(anchor_boxes, no_boxes, no_classes, seed=SEED, num_samples=256))
    np.testing.assert_array_equal(rpn["labels"], np.zeros((3, 96)))
    roi = to_numpy(tf.function(roi_targets)(proposals, no_boxes, no_classes, seed=SEED, num_samples=64))
    assert (proposals[:, :35, 2:] > proposals[:, :35, :2]).all()  # 35 proposals with area, then 5 padding rows
    np.testing.assert_array_equal(roi["labels"], np.repeat([[0] * 35 + [-1] * 29], 3, 0))


@pytest.mark.parametrize(
    ("function", "setting", "value", "message"),
    [
        (rpn_targets, "num_samples", 0, "num_samples must be a positive integer. Received: num_samples=0"),
        (rpn_targets, "positive_fraction", 1.5, "positive_fraction must be in [0, 1]. Received: positive_fraction=1.5"),
        (rpn_targets, "negative_iou", 0.8, "negative_iou must be in [0, positive_iou=0.7]. Received: negative_iou=0.8"),
        (roi_targets, "positive_iou", 0.0, "positive_iou must be in (0, 1]. Received: positive_iou=0.0"),
        (roi_targets, "background_iou", (0.5, 0.1), "Received: background_iou=(0.5, 0.1)"),
    ],
)
def test_bad_settings(function, setting, value, message):
    first = HAND_ANCHORS if function is rpn_targets else HAND_ANCHORS[None]
    with pytest.raises(ValueError, match=re.escape(message)):
        function(first, HAND_BOXES[:1], HAND_CLASSES[:1], seed=SEED, **{setting: value})
