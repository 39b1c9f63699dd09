"""The generative preset of the engine: a digit classifier to judge a generator, and what a GAN run records every
epoch (a sample grid from fixed noise, the curves, the judge's Frechet distance and scores)."""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

from kapps.errors import OptionError
from kapps.generative_metrics import DigitJudge
from kapps.kinds.generated_images import image_grid
from kapps.train.classification import fit_classifier
from kapps.train.engine import HISTORY_FILE, MODEL_FILE, Run
from kapps.train.options import TrainOptions
from kapps.viz import plot_curves

import keras
import numpy as np

JUDGE_MODEL = "lenet5"
JUDGE_SETTINGS = {"activation": "relu", "subsampling": "avg", "dropout": 0.25}  # recipes/lenet5.py's defaults
JUDGE_EPOCHS = 60
JUDGE_BATCH_SIZE = 32
JUDGE_LR = 2e-3
DISTANCE_NOTE = (
    "Frechet distance in the 84 F6 features of a LeNet-5 trained on the same data (the judge); not Inception FID, "
    "and comparable only with the same judge"
)


def train_judge(opts: TrainOptions, data, *, out: Path, epochs: int = JUDGE_EPOCHS, augment=None) -> Run:
    """Train the LeNet-5 that judges a generator of `data`'s images into the run folder `out`, with the settings of
    `recipes/lenet5.py` (ReLU, average subsampling, dropout 0.25, Adam at 2e-3 on a cosine decay, batch 32), the
    epoch of best validation accuracy kept.

    Args:
        opts: the GAN run's options: its seed, precision, strategy and `--resume` carry over; the rest is the
            judge's own.
        data: the `kapps.data.Data` the generator learns, images in [0, 1].
        out: the judge's run folder.
        epochs: training epochs.
        augment: a batched `(images, labels)` augmentation (`kapps.data.digit_augment` for digits).

    Returns:
        The judge's `Run`; `run.model` is the trained LeNet-5.
    """
    import kapps.models

    judge_opts = dataclasses.replace(opts, out=str(out), epochs=epochs, batch_size=JUDGE_BATCH_SIZE, lr=JUDGE_LR)
    kwargs = {"input_shape": data.input_shape, "num_classes": data.num_classes, **JUDGE_SETTINGS}
    return fit_classifier(
        judge_opts,
        data,
        build_model=lambda: kapps.models.build(JUDGE_MODEL, **kwargs),
        augment=augment,
        config={"task": "classification", "model": {"name": JUDGE_MODEL, "kwargs": kwargs}},
    )


def load_judge(path, *, image_shape, num_classes: int) -> keras.Model:
    """A trained judge from a LeNet-5 run folder or its `.keras` file.

    Raises:
        OptionError: the path holds no Keras model, or one that does not classify `image_shape` images into
            `num_classes` classes.
    """
    from kapps.export.source import load_keras

    given = str(path)
    path = Path(path)
    file = path / MODEL_FILE if path.is_dir() else path
    if not file.is_file():
        raise OptionError(f"--judge {given!r} is neither a run folder with a {MODEL_FILE} nor a .keras file.")
    try:
        model = load_keras(file)
    except Exception as err:  # a ModelError sentence; here it is the option that is wrong
        raise OptionError(f"--judge {given!r}: {err}") from None
    inputs, outputs = tuple(model.input_shape[1:]), tuple(model.output_shape[1:])
    if inputs[-1:] != tuple(image_shape[-1:]) or outputs != (num_classes,):
        raise OptionError(
            f"--judge {given!r} takes {inputs} images into {outputs} outputs; a judge of these images takes "
            f"{image_shape[-1]}-channel images into {num_classes} class probabilities."
        )
    return model


class GeneratorProgress(keras.callbacks.Callback):
    """After every epoch of a GAN (a model with a `generator`): the generator's images (its weights' moving average
    when the GAN keeps one, `shown_generator`) from fixed noise as a grid
    PNG `plots/samples_epoch_NNN.png`, the curves of every logged quantity `plots/curves.png`, and, with a judge,
    its scores of the images from `judge_noise` added to the epoch's logs: `frechet_distance`, `confident_share`
    (read with confidence >= `confidence`) and `smallest_class_share`.

    Place it among the engine's `callbacks`, which run before the checkpoint and the CSV logger, so the kept epoch
    can be chosen by the distance and history.csv holds it.

    Args:
        run_folder: the run folder (history.csv is read there when a run resumes; plots go to `plots/`).
        grid_noise: `(N, latent_dim)` noise of the sample grid, the same every epoch.
        judge: a `DigitJudge` of the real images, or None for the pictures only.
        judge_noise: `(M, latent_dim)` noise of the images the judge scores every epoch.
        confidence: the least top probability that counts as a confident reading.
    """

    def __init__(self, run_folder, *, grid_noise, judge: DigitJudge | None = None, judge_noise=None, confidence=0.9):
        super().__init__()
        if judge is not None and judge_noise is None:
            raise ValueError("judge_noise must be given with a judge. Received: judge_noise=None")
        self.folder = Path(run_folder)
        self.grid_noise = np.asarray(grid_noise, "float32")
        self.judge = judge
        self.judge_noise = None if judge_noise is None else np.asarray(judge_noise, "float32")
        self.confidence = confidence
        self.rows: list[dict] = []

    def on_train_begin(self, logs=None):
        # The engine has cut history.csv to the epochs a resumed run keeps.
        self.rows = read_history(self.folder / HISTORY_FILE)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        generator = shown_generator(self.model)
        write_grid(generate(generator, self.grid_noise), self.folder / "plots" / f"samples_epoch_{epoch + 1:03d}.png")
        if self.judge is not None:
            images = generate(generator, self.judge_noise)
            scores = self.judge.scores(images, confidence=self.confidence)
            logs["frechet_distance"] = self.judge.distance(images)
            logs["confident_share"] = scores["confident_share"]
            logs["smallest_class_share"] = scores["smallest_class_share"]
        self.rows.append({"epoch": float(epoch), **{k: float(v) for k, v in logs.items()}})
        plot_curves(self.rows, self.folder / "plots" / "curves.png", title=self.folder.name)


def shown_generator(gan: keras.Model) -> keras.Model:
    """The generator a GAN's samples are drawn from: its weights' moving average when it keeps one
    (`GAN(average=...)`), else the generator as trained."""
    averaged = getattr(gan, "averaged_generator", None)
    return averaged() if averaged is not None else gan.generator


def tanh_range(images, labels):
    """A batch of labelled images in [0, 1] as a GAN trains on them: the images alone, in [-1, 1] (tanh's range)."""
    return images * 2.0 - 1.0


def generate(generator: keras.Model, noise: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """The generator's images (inference mode) of `noise`, in batches."""
    return np.concatenate(
        [np.asarray(generator(noise[i : i + batch_size], training=False)) for i in range(0, len(noise), batch_size)]
    )


def share_over_draws(
    generator: keras.Model, judge, *, draws: int, samples: int, confidence: float, first_seed: int = 100
) -> dict:
    """How much the judge's confident share moves from one draw of noise to another: the share on `draws` draws of
    `samples` standard normal noise vectors each (NumPy's `default_rng`, seeds `first_seed` on, apart from the
    kinds' split seeds 0-2), as `{"draws", "samples", "mean", "sd", "min", "max"}`. One draw of 1,000 has a
    binomial spread of about 1.3 points at a share near 0.8, so a single figure can sit a few points off
    the generator's own."""
    latent_dim = int(generator.input_shape[-1])
    shares = []
    for draw in range(draws):
        noise = np.random.default_rng(first_seed + draw).standard_normal((samples, latent_dim)).astype("float32")
        shares.append(judge.scores(generate(generator, noise), confidence=confidence)["confident_share"])
    return {
        "draws": draws,
        "samples": samples,
        "mean": float(np.mean(shares)),
        "sd": float(np.std(shares, ddof=1)) if draws > 1 else 0.0,
        "min": float(np.min(shares)),
        "max": float(np.max(shares)),
    }


def write_grid(images: np.ndarray, path: Path, *, columns: int | None = None) -> Path:
    """Images in [-1, 1] as one grid PNG (`kapps.kinds.generated_images.image_grid`), grey or RGB."""
    from PIL import Image

    grid = image_grid(images, columns=columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)
    return path


def read_history(path: Path) -> list[dict]:
    """history.csv's rows as numbers (missing values left out), or [] without the file."""
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", "NA", None)} for row in csv.DictReader(f)]


def fall_ratio(rows: list[dict], key: str = "frechet_distance") -> float | None:
    """The first epoch's `key` over the last epoch's (how many times it fell), None when either is missing."""
    values = [row.get(key, math.nan) for row in rows]
    if not values or not (math.isfinite(values[0]) and math.isfinite(values[-1])) or values[-1] <= 0:
        return None
    return values[0] / values[-1]
