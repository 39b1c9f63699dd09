"""Train YOLO v1 to detect objects, and keep it as an image-to-detections model.

The default runs offline on the embedded `shapes` scenes at 112x112, with the small backbone, batch norm and a
convolutional head (see `kapps.models.detection.yolo.yolo_v1`); like the paper, it first pre-trains the backbone
as a classifier, here of 48-pixel windows around the objects of the training scenes (2 epochs), then trains the
detector for 10 epochs with Adam at 2e-3. Measured (seed 0, `time python recipes/yolo.py`, two CPU cores): test
mAP@0.5 0.848, mAP@[.5:.95] 0.427, in 12 min 17 s; `--epochs 12` gives 0.881 in 14 min 38 s.

`--data tfds:voc/2007 --image-size 448 --backbone paper --head dense --no-batch-norm --pretrain-epochs 0` is the
paper's setting, less its ImageNet pre-training: Redmon et al. (2016) report 63.4% mAP on VOC 2007 test, trained
on VOC 2007+2012 after pre-training the first 20 convolutions on ImageNet.

    python recipes/yolo.py                               # shapes, writes saved_models/yolo/
    kapps export saved_models/yolo --format all          # boxes, scores, classes, num_detections
    kapps predict saved_models/yolo/model.keras scene.png
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import kapps.data
import kapps.models
import kapps.train
from kapps.data.box_augment import detection_augment
from kapps.data.crops import object_crops
from kapps.data.detection import load_detection
from kapps.detection import yolo_v1_targets
from kapps.errors import OptionError
from kapps.losses import YoloV1Loss
from kapps.metrics import DetectionMetrics, evaluate_detector
from kapps.models.detection.yolo import BACKBONE_MODELS, BACKBONES, HEADS, yolo_v1_detector
from kapps.viz import plot_detections

import click
import keras


@kapps.train.recipe_command(
    name="yolo",
    help="Train YOLO v1 on shapes scenes (default, offline), tfds:voc/2007 or a VOC/COCO folder.",
    epochs=10,
    batch_size=32,
    lr=2e-3,
    data="shapes",
)
@click.option("--image-size", type=int, default=112, show_default=True, help="Side of the square input.")
@click.option("--backbone", type=click.Choice(sorted(BACKBONES)), default="small", show_default=True)
@click.option("--head", type=click.Choice(HEADS), default="conv", show_default=True, help="dense: the paper's.")
@click.option(
    "--class-activation",
    type=click.Choice(["linear", "softmax"]),
    default="linear",
    show_default=True,
    help="Output of the class probabilities: linear as in the paper, or a softmax per cell.",
)
@click.option("--batch-norm/--no-batch-norm", default=True, show_default=True, help="Batch norm in the backbone.")
@click.option("--grid-size", type=int, default=7, show_default=True, help="S, cells along each side.")
@click.option("--boxes-per-cell", type=int, default=2, show_default=True, help="B, boxes each cell predicts.")
@click.option("--map-every", type=int, default=3, show_default=True, help="Epochs between validation mAPs.")
@click.option(
    "--pretrain-epochs",
    type=int,
    default=2,
    show_default=True,
    help="Epochs of classifying object crops with the backbone first (the paper pre-trains on ImageNet).",
)
@click.option("--scenes", default=None, help="shapes only: TRAIN,VAL,TEST scene counts [default: 4000,500,500].")
def main(
    opts: kapps.train.TrainOptions,
    image_size: int,
    backbone: str,
    head: str,
    class_activation: str,
    batch_norm: bool,
    grid_size: int,
    boxes_per_cell: int,
    map_every: int,
    scenes: str | None,
    pretrain_epochs: int,
) -> kapps.train.Run:
    for option, value in (("--grid-size", grid_size), ("--boxes-per-cell", boxes_per_cell), ("--map-every", map_every)):
        if value < 1:
            raise OptionError(f"{option} must be a positive whole number, not {value}.")
    if pretrain_epochs < 0:
        raise OptionError(f"--pretrain-epochs must be zero or more, not {pretrain_epochs}.")
    if image_size < 32:
        raise OptionError(f"--image-size must be at least 32, not {image_size}.")
    architecture = {
        "backbone": backbone,
        "batch_norm": batch_norm,
        "head": head,
        "class_activation": None if class_activation == "linear" else class_activation,
    }
    try:  # an input size the head cannot take fails here, in one sentence, before the data is made
        kapps.models.build("yolo_v1", input_shape=(image_size, image_size, 3), grid_size=grid_size, **architecture)
    except ValueError as err:
        raise OptionError(f"These options do not make a YOLO v1: {err}") from None

    source_kwargs = kapps.train.scene_counts(scenes, data=opts.data)

    # 1. Data: images with padded boxes; training flips and rescales them, and the loss reads them as a grid.
    data = load_detection(
        opts.data, image_size=(image_size, image_size), seed=opts.seed, data_dir=opts.data_dir, **source_kwargs
    )
    num_classes = data.num_classes
    flip_and_scale = detection_augment(image_size=(image_size, image_size), seed=opts.seed)

    def as_grid(images, targets):
        return images, yolo_v1_targets(
            targets["boxes"], targets["classes"], grid_size=grid_size, num_classes=num_classes
        )

    def augment(images, targets):
        return as_grid(*flip_and_scale(images, targets))

    splits = kapps.data.splits(data, batch_size=opts.batch_size, seed=opts.seed, augment=augment, eval_batch_size=64)
    train, val, test = splits.train, splits.val, splits.test

    # 2. Model: the network that trains, and the detector it becomes (decoding and NMS in the graph).
    model_kwargs = {
        "input_shape": data.input_shape,
        "num_classes": num_classes,
        "grid_size": grid_size,
        "boxes_per_cell": boxes_per_cell,
        **architecture,
    }

    def detector(model: keras.Model) -> keras.Model:
        return yolo_v1_detector(model, num_classes=num_classes)

    # 2b. Optionally, pre-train the backbone as a classifier of the objects in the training scenes: 48-pixel
    #     windows around each, at the scenes' own scale, so small objects look as they will to the detector.
    pretrained = None
    if pretrain_epochs:
        crops = object_crops(data, size=(48, 48), scale="native")
        pretrained = kapps.train.fit_classifier(
            dataclasses.replace(opts, out=str(Path(opts.out) / "pretrain"), epochs=pretrain_epochs),
            crops,
            build_model=lambda: kapps.models.build(
                BACKBONE_MODELS[backbone], input_shape=crops.input_shape, num_classes=num_classes, batch_norm=batch_norm
            ),
            config={"task": "classification", "model": {"name": BACKBONE_MODELS[backbone]}},
        )
        click.echo(f"backbone pre-training on object crops: test accuracy {pretrained.metrics['test_accuracy']:.4f}")

    def build_model() -> keras.Model:
        model = kapps.models.build("yolo_v1", **model_kwargs)
        if pretrained is not None:
            kapps.models.transfer_backbone(
                pretrained.model, model, backbone_name=BACKBONE_MODELS[backbone], batch_norm=batch_norm
            )
        return model

    # 3. Train with the paper's loss and Adam (a warm-up, then cosine decay); the best validation mAP@0.5 is kept.
    steps = opts.epoch_steps(data.sizes["train"])
    schedule = kapps.train.warmup_cosine(opts.lr, epochs=opts.epochs, steps=steps)
    run = kapps.train.fit(
        opts,
        build_model=build_model,
        train=train,
        train_steps=steps,
        val=val.map(as_grid),
        test=test,
        loss=YoloV1Loss(grid_size=grid_size, boxes_per_cell=boxes_per_cell, num_classes=num_classes),
        optimizer=lambda: keras.optimizers.Adam(schedule),
        monitor="val_map50",
        mode="max",
        callbacks=[DetectionMetrics(val, class_names=data.class_names, inference_model=detector, every=map_every)],
        export_model=detector,
        evaluate_test=lambda model: evaluate_detector(model, test, class_names=data.class_names),
        config=kapps.train.run_config("yolo_v1", kwargs=model_kwargs, data=data),
    )

    # 4. Evaluate and show: COCO-style mAP on the test split, and test scenes with predicted and true boxes.
    picture = plot_detections(
        run.model, test, run.path / "plots" / "test_detections.png", class_names=data.class_names, count=16
    )
    click.echo(
        f"yolo_v1 on {opts.data}: test mAP@0.5 {run.metrics['map50']:.3f}, mAP@[.5:.95] {run.metrics['map']:.3f}; "
        f"{picture}; run folder {run.path}"
    )
    return run


if __name__ == "__main__":
    main()
