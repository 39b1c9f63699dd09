"""SegNet (Badrinarayanan, Kendall & Cipolla, "SegNet: A deep convolutional encoder-decoder architecture for image
segmentation", IEEE TPAMI 2017) and the same encoder-decoder upsampling with learned transposed convolutions.

Both share VGG16's 13 convolutions as the encoder, each followed by batch normalisation and ReLU, in five blocks
that end in a 2x2 max pooling of stride 2 which rounds odd sizes up (Caffe's ceil mode: 360x480 pools to 23x30
and then 12x15, as in the authors' CamVid model). The decoder mirrors the encoder block for block: it upsamples,
then applies as many 3x3 convolutions (batch norm, ReLU) as the encoder block had, the last one of each block
going to the next finer block's channels, and the very last one, the mirror of conv1_1, to the classes (no batch
norm), followed by a softmax. The two models differ in the upsampling only:

- `segnet` puts each value back where the encoder's maximum came from (`MaxPoolingWithSwitches` and
  `MaxUnpooling`, which carry the switches as a mask of builtin ops), so it learns no upsampling weights and keeps
  the encoder's boundary positions;
- `encoder_decoder` learns a 2x2, stride-2 transposed convolution per block with as many output as input
  channels (the "learning to upsample" of the paper's decoder comparison), whose output is cropped to the encoder
  map's size.

Layer names: the encoder's are VGG's with batch norm (`block1_conv1`, `block1_conv1_bn`, `block1_conv1_relu`, ...,
`block1_pool`), so `kapps.models.transfer_backbone(vgg16_bn_classifier, model, backbone_name="vgg16_bn")` copies
a trained VGG16-BN encoder at `width=1`; the decoder's are `decoder{b}_unpool`, or `decoder{b}_upsample` and
`decoder{b}_crop` (only where the encoder pooled an odd size), then `decoder{b}_conv{i}` (+ `_bn`, `_relu`) with
i counting down as the mirrored encoder convolutions do, and the classifier `decoder1_classifier`; the output
layer is `scores`.
"""

from __future__ import annotations

from kapps.layers.unpooling import MaxPoolingWithSwitches, MaxUnpooling
from kapps.models._common import load_weights, model_input
from kapps.models.vgg import CONFIGS, FILTERS
from kapps.registry import register_model

import keras

# VGG16 (configuration D): convolutions per block, 2-2-3-3-3.
CONVOLUTIONS = tuple(len(kernels) for kernels in CONFIGS["D"].kernel_sizes)


def conv_bn_relu(x, filters: int, *, name: str):
    """A 3x3 convolution of "same" padding, batch normalisation and ReLU: layers `name`, `{name}_bn`, `{name}_relu`."""
    x = keras.layers.Conv2D(filters, 3, padding="same", name=name)(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _filters(width: float) -> tuple[int, ...]:
    return tuple(max(1, round(f * width)) for f in FILTERS)


def _encoder_decoder(
    upsampling: str,
    *,
    input_shape: tuple[int | None, int | None, int],
    num_classes: int,
    width: float,
    classifier_activation: str | None,
    weights: str | None,
    name: str,
) -> keras.Model:
    """Builds SegNet (`upsampling="switches"`) or the transposed-convolution variant; see the public builders."""
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ValueError(f"width must be a positive number. Received: width={width!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer. Received: num_classes={num_classes!r}")
    inputs = model_input(input_shape, weights=weights)
    if upsampling == "transposed" and None in inputs.shape[1:3]:
        raise ValueError(
            "encoder_decoder needs a known height and width: its upsampled maps are cropped by a row or column where "
            f"the encoder pooled an odd size. Received: input_shape={input_shape!r}"
        )
    filters = _filters(width)

    # Encoder: (B, H, W, 3) -> (B, ceil(H/32), ceil(W/32), filters[-1]), remembering each block's switches or size.
    x, skips = inputs, []
    for block, (channels, count) in enumerate(zip(filters, CONVOLUTIONS, strict=True), start=1):
        for i in range(1, count + 1):
            x = conv_bn_relu(x, channels, name=f"block{block}_conv{i}")
        if upsampling == "switches":
            x, switches = MaxPoolingWithSwitches(name=f"block{block}_pool")(x)
            skips.append(switches)
        else:
            skips.append(tuple(x.shape[1:3]))
            x = keras.layers.MaxPooling2D(2, padding="same", name=f"block{block}_pool")(x)

    # Decoder, coarse to fine: upsample to the encoder block's size, then its convolutions mirrored.
    for block in range(len(filters), 0, -1):
        channels, count, skip = filters[block - 1], CONVOLUTIONS[block - 1], skips[block - 1]
        if upsampling == "switches":
            x = MaxUnpooling(name=f"decoder{block}_unpool")([x, skip])
        else:
            x = keras.layers.Conv2DTranspose(channels, 2, strides=2, name=f"decoder{block}_upsample")(x)
            extra = tuple(up - size for up, size in zip(x.shape[1:3], skip, strict=True))
            if any(extra):  # the pooling covered an odd size with a window of one row or column
                x = keras.layers.Cropping2D(((0, extra[0]), (0, extra[1])), name=f"decoder{block}_crop")(x)
        for i in range(count, 1, -1):
            x = conv_bn_relu(x, channels, name=f"decoder{block}_conv{i}")
        if block > 1:
            x = conv_bn_relu(x, filters[block - 2], name=f"decoder{block}_conv1")
    # (B, H, W, num_classes): the mirror of conv1_1 is the classifier, in float32 under mixed precision.
    x = keras.layers.Conv2D(num_classes, 3, padding="same", dtype="float32", name="decoder1_classifier")(x)
    x = keras.layers.Activation(classifier_activation, dtype="float32", name="scores")(x)
    model = keras.Model(inputs, x, name=name)
    load_weights(model, weights)
    return model


_DOCSTRING = """{summary}

    Reference: Badrinarayanan, Kendall & Cipolla, "SegNet: A deep convolutional encoder-decoder architecture for
    image segmentation", IEEE TPAMI 2017{reference}.

    Args:
        input_shape: (height, width, channels); 360x480x3 (CamVid) is the paper's. Any size works, odd ones
            included: the poolings round up and the decoder crops back, so the scores have the input's size.{free}
        num_classes: classes scored per pixel; 11 is the paper's CamVid setting.
        width: channel multiplier of every block (64-128-256-512-512 at 1, the paper's); 0.125 or 0.25 make a
            variant that trains on a CPU.
        classifier_activation: activation of the per-pixel scores, `None` for logits.
        weights: `None` or the path of a weight file of this architecture (`.weights.h5` or `.keras`).
        name: model name.

    Returns:
        A functional `keras.Model` from images to scores `(batch, height, width, num_classes)`, float32.
"""


def _describe(summary: str, reference: str, free: str = ""):
    def decorate(builder):
        builder.__doc__ = _DOCSTRING.format(summary=summary, reference=reference, free=free)
        return builder

    return decorate


# Weights of SegNet at its defaults, from the authors' Caffe model (SegNet-Tutorial's segnet_train.prototxt):
# the encoder is VGG16's 13 convolutions, 14,714,688 weights; the decoder has 13 too, each the mirror of one of
# the encoder's (c_out -> c_in, with c_in biases), the last one to the 11 classes: 512->512 x5 (11,799,040),
# 512->256 (1,179,904), 256->256 x2 (1,180,160), 256->128 (295,040), 128->128 (147,584), 128->64 (73,792),
# 64->64 (36,928), 64->11 (6,347), 14,718,795 in all. 25 batch norms (all but the classifier) on 7,936 channels:
# 15,872 learned scales and shifts, 15,872 moving means and variances.
_SEGNET_SOURCE = (
    "computed from the authors' CamVid model (SegNet-Tutorial segnet_train.prototxt; Badrinarayanan et al. 2017): "
    "encoder convs 14,714,688 + mirrored decoder convs 14,718,795 (the last 3x3 to 11 classes) = 29,433,483, + 25 "
    "batch norms on 7,936 channels x 4 (gamma, beta, moving mean and variance) = 31,744: 29,465,227; the learned "
    "weights alone (gamma and beta, no statistics: count_kind='trainable') are 29,449,355. The first rounds to the "
    "29.5M parameters the paper's comparison with FCN and DeconvNet gives SegNet, the second to 29.4M"
)
# encoder_decoder adds one 2x2 transposed convolution per block, c -> c with bias: 4c^2 + c for c = 512, 512,
# 256, 128, 64: 2,442,688.
_ENCODER_DECODER_SOURCE = (
    "computed: segnet's 29,465,227 + five 2x2 transposed convolutions c -> c with bias (4c^2 + c for c = 512, 512, "
    "256, 128, 64) = 2,442,688: 31,907,915"
)


@register_model(
    task="segmentation",
    input_shape=(360, 480, 3),
    num_classes=11,
    param_count=29_465_227,
    source=_SEGNET_SOURCE,
)
@_describe(
    "SegNet: a VGG16 encoder with batch norm, and a mirrored decoder that unpools with the encoder's switches.",
    ", Sec. 3 and Fig. 2",
    "\n            A free size (None) works too.",
)
def segnet(
    *,
    input_shape: tuple[int | None, int | None, int] = (360, 480, 3),
    num_classes: int = 11,
    width: float = 1.0,
    classifier_activation: str | None = "softmax",
    weights: str | None = None,
    name: str = "segnet",
) -> keras.Model:
    return _encoder_decoder(
        "switches",
        input_shape=input_shape,
        num_classes=num_classes,
        width=width,
        classifier_activation=classifier_activation,
        weights=weights,
        name=name,
    )


@register_model(
    task="segmentation",
    input_shape=(360, 480, 3),
    num_classes=11,
    param_count=31_907_915,
    source=_ENCODER_DECODER_SOURCE,
)
@_describe(
    "SegNet's encoder and decoder, upsampling with learned 2x2 transposed convolutions instead of switches.",
    ", Sec. 4 (decoder variants that learn to upsample)",
    "\n            The size must be known: the crops after the transposed convolutions depend on it.",
)
def encoder_decoder(
    *,
    input_shape: tuple[int | None, int | None, int] = (360, 480, 3),
    num_classes: int = 11,
    width: float = 1.0,
    classifier_activation: str | None = "softmax",
    weights: str | None = None,
    name: str = "encoder_decoder",
) -> keras.Model:
    return _encoder_decoder(
        "transposed",
        input_shape=input_shape,
        num_classes=num_classes,
        width=width,
        classifier_activation=classifier_activation,
        weights=weights,
        name=name,
    )
