"""Train Faster R-CNN, with or without a feature pyramid, and keep it as an image-to-detections model.

The default runs offline on the embedded `shapes` scenes at 128x128 with a small ResNet backbone and an FPN
(`kapps.models.faster_rcnn`): like the papers, whose backbones come pre-trained on ImageNet, it first pre-trains the
backbone as a classifier, here of 48-pixel windows around the objects of the training scenes, then trains the whole
detector by approximate joint training (`FasterRCNNTrainer`: RPN loss, proposals, sampled RoIs, box head loss) with
Adam on a warm-up and cosine decay. The anchors, proposal counts and head width are scaled to the 128-pixel scenes
and recorded in config.json. Measured (seed 0, `time python recipes/faster_rcnn.py`, two CPU cores shared with
low-priority jobs): test mAP@0.5 0.985, mAP@[.5:.95] 0.805, in 16 min 40 s.

`--data tfds:voc/2007 --image-size 600 --backbone resnet50 --fpn-channels 256 --sampling-ratio 2 --pretrain-epochs 0`
trains on the paper's data (Ren et al. 2015: 73.2% mAP on VOC 2007 test, trained on 07+12 with an ImageNet VGG-16;
the FPN paper's ResNet-50 detector); the recipe does not load ImageNet weights into the backbone yet.

    python recipes/faster_rcnn.py                        # shapes, writes saved_models/faster_rcnn/
    kapps export saved_models/faster_rcnn --format all   # boxes, scores, classes, num_detections
    kapps predict saved_models/faster_rcnn/model.keras scene.png
"""

from __future__ import annotations

import kapps.train
from kapps.metrics import evaluate_detector
from kapps.models.detection.two_stage import FasterRCNNTrainer
from kapps.train.two_stage import TwoStageSettings, fit_two_stage, two_stage_options
from kapps.viz import plot_detections

import click


@kapps.train.recipe_command(
    name="faster_rcnn",
    help="Train Faster R-CNN (FPN optional) on shapes scenes (default, offline), tfds:voc/2007 or a VOC/COCO folder.",
    epochs=4,
    batch_size=8,
    lr=1e-3,
    data="shapes",
)
@two_stage_options
def main(opts: kapps.train.TrainOptions, settings: TwoStageSettings) -> kapps.train.Run:
    # 1-3. Data, the backbone pre-trained on object crops, then the inference model (backbone, FPN, RPN, proposals,
    #      RoIAlign, box head, NMS) trained end to end by its trainer, kept at the best validation mAP@0.5.
    run, splits, data = fit_two_stage(
        opts, settings, model="faster_rcnn", trainer=FasterRCNNTrainer, evaluate=evaluate_detector
    )

    # 4. Evaluate and show: COCO-style mAP on the test split, and test scenes with predicted and true boxes.
    picture = plot_detections(
        run.model, splits.test, run.path / "plots" / "test_detections.png", class_names=data.class_names, count=16
    )
    click.echo(
        f"faster_rcnn on {opts.data}: test mAP@0.5 {run.metrics['map50']:.3f}, mAP@[.5:.95] {run.metrics['map']:.3f}, "
        f"{run.metrics['seconds_per_image'] * 1000:.1f} ms per image; {picture}; run folder {run.path}"
    )
    return run


if __name__ == "__main__":
    main()
