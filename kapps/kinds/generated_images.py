"""Generated images: a generator's one `(B, H, W, C)` output in [-1, 1] (tanh), from noise `(B, latent_dim)` in.

A generator takes no image, so this kind makes its inputs itself (`inputs`): standard normal noise from a fixed
seed a split, on which exports are verified and int8 is calibrated.

Export criterion. A float artifact passes when no pixel of any image differs from Keras's by more than
`FLOAT_MAX_ABS_DIFF` (float graphs differ by ~1e-6). A quantised artifact passes when every image's PSNR against
Keras's image is at least `QUANTIZED_PSNR_DB`, the peak being the range's width, 2: PSNR = 10 log10(2^2 / MSE),
so 30 dB is an RMS error of 0.063, 1.6% of the range (about 4 of 255 grey levels).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from kapps.errors import DataError, ModelError
from kapps.kinds.base import Kind, Outputs, PredictOptions, shapes_text

import numpy as np

FLOAT_MAX_ABS_DIFF = 1e-4
QUANTIZED_PSNR_DB = 30.0
PEAK = 2.0  # the width of [-1, 1]
SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}
EVALUATION_POOL = 8  # side of the pooled images `evaluate` compares


class GeneratedImages(Kind):
    """A generator's images: its inputs are noise it draws itself, compared pixel by pixel (float) or by PSNR
    (quantised) for export, described and drawn as images, scored by a pixel-space Frechet distance."""

    task = "generative"
    legend = "images within the bound"
    own_inputs = "standard normal noise (NumPy's default_rng, seed 0 train, 1 val, 2 test)"

    def inputs(self, input_shape: tuple, count: int, *, split: str) -> np.ndarray:
        """`count` standard normal noise vectors of `input_shape`, from the fixed seed of `split`."""
        shape = tuple(input_shape)
        if None in shape:
            raise ModelError(f"A generator's noise must have a fixed size; its input shape is {shape}.")
        return np.random.default_rng(SPLIT_SEEDS[split]).standard_normal((count, *shape)).astype("float32")

    def read_input(self, path, input_shape: tuple) -> np.ndarray:
        """One noise vector of `input_shape` from a NumPy `.npy` file holding `(latent_dim,)` or `(1, latent_dim)`
        numbers, as float32.

        Raises:
            DataError: the file is missing, is not a `.npy` array, or holds another shape or non-finite numbers.
        """
        shape = tuple(input_shape)
        if not Path(path).is_file():
            raise DataError(f"The noise file {str(path)!r} does not exist.")
        try:
            noise = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            raise DataError(f"{str(path)!r} is not a NumPy .npy file of a generator's noise.") from None
        if noise.shape not in (shape, (1, *shape)) or not np.issubdtype(noise.dtype, np.number):
            raise DataError(
                f"{str(path)!r} holds an array of shape {noise.shape}; the generator takes one noise vector of shape "
                f"{shape}."
            )
        if not np.all(np.isfinite(noise)):
            raise DataError(f"{str(path)!r} holds numbers that are not finite.")
        return noise.reshape(shape).astype("float32")

    def picture(self, outputs: Outputs) -> np.ndarray:
        """The first generated image as uint8 (`to_uint8`), what `kapps predict` draws."""
        (images,) = outputs.values()
        return to_uint8(np.asarray(images)[0])

    def check(self, shapes: Mapping[str, tuple], *, what: str) -> None:
        """Refuse anything but one `(B, H, W, C)` output with 1 or 3 channels."""
        shape = tuple(next(iter(shapes.values()))) if len(shapes) == 1 else ()
        if len(shape) != 4 or shape[-1] not in (1, 3):
            raise ModelError(
                f"{what} is not an image generator: its outputs are {shapes_text(shapes)}, not one (B, H, W, 1 or 3) "
                "array of images."
            )

    def criterion(self, *, quantized: bool) -> str:
        if quantized:
            return (
                f"every image's PSNR against Keras's is at least {QUANTIZED_PSNR_DB:g} dB (peak {PEAK:g}, the width "
                "of [-1, 1])"
            )
        return f"every pixel within {FLOAT_MAX_ABS_DIFF:g} of Keras's"

    def compare(self, got: Outputs, expected: Outputs, *, quantized: bool, model) -> dict:
        """`max_abs_diff`, the PSNR of each image (`min_psnr_db`, `mean_psnr_db`; infinite PSNR, identical images,
        reported as None), `image_agreement` (the share of images within the criterion) and `passed`."""
        (name,) = expected
        got_images, expected_images = np.asarray(got[name], "float64"), np.asarray(expected[name], "float64")
        errors = np.abs(got_images - expected_images).reshape(len(expected_images), -1)
        psnr = image_psnr(got_images, expected_images)
        within = psnr >= QUANTIZED_PSNR_DB if quantized else errors.max(axis=1) <= FLOAT_MAX_ABS_DIFF
        finite = psnr[np.isfinite(psnr)]
        return {
            "max_abs_diff": float(errors.max()),
            "min_psnr_db": float(psnr.min()) if np.isfinite(psnr.min()) else None,
            "mean_psnr_db": float(finite.mean()) if len(finite) else None,
            "image_agreement": float(np.mean(within)),
            "top1_agreement": None,
            "passed": bool(np.all(within)),
        }

    def agreement(self, entry: dict) -> float | None:
        return entry.get("image_agreement")

    def describe(self, entry: dict) -> str:
        psnr = entry.get("min_psnr_db")
        return (
            f"max abs diff {entry['max_abs_diff']:.3g}, lowest PSNR "
            + ("infinite (identical)" if psnr is None else f"{psnr:.1f} dB")
            + f", {entry['image_agreement']:.1%} of images within the bound"
        )

    def result(
        self, outputs: Outputs, *, class_name: Callable[[int], str], width: int, height: int, options: PredictOptions
    ) -> dict:
        """`generated`: the image's `height`, `width`, `channels` and its values' `min`, `max` and `mean`."""
        (images,) = outputs.values()
        image = np.asarray(images)[0]
        return {
            "generated": {
                "height": int(image.shape[0]),
                "width": int(image.shape[1]),
                "channels": int(image.shape[2]),
                "min": float(image.min()),
                "max": float(image.max()),
                "mean": float(image.mean()),
            }
        }

    def summary(self, entry: dict) -> str:
        g = entry["generated"]
        return f"a {g['height']}x{g['width']}x{g['channels']} image, values {g['min']:.2f} to {g['max']:.2f}"

    def draw(self, pixels: np.ndarray, entry: dict, file) -> None:
        """The generated image itself (`to_uint8` of the output), titled with its size."""
        from kapps.viz import picture, write_png

        fig, ax = picture(pixels)
        g = entry["generated"]
        ax.set_title(f"generated {g['height']}x{g['width']}")
        write_png(fig, file)

    def evaluate(self, model, dataset, *, class_names: Sequence[str] | None = None, limit: int | None = None) -> dict:
        """Compare a generator's images with a batched dataset of real images in [-1, 1] (`images` or `(images,
        labels)`), as many generated as real, from the test split's noise.

        The score needs no feature network: the Frechet distance between the two sets of images average-pooled to
        at most `EVALUATION_POOL` x `EVALUATION_POOL` pixels a channel (`kapps.generative_metrics.frechet_distance`
        of their means and covariances), a coarse measure of layout and contrast. It is not FID; a recipe measures
        FID, or the distance in a trained classifier's features (`lenet_frechet_distance` for digits), itself.

        Returns:
            `pixel_frechet_distance`, the pooled size `pooled`, the real and generated images' mean and standard
            deviation, and `count` the images of each set.
        """
        from kapps.generative_metrics import frechet_distance

        import tensorflow as tf

        if limit is not None and limit < 2:
            raise ValueError(f"limit must be None or at least 2 images. Received: limit={limit!r}")
        real = []
        for batch in dataset:
            real.append(np.asarray(batch[0] if isinstance(batch, (tuple, list)) else batch, "float32"))
            if limit is not None and sum(map(len, real)) >= limit:
                break
        real = np.concatenate(real)[:limit] if real else np.zeros((0,))
        if len(real) < 2:
            raise ValueError(f"dataset must hold at least two images. Received: {len(real)}")
        noise = self.inputs(model.input_shape[1:], len(real), split="test")
        generate = tf.function(lambda z: model(z, training=False), reduce_retracing=True)
        fake = np.concatenate([np.asarray(generate(noise[i : i + 256])) for i in range(0, len(noise), 256)])
        side = min(EVALUATION_POOL, real.shape[1], real.shape[2])
        pooled = [
            np.asarray(tf.image.resize(images, (side, side), method="area"), "float64").reshape(len(images), -1)
            for images in (real, fake)
        ]
        statistics = [(p.mean(axis=0), np.cov(p, rowvar=False)) for p in pooled]
        return {
            "pixel_frechet_distance": frechet_distance(*statistics[0], *statistics[1]),
            "pooled": [side, side],
            "real_mean": float(real.mean()),
            "real_std": float(real.std()),
            "generated_mean": float(fake.mean()),
            "generated_std": float(fake.std()),
            "count": len(real),
        }

    def load_data(self, spec: str, *, image_size: tuple[int, int], seed: int, data_dir: str | None):
        import kapps.data

        return kapps.data.load(spec, image_size=image_size, seed=seed, data_dir=data_dir)


def image_psnr(got: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """The PSNR in dB of each of `got`'s images against `expected`'s, peak `PEAK`: 10 log10(PEAK^2 / MSE); infinite
    where they are identical."""
    got, expected = np.asarray(got, "float64"), np.asarray(expected, "float64")
    mse = np.mean((got - expected) ** 2, axis=tuple(range(1, expected.ndim)))
    with np.errstate(divide="ignore"):
        return 10 * np.log10(PEAK**2 / mse)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Images in [-1, 1] as uint8 in [0, 255] (clipped), for PNG files."""
    return np.round((np.clip(np.asarray(images, "float32"), -1, 1) + 1) * 127.5).astype(np.uint8)


def image_grid(images: np.ndarray, *, columns: int | None = None, gap: int = 2) -> np.ndarray:
    """Images `(N, H, W, C)` in [-1, 1] tiled into one uint8 picture, `columns` a row (about a square by default),
    `gap` black pixels between them: the sample grid of a generator."""
    images = to_uint8(images)
    count, height, width, channels = images.shape
    columns = columns or int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / columns))
    grid = np.zeros((rows * (height + gap) - gap, columns * (width + gap) - gap, channels), np.uint8)
    for i, image in enumerate(images):
        top, left = (i // columns) * (height + gap), (i % columns) * (width + gap)
        grid[top : top + height, left : left + width] = image
    return grid
