"""Train Mask R-CNN and keep it as an image-to-detections-and-masks model.

The default runs offline on the embedded `shapes` scenes with their instance masks at 128x128, with a small ResNet
backbone and an FPN (`kapps.models.mask_rcnn`): as `recipes/faster_rcnn.py` does, it first pre-trains the backbone
as a classifier of 48-pixel windows around the objects of the training scenes, then trains the whole model
(`MaskRCNNTrainer`: Faster R-CNN's approximate joint training plus the mask loss on the foreground RoIs) with Adam on
a warm-up and cosine decay. The anchors, proposal counts and head widths are scaled to the 128-pixel scenes and
recorded in config.json. The test split is scored by COCO box AP and mask AP (pycocotools' `segm`).
Measured (seed 0, `time python recipes/mask_rcnn.py`, two quiet CPU cores): test box mAP@0.5 0.983, mAP@[.5:.95]
0.821, mask mAP@0.5 0.980, mask mAP@[.5:.95] 0.794, in 22 min 27 s.

`--data folder:PATH` reads a COCO-layout folder with polygon or RLE masks; the paper's setting is COCO at 800
pixels with an ImageNet ResNet-50 (He et al. 2017: 35.7 mask AP on test-dev with ResNet-101-FPN).

    python recipes/mask_rcnn.py                        # shapes, writes saved_models/mask_rcnn/
    kapps export saved_models/mask_rcnn --format all   # boxes, scores, classes, num_detections, masks
    kapps predict saved_models/mask_rcnn/model.keras scene.png
"""

from __future__ import annotations

import kapps.train
from kapps.errors import OptionError
from kapps.metrics import evaluate_instance_segmenter
from kapps.models.detection.mask_branch import MaskRCNNTrainer
from kapps.train.two_stage import TwoStageSettings, fit_two_stage, two_stage_options
from kapps.viz import plot_detections

import click


@kapps.train.recipe_command(
    name="mask_rcnn",
    help="Train Mask R-CNN on shapes scenes with masks (default, offline) or a COCO-layout folder with masks.",
    epochs=4,
    batch_size=8,
    lr=1e-3,
    data="shapes",
)
@two_stage_options
@click.option(
    "--mask-width", type=int, default=64, show_default=True, help="The mask head's channels (256 in the paper)."
)
@click.option(
    "--max-detections",
    type=int,
    default=20,
    show_default=True,
    help="Detections an image; the mask head runs on each of them.",
)
def main(
    opts: kapps.train.TrainOptions, settings: TwoStageSettings, mask_width: int, max_detections: int
) -> kapps.train.Run:
    for option, value in (("--mask-width", mask_width), ("--max-detections", max_detections)):
        if value < 1:
            raise OptionError(f"{option} must be a positive whole number, not {value}.")

    # 1-3. Data with instance masks, the backbone pre-trained on object crops, then the inference model (Faster
    #      R-CNN's graph, the mask head on the detections and their masks pasted at image resolution) trained end to
    #      end by its trainer (Faster R-CNN's losses and the mask loss), kept at the best validation box mAP@0.5.
    run, splits, data = fit_two_stage(
        opts,
        settings,
        model="mask_rcnn",
        trainer=MaskRCNNTrainer,
        evaluate=evaluate_instance_segmenter,
        masks=True,
        model_kwargs={"mask_width": mask_width, "max_detections": max_detections},
    )

    # 4. Evaluate and show: COCO-style box and mask mAP on the test split, and test scenes with their masks.
    picture = plot_detections(
        run.model, splits.test, run.path / "plots" / "test_masks.png", class_names=data.class_names, count=16
    )
    metrics = run.metrics
    click.echo(
        f"mask_rcnn on {opts.data}: test box mAP@0.5 {metrics['map50']:.3f}, mAP@[.5:.95] {metrics['map']:.3f}; "
        f"mask mAP@0.5 {metrics['mask_map50']:.3f}, mAP@[.5:.95] {metrics['mask_map']:.3f}; "
        f"{metrics['seconds_per_image'] * 1000:.1f} ms per image; {picture}; run folder {run.path}"
    )
    return run


if __name__ == "__main__":
    main()
