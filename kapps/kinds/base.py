"""What every output kind provides, so that export, predict and the CLI handle a model by its task alone."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

Outputs = Mapping[str, np.ndarray]
"""A model's outputs by name, batch axis first, as every runtime of `kapps.export.runtimes` returns them."""


@dataclass(frozen=True)
class PredictOptions:
    """What `kapps predict` lets a user choose; each kind reads the options that concern it.

    Attributes:
        top_k: how many classes a classifier's result lists.
        score_threshold: detections scoring lower are left out.
    """

    top_k: int = 5
    score_threshold: float = 0.25


class Kind(abc.ABC):
    """One kind of model output (classes, detections, ...): everything kapps does with it that depends on it.

    A kind is recognised from the model's task (a run's config.json, an export report, the registry), never from
    the names of its outputs; `check` only makes sure that the outputs fit. Subclasses set the class attributes
    and implement every method, so that a new kind cannot be half-supported: an export it cannot compare is
    refused, not passed.

    Attributes:
        task: the registry task (`kapps.registry.TASKS`) whose models have this kind of output.
        legend: what the export table's "agree" column counts for this kind, e.g. "same top-1 class".
        unsupported_quantizations: quantization -> the one sentence that refuses it for this kind.
        own_inputs: for a kind whose models take no images (a generator takes noise), its inputs in words, and
            `inputs` makes them; None (the default) for models that take the data's images.
    """

    task: ClassVar[str]
    legend: ClassVar[str]
    unsupported_quantizations: ClassVar[Mapping[str, str]] = {}
    own_inputs: ClassVar[str | None] = None

    def inputs(self, input_shape: tuple, count: int, *, split: str) -> np.ndarray:
        """`count` inputs of `input_shape` (no batch axis) for `split` (`"train"`, `"val"` or `"test"`), the same at
        every call: what exports are verified and calibrated on, for a kind with `own_inputs`.

        Raises:
            TypeError: the kind's models take the data's images (`own_inputs` is None).
        """
        raise TypeError(f"The {self.task!r} kind's models take the data's images; it makes no inputs of its own.")

    def read_input(self, path, input_shape: tuple) -> np.ndarray:
        """One input of `input_shape` read from the file `path`, for `kapps predict` of a kind with `own_inputs`.

        Raises:
            TypeError: the kind's models take the data's images (`own_inputs` is None).
        """
        raise TypeError(f"The {self.task!r} kind's models take image files.")

    def picture(self, outputs: Outputs) -> np.ndarray:
        """The uint8 picture `kapps predict` draws a batch of one's result on, for a kind with `own_inputs` (which
        has no input image to draw on).

        Raises:
            TypeError: the kind's models take the data's images (`own_inputs` is None).
        """
        raise TypeError(f"The {self.task!r} kind's results are drawn on the input image.")

    @abc.abstractmethod
    def check(self, shapes: Mapping[str, tuple], *, what: str) -> None:
        """Make sure that outputs of these shapes (batch axis first, by name) are of this kind.

        Raises:
            ModelError: one sentence naming `what` (the model or artifact) and the outputs it has.
        """

    @abc.abstractmethod
    def criterion(self, *, quantized: bool) -> str:
        """The stated rule an artifact must meet to pass, in words with its thresholds, for the export report."""

    @abc.abstractmethod
    def compare(self, got: Outputs, expected: Outputs, *, quantized: bool, model) -> dict:
        """Compare an artifact's outputs with the Keras model's on the same inputs, by `criterion`.

        Args:
            got: the artifact's outputs.
            expected: the Keras model's outputs.
            quantized: whether the artifact is quantised (the looser criterion) or float.
            model: the Keras model, for settings the comparison needs (a detector's score threshold).

        Returns:
            JSON-ready numbers for the export report, including `max_abs_diff` and `passed`.
        """

    @abc.abstractmethod
    def agreement(self, entry: dict) -> float | None:
        """The share of images that agree in an export report entry, for the table's "agree" column."""

    @abc.abstractmethod
    def describe(self, entry: dict) -> str:
        """An export report entry's numbers in a few words, for the line that refuses a failed artifact."""

    @abc.abstractmethod
    def result(
        self, outputs: Outputs, *, class_name: Callable[[int], str], width: int, height: int, options: PredictOptions
    ) -> dict:
        """The kind's fields of one image's `kapps predict` JSON, from the outputs of a batch of one.

        Args:
            outputs: the outputs of a batch of one image.
            class_name: the name of a class id.
            width, height: the original image's size in pixels, which results in pixels refer to.
            options: the user's choices.
        """

    @abc.abstractmethod
    def summary(self, entry: dict) -> str:
        """One image's prediction in a few words, for the line `kapps predict` prints."""

    @abc.abstractmethod
    def draw(self, pixels: np.ndarray, entry: dict, file) -> None:
        """Draw one image's prediction on the uint8 image `pixels` as a PNG into `file`, with `kapps.viz`."""

    @abc.abstractmethod
    def evaluate(self, model, dataset, *, class_names: Sequence[str] | None = None, limit: int | None = None) -> dict:
        """Score `model` on a batched dataset of this kind's `(images, targets)` examples.

        Args:
            model: the model users run (a detector with its decoding and NMS), images in, outputs of this kind out.
            dataset: batched examples, as this kind's data sources make them; one pass.
            class_names: the name of each class id, where the score needs them.
            limit: score at most this many images.

        Returns:
            JSON-ready metrics.
        """

    @abc.abstractmethod
    def load_data(self, spec: str, *, image_size: tuple[int, int], seed: int, data_dir: str | None):
        """The data source `spec` as this kind's `kapps.data.Data` (train, val and test splits of examples)."""


def shapes_text(shapes: Mapping[str, tuple]) -> str:
    """Outputs' shapes in words, `"predictions (None, 1)"`, for the sentence that says they do not fit a kind."""
    return ", ".join(f"{name} {tuple(shape)}" for name, shape in shapes.items()) or "none"
