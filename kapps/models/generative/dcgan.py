"""DCGAN generator and discriminator (Radford, Metz and Chintala, "Unsupervised Representation Learning with Deep
Convolutional Generative Adversarial Networks", ICLR 2016, arXiv 2015).

The paper's guidelines (sec. 3): no pooling, strided convolutions in the discriminator and fractionally strided
(transposed) ones in the generator; batch norm in both, except on the generator's output and the discriminator's
input layer; no hidden dense layers, only the generator's projection of the noise and the discriminator's single
output on its flattened last map; ReLU in the generator with tanh on the output; LeakyReLU of slope 0.2 in the
discriminator. Weights start from N(0, 0.02) (sec. 4); batch-norm scales from N(1, 0.02) and the batch-norm
settings (momentum 0.9, epsilon 1e-5) are those of the authors' Torch code (dcgan.torch). Layers followed by batch
norm have no bias (the norm's beta replaces it); the others have one.

The number of 2x steps comes from the image size: its sides are halved while they stay even and at least 4, so
64 x 64 has 4 steps from 4 x 4, 32 x 32 has 3 from 4 x 4 and 28 x 28 (MNIST) has 2 from 7 x 7. Widths double
from `base_filters` at the largest hidden map towards the smallest.

Parameter counts at 64 x 64 x 3 with 100 noise dimensions and `base_filters=128`: the paper's LSUN generator
(Fig. 1: 100 -> 4x4x1024 -> 8x8x512 -> 16x16x256 -> 32x32x128 -> 64x64x3, 5x5 kernels). Generator: the projection
100 x 16,384 = 1,638,400; the transposed convolutions 25 x 1024 x 512 = 13,107,200, 25 x 512 x 256 = 3,276,800,
25 x 256 x 128 = 819,200 and 25 x 128 x 3 + 3 = 9,603 (with its bias: no norm follows); batch norm on 1024, 512,
256 and 128 channels, 4 numbers each (gamma, beta, moving mean and variance): 7,680. All: 18,858,883; trainable
(without the 3,840 moving statistics): 18,855,043. The discriminator mirrors it, 64x64x3 -> 32x32x128 -> 16x16x256
-> 8x8x512 -> 4x4x1024 -> one logit: 25 x 3 x 128 + 128 = 9,728 (input layer, no norm, with bias), 819,200,
3,276,800 and 13,107,200, the output 16,384 + 1 = 16,385, and batch norm on 256, 512 and 1024 channels: 7,168.
All: 17,236,481; trainable: 17,232,897. The paper states no count.
"""

from __future__ import annotations

from kapps.registry import register_model

import keras

LEAKY_SLOPE = 0.2
KERNEL = 5
INIT_STDDEV = 0.02
BN_MOMENTUM = 0.9  # Torch's momentum 0.1
BN_EPSILON = 1e-5
SMALLEST_SIDE = 4


def _kernel_init() -> keras.initializers.Initializer:
    return keras.initializers.RandomNormal(0.0, INIT_STDDEV)


def _batch_norm(x, *, name: str):
    return keras.layers.BatchNormalization(
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        gamma_initializer=keras.initializers.RandomNormal(1.0, INIT_STDDEV),
        name=name,
    )(x)


def scale_steps(image_shape) -> int:
    """How many 2x steps the DCGAN networks take for `image_shape`: its sides are halved while they stay even and at
    least `SMALLEST_SIDE` (64 -> 4 steps to 4 x 4, 32 -> 3, 28 -> 2 to 7 x 7).

    Raises:
        ValueError: the shape is not (height, width, channels) of positive integers, or its sides cannot be halved
            the same number of times (at least once).
    """
    shape = tuple(image_shape)
    if len(shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ValueError(f"image_shape must be (height, width, channels). Received: image_shape={image_shape!r}")
    steps = []
    for side in shape[:2]:
        count = 0
        while side % 2 == 0 and side // 2 >= SMALLEST_SIDE:
            side //= 2
            count += 1
        steps.append(count)
    if steps[0] != steps[1] or steps[0] == 0:
        raise ValueError(
            f"image_shape's height and width must halve (staying even and at least {SMALLEST_SIDE}) the same number "
            f"of times, at least once: 28, 32 and 64 do. Received: image_shape={shape}"
        )
    return steps[0]


def _check_positive(value, argument: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{argument} must be a positive integer. Received: {argument}={value!r}")


def up_block(x, filters: int, *, name: str):
    """A DCGAN generator step: a 5x5 transposed convolution of stride 2 (no bias), batch norm, ReLU; layers
    `{name}_conv`, `{name}_bn`, `{name}_relu`."""
    x = keras.layers.Conv2DTranspose(
        filters,
        KERNEL,
        strides=2,
        padding="same",
        use_bias=False,
        kernel_initializer=_kernel_init(),
        name=f"{name}_conv",
    )(x)
    x = _batch_norm(x, name=f"{name}_bn")
    return keras.layers.Activation("relu", name=f"{name}_relu")(x)


def down_block(x, filters: int, *, normalize: bool, name: str):
    """A DCGAN discriminator step: a 5x5 convolution of stride 2, batch norm (or a bias, on the input layer),
    LeakyReLU 0.2; layers `{name}_conv`, `{name}_bn`, `{name}_lrelu`."""
    x = keras.layers.Conv2D(
        filters,
        KERNEL,
        strides=2,
        padding="same",
        use_bias=not normalize,
        kernel_initializer=_kernel_init(),
        name=f"{name}_conv",
    )(x)
    if normalize:
        x = _batch_norm(x, name=f"{name}_bn")
    return keras.layers.LeakyReLU(LEAKY_SLOPE, name=f"{name}_lrelu")(x)


@register_model(
    task="generative",
    input_shape=(100,),
    num_classes=0,
    param_count=18_858_883,
    source="computed from Radford et al. 2015, Fig. 1 (the LSUN generator: 100 -> 4x4x1024 -> 8x8x512 -> 16x16x256 "
    "-> 32x32x128 -> 64x64x3, 5x5 kernels): dense projection and transposed convolutions without bias before batch "
    "norm, the output layer with bias, all weights incl. batch-norm statistics (18,855,043 trainable); the paper "
    "states no count (see kapps.models.generative.dcgan)",
)
def dcgan_generator(
    *,
    latent_dim: int = 100,
    image_shape=(64, 64, 3),
    base_filters: int = 128,
    name: str = "dcgan_generator",
) -> keras.Model:
    """DCGAN generator (Radford et al., "Unsupervised Representation Learning with Deep Convolutional Generative
    Adversarial Networks", 2015): noise in, an image in [-1, 1] out.

    A dense projection of the noise to the smallest map (`projection`, reshaped by `projection_reshape`), batch
    norm and ReLU, then `scale_steps(image_shape)` transposed-convolution steps `up1`, `up2`, ..., the last of
    which makes the image's channels, with bias and no norm, and `generated`, its tanh (float32 under any policy).

    Args:
        latent_dim: the noise's size (the input `noise`, shape `(latent_dim,)`).
        image_shape: (height, width, channels) of the images; 64x64x3 is the paper's, 32x32 and 28x28 build too.
        base_filters: the width of the largest hidden map; it doubles at each smaller one (128 gives the paper's
            1024 at 4 x 4 for 64 x 64 images).
        name: model name.

    Returns:
        A functional `keras.Model`, `(B, latent_dim)` -> `(B, *image_shape)`.
    """
    _check_positive(latent_dim, "latent_dim")
    _check_positive(base_filters, "base_filters")
    steps = scale_steps(image_shape)
    height, width, channels = image_shape
    smallest = (height >> steps, width >> steps)
    widths = [base_filters * 2 ** (steps - 1 - i) for i in range(steps)]  # the hidden maps, smallest first

    noise = keras.Input(shape=(latent_dim,), name="noise")
    x = keras.layers.Dense(
        smallest[0] * smallest[1] * widths[0], use_bias=False, kernel_initializer=_kernel_init(), name="projection"
    )(noise)
    x = keras.layers.Reshape((*smallest, widths[0]), name="projection_reshape")(x)
    x = _batch_norm(x, name="projection_bn")
    x = keras.layers.Activation("relu", name="projection_relu")(x)
    for i, filters in enumerate(widths[1:], start=1):
        x = up_block(x, filters, name=f"up{i}")
    x = keras.layers.Conv2DTranspose(
        channels,
        KERNEL,
        strides=2,
        padding="same",
        kernel_initializer=_kernel_init(),
        dtype="float32",
        name=f"up{steps}_conv",
    )(x)
    generated = keras.layers.Activation("tanh", dtype="float32", name="generated")(x)
    return keras.Model(noise, generated, name=name)


@register_model(
    task="generative",
    input_shape=(64, 64, 3),
    num_classes=1,
    param_count=17_236_481,
    source="computed as the mirror of Radford et al. 2015's LSUN generator (64x64x3 -> 32x32x128 -> 16x16x256 -> "
    "8x8x512 -> 4x4x1024 -> one logit, 5x5 kernels, no norm and a bias on the input layer, no bias before batch "
    "norm), all weights incl. batch-norm statistics (17,232,897 trainable); the paper states no count (see "
    "kapps.models.generative.dcgan)",
)
def dcgan_discriminator(
    *,
    image_shape=(64, 64, 3),
    base_filters: int = 128,
    name: str = "dcgan_discriminator",
) -> keras.Model:
    """DCGAN discriminator (Radford et al., "Unsupervised Representation Learning with Deep Convolutional Generative
    Adversarial Networks", 2015): an image in [-1, 1] in, the logit that it is real out.

    `scale_steps(image_shape)` strided-convolution steps `down1`, `down2`, ... (no batch norm on `down1`, which
    reads the image), their widths doubling from `base_filters`, then the last map flattened into one dense
    output `logit` (float32 under any policy; the sigmoid is in the loss).

    Args:
        image_shape: (height, width, channels) of the images (the input `image`); as `dcgan_generator`'s.
        base_filters: the width of the first (largest) map; it doubles at each step.
        name: model name.

    Returns:
        A functional `keras.Model`, `(B, *image_shape)` -> `(B, 1)` logits.
    """
    _check_positive(base_filters, "base_filters")
    steps = scale_steps(image_shape)
    image = keras.Input(shape=tuple(image_shape), name="image")
    x = image
    for i in range(steps):
        x = down_block(x, base_filters * 2**i, normalize=i > 0, name=f"down{i + 1}")
    x = keras.layers.Flatten(name="flatten")(x)
    logit = keras.layers.Dense(1, kernel_initializer=_kernel_init(), dtype="float32", name="logit")(x)
    return keras.Model(image, logit, name=name)
