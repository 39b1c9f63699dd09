"""Values: a regressor's one `(batch, values)` output, such as the adding problem's sum (`kapps.data.adding_data`).

Export criterion. A float artifact passes when every value is within `FLOAT_MAX_ABS_DIFF` of the Keras model's: a
float graph differs from Keras only by the order of its operations (an LSTM unrolled over 200 steps moves the
adding problem's sum by ~1e-6). A quantised artifact passes when every value is within `QUANTIZED_MAX_ABS_DIFF`,
half the tolerance within which an answer counts as right (`TOLERANCE`, the adding problem's 0.04): quantisation
may move a value, but by less than half of what separates a right answer from a wrong one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from kapps.errors import ModelError
from kapps.kinds.base import Kind, Outputs, PredictOptions, shapes_text

import numpy as np

FLOAT_MAX_ABS_DIFF = 1e-4
TOLERANCE = 0.04
QUANTIZED_MAX_ABS_DIFF = TOLERANCE / 2


class Regression(Kind):
    """A regressor's values: compared value by value for export, listed by predict, scored by mean squared error
    and accuracy, the share of examples answered within `TOLERANCE`."""

    task = "regression"
    legend = "values within the bound"

    def check(self, shapes: Mapping[str, tuple], *, what: str) -> None:
        """Refuse anything but one `(batch, values)` output."""
        shape = tuple(next(iter(shapes.values()))) if len(shapes) == 1 else ()
        if len(shape) != 2 or shape[-1] is None:
            raise ModelError(
                f"{what} is not a regressor: its outputs are {shapes_text(shapes)}, not one (batch, values) array."
            )

    def criterion(self, *, quantized: bool) -> str:
        bound = QUANTIZED_MAX_ABS_DIFF if quantized else FLOAT_MAX_ABS_DIFF
        return f"every value within {bound:g} of Keras's"

    def compare(self, got: Outputs, expected: Outputs, *, quantized: bool, model) -> dict:
        """`max_abs_diff`, `value_agreement` (the share of examples all of whose values are within the bound) and
        `passed` by `criterion`."""
        (name,) = expected
        values, reference = np.asarray(got[name], "float64"), np.asarray(expected[name], "float64")
        errors = np.abs(values - reference).reshape(len(reference), -1).max(axis=1)
        within = errors <= (QUANTIZED_MAX_ABS_DIFF if quantized else FLOAT_MAX_ABS_DIFF)
        return {
            "max_abs_diff": float(errors.max()),
            "value_agreement": float(np.mean(within)),
            "top1_agreement": None,
            "passed": bool(np.all(within)),
        }

    def agreement(self, entry: dict) -> float | None:
        return entry.get("value_agreement")

    def describe(self, entry: dict) -> str:
        return f"max abs diff {entry['max_abs_diff']:.3g}, {entry['value_agreement']:.1%} of examples within the bound"

    def result(
        self, outputs: Outputs, *, class_name: Callable[[int], str], width: int, height: int, options: PredictOptions
    ) -> dict:
        """`values`: the example's outputs as a list of floats."""
        (values,) = outputs.values()
        return {"values": [float(v) for v in np.asarray(values, "float64")[0]]}

    def summary(self, entry: dict) -> str:
        return ", ".join(f"{v:.4f}" for v in entry["values"])

    def draw(self, pixels: np.ndarray, entry: dict, file) -> None:
        """The input with its values written as its title."""
        from kapps.viz import picture, write_png

        fig, ax = picture(pixels)
        ax.set_title(self.summary(entry))
        write_png(fig, file)

    def evaluate(self, model, dataset, *, class_names: Sequence[str] | None = None, limit: int | None = None) -> dict:
        """Score `model` on a batched `(inputs, targets)` dataset.

        Returns:
            `{"mse": mean squared error over every value, "accuracy": the share of examples all of whose values are
            within TOLERANCE of the target, "count": examples scored}`.
        """
        import tensorflow as tf

        if limit is not None and limit < 1:
            raise ValueError(f"limit must be None or a positive number of examples. Received: limit={limit!r}")
        run = tf.function(lambda inputs: model(inputs, training=False), reduce_retracing=True)
        errors = []
        for inputs, targets, *_ in dataset:
            outputs = run(inputs)
            if isinstance(outputs, Mapping | list | tuple):
                (outputs,) = outputs.values() if isinstance(outputs, Mapping) else outputs
            predicted = np.asarray(outputs, "float64")
            errors.append(predicted - np.asarray(targets, "float64").reshape(predicted.shape))
            if limit is not None and sum(map(len, errors)) >= limit:
                break
        if not errors:
            raise ValueError("dataset must hold at least one batch. Received: an empty dataset")
        errors = np.concatenate(errors)[:limit]
        errors = errors.reshape(len(errors), -1)
        return {
            "mse": float(np.mean(errors**2)),
            "accuracy": float(np.mean(np.abs(errors).max(axis=1) < TOLERANCE)),
            "count": len(errors),
        }

    def load_data(self, spec: str, *, image_size: tuple[int, int], seed: int, data_dir: str | None):
        """The adding problem (`spec` `"adding"`) of `image_size[0]` steps: the one regression source kapps has.

        Raises:
            DataError: another source.
        """
        import kapps.data
        from kapps.errors import DataError

        if spec != kapps.data.ADDING_SPEC:
            raise DataError(f"Unknown regression data source {spec!r}; kapps has {kapps.data.ADDING_SPEC!r}.")
        return kapps.data.adding_data(length=image_size[0], seed=seed)
