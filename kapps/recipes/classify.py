"""Train any registered classifier.

The default trains `resnet20` on the embedded digits at 32x32, offline in a few minutes on a CPU. `--data
tfds:cifar10` is the setting of He et al. (2016): with `--model resnet20 --epochs 182 --batch-size 128 --lr 0.1`
they report 8.75% test error (Table 6). `--data folder:PATH` trains on your own images (one subfolder per class).

    python recipes/classify.py                                    # resnet20 on digits
    python recipes/classify.py --model vgg11_bn --data tfds:cifar10 --epochs 60 --batch-size 128 --lr 0.05
    python recipes/classify.py --model resnet18 --data folder:~/flowers --image-size 128
    python recipes/classify.py --model googlenet --aux-logits --image-size 96  # auxiliary heads, weighted 0.3
"""

from __future__ import annotations

import inspect

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
@click.option(
    "--bn-momentum",
    type=float,
    default=0.9,
    show_default=True,
    help="Momentum of every batch-norm layer's moving statistics (Keras's 0.99 lags on small data sets).",
)
@click.option(
    "--zero-init-residual",
    is_flag=True,
    help="Start each residual branch's last batch-norm scale at 0 (ResNets; see kapps.models.resnet).",
)
@click.option(
    "--aux-logits",
    is_flag=True,
    help="Train GoogLeNet with its two auxiliary classifiers (loss weight 0.3 each); model.keras keeps the main one.",
)
def main(
    opts: kapps.train.TrainOptions,
    model_name: str,
    image_size: int,
    channels: str,
    weights: str | None,
    weight_decay: float,
    bn_momentum: float,
    zero_init_residual: bool,
    aux_logits: bool,
) -> kapps.train.Run:
    info = kapps.models.info(model_name)
    if info.task != "classification":
        raise OptionError(f"{model_name!r} is a {info.task} model; --model takes a classifier.")
    if image_size < 8:
        raise OptionError(f"--image-size must be at least 8, not {image_size}.")
    if not 0.0 <= bn_momentum < 1.0:
        raise OptionError(f"--bn-momentum must be at least 0 and below 1, not {bn_momentum}.")
    builder_options = inspect.signature(info.builder).parameters
    if aux_logits and "aux_logits" not in builder_options:
        raise OptionError(f"--aux-logits is for models with auxiliary classifiers (googlenet), not {model_name!r}.")
    if zero_init_residual and "zero_init_residual" not in builder_options:
        raise OptionError(f"--zero-init-residual is for ResNets with shortcuts, not {model_name!r}.")
    if aux_logits and image_size < 65:
        raise OptionError(f"--aux-logits needs --image-size 65 or more (the heads pool a 5x5 map), not {image_size}.")

    # 1. Data: the source at the requested size, augmented as its kind of image wants, in the model's input
    #    convention (keras.applications' for ImageNet weights, [0, 1] otherwise).
    data = kapps.data.load(
        opts.data,
        image_size=(image_size, image_size),
        seed=opts.seed,
        data_dir=opts.data_dir,
        channels=(3 if weights == "imagenet" else None) if channels == "auto" else int(channels),
    )
    augment = kapps.data.default_augment(opts.data, image_size=image_size, seed=opts.seed)
    splits = kapps.data.splits(
        data,
        batch_size=opts.batch_size,
        seed=opts.seed,
        augment=augment,
        preprocessing=info.input_convention(weights),
    )
    train, val, test = splits.train, splits.val, splits.test

    # 2. Model: the registered builder at the data's shape and classes. With auxiliary heads every output is
    #    trained on the same label; the main output alone is kept for use (Szegedy et al. 2015, section 5).
    model_kwargs = {"input_shape": data.input_shape, "num_classes": data.num_classes, "weights": weights}
    loss = keras.losses.SparseCategoricalCrossentropy()
    fit_kwargs = {"loss": loss, "metrics": ["accuracy"], "monitor": "val_accuracy"}
    if zero_init_residual:
        model_kwargs["zero_init_residual"] = True
    if aux_logits:
        model_kwargs["aux_logits"] = True
        heads = ("aux1", "aux2", "predictions")
        train, val = (ds.map(lambda x, y: (x, dict.fromkeys(heads, y))) for ds in (train, val))
        fit_kwargs = {
            "loss": dict.fromkeys(heads, loss),
            "loss_weights": {"aux1": 0.3, "aux2": 0.3, "predictions": 1.0},
            "metrics": {"predictions": ["accuracy"]},
            "monitor": "val_predictions_accuracy",
            "export_model": kapps.models.googlenet_main_output,
            "evaluate_test": lambda model: kapps.train.evaluate_classifier(model, test),
        }

    # 3. Train with SGD, Nesterov momentum and a cosine-decayed learning rate after a short warm-up.
    steps = opts.epoch_steps(data.sizes["train"])
    schedule = kapps.train.warmup_cosine(opts.lr, epochs=opts.epochs, steps=steps)
    run = kapps.train.fit(
        opts,
        build_model=lambda: kapps.models.set_bn_momentum(kapps.models.build(model_name, **model_kwargs), bn_momentum),
        train=train,
        train_steps=steps,
        val=val,
        test=test,
        optimizer=lambda: keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, weight_decay=weight_decay),
        mode="max",
        config=kapps.train.run_config(model_name, kwargs=model_kwargs, data=data),
        **fit_kwargs,
    )

    # 4. Evaluate on the untouched test split.
    click.echo(
        f"{model_name} on {opts.data}: test accuracy {run.metrics['test_accuracy']:.4f} "
        f"(best epoch {run.metrics['best_epoch'] + 1} of {run.metrics['epochs_run']}), run folder {run.path}"
    )
    return run


if __name__ == "__main__":
    main()
