"""Feature Pyramid Network (Lin et al., "Feature Pyramid Networks for Object Detection", CVPR 2017): the neck that
gives every level of a backbone the semantics of its deepest one.

`fpn` takes a backbone's maps `{"C2": ..., "C5": ...}` (`kapps.models.backbone`) and returns `{"P2": ..., "P6": ...}`
at the same strides, all of `channels` channels, for the RPN and RoI heads of Faster and Mask R-CNN.
`fpn_backbone` is the two together, as a model from images to the pyramid.

    >>> pyramid = kapps.models.detection.fpn_backbone("resnet50", input_shape=(512, 512, 3))
    >>> pyramid.output["P3"].shape   # (None, 64, 64, 256)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from kapps.models.backbones import backbone

import keras

LEVELS = ("C2", "C3", "C4", "C5")
# Detectron's and torchvision's FPN initialisation (kaiming_uniform_ with a=1, zero biases) is LeCun's uniform.
KERNEL_INIT = "lecun_uniform"


def fpn(
    features: Mapping[str, keras.KerasTensor],
    *,
    channels: int = 256,
    levels: Sequence[str] = LEVELS,
    extra_level: bool = True,
    name: str = "fpn",
) -> dict[str, keras.KerasTensor]:
    """The feature pyramid on a backbone's maps (Lin et al. 2017, Sec. 3 and Fig. 3).

    Each level `C<k>` of `levels` gets a 1x1 lateral convolution to `channels` (`{name}_lateral_c<k>`). From the
    deepest level down, the merged map M<k+1> is upsampled 2x by nearest neighbour (`{name}_upsample_m<k+1>`) and
    added to the lateral of level k (`{name}_merge_m<k>`); a 3x3 convolution on each merged map, "to reduce the
    aliasing effect of upsampling", gives `P<k>` (`{name}_output_p<k>`). With `extra_level`, one more level is the
    deepest P subsampled by max pooling of size 1 and stride 2 (`{name}_p6` from P5), as the paper's RPN has it
    (Sec. 4.1). There is no non-linearity; every convolution has a bias, as in the paper's and torchvision's FPN.

    Odd sizes: a stride-2 layer maps n pixels to ceil(n / 2), so a 100-pixel side gives C4 7 and C5 4 pixels, and C5
    upsampled has 8. Where both sizes are known when the graph is built, the upsampled map loses its last row or
    column (`{name}_crop_m<k+1>`, a `Cropping2D`). The ResNets' strided layers put coarse pixel j on fine pixel 2j
    (`kapps.models.resnet_blocks.conv_bn`), so the crop belongs at the bottom and right, and it picks the same
    source pixels as torchvision's `interpolate(size=lateral size)`. Where a size is unknown (an input of
    (None, None, 3)), no crop can be planned: each map must then be exactly twice the next, that is an input side
    that is a multiple of the deepest level's stride (32 for C5), or the merge fails at run time. Only standard
    Keras layers are used, so the pyramid saves in safe mode and exports like the backbone.

    Args:
        features: the backbone's maps by name, `"C<k>"` for stride 2**k (`kapps.models.backbone(...).output`);
            maps not in `levels` are ignored.
        channels: channels of every pyramid level (256 in the paper).
        levels: the maps to build the pyramid on, shallow to deep, of consecutive strides.
        extra_level: add the subsampled level above the deepest (`P6` on `C5`).
        name: prefix of every layer name.

    Returns:
        `{"P<k>": (batch, h_k, w_k, channels)}` shallow to deep, P<k> at the stride of C<k>, the extra level last.

    Raises:
        ValueError: a bad `channels` or `levels`, or maps whose sizes do not halve from one level to the next.
    """
    if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
        raise ValueError(f"channels must be a positive integer. Received: channels={channels!r}")
    if not isinstance(extra_level, bool):
        raise ValueError(f"extra_level must be True or False. Received: extra_level={extra_level!r}")
    depths = _depths(levels, features)
    laterals = [
        keras.layers.Conv2D(channels, 1, kernel_initializer=KERNEL_INIT, name=f"{name}_lateral_{level.lower()}")(
            features[level]
        )
        for level in levels
    ]
    # Top-down pathway, deepest first: M_k = lateral_k + upsample(M_{k+1}).
    merged = [laterals[-1]]
    for depth, lateral in zip(reversed(depths[:-1]), reversed(laterals[:-1]), strict=True):
        coarse = merged[0]
        top_down = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_upsample_m{depth + 1}")(coarse)
        cropping = _cropping(coarse.shape, lateral.shape, depth=depth)
        if any(cropping):
            top_down = keras.layers.Cropping2D(((0, cropping[0]), (0, cropping[1])), name=f"{name}_crop_m{depth + 1}")(
                top_down
            )
        merged.insert(0, keras.layers.Add(name=f"{name}_merge_m{depth}")([lateral, top_down]))
    pyramid = {
        f"P{depth}": keras.layers.Conv2D(
            channels, 3, padding="same", kernel_initializer=KERNEL_INIT, name=f"{name}_output_p{depth}"
        )(m)
        for depth, m in zip(depths, merged, strict=True)
    }
    if extra_level:
        top = depths[-1] + 1
        pyramid[f"P{top}"] = keras.layers.MaxPooling2D(1, strides=2, name=f"{name}_p{top}")(pyramid[f"P{top - 1}"])
    return pyramid


def fpn_backbone(
    backbone_name: str,
    *,
    input_shape: tuple[int | None, int | None, int] | None = None,
    weights: str | os.PathLike | None = None,
    channels: int = 256,
    levels: Sequence[str] = LEVELS,
    extra_level: bool = True,
    name: str | None = None,
    **kwargs,
) -> keras.Model:
    """A registered backbone with a feature pyramid on it (Lin et al. 2017): images in, `{"P2": ..., "P6": ...}` out.

    Args:
        backbone_name: a registered model with the maps `levels` (`kapps.models.list_backbones()`).
        input_shape: (height, width, channels); the model's registered input shape by default. Odd sizes work
            where they are given; with None sides, see `fpn`.
        weights: the backbone's weights, as `kapps.models.backbone` takes them; the pyramid starts fresh.
        channels: channels of every pyramid level.
        levels: the backbone maps the pyramid is built on.
        extra_level: add the subsampled level above the deepest.
        name: model name, `<backbone_name>_fpn` by default; the pyramid's layers are named `fpn_*`.
        **kwargs: more keywords of the backbone's builder (`conv_bias`, ...).

    Returns:
        A functional `keras.Model` whose output is the dict `fpn` returns.
    """
    body = backbone(backbone_name, input_shape=input_shape, weights=weights, maps=list(levels), **kwargs)
    pyramid = fpn(body.output, channels=channels, levels=levels, extra_level=extra_level)
    return keras.Model(body.inputs, pyramid, name=name or f"{backbone_name}_fpn")


def _depths(levels: Sequence[str], features: Mapping[str, keras.KerasTensor]) -> list[int]:
    """The k of each `C<k>` in `levels`, checked to be maps of `features` with consecutive strides."""
    if isinstance(levels, str) or not levels:
        raise ValueError(f"levels must be a non-empty sequence of map names like 'C3'. Received: levels={levels!r}")
    missing = [level for level in levels if level not in features]
    if missing:
        raise ValueError(f"levels must be maps of features, which has {', '.join(features)}. Received: {levels=}")
    depths = [int(level[1:]) if level[:1] == "C" and level[1:].isdigit() else None for level in levels]
    if None in depths or depths != list(range(depths[0], depths[0] + len(depths))):
        raise ValueError(f"levels must be 'C<k>' maps of consecutive k, shallow to deep. Received: {levels=}")
    return depths


def _cropping(coarse_shape, fine_shape, *, depth: int) -> tuple[int, int]:
    """Rows and columns to cut from the 2x-upsampled coarse map to fit the lateral of level `depth`: 0 or 1 on each
    axis whose sizes are both known, 0 where one is unknown."""
    cropping = []
    for coarse, fine in zip(coarse_shape[1:3], fine_shape[1:3], strict=True):
        if coarse is None or fine is None:
            cropping.append(0)
        elif 2 * coarse - fine in (0, 1):
            cropping.append(2 * coarse - fine)
        else:
            raise ValueError(
                f"features must halve in size from one level to the next, C{depth + 1} being ceil(C{depth} / 2). "
                f"Received: C{depth} of {tuple(fine_shape[1:3])} and C{depth + 1} of {tuple(coarse_shape[1:3])}"
            )
    return cropping[0], cropping[1]
