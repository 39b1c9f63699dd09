"""Train Faster R-CNN, with or without a feature pyramid, and keep it as an image-to-detections model.

The default runs offline on the embedded `shapes` scenes at 128x128 with a small ResNet backbone and an FPN
(`kapps.models.faster_rcnn`): like the papers, whose backbones come pre-trained on ImageNet, it first pre-trains the
backbone as a classifier, here of 48-pixel windows around the objects of the training scenes, then trains the whole
detector by approximate joint training (`FasterRCNNTrainer`: RPN loss, proposals, sampled RoIs, box head loss) with
Adam on a warm-up and cosine decay. The anchors, proposal counts and head width are scaled to the 128-pixel scenes
and recorded in config.json. Measured (seed 0, `time python recipes/faster_rcnn.py`, two CPU cores): see the
README's detection table.

`--data tfds:voc/2007 --image-size 600 --backbone vgg16 --no-fpn --pretrain-epochs 0 --backbone-weights imagenet`
is the paper's setting (Ren et al. 2015: 73.2% mAP on VOC 2007 test trained on VOC 2007+2012).

    python recipes/faster_rcnn.py                        # shapes, writes saved_models/faster_rcnn/
    kapps export saved_models/faster_rcnn --format all   # boxes, scores, classes, num_detections
    kapps predict saved_models/faster_rcnn/model.keras scene.png
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
from kapps.errors import OptionError
from kapps.metrics import DetectionMetrics, evaluate_detector
from kapps.models.detection.two_stage import FasterRCNNTrainer
from kapps.viz import plot_detections

import click
import keras


@kapps.train.recipe_command(
    name="faster_rcnn",
    help="Train Faster R-CNN (FPN optional) on shapes scenes (default, offline), tfds:voc/2007 or a VOC/COCO folder.",
    epochs=12,
    batch_size=8,
    lr=1e-3,
    data="shapes",
)
@click.option("--image-size", type=int, default=128, show_default=True, help="Side of the square input.")
@click.option("--backbone", default="resnet10_narrow", show_default=True, help="A registered backbone.")
@click.option("--backbone-weights", default=None, help="'imagenet' or a weight file for the backbone.")
@click.option("--fpn/--no-fpn", default=True, show_default=True, help="The feature pyramid (Lin et al. 2017).")
@click.option("--fpn-channels", type=int, default=64, show_default=True, help="The pyramid's channels (256 in FPN).")
@click.option("--sampling-ratio", type=int, default=1, show_default=True, help="RoIAlign's samples per bin and axis.")
@click.option("--anchor-scale", type=float, default=1.0, show_default=True, help="Multiplies the anchor sizes.")
@click.option("--proposals", type=int, default=100, show_default=True, help="Proposals per image at test time.")
@click.option("--train-proposals", type=int, default=300, show_default=True, help="Proposals per image in training.")
@click.option("--roi-samples", type=int, default=64, show_default=True, help="RoIs sampled per training image.")
@click.option("--head-units", type=int, default=256, show_default=True, help="Width of the box head's two layers.")
@click.option("--map-every", type=int, default=3, show_default=True, help="Epochs between validation mAPs.")
@click.option(
    "--pretrain-epochs",
    type=int,
    default=2,
    show_default=True,
    help="Epochs of classifying object crops with the backbone first (the papers pre-train on ImageNet).",
)
@click.option("--scenes", default=None, help="shapes only: TRAIN,VAL,TEST scene counts [default: 4000,500,500].")
def main(
    opts: kapps.train.TrainOptions,
    image_size: int,
    backbone: str,
    backbone_weights: str | None,
    fpn: bool,
    fpn_channels: int,
    sampling_ratio: int,
    anchor_scale: float,
    proposals: int,
    train_proposals: int,
    roi_samples: int,
    head_units: int,
    map_every: int,
    pretrain_epochs: int,
    scenes: str | None,
) -> kapps.train.Run:
    for option, value in (
        ("--proposals", proposals),
        ("--train-proposals", train_proposals),
        ("--roi-samples", roi_samples),
        ("--head-units", head_units),
        ("--fpn-channels", fpn_channels),
        ("--sampling-ratio", sampling_ratio),
        ("--map-every", map_every),
    ):
        if value < 1:
            raise OptionError(f"{option} must be a positive whole number, not {value}.")
    if pretrain_epochs < 0:
        raise OptionError(f"--pretrain-epochs must be zero or more, not {pretrain_epochs}.")
    if image_size < 64:
        raise OptionError(f"--image-size must be at least 64, not {image_size}.")
    if anchor_scale <= 0:
        raise OptionError(f"--anchor-scale must be positive, not {anchor_scale}.")
    if backbone not in kapps.models.list_backbones():
        raise OptionError(f"--backbone must be one of {', '.join(kapps.models.list_backbones())}, not {backbone!r}.")
    source_kwargs = kapps.train.scene_counts(scenes, data=opts.data)

    # 1. Data: images with padded boxes; training flips and rescales them.
    data = load_detection(
        opts.data, image_size=(image_size, image_size), seed=opts.seed, data_dir=opts.data_dir, **source_kwargs
    )
    augment = detection_augment(image_size=(image_size, image_size), seed=opts.seed)
    splits = kapps.data.splits(data, batch_size=opts.batch_size, seed=opts.seed, augment=augment, eval_batch_size=32)

    # 2. Model: the inference model (backbone, FPN, RPN, proposals, RoIAlign, box head, NMS) and its trainer.
    fractions = FPN_FRACTIONS if fpn else SINGLE_FRACTIONS
    model_kwargs = {
        "input_shape": data.input_shape,
        "num_classes": data.num_classes,
        "backbone": backbone,
        "fpn": fpn,
        "fpn_channels": fpn_channels,
        "sampling_ratio": sampling_ratio,
        "anchor_sizes": [[round(f * anchor_scale * image_size, 2) for f in level] for level in fractions],
        "pre_nms_top_n": 1000,
        "proposals": proposals,
        "head_units": head_units,
        "score_threshold": 0.01,
    }
    try:  # options that do not make a detector fail here, in one sentence, before any training
        kapps.models.build("faster_rcnn", **model_kwargs)
    except ValueError as err:
        raise OptionError(f"These options do not make a Faster R-CNN: {err}") from None
    trainer_kwargs = {"roi_samples": roi_samples, "train_proposals": train_proposals, "seed": opts.seed}

    # 2b. Optionally, pre-train the backbone as a classifier of the objects in the training scenes.
    pretrained = None
    if pretrain_epochs:
        crops = object_crops(data, size=(48, 48), scale="native")
        pretrained = kapps.train.fit_classifier(
            dataclasses.replace(opts, out=str(Path(opts.out) / "pretrain"), epochs=pretrain_epochs, batch_size=32),
            crops,
            build_model=lambda: kapps.models.build(
                backbone, input_shape=crops.input_shape, num_classes=data.num_classes
            ),
            config={"task": "classification", "model": {"name": backbone}},
        )
        click.echo(f"backbone pre-training on object crops: test accuracy {pretrained.metrics['test_accuracy']:.4f}")

    steps = opts.epoch_steps(data.sizes["train"])
    schedule = kapps.train.warmup_cosine(opts.lr, epochs=opts.epochs, steps=steps)

    def build_model() -> keras.Model:
        detector = kapps.models.build("faster_rcnn", **model_kwargs)
        if pretrained is not None:
            kapps.models.transfer_backbone(
                pretrained.model, detector.get_layer(f"{backbone}_backbone"), backbone_name=backbone
            )
        trainer = FasterRCNNTrainer(detector, **trainer_kwargs)
        trainer.compile(optimizer=keras.optimizers.Adam(schedule))
        return trainer

    def detector(trainer: keras.Model) -> keras.Model:
        return trainer.detector

    def evaluate(model: keras.Model) -> dict:
        return evaluate_detector(model, splits.test, class_names=data.class_names)

    # 3. Train end to end; the best validation mAP@0.5 is kept.
    run = kapps.train.fit(
        opts,
        build_model=build_model,
        train=splits.train,
        train_steps=steps,
        val=splits.val,
        test=splits.test,
        monitor="val_map50",
        mode="max",
        callbacks=[
            DetectionMetrics(splits.val, class_names=data.class_names, inference_model=detector, every=map_every)
        ],
        export_model=detector,
        evaluate_test=evaluate,
        config=kapps.train.run_config("faster_rcnn", kwargs=model_kwargs, data=data, trainer=trainer_kwargs),
    )

    # 4. Evaluate and show: COCO-style mAP on the test split, and test scenes with predicted and true boxes.
    picture = plot_detections(
        run.model, splits.test, run.path / "plots" / "test_detections.png", class_names=data.class_names, count=16
    )
    seconds = run.metrics["seconds_per_image"]  # None when the test split is one batch (nothing timed after it)
    speed = f"{seconds * 1000:.1f} ms per image" if seconds is not None else "one test batch, not timed"
    click.echo(
        f"faster_rcnn on {opts.data}: test mAP@0.5 {run.metrics['map50']:.3f}, mAP@[.5:.95] {run.metrics['map']:.3f}, "
        f"{speed}; {picture}; run folder {run.path}"
    )
    return run


# Anchor sizes for the 128-pixel shapes scenes, as fractions of the input side, whose objects are 10% to 40% of
# it: one size per level P2 .. P6 with FPN, three on the single map without.
FPN_FRACTIONS = ((0.0625,), (0.125,), (0.25,), (0.5,), (1.0,))
SINGLE_FRACTIONS = ((0.125, 0.25, 0.5),)


if __name__ == "__main__":
    main()
