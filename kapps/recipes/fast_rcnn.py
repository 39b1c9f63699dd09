"""Train Fast R-CNN: selective search's proposals, one pass of the image, RoI max pooling, sibling heads.

Fast R-CNN (Girshick 2015) runs the CNN once per image instead of once per proposal (R-CNN): each proposal's
features are max-pooled to 7x7 from the last convolutional map, two fully connected layers follow, then K + 1 class
scores and a box per class, trained together on the multitask loss (log loss + smooth L1, lambda 1) over
mini-batches of 2 images x 64 RoIs, 25% of them foreground (IoU >= 0.5) and the rest background (IoU in [0.1,
0.5)), with horizontal flips as the only augmentation (`kapps.models.fast_rcnn`, `FastRCNNTrainer`).

The default runs offline on the embedded `shapes` scenes at 128x128 with a small ResNet backbone read at stride 8
(`C3`, a 16x16 map; the paper's stride 16 on its 600-pixel images gives 37x37 cells, while on 128 pixels `C4`'s
8x8 cells left small objects one or two cells to pool from: test mAP@0.5 0.916, mAP 0.608, against C3's 0.970 and
0.704 on the same budget). Like the paper, whose VGG-16 comes pre-trained on ImageNet, it first pre-trains the
backbone as a classifier of 48-pixel windows around the training objects. Selective search (OpenCV, fast mode)
runs once over the training and validation scenes, and the proposals ride along in the tf.data pipeline; at test
time it runs on every image, and its time is in `seconds_per_image`: the bottleneck Faster R-CNN's RPN removes.
The run folder holds the network (`model.keras`, `{"image", "proposals"}` in), `metrics.json` and
`plots/test_detections.png`; `FastRCNN.load(folder)` gives back the detector that takes images, and `kapps
predict` runs it on image files.
Measured (seed 0, `time python recipes/fast_rcnn.py`, the 2 cores shared with other jobs): test mAP@0.5 0.970,
mAP@[.5:.95] 0.704, in 12 min 38 s (100 s of it selective search over 2,300 scenes).

`--data tfds:voc/2007 --image-size 600 --backbone vgg16 --feature-map block5_conv3 --head-units 4096
--pretrain-epochs 0` is the paper's network on its data (66.9% mAP on VOC 2007 test, trained on 07 with an
ImageNet VGG-16, which the recipe does not load yet).

    python recipes/fast_rcnn.py                  # shapes, writes saved_models/fast_rcnn/
    python -c "from kapps.models.detection import FastRCNN; FastRCNN.load('saved_models/fast_rcnn')"
"""

from __future__ import annotations

import dataclasses

import kapps.data
import kapps.train
from kapps.data.box_augment import flip_augment
from kapps.data.detection import load_detection
from kapps.data.regions import with_proposals
from kapps.detection.regions import MODES, SelectiveSearch, label_regions, proposal_recall
from kapps.errors import OptionError
from kapps.metrics import evaluate_detector
from kapps.models import list_backbones
from kapps.models.detection.fast import FastRCNN, FastRCNNTrainer
from kapps.train.two_stage import check_backbone_weights, check_builds, fit_detector
from kapps.viz import plot_detections

import click
import numpy as np


@kapps.train.recipe_command(
    name="fast_rcnn",
    help="Train Fast R-CNN (selective search, RoI pooling) on shapes scenes (default, offline) or VOC/COCO.",
    epochs=4,
    batch_size=2,
    lr=1e-3,
    data="shapes",
)
@click.option("--image-size", type=int, default=128, show_default=True, help="Side of the square input.")
@click.option("--backbone", default="resnet10_narrow", show_default=True, help="A registered backbone.")
@click.option(
    "--feature-map",
    default="C3",
    show_default=True,
    help="The backbone's map (or a layer of its body) the RoIs are pooled from; block5_conv3 for VGG-16.",
)
@click.option("--pooler", type=click.Choice(("max", "align")), default="max", show_default=True)
@click.option("--head-units", type=int, default=256, show_default=True, help="Width of fc6 and fc7 (4096).")
@click.option("--roi-samples", type=int, default=64, show_default=True, help="RoIs sampled per training image.")
@click.option("--max-proposals", type=int, default=2000, show_default=True, help="Selective search boxes an image.")
@click.option("--proposal-mode", type=click.Choice(MODES), default="fast", show_default=True)
@click.option(
    "--pretrain-epochs",
    type=int,
    default=2,
    show_default=True,
    help="Epochs of classifying object crops with the backbone first (the paper pre-trains on ImageNet).",
)
@click.option(
    "--backbone-weights",
    default=None,
    help="A .keras file holding the backbone's layers (a classify.py run's model.keras, say) to start from; replaces "
    "the pre-training on object crops.",
)
@click.option("--map-every", type=int, default=1, show_default=True, help="Epochs between validation mAPs.")
@click.option("--scenes", default=None, help="shapes only: TRAIN,VAL,TEST scene counts [default: 2000,300,500].")
def main(
    opts: kapps.train.TrainOptions,
    image_size: int,
    backbone: str,
    feature_map: str,
    pooler: str,
    head_units: int,
    roi_samples: int,
    max_proposals: int,
    proposal_mode: str,
    pretrain_epochs: int,
    backbone_weights: str | None,
    map_every: int,
    scenes: str | None,
) -> kapps.train.Run:
    for option, value in (
        ("--head-units", head_units),
        ("--roi-samples", roi_samples),
        ("--max-proposals", max_proposals),
        ("--map-every", map_every),
    ):
        if value < 1:
            raise OptionError(f"{option} must be a positive whole number, not {value}.")
    if image_size < 64:
        raise OptionError(f"--image-size must be at least 64, not {image_size}.")
    if pretrain_epochs < 0:
        raise OptionError(f"--pretrain-epochs must be zero or more, not {pretrain_epochs}.")
    if backbone not in list_backbones():
        raise OptionError(f"--backbone must be one of {', '.join(list_backbones())}, not {backbone!r}.")
    check_backbone_weights(backbone_weights)
    source_kwargs = {"sizes": (2000, 300, 500)} if opts.data == "shapes" else {}
    source_kwargs.update(kapps.train.scene_counts(scenes, data=opts.data))

    # 1. Data, and selective search's proposals for the training and validation scenes, searched once and kept
    #    in memory (the validation mAP of every epoch finds them there).
    size = (image_size, image_size)
    data = load_detection(opts.data, image_size=size, seed=opts.seed, data_dir=opts.data_dir, **source_kwargs)
    model_kwargs = {
        "input_shape": data.input_shape,
        "num_classes": data.num_classes,
        "backbone": backbone,
        "feature_map": feature_map,
        "pooler": pooler,
        "head_units": head_units,
        "score_threshold": 0.01,
        **({"backbone_weights": backbone_weights} if backbone_weights else {}),
    }
    check_builds("fast_rcnn", model_kwargs)  # before minutes of searching
    search = SelectiveSearch(mode=proposal_mode, max_proposals=max_proposals, remember=True)
    with_boxes = {}
    for name in ("train", "val"):
        with_boxes[name], table = with_proposals(getattr(data, name), search, name=f"{name} scenes")
        click.echo(f"{name}: {_coverage(getattr(data, name), table, data.num_classes)}")
    data = dataclasses.replace(data, train=with_boxes["train"], val=with_boxes["val"])
    splits = kapps.data.splits(
        data, batch_size=opts.batch_size, seed=opts.seed, augment=flip_augment(seed=opts.seed), eval_batch_size=32
    )

    # 2-3. The backbone pre-trained on object crops, then the network trained on its multitask loss; the epoch of
    #      best validation mAP@0.5 (selective search + network) is kept.
    def detector(network):
        return FastRCNN(network, search)

    def evaluate(network, test, *, class_names):  # a search that remembers nothing: its time is the user's
        return evaluate_detector(FastRCNN(network, SelectiveSearch(**search.settings())), test, class_names=class_names)

    run = fit_detector(
        opts,
        data=data,
        splits=splits,
        model="fast_rcnn",
        model_kwargs=model_kwargs,
        trainer=FastRCNNTrainer,
        trainer_kwargs={"roi_samples": roi_samples, "seed": opts.seed},
        backbone=backbone,
        pretrain_epochs=0 if backbone_weights else pretrain_epochs,
        evaluate=evaluate,
        map_every=map_every,
        val_detector=detector,
        config={"proposals": search.settings()},
    )

    # 4. Show: test scenes with predicted and true boxes.
    picture = plot_detections(
        detector(run.model), splits.test, run.path / "plots" / "test_detections.png", class_names=data.class_names
    )
    click.echo(
        f"fast_rcnn on {opts.data}: test mAP@0.5 {run.metrics['map50']:.3f}, mAP@[.5:.95] {run.metrics['map']:.3f}, "
        f"{run.metrics['seconds_per_image'] * 1000:.1f} ms per image with selective search; {picture}; "
        f"run folder {run.path}"
    )
    return run


def _coverage(split, table: np.ndarray, num_classes: int) -> str:
    """How many proposals an image, and the share of the objects one covers at IoU >= 0.5 (the detector's bound)."""
    truth = [(targets["boxes"], targets["classes"]) for _, targets in split.as_numpy_iterator()]
    proposals = [boxes[np.any(boxes != 0, axis=-1)] for boxes in table]
    regions = label_regions(
        proposals, np.stack([b for b, _ in truth]), np.stack([c for _, c in truth]), num_classes=num_classes
    )
    count = np.mean([len(p) for p in proposals])
    return f"{count:.0f} proposals an image, {proposal_recall(regions):.1%} of the objects covered at IoU 0.5"


if __name__ == "__main__":
    main()
