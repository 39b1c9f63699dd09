"""What the point recipes share (`recipes/hourglass.py`, `recipes/wheat_localisation.py`): their common options and the
checks of them (`hourglass_options`, `HourglassSettings`), batches with Gaussian heatmap targets for the loss, the
validation point measures of each epoch read through the point detector, the test scores a run's metrics.json keeps,
and the training of a stacked hourglass through the engine (`fit_hourglass`). A recipe keeps its story: which data,
which network, what it reports.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence

import kapps.data
from kapps.errors import OptionError
from kapps.keypoints import choose_thresholds, heatmap_targets
from kapps.keypoints.peaks import thresholds
from kapps.kinds import kind_for
from kapps.kinds.keypoints import EVALUATION_RADIUS, detected_points, peak_settings
from kapps.layers.heatmaps import HeatmapPeaks
from kapps.losses import HeatmapLoss
from kapps.metrics import PeriodicScores
from kapps.models import build
from kapps.models.keypoints.hourglass import hourglass_detector
from kapps.train.engine import Run, fit
from kapps.train.options import TrainOptions
from kapps.train.recipe import run_config
from kapps.train.schedules import warmup_cosine

import click
import keras
import tensorflow as tf

# The measures of `kind_for("heatmap").evaluate` that `PointMetrics` adds to an epoch's logs, by the key it logs.
LOGGED = {"pck": "pck@0.05", "f1": "f1", "precision": "precision", "recall": "recall"}
# `--score-threshold auto`: the thresholds tried on the validation split, and the one of the detector that scores
# each epoch meanwhile.
CANDIDATE_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 19))  # 0.05 .. 0.9
MONITOR_THRESHOLD = 0.3


@dataclasses.dataclass(frozen=True)
class HourglassSettings:
    """The options every point recipe takes: the network, the targets, the loss and the peak detector."""

    image_size: int
    stacks: int
    features: int
    depth: int
    sigma: tuple[float, ...]
    foreground_weight: tuple[float, ...]  # one, or one a point type
    score_threshold: tuple[float, ...] | None  # one, or one a point type; None: chosen on the validation split
    max_points: int
    peak_window: tuple[int, ...]  # one, or one a point type

    @property
    def architecture(self) -> dict:
        """`stacked_hourglass` keywords beside the input shape and the point types."""
        return {"num_stacks": self.stacks, "features": self.features, "depth": self.depth}

    @property
    def peaks(self) -> dict:
        """`hourglass_detector` keywords; with the threshold to be chosen on the validation split, those of the
        detector that scores each epoch (`MONITOR_THRESHOLD`)."""
        if self.score_threshold is None:
            threshold = MONITOR_THRESHOLD
        elif len(self.score_threshold) == 1:
            threshold = self.score_threshold[0]
        else:
            threshold = list(self.score_threshold)
        window = self.peak_window[0] if len(self.peak_window) == 1 else list(self.peak_window)
        return {"max_points": self.max_points, "score_threshold": threshold, "window": window}

    @property
    def loss_weight(self) -> float | list[float]:
        """`HeatmapLoss`'s foreground weight: one number, or a list of one a type."""
        return self.foreground_weight[0] if len(self.foreground_weight) == 1 else list(self.foreground_weight)

    def check(self) -> None:
        """Refuse, in one sentence each, options that make no stacked hourglass or no point detector.

        Raises:
            OptionError: a value out of range, or options the builder refuses (its sentence quoted).
        """
        if not all(s > 0 for s in self.sigma):
            raise OptionError(f"--sigma must be positive, not {','.join(f'{s:g}' for s in self.sigma)}.")
        if not all(w >= 0 for w in self.foreground_weight):
            raise OptionError(
                f"--foreground-weight must be at least 0, not {','.join(f'{w:g}' for w in self.foreground_weight)}."
            )
        if not all(w >= 3 and w % 2 == 1 for w in self.peak_window):
            raise OptionError(
                f"--peak-window must be odd and at least 3, not {','.join(str(w) for w in self.peak_window)}."
            )
        if self.score_threshold is not None and not all(0 <= v < 1 for v in self.score_threshold):
            raise OptionError(
                "--score-threshold must be at least 0 and below 1, not "
                f"{','.join(f'{v:g}' for v in self.score_threshold)}."
            )
        cells = (self.image_size // 4) ** 2
        if not 1 <= self.max_points <= cells:
            raise OptionError(f"--max-points must be from 1 to the {cells} heatmap pixels, not {self.max_points}.")
        try:  # a size the hourglass cannot take fails here, before the data is made
            shape = (self.image_size, self.image_size, 3)
            build("stacked_hourglass", input_shape=shape, num_types=1, **self.architecture)
        except ValueError as err:
            raise OptionError(f"These options do not make a stacked hourglass: {err}") from None


_FIELDS = tuple(field.name for field in dataclasses.fields(HourglassSettings))


def hourglass_options(
    *,
    image_size: int,
    features: int,
    max_points: int,
    sigma: str = "1",
    score_threshold: str = "0.3",
    foreground_weight: str = "10",
    peak_window: str = "3",
) -> Callable[[Callable], Callable]:
    """Give a recipe's `main(opts, settings, **its own options)` the shared point options, checked, as one
    `HourglassSettings`; the arguments are the recipe's defaults of the options whose right value depends on its
    data. Use it under `kapps.train.recipe_command`; the recipe's own click options go below it."""
    options = (
        click.option("--image-size", type=int, default=image_size, show_default=True, help="Side of the square input."),
        click.option("--stacks", type=int, default=2, show_default=True, help="Hourglasses in a row, each supervised."),
        click.option("--features", type=int, default=features, show_default=True, help="Width of the stacks."),
        click.option("--depth", type=int, default=4, show_default=True, help="Down/up levels of each hourglass."),
        click.option(
            "--sigma",
            default=sigma,
            show_default=True,
            help="Target Gaussians' sigma in output pixels: one number, or one a point type (comma-separated).",
        ),
        click.option(
            "--foreground-weight",
            default=foreground_weight,
            show_default=True,
            help="Loss weight of the pixels under the targets' Gaussians: each counts 1 + this x target (0: plain "
            "MSE); one number, or one a point type.",
        ),
        click.option(
            "--score-threshold",
            default=score_threshold,
            show_default=True,
            help="Least score of a peak: one number, one a point type (comma-separated), or 'auto': each type's "
            "threshold of best F1 on the validation split, chosen after training.",
        ),
        click.option(
            "--max-points", type=int, default=max_points, show_default=True, help="Points kept per image and type."
        ),
        click.option(
            "--peak-window",
            default=peak_window,
            show_default=True,
            help="Side of the square a peak is the maximum of, in heatmap pixels (odd): one, or one a point type.",
        ),
    )

    def decorate(main: Callable) -> Callable:
        @functools.wraps(main)
        def with_settings(opts: TrainOptions, **kwargs):
            values = {name: kwargs.pop(name) for name in _FIELDS}
            values["sigma"] = _numbers(values["sigma"], option="--sigma")
            values["foreground_weight"] = _numbers(values["foreground_weight"], option="--foreground-weight")
            window = _numbers(values["peak_window"], option="--peak-window")
            if not all(w == int(w) for w in window):
                raise OptionError(f"--peak-window takes whole numbers of pixels, not {values['peak_window']!r}.")
            values["peak_window"] = tuple(int(w) for w in window)
            text = str(values["score_threshold"]).strip().lower()
            values["score_threshold"] = None if text == "auto" else _numbers(text, option="--score-threshold")
            settings = HourglassSettings(**values)
            settings.check()
            return main(opts, settings, **kwargs)

        for option in reversed(options):
            with_settings = option(with_settings)
        return with_settings

    return decorate


def _numbers(text: str, *, option: str) -> tuple[float, ...]:
    """An option's comma-separated numbers.

    Raises:
        OptionError: a part is not a number.
    """
    try:
        return tuple(float(part) for part in str(text).split(","))
    except ValueError:
        example = {"--sigma": "2,2,1", "--score-threshold": "0.3 or 0.5,0.5,0.3 or auto"}.get(option, "5,5,3")
        raise OptionError(f"{option} takes one number or one a point type, such as {example}, not {text!r}.") from None


def fit_hourglass(
    opts: TrainOptions,
    data,
    settings: HourglassSettings,
    *,
    monitor: str,
    every: int = 1,
    more_scores: Callable[..., dict] | None = None,
) -> Run:
    """Train a stacked hourglass on a point `data` through the engine and keep its point detector.

    The loss is the MSE of every stack's heatmaps against Gaussian targets (intermediate supervision, Newell et
    al. 2016), its pixels under the Gaussians weighed `1 + settings.foreground_weight * target`; Adam warms up to
    `opts.lr` and decays along a cosine; `PointMetrics` scores the validation split through the detector each
    `every` epochs and `monitor` (one of its keys, or `val_loss`) picks the kept epoch. `model.keras` is
    `hourglass_detector(best, **settings.peaks)`, and metrics.json holds `evaluate_points` on the test split.

    Args:
        opts: the recipe's options.
        data: a `kapps.data.Data` of `(image, {"points", "types"})` examples (`kapps.data.load_keypoints`).
        settings: the network, the targets' sigma, the loss's foreground weight and the peak detector.
        monitor: `val_pck`, `val_f1`, `val_precision`, `val_recall` (higher is better) or `val_loss`.
        every: epochs between the validation point scores.
        more_scores: called as `more_scores(scores, model=detector, val=..., test=...)` with the test scores, the
            kept point detector and the batched validation and test splits; returns more JSON-ready entries for
            metrics.json (a recipe's own reading of the points, such as counts by name).

    Returns:
        The engine's `Run`, its model the point detector.
    """
    num_types = data.num_classes
    for option, values in (
        ("--sigma", settings.sigma),
        ("--score-threshold", settings.score_threshold or ()),
        ("--foreground-weight", settings.foreground_weight),
        ("--peak-window", settings.peak_window),
    ):
        if len(values) not in (0, 1, num_types):
            raise OptionError(
                f"{option} takes one number or one for each of the {num_types} point types, not {len(values)}."
            )
    output_size = (data.input_shape[0] // 4, data.input_shape[1] // 4)

    def heatmaps(images, targets):
        return images, as_heatmaps(targets, num_types=num_types, size=output_size, sigma=settings.sigma)

    splits = kapps.data.splits(data, batch_size=opts.batch_size, seed=opts.seed, augment=heatmaps, eval_batch_size=16)
    model_kwargs = {"input_shape": tuple(data.input_shape), "num_types": num_types, **settings.architecture}

    def detector(model: keras.Model) -> keras.Model:
        return hourglass_detector(model, **settings.peaks)

    def final_detector(model: keras.Model) -> keras.Model:
        if settings.score_threshold is not None:
            return detector(model)
        return calibrated_detector(
            model,
            splits.val,
            max_points=settings.max_points,
            window=settings.peaks["window"],
            class_names=data.class_names,
        )

    def evaluate_test(model: keras.Model) -> dict:
        threshold, _ = peak_settings(model)
        values = thresholds(threshold, num_types)
        chosen = {name: round(float(v), 4) for name, v in zip(data.class_names, values, strict=True)}
        scores = evaluate_points(model, splits.test, class_names=data.class_names)
        if more_scores:
            scores = {**scores, **more_scores(scores, model=model, val=splits.val, test=splits.test)}
        return {**scores, "thresholds": chosen}

    steps = opts.epoch_steps(data.sizes["train"])
    schedule = warmup_cosine(opts.lr, epochs=opts.epochs, steps=steps)
    return fit(
        opts,
        build_model=lambda: build("stacked_hourglass", **model_kwargs),
        train=splits.train,
        train_steps=steps,
        val=with_heatmaps(splits.val, num_types=num_types, size=output_size, sigma=settings.sigma),
        loss=HeatmapLoss(foreground_weight=settings.loss_weight),
        optimizer=lambda: keras.optimizers.Adam(schedule),
        monitor=monitor,
        mode="min" if monitor == "val_loss" else "max",
        callbacks=[PointMetrics(splits.val, class_names=data.class_names, inference_model=detector, every=every)],
        export_model=final_detector,
        evaluate_test=evaluate_test,
        config=run_config(
            "stacked_hourglass",
            kwargs=model_kwargs,
            data=data,
            sigma=settings.sigma[0] if len(settings.sigma) == 1 else list(settings.sigma),
            peaks={**settings.peaks, "score_threshold": "auto"} if settings.score_threshold is None else settings.peaks,
            foreground_weight=settings.loss_weight,
        ),
    )


def calibrated_detector(
    model: keras.Model, val: tf.data.Dataset, *, max_points: int, class_names: Sequence[str], window=3
) -> keras.Model:
    """`hourglass_detector(model)` with each point type's score threshold of best F1 within
    `EVALUATION_RADIUS` pixels on `val`, among `CANDIDATE_THRESHOLDS` (`kapps.keypoints.choose_thresholds`).

    The peaks are found once, at the lowest candidate, since a threshold only decides which of them are kept. A
    type's best threshold trades its own false detections against its misses: a type of wide, faint peaks (a
    spike's tip among awns) and one of many sharp ones (spikelets) seldom share one.
    """
    start = time.perf_counter()
    low = hourglass_detector(model, max_points=max_points, score_threshold=CANDIDATE_THRESHOLDS[0], window=window)
    predictions, truths, _, types = detected_points(low, val)
    chosen = choose_thresholds(
        predictions, truths, radius=EVALUATION_RADIUS, num_types=types, candidates=CANDIDATE_THRESHOLDS
    )
    picked = ", ".join(
        f"{name} {c['threshold']:g} (P {c['precision']:.3f}, R {c['recall']:.3f})"
        for name, c in zip(class_names, chosen, strict=True)
    )
    print(
        f"Score thresholds of best F1 on {len(truths)} validation images: {picked} "
        f"({time.perf_counter() - start:.1f} s)",
        flush=True,
    )
    chosen_thresholds = [c["threshold"] for c in chosen]
    return hourglass_detector(model, max_points=max_points, score_threshold=chosen_thresholds, window=window)


def rethresholded(detector: keras.Model, score_threshold) -> keras.Model:
    """A point detector's network with its `HeatmapPeaks` layer's score threshold replaced (one number, or one a
    type), the weights shared: to read, say, every peak above a low floor that a rule of its own then sorts."""
    (layer,) = [layer for layer in detector.layers if isinstance(layer, HeatmapPeaks)]
    peaks = HeatmapPeaks(
        max_points=layer.max_points, score_threshold=score_threshold, refine=layer.refine, window=layer.window
    )
    return keras.Model(detector.input, peaks(layer.input), name=detector.name)


def with_heatmaps(dataset: tf.data.Dataset, *, num_types: int, size: tuple[int, int], sigma: float) -> tf.data.Dataset:
    """A batched `(images, {"points", "types"})` dataset as `(images, heatmaps)`, heatmaps float32
    `(B, H, W, num_types)` of `kapps.keypoints.heatmap_targets` at the network's output `size` (H, W)."""

    def pair(images, targets):
        return images, as_heatmaps(targets, num_types=num_types, size=size, sigma=sigma)

    return dataset.map(pair)


def as_heatmaps(targets: dict, *, num_types: int, size: tuple[int, int], sigma: float) -> tf.Tensor:
    """One batch's `{"points", "types"}` targets as Gaussian heatmaps (see `with_heatmaps`)."""
    return heatmap_targets(targets["points"], targets["types"], num_types=num_types, size=size, sigma=sigma)


def evaluate_points(model: keras.Model, test: tf.data.Dataset, *, class_names: Sequence[str]) -> dict:
    """Score a point detector on a batched `(images, {"points", "types"})` split, as a run's metrics.json keeps it.

    Returns:
        The heatmap kind's `evaluate`: `precision`, `recall`, `f1` within `radius` (3) input pixels, `pck@0.05` of
        the image's longer side, `images`, and `per_type` (the same, with `count_accuracy`, the share of images
        whose count of the type is exact, `count_mae` and `count_relative_error`), plus `pck_reference`, the
        longer side in pixels.
    """
    scores = kind_for("heatmap").evaluate(model, test, class_names=class_names)
    height, width = model.input_shape[1:3]
    return {**scores, "pck_reference": max(height, width)}


class PointMetrics(PeriodicScores):
    """Adds `{prefix}pck` (PCK@0.05 of the image's longer side), `{prefix}f1`, `{prefix}precision` and
    `{prefix}recall` (within 3 pixels) of the point detector to the logs of each epoch.

    On the schedule of `kapps.metrics.PeriodicScores`, as `DetectionMetrics` does for detectors: every `every`
    epochs, on the last epoch and on the first epoch of each `fit` call, it builds `inference_model(self.model)`
    (sharing the weights) and scores it on `dataset`; on the other epochs it logs the latest values again, which
    `KeepBest` does not count as an improvement. Put it before the checkpoint and the CSV logger (the engine's
    `callbacks` are).

    Args:
        dataset: batched `(images, {"points", "types"})` validation split, one pass.
        class_names: the point types' names.
        inference_model: the point detector of the training model (`hourglass_detector`).
        every: score every this many epochs.
        prefix: prefix of the logged keys.
    """

    def scores(self, model: keras.Model) -> dict[str, float | None]:
        scores = kind_for("heatmap").evaluate(model, self.dataset, class_names=self.class_names)
        return {key: scores[name] for key, name in LOGGED.items()}
