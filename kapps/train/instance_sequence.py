"""The recurrent instance segmentation preset of the engine (Romera-Paredes & Torr 2016): a
`recurrent_instance_segmenter` trained through its `RecurrentInstanceTrainer` (the Hungarian-matched soft IoU and
the stopping loss) on an instance source (`kapps.data.load_instances`: label images expanded to padded masks and a
count), the epoch of best validation loss kept, and the segmenter itself, with its stop, written as `model.keras`
and scored on the test split by the CVPPP leaf metrics.
"""

from __future__ import annotations

from kapps.data import Data, pipeline
from kapps.kinds import kind_for
from kapps.models import RecurrentInstanceTrainer, build
from kapps.train.engine import Run, fit
from kapps.train.options import TrainOptions
from kapps.train.recipe import run_config

import keras

MODEL = "recurrent_instance_segmenter"


def fit_instance_segmenter(
    opts: TrainOptions,
    *,
    data: Data,
    model_kwargs: dict | None = None,
    stop_weight: float = 1.0,
    pixel_weight: float = 0.0,
    config: dict | None = None,
    callbacks=(),
) -> Run:
    """Train a `recurrent_instance_segmenter` on `data` into the run folder `opts.out`.

    Args:
        opts: the shared recipe options (epochs, batch size, learning rate, seed, ...).
        data: an instance source's splits of `(image, {"labels", "masks", "count"})` examples.
        model_kwargs: keywords of the builder beside `input_shape` (which is the data's): `max_instances`,
            `encoder_filters`, `lstm_filters`, ...
        stop_weight: the weight of the stopping loss.
        pixel_weight: the weight of the matched masks' per-pixel cross-entropy (`RecurrentInstanceTrainer`).
        config: more facts for config.json.
        callbacks: more Keras callbacks, given the trainer.

    Returns:
        The `Run`: `model.keras` holds the segmenter (images in, masks, confidences and count out), the trainer
        of the kept epoch `training_model.keras`; metrics.json holds the instance-sequence kind's test scores
        prefixed `test_` (`test_sbd`, `test_abs_dic`, `test_fbd`, `test_count_accuracy`, ...).
    """
    kwargs = {"input_shape": tuple(data.input_shape), **(model_kwargs or {})}
    train = pipeline(data.train, batch_size=opts.batch_size, training=True, seed=opts.seed)
    val = pipeline(data.val, batch_size=opts.batch_size, training=False)
    test = pipeline(data.test, batch_size=opts.batch_size, training=False)

    def build_model() -> keras.Model:
        trainer = RecurrentInstanceTrainer(build(MODEL, **kwargs), stop_weight=stop_weight, pixel_weight=pixel_weight)
        trainer.compile(optimizer=keras.optimizers.Adam(opts.lr))
        return trainer

    def evaluate(segmenter: keras.Model) -> dict:
        scores = kind_for("instance_sequence").evaluate(segmenter, test)
        return {f"test_{name}": value for name, value in scores.items()}

    recorded = {**kwargs, "input_shape": list(kwargs["input_shape"])}
    return fit(
        opts,
        build_model=build_model,
        train=train,
        train_steps=opts.epoch_steps(data.sizes["train"]),
        val=val,
        monitor="val_loss",
        callbacks=callbacks,
        export_model=lambda trainer: trainer.segmenter,
        evaluate_test=evaluate,
        config={
            **run_config(
                MODEL, kwargs=recorded, data=data, trainer={"stop_weight": stop_weight, "pixel_weight": pixel_weight}
            ),
            **(config or {}),
        },
    )
