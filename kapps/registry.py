"""One registry of model builders: name -> builder, task, default input shape, reference parameter count and the
feature maps its backbone offers."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from kapps.errors import ModelError
from kapps.preprocessing import CONVENTIONS

TASKS = (
    "classification",
    "detection",
    "instance_segmentation",
    "segmentation",
    "heatmap",
    "generative",
    "recurrent",
    "regression",
    "instance_sequence",
)
COUNT_KINDS = ("all", "trainable")


@dataclass(frozen=True)
class FeatureMap:
    """One named feature map a backbone offers.

    Attributes:
        name: `"C<k>"` for a map of stride 2**k (`"C3"` at stride 8), as in keras-hub's `pyramid_outputs`.
        layer: the layer whose output the map is, in the model built at the registered defaults.
        stride: the map's step in input pixels: an input of `stride * n` more pixels on a side gives a map of `n`
            more (valid convolutions shift the map's edge by a few pixels, never its step).
        channels: the map's channels at the registered defaults.
    """

    name: str
    layer: str
    stride: int
    channels: int


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows of one builder.

    Attributes:
        name: registered name, e.g. `"lenet5"`.
        builder: the function that returns a `keras.Model`.
        task: one of `TASKS`.
        input_shape: default input shape, without the batch axis.
        num_classes: default number of classes the reference count is taken at.
        param_count: reference parameter count at the defaults.
        count_kind: `"all"` (`model.count_params()`) or `"trainable"` (sum of trainable weights).
        source: where the reference count comes from.
        feature_maps: the maps `kapps.models.backbone(name)` returns, shallow to deep; empty for models that are not
            a backbone with a head.
        imagenet_preprocessing: the input convention (`kapps.preprocessing.CONVENTIONS`) of the model's
            keras.applications ImageNet weights, None where it has none; see `input_convention`.
    """

    name: str
    builder: Callable
    task: str
    input_shape: tuple[int, ...]
    num_classes: int
    param_count: int
    count_kind: str
    source: str
    feature_maps: tuple[FeatureMap, ...] = ()
    imagenet_preprocessing: str | None = None

    def input_convention(self, weights=None) -> str:
        """The input convention of the model with these `weights`: its ImageNet weights' for `"imagenet"`, kapps'
        own `"unit"` ([0, 1] images) for weights it trained itself or none."""
        if weights == "imagenet" and self.imagenet_preprocessing is not None:
            return self.imagenet_preprocessing
        return "unit"


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    *,
    task: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    param_count: int,
    source: str,
    count_kind: str = "all",
    feature_maps: tuple[FeatureMap, ...] = (),
    imagenet_preprocessing: str | None = None,
    name: str | None = None,
) -> Callable:
    """Decorator that registers a builder under its function name (or `name`).

    Args:
        task: one of `TASKS`.
        input_shape: default input shape without the batch axis.
        num_classes: number of classes the reference count is taken at.
        param_count: the reference parameter count the builder must match at its defaults.
        source: where that number comes from (a paper, keras.applications, torchvision...).
        count_kind: `"all"` or `"trainable"`.
        feature_maps: the named maps of the model's backbone (a classifier's body without its head).
        imagenet_preprocessing: the input convention of its keras.applications ImageNet weights, if it has them.
        name: registered name; the function's name when omitted.

    Returns:
        The decorator, which returns the builder unchanged.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}. Received: task={task!r}")
    if count_kind not in COUNT_KINDS:
        raise ValueError(f"count_kind must be one of {COUNT_KINDS}. Received: count_kind={count_kind!r}")

    weight_conventions = tuple(c for c in CONVENTIONS if c != "unit")  # "unit" is kapps' own, never ImageNet's
    if imagenet_preprocessing is not None and imagenet_preprocessing not in weight_conventions:
        raise ValueError(
            f"imagenet_preprocessing must be one of {weight_conventions}. Received: {imagenet_preprocessing!r}"
        )
    for feature in feature_maps:
        if (
            feature.stride < 1
            or feature.stride & (feature.stride - 1)
            or feature.name != f"C{feature.stride.bit_length() - 1}"
        ):
            raise ValueError(
                f"a feature map of stride {feature.stride} must be named C<log2 stride>. Received: {feature}"
            )

    def decorate(builder: Callable) -> Callable:
        key = name or builder.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} is registered twice")
        _REGISTRY[key] = ModelInfo(
            name=key,
            builder=builder,
            task=task,
            input_shape=tuple(input_shape),
            num_classes=num_classes,
            param_count=param_count,
            count_kind=count_kind,
            source=source,
            feature_maps=tuple(feature_maps),
            imagenet_preprocessing=imagenet_preprocessing,
        )
        return builder

    return decorate


def info(name: str) -> ModelInfo:
    """The registry entry of `name`; raises `ModelError` naming the known models when it is not there."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise ModelError(f"There is no model named {name!r}; known models: {known}.") from None


def list_models(task: str | None = None) -> list[str]:
    """Registered model names, sorted, optionally only those of one task."""
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be None or one of {TASKS}. Received: task={task!r}")
    return sorted(n for n, i in _REGISTRY.items() if task is None or i.task == task)


def build(name: str, **kwargs):
    """Build the registered model `name`, passing `kwargs` to its builder."""
    return info(name).builder(**kwargs)


def count_params(model, kind: str = "all") -> int:
    """Parameter count of `model`: all weights, or trainable weights only (torchvision's convention)."""
    if kind == "all":
        return int(model.count_params())
    if kind == "trainable":
        return int(sum(math.prod(w.shape) for w in model.trainable_weights))
    raise ValueError(f"kind must be one of {COUNT_KINDS}. Received: kind={kind!r}")
