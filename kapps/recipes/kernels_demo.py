"""Kernels, padding, stride and pooling on real photographs.

The first lecture of a deep-learning course in pictures: a convolution slides a small kernel over an image, the
padding and the stride decide how large the output is, and max pooling keeps the strongest answer of each window.
The photographs are the ones scikit-image ships (the cameraman, the astronaut, the coins), so it runs offline in
a few seconds; every number is computed by a Keras layer (`Conv2D` with fixed weights, `MaxPooling2D`,
`kapps.layers.sobel.SobelEdges`) and every output size is checked against `kapps.conv.conv_output_size`.

    python recipes/kernels_demo.py                  # writes saved_models/kernels_demo/*.png
    python recipes/kernels_demo.py --out /tmp/kernels
"""

from __future__ import annotations

from pathlib import Path

from kapps.cli import Command
from kapps.conv import apply_kernel, conv_output_size, max_pool
from kapps.layers.sobel import SobelEdges

import click
import keras
import matplotlib
import numpy as np
import skimage.data
import skimage.transform

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SHARPEN = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype="float32")
# The max-pooling example of the course's slides: 2x2 windows, stride 2.
POOLING_EXAMPLE = np.array([[1, 4, 3, 3], [2, 7, 1, 4], [3, 6, 5, 1], [2, 1, 4, 3]], dtype="float32")


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    click.echo(f"wrote {path}")
    return path


def _show(ax, image, title: str, **kwargs) -> None:
    ax.imshow(image, interpolation="nearest", **kwargs)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])


def _show_numbers(ax, grid: np.ndarray, title: str) -> None:
    _show(ax, grid, title, cmap="Blues", vmin=0, vmax=grid.max() * 1.3)
    for (row, col), value in np.ndenumerate(grid):
        ax.text(col, row, f"{value:g}", ha="center", va="center", fontsize=14)


def sobel_figure(image: np.ndarray, name: str, path: Path) -> Path:
    """The image and its Sobel gx, gy and magnitude, computed by SobelEdges (padding 'same')."""
    edges = keras.ops.convert_to_numpy(SobelEdges(padding="same")(image[None]))[0]  # (H, W, 3)
    # Clip at the 99.5th percentile: a few strong edges would otherwise wash the rest out.
    limit = np.percentile(np.abs(edges[..., :2]), 99.5)
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4))
    _show(axes[0], image.squeeze(), f"{name} {image.shape[0]}x{image.shape[1]}x{image.shape[2]}", cmap="gray")
    _show(axes[1], edges[..., 0], "gx: brighter to the right (red)", cmap="RdBu_r", vmin=-limit, vmax=limit)
    _show(axes[2], edges[..., 1], "gy: brighter downwards (red)", cmap="RdBu_r", vmin=-limit, vmax=limit)
    strong = np.percentile(edges[..., 2], 99.5)
    _show(axes[3], edges[..., 2], "magnitude sqrt(gx² + gy²)", cmap="gray_r", vmin=0, vmax=strong)
    grey = "grey" if image.shape[-1] == 1 else "RGB -> BT.601 luma"
    fig.suptitle(f"Sobel edges of {name} ({grey}), 3x3 kernels, padding 'same'")
    return _save(fig, path)


def padding_stride_figure(image: np.ndarray, path: Path) -> Path:
    """One 3x3 sharpening kernel at three paddings/strides; each title is the formula's size, checked by Keras."""
    settings = [(1, 1), (0, 1), (0, 2)]  # (padding, stride)
    height, width = image.shape[:2]
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.6))
    _show(axes[0], image.squeeze(), f"input {height}x{width}", cmap="gray", vmin=0, vmax=1)
    for ax, (padding, stride) in zip(axes[1:], settings, strict=True):
        size = (conv_output_size(height, 3, stride=stride, padding=padding),
                conv_output_size(width, 3, stride=stride, padding=padding))  # fmt: skip
        output = apply_kernel(image[None], SHARPEN, stride=stride, padding=padding)[0, ..., 0]
        if output.shape != size:
            raise RuntimeError(f"Keras output {output.shape} differs from conv_output_size {size}")
        _show(ax, output, f"padding {padding}, stride {stride}: {size[0]}x{size[1]}", cmap="gray", vmin=0, vmax=1)
        # Same pixel scale in every panel, so the smaller outputs look smaller.
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_ylim(height - 0.5, -0.5)
    fig.suptitle(f"3x3 sharpening kernel {SHARPEN.astype(int).tolist()}: floor((n + 2p - k) / s) + 1")
    return _save(fig, path)


def pooling_figure(image: np.ndarray, path: Path) -> Path:
    """2x2 max pooling with stride 2: the course's 4x4 example with its numbers, then a photograph."""
    pooled_example = max_pool(POOLING_EXAMPLE[None, ..., None])[0, ..., 0]
    pooled = max_pool(image[None])[0]
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4), gridspec_kw={"width_ratios": [1, 1, 1.3, 1.3]})
    _show_numbers(axes[0], POOLING_EXAMPLE, "4x4 input")
    _show_numbers(axes[1], pooled_example, "2x2 max pool, stride 2: 2x2")
    height, width = image.shape[:2]
    _show(axes[2], image.squeeze(), f"coins {height}x{width}", cmap="gray")
    _show(axes[3], pooled.squeeze(), f"max pooled: {pooled.shape[0]}x{pooled.shape[1]}", cmap="gray")
    fig.suptitle("Max pooling keeps the largest value of each 2x2 window and halves height and width")
    return _save(fig, path)


@click.command(name="kernels_demo", cls=Command, context_settings={"show_default": True})
@click.option("--out", type=click.Path(file_okay=False), default="saved_models/kernels_demo", help="Output folder.")
def main(out: str) -> list[Path]:
    """Draw Sobel edges, padding/stride output sizes and max pooling on scikit-image's photographs."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)

    # 1. Data: three photographs scaled to [0, 1], as (height, width, channels).
    camera = skimage.data.camera()[..., None].astype("float32") / 255.0  # (512, 512, 1)
    astronaut = skimage.data.astronaut().astype("float32") / 255.0  # (512, 512, 3)
    coins = skimage.data.coins()[..., None].astype("float32") / 255.0  # (303, 384, 1)

    # 2. Edges: a fixed Sobel layer on a grey and on an RGB photograph.
    written = [
        sobel_figure(camera, "camera", out_dir / "sobel_camera.png"),
        sobel_figure(astronaut, "astronaut", out_dir / "sobel_astronaut.png"),
    ]

    # 3. Padding and stride: the cameraman shrunk to 48x48, small enough to see the pixels and the borders.
    small = skimage.transform.resize(camera, (48, 48), anti_aliasing=True).astype("float32")
    written.append(padding_stride_figure(small, out_dir / "padding_stride.png"))

    # 4. Pooling: 2x2 windows, stride 2.
    written.append(pooling_figure(coins, out_dir / "max_pooling.png"))
    return written


if __name__ == "__main__":
    main()
