"""One registry of model builders: name -> builder, task, default input shape and reference parameter count."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from kapps.errors import ModelError

TASKS = ("classification", "detection", "segmentation", "heatmap", "generative", "recurrent")
COUNT_KINDS = ("all", "trainable")


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
    """

    name: str
    builder: Callable
    task: str
    input_shape: tuple[int, ...]
    num_classes: int
    param_count: int
    count_kind: str
    source: str


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    *,
    task: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    param_count: int,
    source: str,
    count_kind: str = "all",
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
        name: registered name; the function's name when omitted.

    Returns:
        The decorator, which returns the builder unchanged.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}. Received: task={task!r}")
    if count_kind not in COUNT_KINDS:
        raise ValueError(f"count_kind must be one of {COUNT_KINDS}. Received: count_kind={count_kind!r}")

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
