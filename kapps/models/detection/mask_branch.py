"""Mask R-CNN (He et al. 2017): Faster R-CNN with a mask branch, its inference model and its trainer.

`mask_rcnn` builds `kapps.models.faster_rcnn`'s graph and extends it after detection NMS: the detected boxes are
pooled by RoIAlign (14x14, from their FPN level), the mask head (`mask_head`: four 3x3 convolutions, a 2x2
stride-2 transposed convolution, a 1x1 convolution to one 28x28 mask per class) runs on them, each detection's
class channel is picked (`ClassMasks`), and the masks are pasted back at image resolution inside the graph
(`PasteMasks`), so the model and its exports give `masks (B, K, H, W)` beside the boxes.

`MaskRCNNTrainer` is `FasterRCNNTrainer` plus the mask loss on the foreground RoIs the box head samples.

    >>> model = kapps.models.mask_rcnn(input_shape=(512, 512, 3), num_classes=20)
    >>> trainer = MaskRCNNTrainer(model)
"""

from __future__ import annotations

from kapps.detection import mask_targets
from kapps.layers.instance_masks import ClassMasks, PasteMasks
from kapps.layers.two_stage import PyramidRoIPool
from kapps.losses import mask_loss
from kapps.models._common import load_weights
from kapps.models.detection.two_stage import FasterRCNNTrainer, faster_rcnn
from kapps.registry import register_model

import keras


@register_model(
    task="instance_segmentation",
    input_shape=(800, 800, 3),
    num_classes=90,
    param_count=44_476_716,
    count_kind="trainable",
    source=(
        "torchvision maskrcnn_resnet50_fpn (44,401,393 parameters at 91 classes with the background), plus the "
        "53,120 batch-norm scales and offsets it freezes as buffers and the 26,560 convolution biases of "
        "keras.applications' ResNet-50, less the 4,100 weights of the background's box and the 257 of the "
        "background's mask, which kapps does not predict"
    ),
)
def mask_rcnn(
    *,
    input_shape: tuple[int, int, int] = (800, 800, 3),
    num_classes: int = 90,
    mask_pool_size: int = 14,
    mask_width: int = 256,
    mask_convs: int = 4,
    weights: str | None = None,
    name: str = "mask_rcnn",
    **faster_rcnn_kwargs,
) -> keras.Model:
    """Mask R-CNN's inference model: images in, detections with their masks at image resolution out.

    The defaults are the paper's ResNet-50-FPN model (He et al. 2017, Figure 4, right): Faster R-CNN with FPN
    (`kapps.models.faster_rcnn`'s defaults), and a mask head of four 3x3 convolutions of 256 channels on 14x14
    RoIAlign features, a 2x2 deconvolution to 28x28 and one sigmoid mask per class. With `num_classes=90` the
    parameter count is torchvision's `maskrcnn_resnet50_fpn` adjusted as for `faster_rcnn` (see the registry).

    Args:
        input_shape: `(H, W, 3)`, fixed.
        num_classes: C, the object classes.
        mask_pool_size: the mask head's RoIAlign grid (14); the masks are twice as fine.
        mask_width: channels of the mask head's convolutions (256; less trains faster on a CPU).
        mask_convs: the 3x3 convolutions before the deconvolution (4).
        weights: None or the path of a weight file of this architecture.
        name: model name.
        **faster_rcnn_kwargs: the detector's keywords (`backbone`, `fpn`, `proposals`, `max_detections`...).

    Returns:
        A functional `keras.Model` from `image (B, H, W, 3)` to `faster_rcnn`'s outputs plus `"masks": (B, K,
        H, W)` float32 probabilities (a mask is the pixels at 0.5 or more; padding rows are 0). Its layers
        include `faster_rcnn`'s and `mask_roi_pool`, `mask_head` (a nested model), `class_masks`, `paste_masks`.

    Reference: K. He, G. Gkioxari, P. Dollar, R. Girshick, "Mask R-CNN", ICCV 2017.
    """
    for option, value in (("mask_pool_size", mask_pool_size), ("mask_width", mask_width), ("mask_convs", mask_convs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{option} must be a positive integer. Received: {option}={value!r}")
    detector = faster_rcnn(input_shape=input_shape, num_classes=num_classes, name=name, **faster_rcnn_kwargs)
    roi_pool = detector.get_layer("roi_pool")
    roi_maps = list(roi_pool.input[:-1])
    detections = detector.output
    # (B, K, 14, 14, C) -> (B, K, 28, 28, classes) -> (B, K, 28, 28) -> (B, K, H, W)
    pooled = PyramidRoIPool.from_config(
        {**roi_pool.get_config(), "name": "mask_roi_pool", "output_size": [mask_pool_size, mask_pool_size]}
    )(roi_maps, detections["boxes"])
    logits = mask_head(
        pool_size=mask_pool_size,
        channels=roi_maps[0].shape[-1],
        width=mask_width,
        convs=mask_convs,
        num_classes=num_classes,
    )(pooled)
    masks = ClassMasks(name="class_masks")(logits, detections["classes"])
    masks = PasteMasks(tuple(input_shape[:2]), name="paste_masks")(masks, detections["boxes"])
    model = keras.Model(detector.input, {**detections, "masks": masks}, name=name)
    load_weights(model, weights)
    return model


def mask_head(
    *, pool_size: int, channels: int, width: int, convs: int = 4, num_classes: int, name: str = "mask_head"
) -> keras.Model:
    """Mask R-CNN's mask head on FPN (He et al. 2017, Figure 4, right): `convs` 3x3 convolutions of `width` and
    ReLU, a 2x2 stride-2 transposed convolution and ReLU, and a 1x1 convolution to one mask logit per class, applied
    to every RoI alike. Layer names follow Detectron's (`mask_fcn1` .., `conv5_mask`, `mask_fcn_logits`).

    Returns:
        A `keras.Model` from `(B, N, pool, pool, channels)` to logits `(B, N, 2 pool, 2 pool, num_classes)`.
    """
    inputs = keras.Input((None, pool_size, pool_size, channels), name=f"{name}_input")
    x = inputs
    for k in range(1, convs + 1):
        conv = keras.layers.Conv2D(width, 3, padding="same", activation="relu", kernel_initializer="he_normal")
        x = keras.layers.TimeDistributed(conv, name=f"mask_fcn{k}")(x)
    deconv = keras.layers.Conv2DTranspose(width, 2, strides=2, activation="relu", kernel_initializer="he_normal")
    x = keras.layers.TimeDistributed(deconv, name="conv5_mask")(x)
    predictor = keras.layers.Conv2D(
        num_classes, 1, kernel_initializer=keras.initializers.RandomNormal(stddev=0.001), dtype="float32"
    )
    logits = keras.layers.TimeDistributed(predictor, name="mask_fcn_logits", dtype="float32")(x)
    return keras.Model(inputs, logits, name=name)


@keras.saving.register_keras_serializable(package="kapps")
class MaskRCNNTrainer(FasterRCNNTrainer):
    """Trains a `mask_rcnn` model: `FasterRCNNTrainer`'s four terms plus `mask_loss` (He et al. 2017, sec. 3).

    The mask loss is on the foreground RoIs of the box head's sample (`roi_targets` puts them first, at most
    `int(roi_samples * roi_positive_fraction)` an image): each is pooled 14x14 by the model's `mask_roi_pool`,
    run through its `mask_head`, and its true class's 28x28 mask is scored against the matched ground-truth mask
    cropped to the RoI (`kapps.detection.mask_targets`) by per-pixel binary cross-entropy (`kapps.losses.mask_loss`).
    The targets need `"masks" (B, G, H, W)` beside the boxes and classes, rows as theirs.

    Args:
        detector: the `mask_rcnn` model to train; the other keywords are `FasterRCNNTrainer`'s.
    """

    TERMS = (*FasterRCNNTrainer.TERMS, "mask_loss")

    def __init__(self, detector: keras.Model, **kwargs):
        super().__init__(detector, **kwargs)
        self.mask_pool = detector.get_layer("mask_roi_pool")
        self.mask_head = detector.get_layer("mask_head")

    def head_terms(self, maps, rois, targets, *, training: bool) -> dict:
        foreground = max(1, int(self.roi_samples * self.roi_positive_fraction))
        regions = rois["rois"][:, :foreground]
        logits = self.mask_head(self.mask_pool(maps, regions), training=training)
        wanted = mask_targets(targets["masks"], regions, rois["matched"][:, :foreground], size=logits.shape[2])
        return {"mask_loss": mask_loss(rois["labels"][:, :foreground], wanted, logits)}
