"""Faster R-CNN (Ren et al. 2015), with or without a feature pyramid (Lin et al. 2017): inference model, trainer.

`faster_rcnn` builds the inference model, one graph from images to detections: a registered classifier's body
(`kapps.models.backbone`), optionally the FPN neck, the region proposal network (RPN), proposals (decoding,
clipping, NMS to the top N), RoI features (RoIAlign or RoI max pooling, from the proposal's pyramid level), the box
head (two fully connected layers, K + 1 class scores and a box per class) and per-class NMS. It exports as it is.

`FasterRCNNTrainer` trains it by the paper's approximate joint training: one step computes the RPN's loss on
sampled anchors, takes the RPN's proposals as given (no gradient through their coordinates), samples RoIs among
them and the ground truth, and adds the box head's loss (Fast R-CNN's step, `FastRCNNTrainer`, which it extends);
one optimizer updates everything. It holds the inference
model and shares its layers, so the trained model is the inference model (`trainer.detector`).

    >>> detector = kapps.models.faster_rcnn(input_shape=(512, 512, 3), num_classes=20)
    >>> trainer = FasterRCNNTrainer(detector)
    >>> trainer.compile(optimizer=keras.optimizers.SGD(0.02, momentum=0.9))
"""

from __future__ import annotations

from collections.abc import Sequence

from kapps.detection import rpn_targets
from kapps.layers.detection import NonMaxSuppression
from kapps.layers.two_stage import ClassBoxes, Proposals, PyramidRoIPool
from kapps.losses import rpn_losses
from kapps.models._common import load_weights, model_input
from kapps.models.backbones import backbone as make_backbone
from kapps.models.detection.fast import FastRCNNTrainer, box_head
from kapps.models.detection.fpn import fpn as fpn_neck
from kapps.registry import register_model

import keras
import tensorflow as tf

# Anchor sizes as fractions of the input's shorter side, so that they scale with the input and the papers' pixel
# sizes come back at the papers' input sizes: FPN's 32 .. 512 pixels on P2 .. P6 at 800 pixels (Lin et al. 2017,
# sec. 4.1), and Faster R-CNN's 128, 256, 512 pixels at 600 (Ren et al. 2015, sec. 3.1.1).
FPN_ANCHOR_FRACTIONS = (0.04, 0.08, 0.16, 0.32, 0.64)
SINGLE_MAP_ANCHOR_FRACTIONS = (128 / 600, 256 / 600, 512 / 600)
# FPN's level rule maps a 224-pixel box on an ~800-pixel image to P4 (eq. 1); scaled the same way.
CANONICAL_FRACTION = 224 / 800


@register_model(
    task="detection",
    input_shape=(800, 800, 3),
    num_classes=90,
    param_count=41_830_866,
    count_kind="trainable",
    source=(
        "torchvision fasterrcnn_resnet50_fpn (41,755,286 parameters at 91 classes with the background), plus the "
        "53,120 batch-norm scales and offsets it freezes as buffers and the 26,560 convolution biases of "
        "keras.applications' ResNet-50, less the 4,100 weights of the background's box, which kapps does not regress"
    ),
)
def faster_rcnn(
    *,
    input_shape: tuple[int, int, int] = (800, 800, 3),
    num_classes: int = 90,
    backbone: str = "resnet50",
    backbone_weights: str | None = None,
    fpn: bool = True,
    fpn_channels: int = 256,
    feature_map: str = "C4",
    anchor_sizes: Sequence[Sequence[float]] | None = None,
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    rpn_channels: int | None = None,
    pre_nms_top_n: int = 1000,
    proposals: int = 1000,
    rpn_iou_threshold: float = 0.7,
    pooler: str = "align",
    pool_size: int = 7,
    sampling_ratio: int = 2,
    head_units: int = 1024,
    max_detections: int = 100,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.05,
    weights: str | None = None,
    name: str = "faster_rcnn",
    **backbone_kwargs,
) -> keras.Model:
    """Faster R-CNN's inference model: images in (as its backbone takes them), detections out.

    The defaults are the FPN paper's detector on ResNet-50 (Lin et al. 2017, sec. 5.2): P2 .. P6 of 256 channels,
    one anchor size per level and 3 aspect ratios, 1,000 proposals, RoIAlign 7x7 (Mask R-CNN's pooling), two
    fully connected layers of 1,024 units; with `num_classes=90` (COCO's 90 category ids), the parameter count
    is torchvision's `fasterrcnn_resnet50_fpn` (91 classes with the background) plus the batch-norm scales and
    offsets it freezes as buffers and the convolution biases keras.applications' ResNet-50 has.

    With `fpn=False` the RPN and the RoI features read the single map `feature_map` (the original Faster R-CNN),
    with 3 anchor sizes x 3 aspect ratios per location.

    Args:
        input_shape: `(H, W, 3)`, fixed: the anchors are laid out for it.
        num_classes: C, the object classes (the box head adds the background).
        backbone: a registered model with feature maps (`kapps.models.list_backbones()`): C2 .. C5 with `fpn`,
            `feature_map` without.
        backbone_weights: the backbone's weights: None, `"imagenet"` or a file (`kapps.models.backbone`).
        fpn: build the feature pyramid.
        fpn_channels: the pyramid's channels.
        feature_map: without `fpn`, the backbone's map the detector reads.
        anchor_sizes: each level's anchor sizes in pixels (one level without `fpn`, five with it); by default the
            papers' sizes scaled to the input's shorter side (`FPN_ANCHOR_FRACTIONS`,
            `SINGLE_MAP_ANCHOR_FRACTIONS`).
        aspect_ratios: anchor widths over heights.
        rpn_channels: the RPN's 3x3 convolution; `fpn_channels` with `fpn`, 512 (the paper's VGG-16 RPN) without.
        pre_nms_top_n: anchors, by objectness, that go into the proposals' NMS.
        proposals: proposals kept after it, the RoIs the box head scores.
        rpn_iou_threshold: the proposals' NMS IoU.
        pooler: `"align"` (RoIAlign) or `"max"` (Fast R-CNN's RoI max pooling).
        pool_size: the RoI features' grid.
        sampling_ratio: RoIAlign's samples per bin along each axis (2, as Detectron's FPN models).
        head_units: width of the box head's two fully connected layers.
        max_detections: detections kept per image.
        iou_threshold: per-class NMS IoU of the detections.
        score_threshold: class scores at or below this are never detections.
        weights: None or the path of a weight file of this architecture.
        name: model name.
        **backbone_kwargs: more keywords of the backbone's builder (`batch_norm`, `conv_bias`...).

    Returns:
        A functional `keras.Model` from `image` `(B, H, W, 3)` to `{"boxes": (B, K, 4) rel_xyxy, "scores": (B,
        K), "classes": (B, K), "num_detections": (B,)}`; its layers include `rpn_objectness`, `rpn_deltas`,
        `proposals`, `roi_pool`, `box_head` (a nested model) and `class_boxes`, which `FasterRCNNTrainer` reads.
    """
    height, width = input_shape[0], input_shape[1]
    if height is None or width is None:
        raise ValueError(f"Faster R-CNN needs a fixed input size for its anchors. Received: input_shape={input_shape}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer. Received: num_classes={num_classes!r}")
    inputs = model_input(input_shape, name="image")
    if fpn:
        body = make_backbone(backbone, input_shape=input_shape, weights=backbone_weights, **backbone_kwargs)
        features = body(inputs)
        missing = [level for level in ("C2", "C3", "C4", "C5") if level not in features]
        if missing:
            raise ValueError(f"backbone {backbone!r} has no {', '.join(missing)}, which the FPN needs.")
        pyramid = fpn_neck({k: features[k] for k in ("C2", "C3", "C4", "C5")}, channels=fpn_channels)
        rpn_maps = [pyramid[f"P{k}"] for k in range(2, 7)]
        roi_maps = rpn_maps[:4]
        fractions = [(f,) for f in FPN_ANCHOR_FRACTIONS]
    else:
        body = make_backbone(
            backbone, input_shape=input_shape, weights=backbone_weights, maps=[feature_map], **backbone_kwargs
        )
        rpn_maps = roi_maps = [body(inputs)[feature_map]]
        fractions = [SINGLE_MAP_ANCHOR_FRACTIONS]
    side = min(height, width)
    if anchor_sizes is None:
        anchor_sizes = [[round(f * side, 2) for f in level] for level in fractions]
    if len(anchor_sizes) != len(rpn_maps):
        raise ValueError(
            f"anchor_sizes must give {len(rpn_maps)} level(s) of sizes. Received: anchor_sizes={anchor_sizes!r}"
        )
    anchors_per_cell = len(anchor_sizes[0]) * len(aspect_ratios)
    if any(len(level) != len(anchor_sizes[0]) for level in anchor_sizes):
        raise ValueError(f"Every level needs as many anchor sizes. Received: anchor_sizes={anchor_sizes!r}")

    # RPN: one head shared by every level; (B, h, w, A) and (B, h, w, 4 A) -> (B, h w A) and (B, h w A, 4)
    head = rpn_head(
        channels=rpn_maps[0].shape[-1],
        hidden=rpn_channels or (fpn_channels if fpn else 512),
        anchors_per_cell=anchors_per_cell,
    )
    objectness, deltas = [], []
    for level, feature in enumerate(rpn_maps):
        logits, level_deltas = head(feature)
        objectness.append(keras.layers.Reshape((-1,), name=f"rpn_objectness_{level}")(logits))
        deltas.append(keras.layers.Reshape((-1, 4), name=f"rpn_deltas_{level}")(level_deltas))
    objectness = _join(objectness, axis=1, name="rpn_objectness")
    deltas = _join(deltas, axis=1, name="rpn_deltas")
    boxes = Proposals(
        image_size=(height, width),
        feature_sizes=[tuple(m.shape[1:3]) for m in rpn_maps],
        sizes=anchor_sizes,
        aspect_ratios=aspect_ratios,
        pre_nms_top_n=pre_nms_top_n,
        post_nms_top_n=proposals,
        iou_threshold=rpn_iou_threshold,
        name="proposals",
    )(objectness, deltas)

    # RoI head: (B, N, 7, 7, C) -> class logits (B, N, C + 1) and deltas (B, N, 4 C)
    pooled = PyramidRoIPool(
        pool_size,
        pooler=pooler,
        sampling_ratio=sampling_ratio,
        image_size=(height, width),
        k_min=2,
        canonical_size=CANONICAL_FRACTION * side,
        name="roi_pool",
    )(roi_maps, boxes)
    class_logits, box_deltas = box_head(
        pool_size=pool_size, channels=roi_maps[0].shape[-1], units=head_units, num_classes=num_classes
    )(pooled)
    candidates = ClassBoxes(num_classes, name="class_boxes")(boxes, class_logits, box_deltas)
    detections = NonMaxSuppression(
        max_detections=max_detections,
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
        per_class=True,
        name="nms",
    )(candidates["boxes"], candidates["class_scores"])
    model = keras.Model(inputs, detections, name=name)
    load_weights(model, weights)
    return model


def rpn_head(*, channels: int, hidden: int, anchors_per_cell: int, name: str = "rpn_head") -> keras.Model:
    """The RPN's head (Ren et al. 2015, sec. 3.1): a 3x3 convolution and ReLU, then sibling 1x1 convolutions for
    each anchor's objectness logit and its 4 deltas. A model of its own, shared by every pyramid level.

    Returns:
        A `keras.Model` from `(B, h, w, channels)` to `[(B, h, w, A), (B, h, w, 4 A)]`.
    """
    inputs = keras.Input((None, None, channels), name=f"{name}_input")
    x = keras.layers.Conv2D(hidden, 3, padding="same", activation="relu", name="rpn_conv")(inputs)
    init = keras.initializers.RandomNormal(stddev=0.01)
    logits = keras.layers.Conv2D(anchors_per_cell, 1, kernel_initializer=init, dtype="float32", name="rpn_cls")(x)
    deltas = keras.layers.Conv2D(4 * anchors_per_cell, 1, kernel_initializer=init, dtype="float32", name="rpn_box")(x)
    return keras.Model(inputs, [logits, deltas], name=name)


def _join(tensors, *, axis: int, name: str):
    """Concatenate the levels' tensors, or name the one level's, so the result is always the layer `name`."""
    if len(tensors) == 1:
        return keras.layers.Identity(name=name)(tensors[0])
    return keras.layers.Concatenate(axis=axis, name=name)(tensors)


@keras.saving.register_keras_serializable(package="kapps")
class FasterRCNNTrainer(FastRCNNTrainer):
    """Trains a `faster_rcnn` inference model end to end by approximate joint training (Ren et al. 2015, sec. 3.2).

    A training step, on images and their padded ground truth `{"boxes": (B, G, 4), "classes": (B, G)}`:

    1. the RPN's loss: anchors labelled and sampled by `kapps.detection.rpn_targets` (IoU >= 0.7, or the best
       anchor of a box, positive; < 0.3 negative; `rpn_samples` per image, at most half positive);
    2. proposals from the RPN's outputs (`train_pre_nms_top_n` into NMS 0.7, `train_proposals` out), with no
       gradient through their coordinates (the "approximate" of approximate joint training);
    3. the box head's loss on `roi_samples` RoIs per image sampled by `kapps.detection.roi_targets` among the
       proposals and the ground-truth boxes (25% foreground at IoU >= 0.5, background below 0.5): Fast R-CNN's
       step (`FastRCNNTrainer`), on the RPN's proposals instead of the data's.

    The sum of the four terms is minimised by the compiled optimizer. The metrics are the total `loss` and each
    term, `rpn_class_loss`, `rpn_box_loss`, `class_loss`, `box_loss`; `test_step` computes them with fixed
    sampling seeds. Calling the trainer runs the inference model.

    Args:
        detector: the `faster_rcnn` model to train; its weights are trained in place.
        rpn_samples: anchors sampled per image (256 in the paper).
        roi_samples: RoIs sampled per image (128 in Faster R-CNN's code, 64 in Fast R-CNN).
        roi_positive_fraction: the foreground share of the RoIs (0.25).
        background_iou: the IoU range of background RoIs, `[low, high)`.
        train_pre_nms_top_n: anchors into the proposals' NMS while training (2,000: FPN's per-image setting).
        train_proposals: proposals kept while training (2,000 in the paper; FPN's 1,000 per image).
        seed: the seed of the sampling.
    """

    TERMS = ("rpn_class_loss", "rpn_box_loss", *FastRCNNTrainer.TERMS)

    def __init__(
        self,
        detector: keras.Model,
        *,
        rpn_samples: int = 256,
        roi_samples: int = 128,
        roi_positive_fraction: float = 0.25,
        background_iou: Sequence[float] = (0.0, 0.5),
        train_pre_nms_top_n: int = 2000,
        train_proposals: int = 1000,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(
            detector,
            roi_samples=roi_samples,
            roi_positive_fraction=roi_positive_fraction,
            background_iou=background_iou,
            seed=seed,
            **kwargs,
        )
        self.rpn_samples = int(rpn_samples)
        self.train_pre_nms_top_n = int(train_pre_nms_top_n)
        self.train_proposals = int(train_proposals)
        proposals = detector.get_layer("proposals")
        self.anchors = tf.constant(proposals.anchors)
        self.train_proposal_layer = Proposals.from_config(
            {
                **proposals.get_config(),
                "name": "train_proposals",
                "pre_nms_top_n": self.train_pre_nms_top_n,
                "post_nms_top_n": self.train_proposals,
            }
        )

    def feature_model(self, detector: keras.Model) -> keras.Model:
        return keras.Model(
            detector.input,
            {
                "maps": self.roi_maps(detector),
                "objectness": detector.get_layer("rpn_objectness").output,
                "deltas": detector.get_layer("rpn_deltas").output,
            },
            name="features",
        )

    def losses_of(self, images, targets, *, seed, training: bool) -> dict:
        """The four loss terms (and any `head_terms`) and their sum on one batch, as a dict of scalars."""
        boxes, classes = targets["boxes"], targets["classes"]
        rpn_seed, roi_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        outputs = self.features(images, training=training)
        rpn = rpn_targets(self.anchors, boxes, classes, seed=rpn_seed, num_samples=self.rpn_samples)
        rpn_class, rpn_box = rpn_losses(rpn["labels"], rpn["deltas"], outputs["objectness"], outputs["deltas"])
        proposals = self.train_proposal_layer(
            tf.stop_gradient(outputs["objectness"]), tf.stop_gradient(outputs["deltas"])
        )
        terms = {
            "rpn_class_loss": rpn_class,
            "rpn_box_loss": rpn_box,
            **self.roi_head_terms(outputs["maps"], proposals, targets, seed=roi_seed, training=training),
        }
        return {"loss": sum(terms.values()), **terms}

    def get_config(self):
        return {
            **super().get_config(),
            "rpn_samples": self.rpn_samples,
            "train_pre_nms_top_n": self.train_pre_nms_top_n,
            "train_proposals": self.train_proposals,
        }
