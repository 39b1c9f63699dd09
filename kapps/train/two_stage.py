"""What the two-stage detector recipes share (`recipes/faster_rcnn.py`, `recipes/mask_rcnn.py`): their options, the
checks of them, the data, the backbone's pre-training on object crops and the training of the model and its trainer
through the engine (`fit_detector`, which `recipes/fast_rcnn.py` calls with its own data and options). A recipe
keeps its story: which model, which trainer, how it is scored and shown.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path

import kapps.data
from kapps.data.box_augment import detection_augment
from kapps.data.crops import object_crops
from kapps.data.detection import load_detection
from kapps.errors import OptionError
from kapps.metrics import DetectionMetrics
from kapps.models import build, copy_weights, list_backbones
from kapps.train.classification import fit_classifier
from kapps.train.engine import Run, fit
from kapps.train.options import TrainOptions
from kapps.train.recipe import run_config, scene_counts
from kapps.train.schedules import warmup_cosine

import click
import keras

# Anchor sizes for the 128-pixel shapes scenes, as fractions of the input side, whose objects are 10% to 40% of it:
# one size per level P2 .. P6 with FPN, three on the single map without.
FPN_FRACTIONS = ((0.0625,), (0.125,), (0.25,), (0.5,), (1.0,))
SINGLE_FRACTIONS = ((0.125, 0.25, 0.5),)


@dataclasses.dataclass(frozen=True)
class TwoStageSettings:
    """The options every two-stage recipe takes, as `two_stage_options` reads them from the command line."""

    image_size: int = 128
    backbone: str = "resnet10_narrow"
    fpn: bool = True
    fpn_channels: int = 64
    sampling_ratio: int = 1
    anchor_scale: float = 1.0
    proposals: int = 100
    train_proposals: int = 300
    roi_samples: int = 64
    head_units: int = 256
    map_every: int = 1
    pretrain_epochs: int = 2
    backbone_weights: str | None = None
    scenes: str | None = None

    def check(self) -> None:
        """Raise `OptionError`, in one sentence naming the option, for a value no recipe can use."""
        for option in ("proposals", "train_proposals", "roi_samples", "head_units", "fpn_channels", "sampling_ratio"):
            value = getattr(self, option)
            if value < 1:
                raise OptionError(f"--{option.replace('_', '-')} must be a positive whole number, not {value}.")
        if self.map_every < 1:
            raise OptionError(f"--map-every must be a positive whole number, not {self.map_every}.")
        if self.pretrain_epochs < 0:
            raise OptionError(f"--pretrain-epochs must be zero or more, not {self.pretrain_epochs}.")
        if self.image_size < 64:
            raise OptionError(f"--image-size must be at least 64, not {self.image_size}.")
        if self.anchor_scale <= 0:
            raise OptionError(f"--anchor-scale must be positive, not {self.anchor_scale}.")
        if self.backbone not in list_backbones():
            raise OptionError(f"--backbone must be one of {', '.join(list_backbones())}, not {self.backbone!r}.")
        check_backbone_weights(self.backbone_weights)

    def model_kwargs(self, data) -> dict:
        """The builder keywords these settings give on `data`: the anchors scaled to the input, in pixels."""
        fractions = FPN_FRACTIONS if self.fpn else SINGLE_FRACTIONS
        side = self.image_size
        return {
            "input_shape": data.input_shape,
            "num_classes": data.num_classes,
            "backbone": self.backbone,
            "fpn": self.fpn,
            "fpn_channels": self.fpn_channels,
            "sampling_ratio": self.sampling_ratio,
            "anchor_sizes": [[round(f * self.anchor_scale * side, 2) for f in level] for level in fractions],
            "pre_nms_top_n": 1000,
            "proposals": self.proposals,
            "head_units": self.head_units,
            "score_threshold": 0.01,
            **({"backbone_weights": self.backbone_weights} if self.backbone_weights else {}),
        }


_OPTIONS = (
    click.option("--image-size", type=int, default=128, help="Side of the square input."),
    click.option("--backbone", default="resnet10_narrow", help="A registered backbone."),
    click.option("--fpn/--no-fpn", default=True, help="The feature pyramid (Lin et al. 2017)."),
    click.option("--fpn-channels", type=int, default=64, help="The pyramid's channels (256 in FPN)."),
    click.option("--sampling-ratio", type=int, default=1, help="RoIAlign's samples per bin and axis (2 in the paper)."),
    click.option("--anchor-scale", type=float, default=1.0, help="Multiplies the anchor sizes."),
    click.option("--proposals", type=int, default=100, help="Proposals per image at test time."),
    click.option("--train-proposals", type=int, default=300, help="Proposals per image in training."),
    click.option("--roi-samples", type=int, default=64, help="RoIs sampled per training image."),
    click.option("--head-units", type=int, default=256, help="Width of the box head's two layers."),
    click.option("--map-every", type=int, default=1, help="Epochs between validation mAPs."),
    click.option(
        "--pretrain-epochs",
        type=int,
        default=2,
        help="Epochs of classifying object crops with the backbone first (the papers pre-train on ImageNet).",
    ),
    click.option(
        "--backbone-weights",
        default=None,
        help="A .keras file holding the backbone's layers (a classify.py run's model.keras, say) to start from; "
        "replaces the pre-training on object crops.",
    ),
    click.option("--scenes", default=None, help="shapes only: TRAIN,VAL,TEST scene counts [default: 4000,500,500]."),
)
_FIELDS = tuple(field.name for field in dataclasses.fields(TwoStageSettings))


def two_stage_options(main: Callable) -> Callable:
    """Give a recipe's `main(opts, settings, **its own options)` the shared options, as one `TwoStageSettings`.

    Use it under `kapps.train.recipe_command`; the recipe's own click options go below it.
    """

    @functools.wraps(main)
    def with_settings(opts: TrainOptions, **kwargs):
        settings = TwoStageSettings(**{name: kwargs.pop(name) for name in _FIELDS})
        return main(opts, settings, **kwargs)

    for option in reversed(_OPTIONS):
        with_settings = option(with_settings)
    return with_settings


def fit_two_stage(
    opts: TrainOptions,
    settings: TwoStageSettings,
    *,
    model: str,
    trainer: Callable[..., keras.Model],
    evaluate: Callable,
    masks: bool = False,
    model_kwargs: dict | None = None,
) -> tuple[Run, kapps.data.Splits, kapps.data.Data]:
    """Check the settings, load the data, pre-train the backbone on object crops and train `model` with `trainer`.

    Args:
        opts: the shared recipe options.
        settings: the two-stage options.
        model: the registered model (`"faster_rcnn"`, `"mask_rcnn"`).
        trainer: the trainer class, called with the built model and its keywords (`FasterRCNNTrainer`...).
        evaluate: scores the inference model on the test split, `evaluate(model, test, class_names=...)`.
        masks: load instance masks with the boxes.
        model_kwargs: more builder keywords than the settings give.

    Returns:
        The engine's `Run` (the inference model in `model.keras`, the trainer in `training_model.keras`), the
        batched splits and the data.

    Raises:
        OptionError: options that make no model, or a source without what it needs.
    """
    settings.check()
    size = (settings.image_size, settings.image_size)
    source_kwargs = scene_counts(settings.scenes, data=opts.data)

    # Data: images with padded boxes (and masks); training flips and rescales them together.
    data = load_detection(
        opts.data, image_size=size, seed=opts.seed, data_dir=opts.data_dir, masks=masks, **source_kwargs
    )
    augment = detection_augment(image_size=size, seed=opts.seed)
    splits = kapps.data.splits(data, batch_size=opts.batch_size, seed=opts.seed, augment=augment, eval_batch_size=32)
    kwargs = {**settings.model_kwargs(data), **(model_kwargs or {})}
    run = fit_detector(
        opts,
        data=data,
        splits=splits,
        model=model,
        model_kwargs=kwargs,
        trainer=trainer,
        trainer_kwargs={
            "roi_samples": settings.roi_samples,
            "train_proposals": settings.train_proposals,
            "seed": opts.seed,
        },
        backbone=settings.backbone,
        pretrain_epochs=0 if settings.backbone_weights else settings.pretrain_epochs,
        evaluate=evaluate,
        map_every=settings.map_every,
    )
    return run, splits, data


def check_backbone_weights(path: str | None) -> None:
    """Refuse, in one sentence, backbone weights a detector recipe cannot start from.

    Raises:
        OptionError: "imagenet" (keras.applications' weights expect their own input scaling, which the detector
            recipes, on [0, 1] images, do not apply), or a file that does not exist.
    """
    if path is None:
        return
    if path == "imagenet":
        raise OptionError(
            "--backbone-weights imagenet is not offered yet: ImageNet weights expect their own input scaling, which "
            "the detector recipes (on [0, 1] images) do not apply; give a .keras file of a backbone kapps trained."
        )
    if not Path(path).is_file():
        raise OptionError(f"--backbone-weights {path!r} is not a file.")


def check_builds(model: str, model_kwargs: dict) -> None:
    """Build the registered `model` once, so that options that make none fail in one sentence before any work.

    Raises:
        OptionError: the builder refused the keywords.
    """
    try:
        build(model, **model_kwargs)
    except ValueError as err:
        raise OptionError(f"These options do not make a {model}: {err}") from None


def fit_detector(
    opts: TrainOptions,
    *,
    data: kapps.data.Data,
    splits: kapps.data.Splits,
    model: str,
    model_kwargs: dict,
    trainer: Callable[..., keras.Model],
    trainer_kwargs: dict,
    backbone: str,
    pretrain_epochs: int,
    evaluate: Callable,
    map_every: int = 1,
    val_detector: Callable[[keras.Model], Callable] | None = None,
    config: dict | None = None,
) -> Run:
    """Pre-train the backbone on object crops, then train the registered detector `model` with its `trainer`,
    keeping the epoch of best validation mAP@0.5; the engine writes the run folder.

    Args:
        opts: the shared recipe options.
        data: the detection data, for the crops and the class names.
        splits: its batched splits (training augmented as the recipe likes).
        model: the registered detector (`"fast_rcnn"`, `"faster_rcnn"`, `"mask_rcnn"`), built with `model_kwargs`.
        trainer: the trainer class, called with the built model and `trainer_kwargs`.
        backbone: the detector's registered backbone, pre-trained as a classifier first.
        pretrain_epochs: epochs of that pre-training; 0 for none. None happens when `model_kwargs` give
            `backbone_weights`.
        evaluate: scores the trained network on the test split, `evaluate(network, test, class_names=...)`.
        map_every: epochs between validation mAPs.
        val_detector: the detector that runs a trained network, `val_detector(network)`, for the validation mAP:
            the network itself by default; Fast R-CNN's puts selective search in front of it.
        config: more of config.json.

    Raises:
        OptionError: model keywords that make no model.
    """
    check_backbone_weights(model_kwargs.get("backbone_weights"))
    check_builds(model, model_kwargs)

    # The backbone, pre-trained as a classifier of the objects of the training scenes (the papers use ImageNet), unless
    # the model starts from given backbone weights.
    pretrained = None
    if model_kwargs.get("backbone_weights"):
        click.echo(f"backbone weights from {model_kwargs['backbone_weights']} (no pre-training on object crops)")
    elif pretrain_epochs:
        crops = object_crops(data, size=(48, 48), scale="native")
        pretrained = fit_classifier(
            dataclasses.replace(opts, out=str(Path(opts.out) / "pretrain"), epochs=pretrain_epochs, batch_size=32),
            crops,
            build_model=lambda: build(backbone, input_shape=crops.input_shape, num_classes=data.num_classes),
            config={"task": "classification", "model": {"name": backbone}},
        )
        click.echo(f"backbone pre-training on object crops: test accuracy {pretrained.metrics['test_accuracy']:.4f}")

    steps = opts.epoch_steps(data.sizes["train"])
    schedule = warmup_cosine(opts.lr, epochs=opts.epochs, steps=steps)

    def build_model() -> keras.Model:
        network = build(model, **model_kwargs)
        if pretrained is not None:  # the classifier's layers the network's backbone has (up to C4 without FPN)
            body = network.get_layer(f"{backbone}_backbone")
            copy_weights(pretrained.model, body, layers=[layer.name for layer in body.layers if layer.weights])
        compiled = trainer(network, **trainer_kwargs)
        compiled.compile(optimizer=keras.optimizers.Adam(schedule))
        return compiled

    def network_of(compiled: keras.Model) -> keras.Model:
        return compiled.detector

    def detect(network: keras.Model) -> Callable:
        return val_detector(network) if val_detector is not None else network

    # Train end to end; the epoch of best validation (box) mAP@0.5 is kept.
    return fit(
        opts,
        build_model=build_model,
        train=splits.train,
        train_steps=steps,
        val=splits.val,
        test=splits.test,
        monitor="val_map50",
        mode="max",
        callbacks=[
            DetectionMetrics(
                splits.val,
                class_names=data.class_names,
                inference_model=lambda compiled: detect(compiled.detector),
                every=map_every,
            )
        ],
        export_model=network_of,
        evaluate_test=lambda network: evaluate(network, splits.test, class_names=data.class_names),
        config={**run_config(model, kwargs=model_kwargs, data=data, trainer=trainer_kwargs), **(config or {})},
    )
