"""Differentiable augmentation of a discriminator's inputs (Zhao, Liu, Lin, Zhu & Han, "Differentiable Augmentation
for Data-Efficient GAN Training", NeurIPS 2020).

A discriminator trained on a small set of real images learns them by heart: it tells them from generated ones by
detail the generator cannot follow, and the generator's gradient stops teaching it the data. Augmenting the real
images alone does not help, since the generator then learns to draw augmented images. DiffAugment applies the same
random transformations to the real and the generated images every time the discriminator sees them, in the
discriminator's step and the generator's, with ops through which gradients flow back to the generator. The
generator still learns the images as they are; the discriminator sees many versions of each.

The three policies of the paper, each drawn per image:

- `"color"`: brightness (add U(-0.5, 0.5)), saturation (scale each pixel's distance from its grey by U(0, 2);
  nothing to do on one channel) and contrast (scale the distance from the image's mean by U(0.5, 1.5));
- `"translation"`: shift by up to 1/8 of the side in each direction, whole pixels, zeros shifted in;
- `"cutout"`: a zeroed square of half the side, centred anywhere in the image (cut off at the edges).

Images are those the generator draws, [-1, 1] for DCGAN's tanh, so zero is mid-grey, as in the paper.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

POLICIES = ("color", "translation", "cutout")
TRANSLATION = 1 / 8  # the most shift, as a share of each side
CUTOUT = 1 / 2  # the side of the cut square, as a share of each side


def check_policies(policies: Sequence[str] | str | None) -> tuple[str, ...]:
    """The policies as a tuple in the paper's order of application, checked; `"a,b"` strings are split.

    Raises:
        ValueError: a name is not one of `POLICIES`.
    """
    if policies is None:
        return ()
    names = [p.strip() for p in policies.split(",")] if isinstance(policies, str) else list(policies)
    names = [name for name in names if name]
    unknown = [name for name in names if name not in POLICIES]
    if unknown:
        raise ValueError(f"augmentation policies are {', '.join(POLICIES)}. Received: {unknown}")
    return tuple(name for name in POLICIES if name in names)


def diff_augment(images, policies: Sequence[str], seed) -> tf.Tensor:
    """`images` (B, H, W, C) with `policies` applied, each drawn per image from the stateless `seed` (a shape-(2,)
    int tensor); differentiable in `images`. The same seed gives the same transformations."""
    x = tf.convert_to_tensor(images)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=8)
    batch = tf.shape(x)[0]
    dtype = x.dtype

    def uniform(i, shape, low, high):
        return tf.random.stateless_uniform(shape, seeds[i], low, high, dtype=tf.float32)

    if "color" in policies:
        x = x + tf.cast(uniform(0, [batch, 1, 1, 1], -0.5, 0.5), dtype)
        grey = tf.reduce_mean(x, axis=-1, keepdims=True)
        x = (x - grey) * tf.cast(uniform(1, [batch, 1, 1, 1], 0.0, 2.0), dtype) + grey
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        x = (x - mean) * tf.cast(uniform(2, [batch, 1, 1, 1], 0.5, 1.5), dtype) + mean
    if "translation" in policies:
        x = _translate(x, seeds[3], seeds[4])
    if "cutout" in policies:
        x = _cutout(x, seeds[5], seeds[6])
    return x


def _translate(x, seed_rows, seed_columns):
    """Each image shifted by whole pixels, up to `TRANSLATION` of its side each way, zeros shifted in."""
    height, width = x.shape[1], x.shape[2]
    batch = tf.shape(x)[0]
    pad_h, pad_w = max(1, round(height * TRANSLATION)), max(1, round(width * TRANSLATION))
    shift_h = tf.random.stateless_uniform([batch, 1], seed_rows, -pad_h, pad_h + 1, dtype=tf.int32)
    shift_w = tf.random.stateless_uniform([batch, 1], seed_columns, -pad_w, pad_w + 1, dtype=tf.int32)
    padded = tf.pad(x, [[0, 0], [pad_h, pad_h], [pad_w, pad_w], [0, 0]])
    rows = tf.range(height)[None, :] + pad_h + shift_h  # (B, H): the padded rows each output row reads
    columns = tf.range(width)[None, :] + pad_w + shift_w
    x = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(x, columns, axis=2, batch_dims=1)


def _cutout(x, seed_rows, seed_columns):
    """Each image with a square of `CUTOUT` of its side set to zero, centred at a uniformly drawn pixel."""
    height, width = x.shape[1], x.shape[2]
    batch = tf.shape(x)[0]
    size_h, size_w = max(1, round(height * CUTOUT)), max(1, round(width * CUTOUT))
    centre_h = tf.random.stateless_uniform([batch, 1, 1], seed_rows, 0, height, dtype=tf.int32)
    centre_w = tf.random.stateless_uniform([batch, 1, 1], seed_columns, 0, width, dtype=tf.int32)
    rows = tf.range(height)[None, :, None] - (centre_h - size_h // 2)  # offsets inside the square: 0..size - 1
    columns = tf.range(width)[None, None, :] - (centre_w - size_w // 2)
    inside = (rows >= 0) & (rows < size_h) & (columns >= 0) & (columns < size_w)
    return x * tf.cast(~inside, x.dtype)[..., None]
