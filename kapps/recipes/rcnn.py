"""Train R-CNN, the pipeline of Girshick et al. (2014): selective search, warped regions, a fine-tuned CNN, one linear
SVM a class, one box regressor a class, per-class non-maximum suppression.

The default runs offline on the embedded `shapes` scenes at 128x128 (1,000 training scenes). Selective search
(OpenCV, fast mode) proposes regions; every region is warped to the CNN's 64x64 input with the paper's context
(16 pixels at 227, so 4.5 at 64); the CNN (the small YOLO backbone, `darknet_small`) first learns to classify the
warped true boxes (the paper pre-trains on ImageNet), then is fine-tuned on warped proposals, K classes and
background, a proposal being an object when it overlaps one by IoU >= 0.5, in batches a quarter positive. Linear
SVMs on its features (true boxes against proposals below IoU 0.3, with hard negative mining) score, ridge
regressors on its last feature map move the boxes, and NMS at IoU 0.3 keeps the best. The run folder holds the
fitted pipeline (`rcnn/`: `cnn.keras`, `heads.npz`, `rcnn.json`), `metrics.json` (test mAP, seconds an image)
and `plots/test_detections.png`.
Measured (seed 0, `time nice -n 15 python recipes/rcnn.py`, two CPU cores shared with another training run): test
mAP@0.5 0.965, mAP@[.5:.95] 0.816 on 500 scenes, 0.229 s an image, in 15 min 10 s.

`--data tfds:voc/2007 --image-size 448 --warp-size 227` is the paper's data and warp, less its ImageNet
pre-training and AlexNet; Girshick et al. (2014) report 53.3% mAP on VOC 2012 test.

    python recipes/rcnn.py                       # shapes, writes saved_models/rcnn/
    python -c "from kapps.models.detection.rcnn import RCNN; RCNN.load('saved_models/rcnn/rcnn')"

R-CNN is no single graph (selective search is OpenCV's, on the CPU), so `kapps export` does not take its run.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import kapps.models
import kapps.train
from kapps.data.base import Data
from kapps.data.detection import load_detection
from kapps.data.regions import region_batches, region_stream, scene_arrays
from kapps.detection.regions import MODES, label_regions, proposal_recall, selective_search
from kapps.errors import OptionError
from kapps.metrics import coco_evaluate, collect_detections
from kapps.models.detection.rcnn import RCNN, RCNNSettings, region_features, table_features
from kapps.models.detection.rcnn_heads import fit_box_regressors, fit_svms
from kapps.viz import plot_detections

import click
import keras
import numpy as np
import tensorflow as tf

# Girshick et al. (2014, Appendix A): 16 pixels of context around each region warped to 227x227.
PAPER_CONTEXT, PAPER_WARP = 16.0, 227


@kapps.train.recipe_command(
    name="rcnn",
    help="Train R-CNN (selective search, CNN, SVMs, box regression) on shapes scenes (default, offline) or VOC/COCO.",
    epochs=4,
    batch_size=128,
    lr=1e-3,
    data="shapes",
)
@click.option("--image-size", type=int, default=128, show_default=True, help="Side of the square scenes.")
@click.option("--warp-size", type=int, default=64, show_default=True, help="Side of the warped regions (CNN input).")
@click.option(
    "--context",
    type=float,
    default=None,
    help="Pixels of context at the warp size [default: the paper's 16 at 227, to scale: 4.51 at 64].",
)
@click.option("--max-proposals", type=int, default=2000, show_default=True, help="Selective search boxes an image.")
@click.option(
    "--proposal-mode",
    type=click.Choice(MODES),
    default="fast",
    show_default=True,
    help="Selective search's mode: fast is the paper's; single is about 7x quicker, with fewer boxes.",
)
@click.option("--pretrain-epochs", type=int, default=6, show_default=True, help="Epochs classifying true boxes first.")
@click.option("--svm-c", type=float, default=1e-3, show_default=True, help="C of the linear SVMs (the paper's 1e-3).")
@click.option("--box-regression/--no-box-regression", default=True, show_default=True)
@click.option("--scenes", default=None, help="shapes only: TRAIN,VAL,TEST scene counts [default: 1000,200,500].")
def main(
    opts: kapps.train.TrainOptions,
    image_size: int,
    warp_size: int,
    context: float | None,
    max_proposals: int,
    proposal_mode: str,
    pretrain_epochs: int,
    svm_c: float,
    box_regression: bool,
    scenes: str | None,
) -> dict:
    if warp_size < 16:
        raise OptionError(f"--warp-size must be at least 16, not {warp_size}.")
    if context is None:
        context = PAPER_CONTEXT * warp_size / PAPER_WARP
    if not 0 <= context < warp_size / 2:
        raise OptionError(f"--context must be at least 0 and under half of --warp-size, not {context:g}.")
    for option, value in (("--max-proposals", max_proposals), ("--image-size", image_size)):
        if value < 1:
            raise OptionError(f"{option} must be a positive whole number, not {value}.")
    if pretrain_epochs < 0:
        raise OptionError(f"--pretrain-epochs must be zero or more, not {pretrain_epochs}.")
    if not svm_c > 0:
        raise OptionError(f"--svm-c must be positive, not {svm_c:g}.")
    source_kwargs = {"sizes": (1000, 200, 500)} if opts.data == "shapes" else {}
    source_kwargs.update(kapps.train.scene_counts(scenes, data=opts.data))
    out = Path(opts.out)
    settings = RCNNSettings(context=context, max_proposals=max_proposals, proposal_mode=proposal_mode)
    warp = {"size": (warp_size, warp_size), "context": context}

    # 1. Data, and selective search's proposals for the training and validation scenes, labelled by their overlaps.
    data = load_detection(
        opts.data, image_size=(image_size, image_size), seed=opts.seed, data_dir=opts.data_dir, **source_kwargs
    )
    num_classes = data.num_classes
    scenes_of = {name: scene_arrays(getattr(data, name)) for name in ("train", "val")}
    regions = {}
    for name, (images, boxes, classes) in scenes_of.items():
        start = time.perf_counter()
        proposals = [selective_search(image, mode=proposal_mode, max_proposals=max_proposals) for image in images]
        regions[name] = label_regions(proposals, boxes, classes, num_classes=num_classes)
        seconds = (time.perf_counter() - start) / len(images)
        covered = proposal_recall(regions[name])
        click.echo(
            f"{name}: {np.mean([len(p) for p in proposals]):.0f} proposals an image ({seconds * 1000:.0f} ms), "
            f"{covered:.1%} of the objects covered at IoU 0.5"
        )

    # 2. The CNN first learns the classes from the warped true boxes (the paper starts from ImageNet).
    def build_cnn(classes: int) -> keras.Model:
        model = kapps.models.build(
            "darknet_small", input_shape=(warp_size, warp_size, 3), num_classes=classes, batch_norm=True
        )
        # Batch norm's moving statistics at Keras's momentum 0.99 lag a few hundred steps behind the weights: the
        # pre-trained CNN then scored chance (0.23) on validation boxes while fitting its training boxes (0.97).
        return kapps.models.set_bn_momentum(model, 0.9)

    pretrained = None
    if pretrain_epochs:
        objects = _warped_objects(scenes_of, regions, data, warp)
        pretrained = kapps.train.fit_classifier(
            dataclasses.replace(opts, out=str(out / "pretrain"), epochs=pretrain_epochs, batch_size=64),
            objects,
            build_model=lambda: build_cnn(num_classes),
            config={"task": "classification", "model": {"name": "darknet_small"}},
        )
        click.echo(f"CNN pre-training on warped true boxes: test accuracy {pretrained.metrics['test_accuracy']:.4f}")

    def build_model() -> keras.Model:
        model = build_cnn(num_classes + 1)  # the last class is background
        if pretrained is not None:
            body = [layer.name for layer in model.layers if layer.weights and layer.name != "predictions"]
            kapps.models.copy_weights(pretrained.model, model, layers=body)
        return model

    # 3. Fine-tune it on warped proposals: K classes and background, batches of 128 a quarter positive.
    train_regions = regions["train"]
    # An epoch draws as many positive regions as the scenes hold objects (a fraction of the positive proposals,
    # which overlap each object many times over).
    steps = opts.epoch_steps(int(np.sum(train_regions["is_gt"])) * 4)
    finetuned = kapps.train.fit(
        dataclasses.replace(opts, out=str(out / "finetune")),
        build_model=build_model,
        train=region_stream(
            scenes_of["train"][0],
            train_regions,
            background=num_classes,
            batch_size=opts.batch_size,
            seed=opts.seed,
            **warp,
        ),
        train_steps=steps,
        val=region_batches(scenes_of["val"][0], regions["val"], **warp),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
        optimizer=lambda: keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(opts.lr, opts.epochs * steps)),
        monitor="val_loss",
        config={"task": "classification", "model": {"name": "darknet_small"}, "data": data.describe()},
    )
    click.echo(f"CNN fine-tuning on warped proposals: validation accuracy {finetuned.history[-1]['val_accuracy']:.4f}")

    # 4. One linear SVM a class on the CNN's features, with hard negative mining; one ridge regressor a class.
    features, box_features = table_features(
        region_features(finetuned.model, **warp), scenes_of["train"][0], train_regions
    )
    svms, mining = fit_svms(features, train_regions, num_classes=num_classes, C=svm_c, seed=opts.seed)
    boxes, counts = (
        fit_box_regressors(box_features, train_regions, num_classes=num_classes) if box_regression else (None, {})
    )
    rcnn = RCNN(finetuned.model, class_names=data.class_names, svms=svms, boxes=boxes, settings=settings)
    rcnn.save(out / "rcnn")
    click.echo(
        "SVMs: negatives cached after mining "
        + ", ".join(f"{data.class_names[k]} {log[-1]['cached']} ({len(log) - 1} rounds)" for k, log in mining.items())
    )

    # 5. Evaluate and show: COCO-style mAP on the test scenes, the time an image takes, the test detections drawn.
    test = data.test.batch(16)
    start = time.perf_counter()
    truth, found = collect_detections(rcnn, test)
    seconds_per_image = (time.perf_counter() - start) / max(len(found), 1)
    metrics = {
        **coco_evaluate(truth, found, class_names=data.class_names, image_size=(image_size, image_size)),
        "seconds_per_image": round(seconds_per_image, 4),
        "svm_mining": {data.class_names[k]: log for k, log in mining.items()},
        "box_regression_examples": {data.class_names[k]: n for k, n in counts.items()},
        "proposal_recall50": {name: proposal_recall(table) for name, table in regions.items()},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    config = {"task": "detection", "model": {"name": "rcnn", "settings": dataclasses.asdict(settings)}}
    config |= {"options": opts.to_dict(), "warp_size": warp_size, "data": data.describe()}
    config["versions"] = kapps.train.versions()
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    picture = plot_detections(
        rcnn, test, out / "plots" / "test_detections.png", class_names=data.class_names, count=16, score_threshold=0.0
    )
    click.echo(
        f"rcnn on {opts.data}: test mAP@0.5 {metrics['map50']:.3f}, mAP@[.5:.95] {metrics['map']:.3f}, "
        f"{seconds_per_image:.3f} s an image; {picture}; run folder {out}"
    )
    return metrics


def _warped_objects(scenes_of: dict, regions: dict, data: Data, warp: dict) -> Data:
    """A classification `Data` of the warped true boxes: train and val from those splits, test = val."""
    splits = {}
    for name in ("train", "val"):
        objects = {key: value[regions[name]["is_gt"]] for key, value in regions[name].items()}
        batches = region_batches(scenes_of[name][0], {**objects, "label": objects["class"]}, **warp)
        splits[name] = (batches.unbatch().cache(), len(objects["class"]))
    datasets = {name: ds.apply(tf.data.experimental.assert_cardinality(n)) for name, (ds, n) in splits.items()}
    return Data(
        spec=f"{data.spec} (warped true boxes)",
        train=datasets["train"],
        val=datasets["val"],
        test=datasets["val"],
        input_shape=(*warp["size"], 3),
        class_names=list(data.class_names),
        sizes={"train": splits["train"][1], "val": splits["val"][1], "test": splits["val"][1]},
    )


if __name__ == "__main__":
    main()
