"""Train any registered classifier.

The default trains `resnet20` on the embedded digits at 32x32, offline in a few minutes on a CPU. `--data
tfds:cifar10` is the setting of He et al. (2016): with `--model resnet20 --epochs 182 --batch-size 128 --lr 0.1`
they report 8.75% test error (Table 6). `--data folder:PATH` trains on your own images (one subfolder per class).

    python recipes/classify.py                                    # resnet20 on digits
    python recipes/classify.py --model vgg11_bn --data tfds:cifar10 --epochs 60 --batch-size 128 --lr 0.05
    python recipes/classify.py --model resnet18 --data folder:~/flowers --image-size 128
"""

from __future__ import annotations

import kapps.data
import kapps.models
import kapps.train
from kapps.errors import OptionError

import click
import keras


@kapps.train.recipe_command(
    name="classify",
    help="Train a registered classifier on digits (default, offline), tfds:cifar10 or an image folder.",
    epochs=30,
    batch_size=64,
    lr=0.05,
    data="digits",
)
@click.option("--model", "model_name", default="resnet20", show_default=True, help="A registered classifier.")
@click.option("--image-size", type=int, default=32, show_default=True, help="Side of the square input.")
@click.option("--channels", type=click.Choice(["auto", "1", "3"]), default="auto", show_default=True)
@click.option("--weights", default=None, help="None, 'imagenet' or a weight file for the model.")
@click.option("--weight-decay", type=float, default=5e-4, show_default=True, help="Decoupled weight decay of SGD.")
@click.option("--label-smoothing", type=float, default=0.0, show_default=True)
def main(
    opts: kapps.train.TrainOptions,
    model_name: str,
    image_size: int,
    channels: str,
    weights: str | None,
    weight_decay: float,
    label_smoothing: float,
) -> kapps.train.Run:
    info = kapps.models.info(model_name)
    if info.task != "classification":
        raise OptionError(f"{model_name!r} is a {info.task} model; --model takes a classifier.")
    if image_size < 8:
        raise OptionError(f"--image-size must be at least 8, not {image_size}.")

    # 1. Data: the source at the requested size, augmented as its kind of image wants.
    data = kapps.data.load(
        opts.data,
        image_size=(image_size, image_size),
        seed=opts.seed,
        data_dir=opts.data_dir,
        channels=None if channels == "auto" else int(channels),
    )
    if opts.data == "digits":
        augment = kapps.data.digit_augment(seed=opts.seed)  # no flips: a mirrored 2 is no digit
    else:
        augment = kapps.data.cifar_augment(pad=max(1, image_size // 8), size=image_size, seed=opts.seed)
    train = kapps.data.pipeline(data.train, batch_size=opts.batch_size, training=True, augment=augment, seed=opts.seed)
    val = kapps.data.pipeline(data.val, batch_size=256, training=False)
    test = kapps.data.pipeline(data.test, batch_size=256, training=False)

    # 2. Model: the registered builder at the data's shape and classes.
    model_kwargs = {"input_shape": data.input_shape, "num_classes": data.num_classes, "weights": weights}

    # 3. Train with SGD, Nesterov momentum and a cosine-decayed learning rate after a short warm-up.
    steps = opts.epoch_steps(data.sizes["train"])
    schedule = keras.optimizers.schedules.CosineDecay(
        opts.lr / 10,
        decay_steps=opts.epochs * steps,
        warmup_target=opts.lr,
        warmup_steps=min(steps, opts.epochs * steps // 10),
    )
    run = kapps.train.fit(
        opts,
        build_model=lambda: kapps.models.build(model_name, **model_kwargs),
        train=train,
        train_steps=steps,
        val=val,
        test=test,
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
        optimizer=lambda: keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, weight_decay=weight_decay),
        monitor="val_accuracy",
        mode="max",
        config={
            "task": "classification",
            "model": {"name": model_name, "kwargs": model_kwargs},
            "data": data.describe(),
        },
    )

    # 4. Evaluate on the untouched test split.
    click.echo(
        f"{model_name} on {opts.data}: test accuracy {run.metrics['test_accuracy']:.4f} "
        f"(best epoch {run.metrics['best_epoch'] + 1} of {run.metrics['epochs_run']}), run folder {run.path}"
    )
    return run


if __name__ == "__main__":
    main()
