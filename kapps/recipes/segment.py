"""Train a semantic segmenter: FCN-32s/16s/8s, SegNet, its transposed-convolution twin, or U-Net.

The default trains `unet` offline on the embedded `shapes` scenes (background and four shape classes) at 96x96, at
a size that trains on a CPU: U-Net with `--base-filters 16` (64 in the paper), the FCNs on VGG-16 at `--width
1/16` (fc6/fc7 of 256 units instead of 4096), SegNet and `encoder_decoder` at `--width 1/8` (8 to 64 filters
instead of 64 to 512); the builders' own defaults stay the papers'. Every model trains the same way: pixel-wise
sparse categorical cross-entropy (label 255 ignored; class-balanced for SegNet and its twin, below), Adam along a
warm-up and cosine decay, flips and scale jitter that move each mask with its image, the epoch of best validation
mean IoU kept. metrics.json holds the
test pixel accuracy, mean and per-class IoU and Dice, the boundary F-score (2-pixel tolerance), ms per image and
the parameter count; plots/test_masks.png shows test images with their true and predicted masks.

The papers' points, measured at the defaults (seed 0, `time python recipes/segment.py --model X`, two CPU cores
shared with other jobs at a load of 4 to 8, which stretched the wall times, but for U-Net's quiet run): U-Net's skips
reach a test mean IoU of 0.877 (boundary F 0.827; 7 min 39 s wall on two quiet cores, 17 min 50 s under that load);
FCN-8s, fusing pool3 and pool4 scores, beats FCN-32s's 32-pixel-stride masks, 0.511 against 0.233 mean IoU
(boundary F 0.454 against 0.068; 4 min 33 s and 7 min 3 s), as in Long et al. 2015, Table 2 (62.7 vs 59.4 mean IU
on VOC 2011 val); SegNet's pooling switches keep the boundaries that learned upsampling blurs (Badrinarayanan et
al. 2017, Table 1: the boundary F1 measure): boundary F 0.462 against 0.266 for `encoder_decoder`, the same network
with transposed convolutions, and mean IoU 0.619 against 0.524 (6 min 49 s and 6 min 47 s wall, nearly quiet).

SegNet and `encoder_decoder` train by default with median frequency balancing (`--class-weights median`, Eigen &
Fergus 2015, the SegNet paper's loss): each class's pixels weighed by the median of the classes' frequencies over
its own, a frequency counted over the training masks that hold the class. Without it, on scenes that are 87%
background, both learned only the background and circles at width 1/8 (mean IoU 0.267 and 0.375); the skips of the
FCNs and U-Net learn every class without it, and train unweighted by default.

`--data tfds:oxford_iiit_pet` (trimaps as pet and background, the border ignored), `--data folder:VOC2012` (VOC's
`SegmentationClass` layout) or a CVPPP folder train on real images.

`--border-weights` trains with U-Net's weighted loss (Ronneberger et al. 2015, eq. 2): each pixel's cross-entropy
weighed by w_c (background and objects balanced per image) plus `--border-w0` (10) times a Gaussian of width
`--border-sigma` (5 px) in the summed distances to the two nearest objects, so the thin background between
touching objects counts most; it needs instance labels (the shapes scenes, VOC's `SegmentationObject`, CVPPP's
`*_label.png`) and suits every model here, as the weights depend on the masks only.

    python recipes/segment.py                                  # unet on shapes, writes saved_models/segment/
    python recipes/segment.py --model fcn8s --out saved_models/fcn8s
    python recipes/segment.py --padding valid --image-size 284   # the paper's convolutions: 284 -> its centre 100
    python recipes/segment.py --border-weights --out saved_models/unet_border   # the paper's weighted loss
    kapps export saved_models/segment --format all
    kapps predict saved_models/segment/model.keras scene.png
"""

from __future__ import annotations

import math

import kapps.data
import kapps.models
import kapps.segmentation_metrics as seg
import kapps.train
from kapps.errors import OptionError
from kapps.models.segmentation import unet_output_size
from kapps.train.segmentation import (
    border_weighted,
    class_weighted,
    crop_masks,
    evaluate_segmenter,
    median_frequency_weights,
)
from kapps.viz import plot_segmentation

import click
import keras

MODELS = ("fcn32s", "fcn16s", "fcn8s", "segnet", "encoder_decoder", "unet")
# The channel multiplier of the CPU-sized variants, by model (U-Net takes --base-filters instead).
SCENES = "2000,200,200"
# The loss's class weights by model, unless --class-weights says: SegNet's paper trains with median frequency
# balancing, and its transposed-convolution twin is trained the same way so that the two differ in upsampling only.
CLASS_WEIGHTS = {"segnet": "median", "encoder_decoder": "median"}
CPU_WIDTHS = {"fcn32s": 1 / 16, "fcn16s": 1 / 16, "fcn8s": 1 / 16, "segnet": 1 / 8, "encoder_decoder": 1 / 8}


@kapps.train.recipe_command(
    name="segment",
    help="Train FCN-32s/16s/8s, SegNet, encoder_decoder or U-Net on shapes scenes (default, offline) or real masks.",
    epochs=15,
    batch_size=16,
    lr=2e-3,
    data="shapes",
)
@click.option("--model", "model_name", type=click.Choice(MODELS), default="unet", help="The segmenter to train.")
@click.option("--image-size", type=int, default=96, help="Side of the square input.")
@click.option(
    "--width",
    type=float,
    default=None,
    help="Channel multiplier of the FCNs, SegNet and encoder_decoder (1 is the paper's); default 1/16 for the "
    "FCNs, 1/8 for SegNet and encoder_decoder.",
)
@click.option("--base-filters", type=int, default=16, help="U-Net's first-level filters (64 in the paper).")
@click.option(
    "--padding",
    type=click.Choice(["same", "valid"]),
    default="same",
    help="U-Net's convolutions: 'valid' is the paper's (the output is the input's centre; the masks are cut to "
    "it), 'same' keeps the input's size, so every pixel of the scenes is scored.",
)
@click.option("--scenes", default=None, help=f"Scenes of the shapes source: TRAIN,VAL,TEST (default {SCENES}).")
@click.option("--augment/--no-augment", default=True, help="Random flips and scale jitter (0.75-1.25) in training.")
@click.option(
    "--class-weights",
    type=click.Choice(["none", "median"]),
    default=None,
    help="The loss's class weights: 'median' is median frequency balancing (Eigen & Fergus 2015), computed on "
    "the training masks [default: median for segnet and encoder_decoder, none for the others].",
)
@click.option(
    "--border-weights",
    is_flag=True,
    help="U-Net's weighted loss (eq. 2): class balance plus high weights on the background between touching "
    "objects; needs instance labels.",
)
@click.option("--border-w0", type=float, default=None, help="Peak border weight w0 of --border-weights [default: 10].")
@click.option(
    "--border-sigma", type=float, default=None, help="Border width sigma of --border-weights, in pixels [default: 5]."
)
def main(
    opts: kapps.train.TrainOptions,
    model_name: str,
    image_size: int,
    width: float | None,
    base_filters: int,
    padding: str,
    scenes: str | None,
    augment: bool,
    class_weights: str | None,
    border_weights: bool,
    border_w0: float | None,
    border_sigma: float | None,
) -> kapps.train.Run:
    if image_size < 32:
        raise OptionError(f"--image-size must be at least 32, not {image_size}.")
    border = _border_options(border_weights, w0=border_w0, sigma=border_sigma)
    if class_weights is None:
        class_weights = "none" if border else CLASS_WEIGHTS.get(model_name, "none")
    elif class_weights != "none" and border:
        raise OptionError("--border-weights has its own class balance: leave out --class-weights or set it to none.")
    if model_name == "unet":
        if width is not None:
            raise OptionError("--width is for the FCNs, SegNet and encoder_decoder; U-Net takes --base-filters.")
        if base_filters < 1:
            raise OptionError(f"--base-filters must be a positive whole number, not {base_filters}.")
        try:
            output_size = unet_output_size(image_size, padding=padding)
        except ValueError:
            raise OptionError(
                f"--image-size {image_size} does not fit a valid-padding U-Net, whose every size before a pooling "
                "must be even: use 188 + 16k (188, 204, ..., 572), which it maps to its centre 184 pixels smaller."
            ) from None
        model_kwargs = {"base_filters": base_filters, "padding": padding}
    else:
        if padding != "same":
            raise OptionError(f"--padding is for U-Net, not {model_name!r}.")
        width = CPU_WIDTHS[model_name] if width is None else width
        if not 0 < width <= 1:
            raise OptionError(f"--width must be above 0 and at most 1, not {width}.")
        output_size = image_size
        model_kwargs = {"width": width}

    # 1. Data: images and their class-index masks at the requested size, with --border-weights each training mask's
    #    per-pixel weights from its instance labels; in training, each mask (and its weights) flipped and rescaled
    #    with its image (nearest neighbour). A valid-padding U-Net's masks (and weights) are cut to what it scores.
    size = (image_size, image_size)
    load = kapps.data.load_segmentation_instances if border else kapps.data.load_segmentation
    data = load(
        opts.data,
        image_size=size,
        seed=opts.seed,
        data_dir=opts.data_dir,
        **kapps.train.scene_counts(SCENES if scenes is None and opts.data == "shapes" else scenes, data=opts.data),
    )
    num_classes = len(data.class_names)
    balance = None
    if border:
        data = border_weighted(data, **border)
    elif class_weights == "median":
        balance = median_frequency_weights(data.train, num_classes)
        data = class_weighted(data, balance)
    augmentation = kapps.data.segmentation_augment(image_size=size, seed=opts.seed) if augment else None
    splits = kapps.data.splits(
        data, batch_size=opts.batch_size, seed=opts.seed, augment=augmentation, eval_batch_size=32
    )
    train, val, test = splits.train, splits.val, splits.test
    if output_size != image_size:
        train, val, test = (crop_masks(ds, (output_size, output_size)) for ds in (train, val, test))

    # 2. Model: the registered builder at the CPU size, softmax scores at every pixel.
    model_kwargs = {"input_shape": data.input_shape, "num_classes": num_classes, **model_kwargs}

    # 3. Train: per-pixel cross-entropy (255 ignored; each pixel's term times its border or class weight when the
    #    training examples carry them, as Keras's sample_weight), Adam on a warm-up and cosine decay, best
    #    validation mean IoU.
    steps = opts.epoch_steps(data.sizes["train"])
    schedule = kapps.train.warmup_cosine(opts.lr, epochs=opts.epochs, steps=steps)
    run = kapps.train.fit(
        opts,
        build_model=lambda: kapps.models.build(model_name, **model_kwargs),
        train=train,
        train_steps=steps,
        val=val,
        test=test,
        loss=keras.losses.SparseCategoricalCrossentropy(ignore_class=seg.IGNORE_LABEL),
        metrics=[seg.MeanIoU(num_classes), seg.PixelAccuracy(num_classes)],
        optimizer=lambda: keras.optimizers.Adam(schedule),
        monitor="val_mean_iou",
        mode="max",
        config=kapps.train.run_config(
            model_name,
            kwargs=model_kwargs,
            data=data,
            border_weights=border,
            class_weights=None if balance is None else dict(zip(data.class_names, balance.tolist(), strict=True)),
        ),
        evaluate_test=lambda model: evaluate_segmenter(model, test, class_names=data.class_names),
    )

    # 4. Evaluate and show: test scores, and test images with their true and predicted masks.
    picture = plot_segmentation(run.model, test, run.path / "plots" / "test_masks.png", class_names=data.class_names)
    metrics = run.metrics
    click.echo(
        f"{model_name} on {opts.data}: test mean IoU {metrics['mean_iou']:.3f}, pixel accuracy "
        f"{metrics['pixel_accuracy']:.3f}, boundary F {metrics['boundary_f_score']:.3f}, "
        f"{metrics['ms_per_image']:.1f} ms per image, {metrics['parameters']:,} parameters; {picture}; "
        f"run folder {run.path}"
    )
    return run


def _border_options(border_weights: bool, *, w0: float | None, sigma: float | None) -> dict | None:
    """`border_weighted`'s keywords for --border-weights (None without it): the paper's w0 = 10 and sigma = 5 px
    unless given, and w_c balancing background against objects as the paper's eq. 2 has it."""
    if not border_weights:
        given = [name for name, value in (("--border-w0", w0), ("--border-sigma", sigma)) if value is not None]
        if given:
            raise OptionError(f"{given[0]} sets the border weights, which only --border-weights turns on.")
        return None
    w0 = 10.0 if w0 is None else w0
    sigma = 5.0 if sigma is None else sigma
    if not 0 < w0 < math.inf:
        raise OptionError(f"--border-w0 must be a finite number above 0, not {w0:g}.")
    if not 0 < sigma < math.inf:
        raise OptionError(f"--border-sigma must be a finite number of pixels above 0, not {sigma:g}.")
    return {"w0": w0, "sigma": sigma, "class_weights": "balanced"}


if __name__ == "__main__":
    main()
