"""What every recipe records about its run, built from the registry: `config.json`'s task, model and data."""

from __future__ import annotations

from kapps.errors import OptionError
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


def scene_counts(scenes: str | None, *, data: str) -> dict:
    """The keywords that `--scenes TRAIN,VAL,TEST` gives the shapes source: `{"sizes": (train, val, test)}`, or
    `{}` without the option.

    Raises:
        OptionError: the option is given for another source, or is not three positive counts.
    """
    if scenes is None:
        return {}
    if data != "shapes":
        raise OptionError(f"--scenes sets the size of the shapes source, not of {data!r}.")
    try:
        sizes = tuple(int(n) for n in scenes.split(","))
    except ValueError:
        sizes = ()
    if len(sizes) != 3 or min(sizes) < 1:
        raise OptionError(f"--scenes takes three positive counts such as 4000,500,500, not {scenes!r}.")
    return {"sizes": sizes}
