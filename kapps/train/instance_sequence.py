"""The recurrent instance segmentation preset of the engine (Romera-Paredes & Torr 2016): a
`recurrent_instance_segmenter` trained through its `RecurrentInstanceTrainer` (the Hungarian-matched soft IoU, the
stopping loss and optional helper terms) on an instance source (`kapps.data.load_instances`: label images expanded to
padded masks and a count), Adam along a warm-up and cosine decay with the gradient's norm clipped, the epoch of best
validation SBD kept (the CVPPP symmetric best Dice of the segmenter itself, stop included, scored each epoch), and the
segmenter itself, with its stop, written as `model.keras` and scored on the test split by the CVPPP leaf metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kapps.data import Data, pipeline
from kapps.kinds import kind_for
from kapps.metrics import PeriodicScores
from kapps.models import RecurrentInstanceTrainer, build
from kapps.train.engine import Run, fit
from kapps.train.options import TrainOptions
from kapps.train.recipe import run_config
from kapps.train.schedules import warmup_cosine

import keras

MODEL = "recurrent_instance_segmenter"
SHUFFLE = 1024  # training examples shuffled together
LOGGED = ("sbd", "abs_dic", "fbd", "count_accuracy")  # the instance-sequence kind's scores logged each epoch


class LeafMetrics(PeriodicScores):
    """Adds `{prefix}sbd`, `{prefix}abs_dic`, `{prefix}fbd` and `{prefix}count_accuracy` (the instance-sequence
    kind's CVPPP scores, `kapps.kinds.instance_sequence`) of the segmenter a `RecurrentInstanceTrainer` trains to the
    logs of each epoch, on the schedule of `kapps.metrics.PeriodicScores` (put it before the checkpoint and the CSV
    logger, as the engine's `callbacks` are).

    Args:
        dataset: batched `(images, {"labels", ...})` validation split, one pass.
        limit: score at most this many images (None: all).
        every: score every this many epochs.
        prefix: prefix of the logged keys.
    """

    def __init__(self, dataset, *, limit: int | None = None, every: int = 1, prefix: str = "val_"):
        super().__init__(
            dataset,
            class_names=["background", "leaf"],
            inference_model=lambda trainer: trainer.segmenter,
            every=every,
            prefix=prefix,
        )
        self.limit = limit

    def scores(self, model: keras.Model) -> dict[str, float | None]:
        scores = kind_for("instance_sequence").evaluate(model, self.dataset, limit=self.limit)
        return {key: scores[key] for key in LOGGED}


def fit_instance_segmenter(
    opts: TrainOptions,
    *,
    data: Data,
    model_kwargs: dict | None = None,
    stop_weight: float = 1.0,
    pixel_weight: float = 0.0,
    foreground_weight: float = 0.0,
    clipnorm: float | None = 1.0,
    monitor: str = "val_sbd",
    val_limit: int | None = None,
    config: dict | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    more_scores: Callable[[dict], dict] | None = None,
) -> Run:
    """Train a `recurrent_instance_segmenter` on `data` into the run folder `opts.out`.

    Adam's learning rate warms up from `opts.lr / 10` to `opts.lr` over the first epoch and decays to zero along a
    cosine (`kapps.train.warmup_cosine`); the gradient is clipped to a global norm of `clipnorm`.

    Args:
        opts: the shared recipe options (epochs, batch size, learning rate, seed, ...).
        data: an instance source's splits of `(image, {"labels", "masks", "count"})` examples.
        model_kwargs: keywords of the builder beside `input_shape` (which is the data's): `max_instances`,
            `encoder_filters`, `lstm_filters`, `mask_stride`, ...
        stop_weight: the weight of the stopping loss.
        pixel_weight: the weight of the matched masks' per-pixel cross-entropy (`RecurrentInstanceTrainer`).
        foreground_weight: the weight of the steps' union's Dice loss against the plant's foreground.
        clipnorm: the largest global norm of a step's gradient; None: no clipping.
        monitor: what picks the kept epoch: `"val_sbd"` (the validation SBD, higher is better, see `LeafMetrics`)
            or `"val_loss"` (lower is better).
        val_limit: the validation images `LeafMetrics` scores each epoch (None: all).
        config: more facts for config.json.
        callbacks: more Keras callbacks, given the trainer.
        more_scores: given the test scores (prefixed `test_`), returns more entries for metrics.json.

    Returns:
        The `Run`: `model.keras` holds the segmenter (images in, masks, confidences and count out), the trainer
        of the kept epoch `training_model.keras`; metrics.json holds the instance-sequence kind's test scores
        prefixed `test_` (`test_sbd`, `test_abs_dic`, `test_fbd`, `test_count_accuracy`, ...).
    """
    if monitor not in ("val_sbd", "val_loss"):
        raise ValueError(f"monitor must be 'val_sbd' or 'val_loss'. Received: monitor={monitor!r}")
    kwargs = {"input_shape": tuple(data.input_shape), **(model_kwargs or {})}
    # Not cached and shuffled 1,024 at a time: an example expanded to its padded masks is 145 KB at 64x64 with 20
    # rows (1.2 MB at 128x128), and the expansion is cheap to repeat from what the sources hold (the rosettes'
    # 8-bit arrays, a folder's files read again each pass).
    train = pipeline(
        data.train, batch_size=opts.batch_size, training=True, seed=opts.seed, cache=False, shuffle_buffer=SHUFFLE
    )
    val = pipeline(data.val, batch_size=opts.batch_size, training=False, cache=False)
    test = pipeline(data.test, batch_size=opts.batch_size, training=False, cache=False)
    steps = opts.epoch_steps(data.sizes["train"])
    trainer_settings = {
        "stop_weight": stop_weight,
        "pixel_weight": pixel_weight,
        "foreground_weight": foreground_weight,
    }

    def build_model() -> keras.Model:
        trainer = RecurrentInstanceTrainer(build(MODEL, **kwargs), **trainer_settings)
        schedule = warmup_cosine(opts.lr, epochs=opts.epochs, steps=steps)
        trainer.compile(optimizer=keras.optimizers.Adam(schedule, global_clipnorm=clipnorm))
        return trainer

    def evaluate(segmenter: keras.Model) -> dict:
        scores = kind_for("instance_sequence").evaluate(segmenter, test)
        scores = {f"test_{name}": value for name, value in scores.items()}
        return {**scores, **(more_scores(scores) if more_scores else {})}

    recorded = {**kwargs, "input_shape": list(kwargs["input_shape"])}
    return fit(
        opts,
        build_model=build_model,
        train=train,
        train_steps=steps,
        val=val,
        monitor=monitor,
        mode="max" if monitor == "val_sbd" else "min",
        callbacks=[LeafMetrics(val, limit=val_limit), *callbacks],
        export_model=lambda trainer: trainer.segmenter,
        evaluate_test=evaluate,
        config={
            **run_config(
                MODEL,
                kwargs=recorded,
                data=data,
                trainer={**trainer_settings, "clipnorm": clipnorm, "schedule": "warm-up and cosine decay"},
            ),
            **(config or {}),
        },
    )
