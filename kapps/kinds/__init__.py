"""Output kinds: one module per kind of model output, each owning everything kapps does that depends on it.

A kind is found from the model's task (`kind_for(task)`), and the task from what was recorded about the model
(`recorded_task`): a run's config.json, an export report, or the registry entry of the model's name. Exports,
`kapps predict` and the CLI dispatch to the kind; a task without a kind is refused, never passed unchecked.

>>> kind = kapps.kinds.kind_for("detection")
>>> kind.criterion(quantized=True)
"""

from __future__ import annotations

from collections.abc import Mapping

from kapps.errors import ModelError
from kapps.kinds.base import Kind, PredictOptions
from kapps.kinds.classification import Classification
from kapps.kinds.detection import Detection
from kapps.kinds.generated_images import GeneratedImages
from kapps.kinds.instance_masks import InstanceMasks
from kapps.kinds.instance_sequence import InstanceSequence
from kapps.kinds.keypoints import Keypoints
from kapps.kinds.regression import Regression
from kapps.kinds.semantic_masks import SemanticMasks
from kapps.registry import TASKS

KINDS: dict[str, Kind] = {
    kind.task: kind
    for kind in (
        Classification(),
        Detection(),
        InstanceMasks(),
        SemanticMasks(),
        Keypoints(),
        GeneratedImages(),
        Regression(),
        InstanceSequence(),
    )
}


def kind_for(task: str) -> Kind:
    """The output kind of the models of `task`.

    Raises:
        ModelError: the task is unknown, or is a registry task whose kind kapps does not have yet (so its outputs
            could be neither compared for export, nor predicted, nor drawn).
    """
    if task in KINDS:
        return KINDS[task]
    names = list(KINDS)
    known = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
    if task in TASKS:
        raise ModelError(
            f"The task {task!r} has no output kind in kapps yet, so its outputs can be neither verified after export "
            f"nor predicted; the tasks that have one are {known}."
        )
    raise ModelError(f"Unknown task {task!r}; the tasks with an output kind are {known}.")


def recorded_task(facts: Mapping, *, model_name: str | None = None) -> str | None:
    """The task recorded for a model: `facts["task"]` (a run's config.json, an export report), else the registry's
    task of `model_name` (kapps builders name their models after their registry entry); None when neither says."""
    task = facts.get("task")
    if isinstance(task, str) and task:
        return task
    if model_name is None:
        return None
    import kapps.models  # registers the builders

    return kapps.models.info(model_name).task if model_name in kapps.models.list_models() else None


__all__ = ["KINDS", "Kind", "PredictOptions", "kind_for", "recorded_task"]
