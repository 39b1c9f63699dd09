"""The degradation experiment of He et al. (2016), Fig. 6: deeper plain networks train worse; residual ones do not.

Trains plain-20, plain-56, resnet-20 and resnet-56 with one recipe each (same data, optimizer and budget) and
draws their training and test error in one PNG, plain networks left, residual networks right. The default runs
offline on the embedded digits; `--data tfds:cifar10 --epochs 164 --batch-size 128 --lr 0.1` is the paper's
setting (its Table 6 reports 8.75% and 6.97% test error for resnet-20 and resnet-56).

    python recipes/degradation.py                       # digits, writes saved_models/degradation/
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import kapps.data
import kapps.models
import kapps.train
from kapps.errors import OptionError
from kapps.viz import plot_error_curves

import click
import keras


@kapps.train.recipe_command(
    name="degradation",
    help="Train plain and residual nets of two depths and plot their training and test error (He et al. Fig. 6).",
    epochs=20,
    batch_size=64,
    lr=0.05,
    data="digits",
)
@click.option("--depths", default="20,56", show_default=True, help="Comma-separated depths (20, 32, 44, 56).")
def main(opts: kapps.train.TrainOptions, depths: str) -> dict:
    try:
        chosen = [int(d) for d in depths.split(",") if d.strip()]
    except ValueError:
        raise OptionError(f"--depths takes whole numbers separated by commas, not {depths!r}.") from None
    names = [f"{kind}{d}" for kind in ("plain", "resnet") for d in chosen]
    for name in names:
        kapps.models.info(name)  # an unknown depth fails here, before any training

    # 1. Data: one split for all four networks; the test split is scored after every epoch.
    data = kapps.data.load(opts.data, image_size=(32, 32), seed=opts.seed, data_dir=opts.data_dir)
    augment = kapps.data.default_augment(opts.data, image_size=data.input_shape[0], seed=opts.seed)
    steps = opts.epoch_steps(data.sizes["train"])
    model_kwargs = {"input_shape": data.input_shape, "num_classes": data.num_classes}

    # 2. Train each network with the same recipe: SGD with momentum and cosine decay, as in the classify recipe.
    histories, summary = {}, {}
    for name in names:
        run_opts = dataclasses.replace(opts, out=str(Path(opts.out) / name))
        splits = kapps.data.splits(data, batch_size=opts.batch_size, seed=opts.seed, augment=augment)
        schedule = keras.optimizers.schedules.CosineDecay(opts.lr, decay_steps=opts.epochs * steps)
        run = kapps.train.fit(
            run_opts,
            build_model=lambda name=name: kapps.models.build(name, **model_kwargs),
            train=splits.train,
            train_steps=steps,
            val=splits.val,
            test=splits.test,
            loss=keras.losses.SparseCategoricalCrossentropy(),
            metrics=["accuracy"],
            optimizer=lambda schedule=schedule: keras.optimizers.SGD(schedule, momentum=0.9, weight_decay=1e-4),
            monitor="val_accuracy",
            mode="max",
            config=kapps.train.run_config(name, kwargs=model_kwargs, data=data),
            evaluate_each_epoch={"test": splits.test},
        )
        histories[name] = run.history
        last = run.history[-1]
        train_error, test_error = 1 - last["accuracy"], 1 - last["test_accuracy"]
        summary[name] = {"final_train_error": train_error, "final_test_error": test_error}
        click.echo(f"{name}: final training error {train_error:.2%}, test error {test_error:.2%}")

    # 3. Show: the figure, and the numbers behind it.
    out = Path(opts.out)
    plot = plot_error_curves(
        histories,
        out / "degradation.png",
        panels={"plain networks": names[: len(chosen)], "residual networks": names[len(chosen) :]},
        title=f"training (dashed) and test (bold) error on {opts.data}",
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    click.echo(f"wrote {plot} and {out / 'summary.json'}")
    return summary


if __name__ == "__main__":
    main()
