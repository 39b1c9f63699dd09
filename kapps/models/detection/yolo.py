"""YOLO v1 (Redmon et al., "You Only Look Once: Unified, Real-Time Object Detection", CVPR 2016).

`yolo_v1` is the network that trains: image in, the S x S x (B * 5 + C) grid out, for `kapps.losses.YoloV1Loss`.
`yolo_v1_detector` wraps a trained one for use: the grid decoded to boxes and scores, then non-maximum
suppression, all inside the graph, so exports and `kapps predict` take images and give detections.
"""

from __future__ import annotations

from dataclasses import dataclass

from kapps.layers.detection import NonMaxSuppression
from kapps.layers.yolo import YoloV1Decode
from kapps.models._common import RELU_INIT, load_weights, model_input, pooled_classifier_head
from kapps.registry import FeatureMap, register_model

import keras


@dataclass(frozen=True)
class Conv:
    """One convolution of a backbone: kernel size, filters and stride."""

    kernel: int
    filters: int
    stride: int = 1


POOL = "pool"  # 2x2 max pooling, stride 2

# Figure 3 of the paper: 24 convolutions, 1x1 reductions between the 3x3 layers, four max-pools.
_PAPER = (
    Conv(7, 64, 2), POOL,
    Conv(3, 192), POOL,
    Conv(1, 128), Conv(3, 256), Conv(1, 256), Conv(3, 512), POOL,
    *(Conv(1, 256), Conv(3, 512)) * 4, Conv(1, 512), Conv(3, 1024), POOL,
    *(Conv(1, 512), Conv(3, 1024)) * 2, Conv(3, 1024), Conv(3, 1024, 2),
    Conv(3, 1024), Conv(3, 1024),
)  # fmt: skip

# The same pattern scaled down for CPU work at about 100 pixels: a stride-2 stem as in the paper, then 8
# convolutions and three pools (stride 16).
_SMALL = (
    Conv(3, 16, 2), Conv(3, 32), POOL,
    Conv(3, 64), POOL,
    Conv(1, 32), Conv(3, 128), POOL,
    Conv(1, 64), Conv(3, 256),
    Conv(1, 128), Conv(3, 256),
)  # fmt: skip

BACKBONES = {"paper": _PAPER, "small": _SMALL}
STRIDES = {"paper": 64, "small": 16}
HEAD_UNITS = {"paper": 4096, "small": 512}
HEADS = ("dense", "conv")
# The registered classifiers whose bodies are these backbones: pre-train one, then `transfer_backbone` its weights
# into a `yolo_v1` of the same backbone (`kapps.models.backbones`).
BACKBONE_MODELS = {"paper": "darknet24", "small": "darknet_small"}

# Feature maps: the last convolution at each stride.
PAPER_MAPS = (
    FeatureMap("C1", "backbone_conv1_leaky", 2, 64),
    FeatureMap("C2", "backbone_conv2_leaky", 4, 192),
    FeatureMap("C3", "backbone_conv6_leaky", 8, 512),
    FeatureMap("C4", "backbone_conv16_leaky", 16, 1024),
    FeatureMap("C5", "backbone_conv21_leaky", 32, 1024),
    FeatureMap("C6", "backbone_conv24_leaky", 64, 1024),
)
SMALL_MAPS = (
    FeatureMap("C1", "backbone_conv2_leaky", 2, 32),
    FeatureMap("C2", "backbone_conv3_leaky", 4, 64),
    FeatureMap("C3", "backbone_conv5_leaky", 8, 128),
    FeatureMap("C4", "backbone_conv9_leaky", 16, 256),
)


def darknet_backbone(x, layers, *, batch_norm: bool, name: str = "backbone"):
    """The convolution stack: leaky ReLU (slope 0.1) after every convolution, batch norm before it if asked.

    Without batch norm the convolutions start from He et al.'s initialisation (`RELU_INIT`), which keeps the signal's
    scale through the rectifiers: with Keras's default Glorot, darknet24 from scratch sat at chance on digits (10.0%
    after 10 epochs at lr 0.01), as the VGGs did.
    """
    conv_number = pool_number = 0
    for layer in layers:
        if layer == POOL:
            pool_number += 1
            x = keras.layers.MaxPooling2D(2, name=f"{name}_pool{pool_number}")(x)
            continue
        conv_number += 1
        prefix = f"{name}_conv{conv_number}"
        x = keras.layers.Conv2D(
            layer.filters,
            layer.kernel,
            strides=layer.stride,
            padding="same",
            use_bias=not batch_norm,
            kernel_initializer="glorot_uniform" if batch_norm else RELU_INIT,
            name=prefix,
        )(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"{prefix}_bn")(x)
        x = keras.layers.LeakyReLU(negative_slope=0.1, name=f"{prefix}_leaky")(x)
    return x


def _darknet(
    backbone: str,
    *,
    input_shape: tuple[int | None, int | None, int],
    num_classes: int = 1000,
    include_top: bool = True,
    weights: str | None = None,
    pooling: str | None = None,
    classifier_activation: str | None = "softmax",
    batch_norm: bool = False,
    name: str,
) -> keras.Model:
    """YOLO v1's backbone `backbone` as a classifier: the convolutions, global average pooling, the class layer."""
    inputs = model_input(input_shape, weights=weights, include_top=include_top, num_classes=num_classes)
    x = darknet_backbone(inputs, BACKBONES[backbone], batch_norm=batch_norm)
    x = pooled_classifier_head(
        x,
        include_top=include_top,
        num_classes=num_classes,
        pooling=pooling,
        classifier_activation=classifier_activation,
    )
    model = keras.Model(inputs, x, name=name)
    load_weights(model, weights)
    return model


def _describe(summary: str):
    """Give a darknet classifier its docstring: `summary` and the keywords they share."""

    def decorate(builder):
        builder.__doc__ = summary + _DARKNET_ARGS
        return builder

    return decorate


_DARKNET_ARGS = """

    Args:
        input_shape: (height, width, channels).
        num_classes: size of the class layer.
        include_top: whether to add the global average pooling and the class layer.
        weights: `None` or the path of a weight file of this architecture.
        pooling: without the top, `None` (the last feature map), `"avg"` or `"max"` global pooling.
        classifier_activation: activation of the class layer, `None` for logits.
        batch_norm: batch normalisation after each convolution, as in `yolo_v1(batch_norm=True)`.
        name: model name.

    Returns:
        A functional `keras.Model`.
"""


@register_model(
    task="classification",
    input_shape=(224, 224, 3),
    num_classes=1000,
    param_count=61_180_968,
    source="computed from Redmon et al. 2016, Figure 3: 24 convolutions (60,155,968) and a 1000-way layer",
    feature_maps=PAPER_MAPS,
)
@_describe(
    """The backbone of YOLO v1 (Redmon et al. 2016, Figure 3: 24 convolutions) as a classifier, for pre-training.

    The paper pre-trains its first 20 convolutions this way on ImageNet at 224x224, then detects at 448x448
    (Sec. 2.2); kapps pre-trains all 24. The layers carry `yolo_v1`'s names, so `kapps.models.transfer_backbone`
    moves them into a detector of any input size."""
)
def darknet24(
    *, input_shape: tuple[int | None, int | None, int] = (224, 224, 3), name: str = "darknet24", **kwargs
) -> keras.Model:
    return _darknet("paper", input_shape=input_shape, name=name, **kwargs)


@register_model(
    task="classification",
    input_shape=(112, 112, 3),
    num_classes=1000,
    param_count=803_688,
    source="computed: the 9 convolutions of kapps' small YOLO backbone (546,688) and a 1000-way layer",
    feature_maps=SMALL_MAPS,
)
@_describe(
    """The small backbone of `yolo_v1(backbone="small")` (9 convolutions, stride 16) as a classifier, for
    pre-training on CPU-sized crops; its layers carry `yolo_v1`'s names."""
)
def darknet_small(
    *, input_shape: tuple[int | None, int | None, int] = (112, 112, 3), name: str = "darknet_small", **kwargs
) -> keras.Model:
    return _darknet("small", input_shape=input_shape, name=name, **kwargs)


@register_model(
    task="detection",
    input_shape=(448, 448, 3),
    num_classes=20,
    param_count=271_703_550,
    source="computed from the paper's Figure 3 (24 conv + FC 4096 + FC 1470), no batch norm",
)
def yolo_v1(
    *,
    input_shape: tuple[int, int, int] = (448, 448, 3),
    num_classes: int = 20,
    grid_size: int = 7,
    boxes_per_cell: int = 2,
    backbone: str = "paper",
    batch_norm: bool = False,
    head: str = "dense",
    head_units: int | None = None,
    dropout: float | None = None,
    class_activation: str | None = None,
    weights: str | None = None,
    name: str = "yolo_v1",
) -> keras.Model:
    """YOLO v1: a convolutional backbone, two fully connected layers, and the S x S x (B * 5 + C) grid.

    The paper's defaults give a 7x7x30 output on 448x448 images (S=7, B=2, C=20) and 271,703,550 parameters.
    Each cell's numbers are B groups of `(x, y, sqrt_w, sqrt_h, confidence)` and C class probabilities (see
    `kapps.layers.yolo`); the output layer is linear, as in the paper.

    `head="conv"` replaces the two fully connected layers by a 3x3 and a 1x1 convolution on the backbone's
    S x S map (the change YOLO v2 made): each cell's numbers then come from the features around it, which
    trains far faster from scratch, at the price of the paper's whole-image view. It needs an input of S times
    the backbone's stride (7 x 16 = 112 for the small backbone).

    Args:
        input_shape: (height, width, channels); the backbone's stride is 64 (paper) or 16 (small); the fully
            connected head reads whatever map that leaves, so any size from one stride up works.
        num_classes: C.
        grid_size: S.
        boxes_per_cell: B.
        backbone: `"paper"` (Figure 3's 24 convolutions) or `"small"` (9 convolutions, for CPU training).
        batch_norm: batch normalisation after each convolution (YOLO v2's change; the convolutions then have no
            bias). The paper has none.
        head: `"dense"` (the paper's two fully connected layers) or `"conv"` (see above).
        head_units: width of the first fully connected layer (or of the 3x3 convolution): 4096 (paper) or 512
            (small) by default.
        dropout: rate of the dropout after it: 0.5 (the paper's) for the dense head, none for the convolutional
            one by default, where it would drop the very features a cell's box is read from.
        class_activation: `None` (the paper's linear output) or an activation for the class probabilities
            alone, such as `"softmax"` per cell; the loss is the same sum of squares either way.
        weights: `None` or the path of a weight file of this architecture.
        name: model name.

    Returns:
        A functional `keras.Model` with one float32 output named `grid`, `(batch, S, S, B * 5 + C)`.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {sorted(BACKBONES)}. Received: backbone={backbone!r}")
    for arg, value in (("num_classes", num_classes), ("grid_size", grid_size), ("boxes_per_cell", boxes_per_cell)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be a positive integer. Received: {arg}={value!r}")
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}. Received: head={head!r}")
    if input_shape[0] is None or input_shape[1] is None:
        raise ValueError(f"YOLO's head needs a fixed input size. Received: input_shape={input_shape}")
    side = grid_size * STRIDES[backbone]
    if head == "conv" and tuple(input_shape[:2]) != (side, side):
        raise ValueError(
            f"head='conv' needs an input of grid_size x stride = {side}x{side} with the {backbone} backbone. "
            f"Received: input_shape={input_shape}"
        )
    units = head_units or HEAD_UNITS[backbone]
    if dropout is None:
        dropout = 0.5 if head == "dense" else 0.0
    depth = boxes_per_cell * 5 + num_classes

    inputs = model_input(input_shape, weights=weights)
    x = darknet_backbone(inputs, BACKBONES[backbone], batch_norm=batch_norm)
    if head == "conv":
        x = darknet_backbone(x, (Conv(3, units),), batch_norm=batch_norm, name="head")
        if dropout:
            x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    else:
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Dense(units, name="fc1")(x)
        x = keras.layers.LeakyReLU(negative_slope=0.1, name="fc1_leaky")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name="fc1_dropout")(x)
    if class_activation is None:
        x = _grid_output(x, depth, head=head, grid_size=grid_size, name="grid")
    else:
        # the same weights split in two: linear boxes and confidences, per-cell activated class probabilities
        boxes = _grid_output(x, boxes_per_cell * 5, head=head, grid_size=grid_size, name="grid_boxes")
        classes = _grid_output(x, num_classes, head=head, grid_size=grid_size, name="grid_classes")
        classes = keras.layers.Activation(class_activation, dtype="float32", name="grid_classes_activation")(classes)
        x = keras.layers.Concatenate(dtype="float32", name="grid")([boxes, classes])
    model = keras.Model(inputs, x, name=name)
    load_weights(model, weights)
    return model


def _grid_output(x, depth: int, *, head: str, grid_size: int, name: str):
    """The linear output layer: a 1x1 convolution on the map, or a dense layer reshaped to the grid."""
    if head == "conv":
        return keras.layers.Conv2D(depth, 1, dtype="float32", name=name)(x)
    dense = name.replace("grid", "fc2")  # fc2, fc2_boxes, fc2_classes
    x = keras.layers.Dense(grid_size * grid_size * depth, dtype="float32", name=dense)(x)
    return keras.layers.Reshape((grid_size, grid_size, depth), dtype="float32", name=name)(x)


def yolo_v1_detector(
    model: keras.Model,
    *,
    num_classes: int,
    max_detections: int = 100,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.01,
    name: str | None = None,
) -> keras.Model:
    """The trained YOLO v1 `model` as a detector: grid decoding and per-class non-maximum suppression appended.

    Args:
        model: a `yolo_v1` model (its weights are shared, not copied).
        num_classes: its C; B follows from the grid's depth, B * 5 + C.
        max_detections: detections kept per image.
        iou_threshold: boxes of one class overlapping a better one by more than this are suppressed.
        score_threshold: class-specific scores below this are dropped before suppression. It is low, as
            evaluators want (COCO's mAP counts every detection); a user filters the scores for display, as
            `kapps predict --score-threshold` does.
        name: the detector's name, `model.name` by default.

    Returns:
        A functional `keras.Model` from the same image input to `{"boxes", "scores", "classes",
        "num_detections"}` (see `kapps.layers.NonMaxSuppression`).
    """
    grid = model.output
    _, rows, columns, depth = grid.shape
    boxes_per_cell = (depth - num_classes) // 5
    if rows != columns or boxes_per_cell < 1 or boxes_per_cell * 5 + num_classes != depth:
        raise ValueError(
            f"model must be a yolo_v1 model with a square grid of B * 5 + {num_classes} numbers per cell. "
            f"Received: grid shape {grid.shape}"
        )
    candidates = YoloV1Decode(rows, boxes_per_cell, num_classes, name="decode")(grid)
    detections = NonMaxSuppression(
        max_detections=max_detections,
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
        per_class=True,
        name="nms",
    )(candidates["boxes"], candidates["class_scores"])
    return keras.Model(model.input, detections, name=name or model.name)
