"""What every recipe records about its run, built from the registry: `config.json`'s task, model and data."""

from __future__ import annotations

from kapps.registry import info


def run_config(model: str, *, kwargs: dict, data, **more) -> dict:
    """The facts a run folder's `config.json` keeps so the run can be exported and predicted with later.

    Args:
        model: the registered model's name.
        kwargs: the keywords it was built with (its `weights` decide the input convention).
        data: the `kapps.data.Data` it trained on.
        **more: other JSON-ready facts (`phase`, `backbone` ...), which may also override `task` where the run's
            model is not the registered one (a detector made from it, a backbone under a new head).

    Returns:
        `{"task", "model": {"name", "kwargs"}, "data", "preprocessing", ...}`; `preprocessing` is the input
        convention of `kapps.preprocessing`, which the export verification and `kapps predict` apply.
    """
    entry = info(model)
    return {
        "task": entry.task,
        "model": {"name": model, "kwargs": kwargs},
        "data": data.describe(),
        "preprocessing": entry.input_convention(kwargs.get("weights")),
        **more,
    }
