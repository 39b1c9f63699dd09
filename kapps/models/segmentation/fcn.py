"""FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer & Darrell, "Fully convolutional networks for semantic
segmentation", CVPR 2015) on VGG-16.

VGG-16's convolutions, then its fully connected layers as convolutions (fc6 a 7x7 convolution of 4096 filters on
pool5, fc7 a 1x1 of 4096), a 1x1 class scoring layer `score_fr` at stride 32, and transposed convolutions back to
the input's size. FCN-32s upsamples the stride-32 scores 32x at once; FCN-16s upsamples them 2x and adds the
scores of pool4 (a 1x1 convolution `score_pool4`) before a 16x upsampling; FCN-8s adds pool3's the same way before
an 8x one (the paper's Fig. 3). As in the paper (Sec. 4.2-4.3) the scoring layers start at zero, the 2x
upsamplings start as bilinear interpolation and are learned, and the final upsampling is bilinear and fixed
(its kernel is a non-trainable weight).

Alignment. The reference Caffe nets pad conv1_1 by 100 pixels and crop every fused map at offsets 5 and 9 and
the output at 19 (32s), 27 (16s) or 31 (8s), which come from that padding. kapps pads every convolution "same"
(fc6 too) and pools in Caffe's ceil mode (an odd size rounds up), so that the cell i of the map of stride s covers
input pixels [s i, s i + s) and every map has ceil(size / s) cells. A transposed convolution of stride f and kernel
2f puts input cell i at output f i + f - 0.5, so its output cropped from offset f / 2 is aligned with the finer
map: offset 1 for the 2x upsamplings, 16, 8 and 4 for the final 32x, 16x and 8x ones. The output then has the
input's size for every size, odd or even.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from kapps.layers.upsampling import BilinearUpsampling, CropLike
from kapps.models._common import RELU_INIT, load_weights, model_input
from kapps.models.backbones import copy_weights
from kapps.models.vgg import CONFIGS as VGG_CONFIGS
from kapps.models.vgg import FILTERS, fully_convolutional, vgg_block
from kapps.registry import register_model

import keras


@dataclass(frozen=True)
class FCNConfig:
    """One FCN variant.

    Attributes:
        skips: the VGG blocks whose pooled maps are scored and fused, coarse to fine: none for FCN-32s, block 4
            (pool4) for FCN-16s, blocks 4 and 3 for FCN-8s. The output stride is 32 / 2 ** len(skips).
    """

    skips: tuple[int, ...]

    @property
    def output_stride(self) -> int:
        return 32 // 2 ** len(self.skips)


CONFIGS = {
    "fcn32s": FCNConfig(skips=()),
    "fcn16s": FCNConfig(skips=(4,)),
    "fcn8s": FCNConfig(skips=(4, 3)),
}


def _fcn(
    variant: str,
    *,
    input_shape: tuple[int | None, int | None, int] = (512, 512, 3),
    num_classes: int = 21,
    width: float = 1.0,
    fc_units: int | None = None,
    fc6_kernel: int = 7,
    dropout: float = 0.5,
    classifier_activation: str | None = "softmax",
    weights: str | os.PathLike | None = None,
    name: str,
) -> keras.Model:
    """Builds `CONFIGS[variant]`; the public builders' docstring describes the keywords."""
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer. Received: num_classes={num_classes!r}")
    if not isinstance(width, (int, float)) or not 0 < width <= 1:
        raise ValueError(f"width must be in (0, 1]. Received: width={width!r}")
    fc_units = max(1, round(4096 * width)) if fc_units is None else fc_units
    if not isinstance(fc_units, int) or fc_units < 1:
        raise ValueError(f"fc_units must be a positive integer. Received: fc_units={fc_units!r}")
    if not isinstance(fc6_kernel, int) or fc6_kernel < 1:
        raise ValueError(f"fc6_kernel must be a positive integer. Received: fc6_kernel={fc6_kernel!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")
    if weights == "imagenet":
        raise ValueError(
            "weights='imagenet' is not offered for FCNs: build vgg16(weights='imagenet') and pass it to "
            "convolutionalise(classifier, fcn)."
        )
    config = CONFIGS[variant]
    inputs = model_input(input_shape, weights=weights)

    x, pools = inputs, {}
    for block, (filters, kernel_sizes) in enumerate(zip(FILTERS, VGG_CONFIGS["D"].kernel_sizes, strict=True), 1):
        x = vgg_block(
            x, max(1, round(filters * width)), kernel_sizes=kernel_sizes, pool_padding="same", name=f"block{block}"
        )
        pools[block] = x
    for fc, kernel in (("fc6", fc6_kernel), ("fc7", 1)):
        x = keras.layers.Conv2D(
            fc_units, kernel, padding="same", activation="relu", kernel_initializer=RELU_INIT, name=fc
        )(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"drop{fc[-1]}")(x)
    # (B, ceil(H/32), ceil(W/32), num_classes)
    score = _score(x, num_classes, name="score_fr")

    source = "upscore2"
    for block in config.skips:
        finer = _score(pools[block], num_classes, name=f"score_pool{block}")
        up = _upsample(score, num_classes, factor=2, trainable=True, name=source)
        up = CropLike(1, name=f"{source}_crop")([up, finer])
        score = keras.layers.Add(name=f"fuse_pool{block}")([up, finer])
        source = f"upscore_pool{block}"

    stride = config.output_stride
    final = "upscore" if stride == 32 else f"upscore{stride}"
    x = _upsample(score, num_classes, factor=stride, trainable=False, name=final)
    x = CropLike(stride // 2, name=f"{final}_crop")([x, inputs])  # (B, H, W, num_classes)
    x = keras.layers.Activation(classifier_activation or "linear", dtype="float32", name="scores")(x)
    model = keras.Model(inputs, x, name=name)
    load_weights(model, weights)
    return model


def _score(x, num_classes: int, *, name: str):
    """A 1x1 class scoring convolution, zero at the start (the paper's Sec. 4.1 and 4.2)."""
    return keras.layers.Conv2D(num_classes, 1, kernel_initializer="zeros", bias_initializer="zeros", name=name)(x)


def _upsample(x, num_classes: int, *, factor: int, trainable: bool, name: str):
    """A transposed convolution of stride `factor` and kernel 2 `factor`, bilinear at the start; its output is
    `factor` pixels larger on each side than `factor` times the input and must be cropped from `factor // 2`."""
    return keras.layers.Conv2DTranspose(
        num_classes,
        2 * factor,
        strides=factor,
        use_bias=False,
        kernel_initializer=BilinearUpsampling(),
        trainable=trainable,
        name=name,
    )(x)


def convolutionalise(classifier: keras.Model, fcn: keras.Model) -> int:
    """Start an FCN from a trained VGG-16 classifier (the paper's Sec. 3.1 and 4.1).

    The classifier's convolutions are copied layer by layer, and its fully connected fc1 and fc2 become the FCN's
    fc6 and fc7 as the equal convolutions (`kapps.models.vgg.fully_convolutional`); its class layer is left out,
    as the paper discards it and scores the FCN's own classes. The FCN must be built with the classifier's shapes:
    width 1, `fc_units` its fc width and `fc6_kernel` the size of its last pooled map (7 at 224x224). The FCN
    then takes the classifier's input convention: Caffe-style mean-subtracted BGR for keras.applications' ImageNet
    VGG-16 (`kapps.preprocessing`, `"caffe"`).

    Args:
        classifier: a `vgg16(...)` with its top.
        fcn: an `fcn32s`, `fcn16s` or `fcn8s`.

    Returns:
        The number of layers copied (13 convolutions, fc6 and fc7).

    Raises:
        ModelError: a layer's weights do not have the FCN's shapes.
    """
    convolutional = fully_convolutional(classifier)
    layers = [layer.name for layer in convolutional.layers if layer.weights and layer.name != "scores"]
    return copy_weights(convolutional, fcn, layers=layers)


_DOCSTRING = """{summary}

    Reference: Long, Shelhamer & Darrell, "Fully convolutional networks for semantic segmentation", CVPR 2015,
    Fig. 3 and Sec. 4 (VGG-16 trunk, as the paper's best nets).

    Args:
        input_shape: (height, width, channels); any height and width (None for free sizes): the output has the
            input's size. 512x512x3 is the default (PASCAL VOC images are at most 500 pixels a side).
        num_classes: classes scored at every pixel; 21 (PASCAL VOC with background) as the reference model.
        width: multiplier on every channel count (VGG's 64 to 512 filters, and fc6/fc7's 4096 unless `fc_units`
            is given): 1 is the paper's, 1/16 a net that trains on a CPU.
        fc_units: filters of fc6 and fc7; 4096 * width by default.
        fc6_kernel: fc6's kernel, the window of pool5 that VGG-16's fc1 reads: 7 for a classifier of 224x224
            images (the paper's), its own last map's size for another (`convolutionalise`).
        dropout: rate of the dropout after fc6 and fc7 (0.5 in the paper).
        classifier_activation: `"softmax"` for per-pixel class probabilities, `None` for logits.
        weights: `None` or the path of a weight file of this architecture (`.weights.h5` or `.keras`); to start
            from a VGG-16 classifier, see `convolutionalise`.
        name: model name.

    Returns:
        A functional `keras.Model` from `(B, H, W, C)` images to float32 `(B, H, W, num_classes)` scores, whose
        last layer is named `"scores"`.
"""


def _describe(summary: str):
    """Gives a public builder the shared docstring."""

    def decorate(builder):
        builder.__doc__ = _DOCSTRING.format(summary=summary)
        return builder

    return decorate


# Parameter counts, computed from the paper's architecture with the Caffe reference nets' shapes (voc-fcn*s:
# 21 classes, fc6 a 7x7 convolution, transposed convolutions without bias, full 21x21 channel kernels):
#   VGG-16 conv1_1..conv5_3                      14,714,688
#   fc6   7 x 7 x 512 x 4096 + 4096             102,764,544
#   fc7   1 x 1 x 4096 x 4096 + 4096             16,781,312
#   score_fr   4096 x 21 + 21                        86,037   -> 134,346,581 (the paper's "134M", Table 1)
#   score_pool4   512 x 21 + 21                      10,773
#   score_pool3   256 x 21 + 21                       5,397
#   2x upsampling   4 x 4 x 21 x 21                   7,056   (learned)
#   final upsampling 2f x 2f x 21 x 21: 32x 1,806,336, 16x 451,584, 8x 112,896   (fixed: non-trainable)
_COUNT = (
    "computed from Long et al. 2015 (VGG-16 convs 14,714,688 + fc6 7x7x512x4096 102,764,544 + fc7 16,781,312 + "
    "score_fr 86,037 = 134,346,581, 21 classes as voc-fcn*s){rest}; counted with the fixed final upsampling, "
    "a non-trainable weight: trainable {trainable:,}"
)


@register_model(
    task="segmentation",
    input_shape=(512, 512, 3),
    num_classes=21,
    param_count=136_152_917,
    source=_COUNT.format(rest=" + upscore 64x64x21x21 1,806,336", trainable=134_346_581),
)
@_describe("FCN-32s: VGG-16's scores at stride 32, upsampled 32x by fixed bilinear interpolation.")
def fcn32s(**kwargs: Any) -> keras.Model:
    return _fcn("fcn32s", **{"name": "fcn32s", **kwargs})


@register_model(
    task="segmentation",
    input_shape=(512, 512, 3),
    num_classes=21,
    param_count=134_815_994,
    source=_COUNT.format(
        rest=" + score_pool4 10,773 + upscore2 4x4x21x21 7,056 + upscore16 32x32x21x21 451,584",
        trainable=134_364_410,
    ),
)
@_describe("FCN-16s: the stride-32 scores upsampled 2x and added to pool4's, then upsampled 16x.")
def fcn16s(**kwargs: Any) -> keras.Model:
    return _fcn("fcn16s", **{"name": "fcn16s", **kwargs})


@register_model(
    task="segmentation",
    input_shape=(512, 512, 3),
    num_classes=21,
    param_count=134_489_759,
    source=_COUNT.format(
        rest=" + score_pool4 10,773 + score_pool3 5,397 + upscore2 and upscore_pool4 2 x 7,056 + upscore8 "
        "16x16x21x21 112,896",
        trainable=134_376_863,
    ),
)
@_describe("FCN-8s: FCN-16s's fused scores upsampled 2x and added to pool3's, then upsampled 8x.")
def fcn8s(**kwargs: Any) -> keras.Model:
    return _fcn("fcn8s", **{"name": "fcn8s", **kwargs})
