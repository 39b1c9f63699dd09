"""U-Net (Ronneberger, Fischer & Brox, "U-Net: Convolutional networks for biomedical image segmentation", MICCAI
2015), and the border weights of its loss.

A contracting path of four levels, each two 3x3 convolutions with ReLU then a 2x2 max pooling of stride 2, the
filters doubling from 64 to 512, and a bottom level of 1024; an expanding path whose every level upsamples with a
2x2 "up-convolution" (a transposed convolution of stride 2) that halves the channels, concatenates the contracting
level's map ("copy and crop"), and applies two 3x3 convolutions; a 1x1 convolution to the classes (the paper's
Fig. 1).

`padding="valid"` is the paper's: every 3x3 convolution loses a pixel on each side, the skips are cropped at their
centre to the upsampled map, and a 572x572 tile gives a 388x388 map of its centre; every size before a pooling
must be even, which the builder checks. `padding="same"` keeps the input's size: the poolings round an odd size up
and each upsampled map is cropped from its top-left corner to the skip's size, so any size works.
"""

from __future__ import annotations

import os

from kapps.layers.upsampling import CropLike
from kapps.models._common import RELU_INIT, load_weights, model_input
from kapps.registry import register_model

import keras
import numpy as np

PADDINGS = ("valid", "same")


def unet_output_size(size: int, *, depth: int = 4, padding: str = "valid") -> int:
    """The output height (or width) of a U-Net for an input of `size` pixels.

    Raises:
        ValueError: with `padding="valid"`, a size before a pooling is odd or a map vanishes (572 -> 388 works,
            573 does not).
    """
    if padding == "same":
        return size
    x = size
    for _ in range(depth):
        x -= 4
        if x < 2 or x % 2:
            raise ValueError(
                f"with padding='valid' every size before a 2x2 pooling must be even and positive (572 gives 388). "
                f"Received: size={size}"
            )
        x //= 2
    x -= 4
    for _ in range(depth):
        x = 2 * x - 4
        if x < 1:
            raise ValueError(f"with padding='valid' the input is too small for a depth of {depth}. Received: {size}")
    return x


def _conv_pair(x, filters: int, *, padding: str, name: str):
    """Two 3x3 convolutions with ReLU, He-initialised as in the paper (std sqrt(2 / fan-in)): `{name}_conv1/2`."""
    for i in (1, 2):
        x = keras.layers.Conv2D(
            filters, 3, padding=padding, activation="relu", kernel_initializer=RELU_INIT, name=f"{name}_conv{i}"
        )(x)
    return x


@register_model(
    task="segmentation",
    input_shape=(572, 572, 1),
    num_classes=2,
    param_count=31_030_658,
    source=(
        "computed from Ronneberger et al. 2015, Fig. 1 (1 input channel, 2 classes, 2x2 up-convolutions with bias): "
        "contracting path (two 3x3 convs a level, 64 to 1024 filters) 18,842,048 + expanding path (2x2 up-conv "
        "halving the channels, two 3x3 convs on the concatenation) 12,188,480 + 1x1 classifier 64x2+2 = 130"
    ),
)
def unet(
    *,
    input_shape: tuple[int | None, int | None, int] = (572, 572, 1),
    num_classes: int = 2,
    base_filters: int = 64,
    depth: int = 4,
    padding: str = "valid",
    dropout: float = 0.0,
    classifier_activation: str | None = "softmax",
    weights: str | os.PathLike | None = None,
    name: str = "unet",
) -> keras.Model:
    """U-Net: a contracting and a symmetric expanding path joined by copy-and-crop skips.

    Reference: Ronneberger, Fischer & Brox, "U-Net: Convolutional networks for biomedical image segmentation",
    MICCAI 2015, Fig. 1.

    Args:
        input_shape: (height, width, channels); the paper's 572x572x1 tile by default. With `padding="valid"`
            every size before a pooling must be even (`unet_output_size` tells the output's size).
        num_classes: classes scored at every pixel (2 in the paper: cell and background).
        base_filters: filters of the first level, doubling at each level down (64 to 1024 in the paper; 8 or 16
            train on a CPU).
        depth: number of poolings (4 in the paper).
        padding: `"valid"` (the paper's: 572 -> 388) or `"same"` (the output has the input's size).
        dropout: rate of a dropout at the end of the contracting path, which the paper uses without giving the
            rate; 0 adds no layer.
        classifier_activation: `"softmax"` for per-pixel class probabilities, `None` for logits.
        weights: `None` or the path of a weight file of this architecture (`.weights.h5` or `.keras`).
        name: model name.

    Returns:
        A functional `keras.Model` from `(B, H, W, C)` images to float32 `(B, h, w, num_classes)` scores, whose
        last layer is named `"scores"` (h, w = H, W with `padding="same"`).
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer. Received: num_classes={num_classes!r}")
    if not isinstance(base_filters, int) or base_filters < 1:
        raise ValueError(f"base_filters must be a positive integer. Received: base_filters={base_filters!r}")
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer. Received: depth={depth!r}")
    if padding not in PADDINGS:
        raise ValueError(f"padding must be 'valid' or 'same'. Received: padding={padding!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")
    inputs = model_input(input_shape, weights=weights)
    for size in input_shape[:2]:
        if size is not None:
            unet_output_size(size, depth=depth, padding=padding)

    x, skips = inputs, []
    for level in range(1, depth + 1):
        x = _conv_pair(x, base_filters * 2 ** (level - 1), padding=padding, name=f"down{level}")
        skips.append(x)
        # "same" rounds an odd size up; the upsampled map is then cropped back to the skip's size
        x = keras.layers.MaxPooling2D(2, strides=2, padding=padding, name=f"down{level}_pool")(x)
    x = _conv_pair(x, base_filters * 2**depth, padding=padding, name="bottom")
    if dropout:
        x = keras.layers.Dropout(dropout, name="bottom_dropout")(x)

    for level in range(depth, 0, -1):
        skip = skips[level - 1]
        filters = base_filters * 2 ** (level - 1)
        x = keras.layers.Conv2DTranspose(filters, 2, strides=2, name=f"up{level}_upconv")(x)
        if padding == "valid":
            skip = CropLike(None, name=f"up{level}_skip_crop")([skip, x])
        else:
            x = CropLike(0, name=f"up{level}_crop")([x, skip])
        x = keras.layers.Concatenate(name=f"up{level}_concat")([skip, x])
        x = _conv_pair(x, filters, padding=padding, name=f"up{level}")

    x = keras.layers.Conv2D(num_classes, 1, name="classifier")(x)
    x = keras.layers.Activation(classifier_activation or "linear", dtype="float32", name="scores")(x)
    model = keras.Model(inputs, x, name=name)
    load_weights(model, weights)
    return model


def unet_weight_map(
    instance_labels,
    *,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights=None,
) -> np.ndarray:
    """The per-pixel loss weights of U-Net's eq. 2, which make the net learn the thin background borders
    between touching cells:

        w(x) = w_c(x) + w0 exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

    d1 and d2 are the (Euclidean) distances from pixel x to the nearest pixel of the nearest and of the
    second-nearest cell. The border term is given to background pixels, those the separation is made of (a pixel
    of a cell is at distance 0 from its own); with fewer than two cells it is 0.

    Args:
        instance_labels: `(H, W)` ints, 0 for background and k > 0 for the pixels of cell k.
        w0: weight of the border term (10 in the paper).
        sigma: its width in pixels (5 in the paper, "approximately").
        class_weights: w_c: None for 1 everywhere; `"balanced"` for the weight of each class (background and
            cells) inversely proportional to its pixel count, normalised so the pixels average 1; or a pair
            `(background, foreground)`.

    Returns:
        float32 `(H, W)` weights.

    Reference: Ronneberger et al., "U-Net: Convolutional networks for biomedical image segmentation", MICCAI 2015,
    eq. 2.
    """
    from scipy import ndimage

    labels = np.asarray(instance_labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer) or labels.min(initial=0) < 0:
        raise ValueError(
            f"instance_labels must be (H, W) non-negative integers. Received: shape {labels.shape}, {labels.dtype}"
        )
    if w0 < 0 or sigma <= 0:
        raise ValueError(f"w0 must be >= 0 and sigma > 0. Received: w0={w0!r}, sigma={sigma!r}")
    foreground = labels > 0
    if class_weights is None:
        weights = np.ones(labels.shape, "float64")
    elif isinstance(class_weights, str) and class_weights == "balanced":
        counts = np.array([np.sum(~foreground), np.sum(foreground)], "float64")
        per_class = np.where(counts > 0, labels.size / (2 * np.maximum(counts, 1)), 0.0)
        if counts.min() == 0:  # one class only: every pixel weighs 1
            per_class = np.ones(2)
        weights = np.where(foreground, per_class[1], per_class[0])
    else:
        try:
            background, cells = (float(w) for w in class_weights)
        except (TypeError, ValueError):
            raise ValueError(
                f"class_weights must be None, 'balanced' or (background, foreground). Received: {class_weights!r}"
            ) from None
        weights = np.where(foreground, cells, background)

    cells = [k for k in np.unique(labels) if k > 0]
    if len(cells) >= 2:
        # (cells, H, W): the distance from every pixel to the nearest pixel of each cell
        distances = np.stack([ndimage.distance_transform_edt(labels != k) for k in cells])
        nearest = np.partition(distances, 1, axis=0)[:2]
        border = w0 * np.exp(-((nearest[0] + nearest[1]) ** 2) / (2 * sigma**2))
        weights = weights + np.where(foreground, 0.0, border)
    return weights.astype("float32")
