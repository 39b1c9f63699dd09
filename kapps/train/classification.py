"""The classification preset of the engine: a softmax classifier trained on a classification `Data`."""

from __future__ import annotations

from collections.abc import Callable

from kapps.train.engine import Run, fit
from kapps.train.options import TrainOptions

import keras


def fit_classifier(
    opts: TrainOptions,
    data,
    *,
    build_model: Callable[[], keras.Model],
    augment: Callable | None = None,
    preprocessing: str = "unit",
    config: dict | None = None,
) -> Run:
    """`fit` a softmax classifier on a classification `Data`: Adam along a cosine decay from `opts.lr` to zero over
    `opts.epochs`, sparse categorical cross-entropy, the epoch of best validation accuracy kept.

    Args:
        opts: the options of this run (its `out`, `epochs` and `lr` included).
        data: `(image, label)` splits and their sizes (`kapps.data.Data`).
        build_model: returns the model, built inside the run's strategy scope.
        augment: a batched `(images, labels) -> (images, labels)` function for the training batches.
        preprocessing: the model's input convention (`kapps.preprocessing`), applied to every split after
            augmentation and recorded in `config.json`.
        config: recorded in `config.json`, with the data's description added as `"data"`.

    Returns:
        The `Run`; its metrics hold `test_loss` and `test_accuracy`.
    """
    from kapps.data.pipeline import splits

    batches = splits(data, batch_size=opts.batch_size, seed=opts.seed, augment=augment, preprocessing=preprocessing)
    steps = opts.epoch_steps(data.sizes["train"])
    schedule = keras.optimizers.schedules.CosineDecay(opts.lr, decay_steps=opts.epochs * steps)
    return fit(
        opts,
        build_model=build_model,
        train=batches.train,
        train_steps=steps,
        val=batches.val,
        test=batches.test,
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
        optimizer=lambda: keras.optimizers.Adam(schedule),
        monitor="val_accuracy",
        mode="max",
        config={**(config or {}), "data": data.describe(), "preprocessing": preprocessing},
    )


def evaluate_classifier(model: keras.Model, test) -> dict:
    """Test loss (sparse categorical cross-entropy) and accuracy of a single-output classifier on a batched
    `(images, labels)` split, keyed as a run's metrics.json keys them (`test_loss`, `test_accuracy`).

    The `evaluate_test` of a run whose kept model is not the one that trained (GoogLeNet without its auxiliary
    heads, `kapps.models.googlenet_main_output`), where the training loss does not fit the kept model.
    """
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    return {f"test_{k}": float(v) for k, v in model.evaluate(test, return_dict=True, verbose=0).items()}
