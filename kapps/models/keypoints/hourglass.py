"""Stacked hourglass networks (Newell, Yang and Deng, "Stacked Hourglass Networks for Human Pose Estimation",
ECCV 2016): heatmap regression with repeated bottom-up, top-down processing and intermediate supervision.

The architecture is the paper's as the authors' Torch code builds it (pose-hg-train): a stem (7x7 stride-2
convolution, a residual module, 2x2 max pooling and two residual modules: 256 -> 64 pixels), then `num_stacks`
stacks. A stack is an hourglass (`depth` levels: a residual branch kept at each resolution, max pooling down, nearest-
neighbour upsampling back, the two added), residual modules, a 1x1 convolution with batch norm and ReLU, and the
1x1 convolution that predicts the heatmaps. Every stack but the last adds a 1x1 re-projection of its features and
one of its heatmaps to its input, for the next stack. A residual module is pre-activation bottleneck: BN-ReLU-1x1
conv to half the features, BN-ReLU-3x3, BN-ReLU-1x1 back, plus the input (a 1x1 convolution where the width
changes). Convolutions have biases, as in Torch.

`stacked_hourglass` returns the training model, every stack's heatmaps as one `(B, S, H, W, T)` output for the
loss's intermediate supervision (`kapps.losses.HeatmapLoss`); `hourglass_detector` turns it into the inference
model, the last stack's heatmaps read as points by `kapps.layers.HeatmapPeaks`, which is what exports and
`kapps predict` run.

Parameter count of the paper's network (256 x 256 x 3, 16 MPII joints, 8 stacks, 256 features, one residual
module a position), computed from the architecture (tests/models/test_hourglass.py recomputes it term by term). A
residual module 256 -> 256 holds 32,896 + 147,584 + 33,024 convolution weights and biases and 4 x (256 + 128 +
128) batch-norm numbers (gamma, beta, moving mean and variance): 215,552. An hourglass of depth 4 has 13 modules (3
a level, 1 at the bottom), a stack 14 with the one after it, plus the 1x1 convolution with batch norm (65,792 +
1,024) and the heatmaps' (4,112): 3,088,656, eight times 24,709,248. Seven stacks re-project features and heatmaps
(7 x (65,792 + 4,352) = 491,008) and the stem holds 354,432 (the 7x7 convolution 9,472, its batch norm 256, the
residual modules 64 -> 128, 128 -> 128 and 128 -> 256: 58,496 + 54,528 + 231,680). All weights: 25,554,688;
trainable (without the 120,576 moving statistics): 25,434,112. The paper states no count.
"""

from __future__ import annotations

from kapps.layers.heatmaps import HeatmapPeaks
from kapps.models._common import load_weights, model_input
from kapps.registry import register_model

import keras

BN_EPSILON = 1e-5  # Torch's SpatialBatchNormalization, which the authors trained with


def residual_module(x, filters: int, *, name: str):
    """The hourglass's pre-activation bottleneck residual module (Newell et al. 2016, Fig. 4 left).

    BN-ReLU-1x1 convolution to `filters // 2`, BN-ReLU-3x3 convolution, BN-ReLU-1x1 convolution to `filters`, added
    to the input (through a 1x1 convolution `{name}_skip` when the width changes). Layers are `{name}_bn1`,
    `{name}_conv1`, ... `{name}_conv3` and `{name}_add`.
    """
    shortcut = x
    if x.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(filters, 1, name=f"{name}_skip")(x)
    for i, (width, kernel) in enumerate(((filters // 2, 1), (filters // 2, 3), (filters, 1)), start=1):
        x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn{i}")(x)
        x = keras.layers.Activation("relu", name=f"{name}_relu{i}")(x)
        x = keras.layers.Conv2D(width, kernel, padding="same", name=f"{name}_conv{i}")(x)
    return keras.layers.Add(name=f"{name}_add")([shortcut, x])


def _modules(x, filters: int, count: int, *, name: str):
    """`count` residual modules in a row, `{name}_res1`, `{name}_res2`, ..."""
    for i in range(1, count + 1):
        x = residual_module(x, filters, name=f"{name}_res{i}")
    return x


def hourglass(x, *, depth: int, num_modules: int, name: str):
    """One hourglass (Newell et al. 2016, Fig. 3): at each of `depth` levels, an upper branch of residual modules at
    the level's resolution, and a lower one that max-pools, applies residual modules, recurses (residual modules
    at the bottom), applies residual modules and upsamples by nearest neighbour; the two are added.

    Layers are named `{name}_level{k}_{up|down|back}_res{i}`, `{name}_level{k}_pool`, `{name}_level{k}_upsample`
    and `{name}_level{k}_add`, level 1 the outermost, and `{name}_bottom_res{i}`.
    """
    filters = x.shape[-1]
    for_level = []
    for level in range(1, depth + 1):
        level_name = f"{name}_level{level}"
        for_level.append(_modules(x, filters, num_modules, name=f"{level_name}_up"))
        x = keras.layers.MaxPooling2D(2, name=f"{level_name}_pool")(x)
        x = _modules(x, filters, num_modules, name=f"{level_name}_down")
    x = _modules(x, filters, num_modules, name=f"{name}_bottom")
    for level in range(depth, 0, -1):
        level_name = f"{name}_level{level}"
        x = _modules(x, filters, num_modules, name=f"{level_name}_back")
        x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"{level_name}_upsample")(x)
        x = keras.layers.Add(name=f"{level_name}_add")([for_level[level - 1], x])
    return x


def _stem(x, features: int, *, name: str):
    """7x7 stride-2 convolution to `features // 4` with BN and ReLU, a residual module to `features // 2`, 2x2 max
    pooling, a residual module and one to `features`: a quarter of the input's resolution."""
    x = keras.layers.ZeroPadding2D(3, name=f"{name}_pad")(x)  # Torch's padding 3: the outputs on Torch's pixels
    x = keras.layers.Conv2D(features // 4, 7, strides=2, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    x = keras.layers.Activation("relu", name=f"{name}_relu")(x)
    x = residual_module(x, features // 2, name=f"{name}_res1")
    x = keras.layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    x = residual_module(x, features // 2, name=f"{name}_res2")
    return residual_module(x, features, name=f"{name}_res3")


def _check(*, input_shape, num_types, num_stacks, features, num_modules, depth) -> None:
    for value, argument in (
        (num_types, "num_types"),
        (num_stacks, "num_stacks"),
        (num_modules, "num_modules"),
        (depth, "depth"),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{argument} must be a positive integer. Received: {argument}={value!r}")
    if not isinstance(features, int) or features < 4 or features % 4:
        raise ValueError(f"features must be a positive multiple of 4. Received: features={features!r}")
    step = 2 ** (depth + 2)  # the stem's 4, then 2 a level
    if any(side is not None and side % step for side in tuple(input_shape)[:2]):
        raise ValueError(
            f"input_shape's height and width must be multiples of {step} for depth={depth} (the stem halves them "
            f"twice, each level once more). Received: input_shape={tuple(input_shape)}"
        )


@register_model(
    task="heatmap",
    input_shape=(256, 256, 3),
    num_classes=16,
    param_count=25_554_688,
    source="computed from Newell et al. 2016 and the authors' pose-hg-train code: 8 stacks, 256 features, one "
    "residual module a position, 16 MPII joints, convolution biases, all weights incl. batch-norm statistics "
    "(25,434,112 trainable); the paper states no count (see kapps.models.keypoints.hourglass)",
)
def stacked_hourglass(
    *,
    input_shape=(256, 256, 3),
    num_types: int = 16,
    num_stacks: int = 8,
    features: int = 256,
    num_modules: int = 1,
    depth: int = 4,
    weights=None,
    name: str = "stacked_hourglass",
) -> keras.Model:
    """Stacked hourglass network (Newell et al., "Stacked Hourglass Networks for Human Pose Estimation", ECCV 2016).

    The defaults are the paper's MPII network (8 stacks, 256 features, 16 joints, 256 x 256 in, 64 x 64 out).
    A network for 2 CPU cores: `num_stacks=2, features=64` (431,680 weights at depth 4), or `depth=3` for
    smaller inputs.

    Args:
        input_shape: (height, width, channels); height and width multiples of `2 ** (depth + 2)`.
        num_types: T, the point types, one heatmap each.
        num_stacks: S, the hourglasses in a row, each supervised.
        features: the width of the stacks (the stem's layers have a quarter and a half of it).
        num_modules: residual modules at each position of an hourglass and after it.
        depth: the hourglass's down/up levels (4: 64 -> 4 pixels at the bottom).
        weights: None, or the path of a `.weights.h5` or `.keras` file of the same architecture.
        name: the model's name.

    Returns:
        A functional `keras.Model` from `image` to `heatmaps`, float32 `(B, S, H / 4, W / 4, T)`: every stack's
        heatmaps, the last stack's the network's answer. `hourglass_detector` reads them as points.
    """
    _check(
        input_shape=input_shape,
        num_types=num_types,
        num_stacks=num_stacks,
        features=features,
        num_modules=num_modules,
        depth=depth,
    )
    image = model_input(input_shape)
    x = _stem(image, features, name="stem")
    stacks = []
    for s in range(1, num_stacks + 1):
        stack = f"stack{s}"
        y = hourglass(x, depth=depth, num_modules=num_modules, name=f"{stack}_hg")
        y = _modules(y, features, num_modules, name=f"{stack}_out")
        y = keras.layers.Conv2D(features, 1, name=f"{stack}_linear_conv")(y)
        y = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{stack}_linear_bn")(y)
        y = keras.layers.Activation("relu", name=f"{stack}_linear_relu")(y)
        heatmaps = keras.layers.Conv2D(num_types, 1, dtype="float32", name=f"{stack}_heatmaps")(y)
        _, height, width, _ = heatmaps.shape
        stacks.append(
            keras.layers.Reshape((1, height, width, num_types), dtype="float32", name=f"{stack}_out_1")(heatmaps)
        )
        if s < num_stacks:  # the next stack starts from this one's input, features and predictions
            features_back = keras.layers.Conv2D(features, 1, name=f"{stack}_features_back")(y)
            heatmaps_back = keras.layers.Conv2D(features, 1, name=f"{stack}_heatmaps_back")(heatmaps)
            x = keras.layers.Add(name=f"{stack}_next")([x, features_back, heatmaps_back])
    outputs = (
        stacks[0] if num_stacks == 1 else keras.layers.Concatenate(axis=1, dtype="float32", name="heatmaps")(stacks)
    )
    model = keras.Model(image, outputs, name=name)
    load_weights(model, weights)
    return model


def hourglass_detector(
    model: keras.Model,
    *,
    max_points: int = 32,
    score_threshold=0.2,
    refine: bool = True,
    window=3,
    name: str | None = None,
) -> keras.Model:
    """The trained hourglass `model` as a point detector: its last stack's heatmaps read by `HeatmapPeaks`.

    Args:
        model: a `stacked_hourglass` model (its weights are shared, not copied).
        max_points: K, the points kept per image and type.
        score_threshold: a peak must score more (the targets peak at 1); one, or a list of one a type.
        refine: the quarter-pixel refinement of Newell et al.'s code.
        window: the side of the square a peak is the maximum of; one, or a list of one a type.
        name: the detector's name, `model.name` by default (so the registry still gives its task).

    Returns:
        A functional `keras.Model` from the same image input to `{"points": (B, T, K, 2) relative [x, y],
        "scores": (B, T, K), "num_points": (B, T)}` (see `kapps.layers.HeatmapPeaks`).

    Raises:
        ValueError: `model` has no `stack<i>_heatmaps` layers.
    """
    stacks = sorted(
        (int(layer.name[5:-9]), layer)
        for layer in model.layers
        if layer.name.startswith("stack") and layer.name.endswith("_heatmaps") and layer.name[5:-9].isdigit()
    )
    if not stacks:
        raise ValueError(
            f"model must be a stacked_hourglass model with stack<i>_heatmaps layers. Received: {model.name!r}"
        )
    heatmaps = stacks[-1][1].output
    points = HeatmapPeaks(
        max_points=max_points, score_threshold=score_threshold, refine=refine, window=window, name="peaks"
    )(heatmaps)
    return keras.Model(model.input, points, name=name or model.name)
