"""What an export starts from: a run folder or a `.keras` file, and the real inputs to check it on."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import kapps.layers  # noqa: F401  (registers the custom layers a .keras file may hold)
from kapps.data.base import unit_images
from kapps.errors import DataError, ModelError
from kapps.kinds import Kind, kind_for, recorded_task
from kapps.preprocessing import check_convention, preprocess

import keras
import numpy as np


@dataclass
class Source:
    """A loaded model and where its data comes from.

    Attributes:
        path: the run folder or `.keras` file given.
        name: the run's name (the folder's, or the file's stem), the default export folder's name.
        model: the Keras model, loaded with `safe_mode=True`.
        config: the run's config.json, or `{}` for a bare `.keras` file.
        data: `(split, limit) -> images` for the run's own data (or the inputs the kind makes, for a kind with
            `own_inputs`: a generator's noise), or None when there is none.
        data_description: where the inputs come from, for the report.
        trained_policy: the dtype policy the model was saved with; exports compute in float32.
        task: the model's task: the run's config.json's, else the registry's task of the model's name.
        class_names: the run's class names (config.json, also for a `.keras` file inside a run folder), or None.
        preprocessing: the input convention the model trained with (config.json's `"preprocessing"`, kapps' own
            `"unit"` when none is recorded); `data` gives images in it.
    """

    path: Path
    name: str
    model: keras.Model
    config: dict
    data: Callable[[str, int], np.ndarray] | None
    data_description: str
    trained_policy: str = "float32"
    task: str = "classification"
    class_names: list[str] | None = None
    preprocessing: str = "unit"

    @property
    def kind(self) -> Kind:
        """The output kind of `task`, which compares the artifacts with the Keras model."""
        return kind_for(self.task)


def run_config(path) -> dict:
    """The config.json of a run folder, or of the run folder holding a `.keras` file; `{}` when there is none.

    Raises:
        ModelError: the config.json is not valid JSON.
    """
    path = Path(path)
    config_file = (path if path.is_dir() else path.parent) / "config.json"
    if not config_file.is_file():
        return {}
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ModelError(f"The run's {str(config_file)!r} is not valid JSON.") from None
    return config if isinstance(config, dict) else {}


def load_source(path, *, data: str | None = None, data_dir: str | None = None) -> Source:
    """Load a run folder (its `model.keras` and config.json) or a `.keras` file.

    Args:
        path: a run folder written by a recipe, or a `.keras` file.
        data: a data source spec to take real inputs from, overriding the run's own (needed for int8
            calibration of a bare `.keras` file).
        data_dir: tensorflow-datasets data folder for that source.

    Raises:
        ModelError: the path is missing, is a folder that is not a run (or an R-CNN run, which has no one model),
            or is not a readable Keras file; nothing
            says the model's task; or the task has no output kind to verify its export with.
    """
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{str(path)!r} does not exist.")
    config: dict = {}
    if path.is_dir():
        model_file = path / "model.keras"
        if not model_file.is_file():
            if (run_config(path).get("model") or {}).get("name") == "rcnn":
                raise ModelError(
                    f"{str(path)!r} is an R-CNN run, a pipeline of selective search, a CNN and linear heads with no "
                    f"one graph to export; load it with kapps.models.detection.RCNN.load({str(path / 'rcnn')!r})."
                )
            raise ModelError(f"{str(path)!r} is not a run folder: it has no model.keras.")
        config = run_config(path)
        name = path.resolve().name
    else:
        model_file = path
        name = path.stem
    saved = load_keras(model_file)
    if isinstance(saved.input, dict) and "proposals" in saved.input:
        raise ModelError(
            f"{str(path)!r} holds Fast R-CNN's network, which takes selective search's proposals beside the image and "
            "no exported file computes them; run it with kapps.models.detection.FastRCNN.load(run folder) or "
            "kapps predict, or export a Faster R-CNN, whose proposals are in its graph."
        )
    policies = {layer.dtype_policy.name for layer in saved.layers} - {"float32"}
    policy = policies.pop() if len(policies) == 1 else "float32" if not policies else "mixed"
    model = float32_twin(saved)
    # A bare .keras file keeps its own data (none), but takes task and class names from a run folder around it.
    facts = config or run_config(model_file)
    task = recorded_task(facts, model_name=saved.name)
    if task is None:
        raise ModelError(
            f"Nothing says the task of {str(path)!r}: no run folder's config.json names it, and its model name "
            f"{saved.name!r} is not a registered kapps model; export the run folder it was trained in."
        )
    kind = kind_for(task)
    class_names = facts.get("data", {}).get("class_names")
    convention = check_convention(facts.get("preprocessing", "unit"))
    source = Source(
        path,
        name,
        model,
        config,
        None,
        "random uniform images in [0, 1] (no data known)",
        policy,
        task,
        class_names,
        convention,
    )
    if kind.own_inputs is not None:  # a generator: noise in, whatever data it trained on
        shape = model.input_shape[1:]
        source.data = lambda split, limit: kind.inputs(shape, limit, split=split)
        source.data_description = kind.own_inputs
        return source
    spec = data or config.get("data", {}).get("spec")
    if spec is None:
        return source
    options = config.get("options", {})
    seed = options.get("seed", 0)
    source.data = _data_reader(
        spec, model, kind=kind, seed=seed, data_dir=data_dir or options.get("data_dir"), preprocessing=convention
    )
    source.data_description = f"{spec} (seed {seed})"
    return source


def load_keras(path: Path) -> keras.Model:
    """Load a `.keras` file with `safe_mode=True`, turning every failure into one `ModelError` sentence."""
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise ModelError(f"{str(path)!r} is not a Keras model file (.keras).")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as err:  # a damaged archive fails in many ways inside Keras; all mean the same here
        raise ModelError(f"{str(path)!r} could not be loaded as a Keras model ({type(err).__name__}).") from None


def float32_twin(model: keras.Model) -> keras.Model:
    """The same model computing in float32, for a model saved under a mixed-precision policy.

    TFLite and ONNX take float32 graphs (reduced precision is what `--quantize` is for), so a model trained with
    `mixed_float16` or `mixed_bfloat16` is rebuilt with every layer's policy set to float32 and given the same
    weights, which mixed precision keeps in float32 already. Other models come back as they are.
    """
    mixed = [layer.name for layer in model.layers if layer.dtype_policy.name.startswith("mixed")]
    if not mixed:
        return model

    def to_float32(node):
        if isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy" and str(node["config"]["name"]).startswith("mixed"):
                return {**node, "config": {**node["config"], "name": "float32"}}
            return {k: to_float32(v) for k, v in node.items()}
        if isinstance(node, list):
            return [to_float32(v) for v in node]
        return node

    twin = model.__class__.from_config(to_float32(model.get_config()))
    twin.set_weights(model.get_weights())
    return twin


def _data_reader(spec: str, model: keras.Model, *, kind: Kind, seed: int, data_dir: str | None, preprocessing: str):
    """`(split, limit) -> images` of the source `spec` loaded as the kind's data, sized for the model and in its
    input convention `preprocessing`. A model of `(steps, features)` inputs reads the images row by row, as
    `kapps.data.digit_rows` gives them: a grey source's images of `steps` rows of `features` pixels; a source of
    sequences of that shape (`kapps.data.adding_data`) is read as it is."""
    shape = model.input_shape[1:]
    if None in shape[:2]:
        raise ModelError(f"The model's input shape {shape} is not fixed, so its data cannot be sized for export.")
    loaded = kind.load_data(spec, image_size=shape[:2], seed=seed, data_dir=data_dir)
    rows = len(shape) == 2 and tuple(getattr(loaded, "input_shape", ())) != tuple(shape)
    channels = loaded.input_shape[-1] if getattr(loaded, "input_shape", None) else shape[-1]
    if rows and channels != 1:
        raise DataError(f"The data {spec!r} has {channels} channels; a model that reads rows of pixels takes grey.")
    if not rows and channels != shape[-1]:
        raise DataError(f"The data {spec!r} has {channels} channels but the model takes {shape[-1]}.")
    splits = {"train": loaded.train, "val": loaded.val, "test": loaded.test}

    def read(split: str, limit: int) -> np.ndarray:
        images = [image for image, _ in splits[split].take(limit).batch(256).as_numpy_iterator()]
        if not images:
            raise DataError(f"The {split} split of {spec!r} is empty.")
        images = unit_images(np.concatenate(images))
        return preprocess(images.reshape(len(images), *shape) if rows else images, preprocessing)

    return read
