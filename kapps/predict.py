"""`kapps predict`: run any artifact (`.keras`, run folder, SavedModel, `.tflite`, `.onnx`) on image files.

Each image gets `<stem>.json` in the form of DESIGN.md ("Predictions"), the same for every runtime, and `<stem>.png`
with the result drawn: boxes with class and score for detectors, the top-k list beside the image for classifiers.
The model's task (its run's config.json, its export report, or the registry entry of its name) picks the output
kind (`kapps.kinds`) that reads, checks, writes and draws its outputs.

>>> kapps.predict.predict("export/yolo/model.onnx", ["street.jpg"], out="predictions")
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kapps.errors import DataError, ModelError
from kapps.export.runtimes import Runner
from kapps.export.source import run_config
from kapps.files import check_output_folder, write_atomic
from kapps.kinds import Kind, PredictOptions, kind_for, recorded_task
from kapps.preprocessing import check_convention, preprocess

import numpy as np

REPORT_FILE = "export_report.json"


@dataclass
class Predictor:
    """A loaded artifact, ready to run on images.

    Attributes:
        path: the artifact as given.
        runner: `images -> {output name: array}` in the artifact's own runtime.
        input_shape: (height, width, channels) the model takes; a generator's `(latent_dim,)`.
        class_names: one name per class, from the run's config.json or the export's report; None when unknown.
        task: the model's task, from the same place, or the registry entry of a Keras model's name.
        preprocessing: the input convention the model trained with, from the same place (`"unit"`, [0, 1]
            images, when none is recorded); every runtime gets its images in it.
    """

    path: str
    runner: Runner
    input_shape: tuple[int, ...]
    class_names: list[str] | None
    task: str
    preprocessing: str = "unit"

    @property
    def kind(self) -> Kind:
        """The output kind of `task`, which turns the outputs into results and pictures."""
        return kind_for(self.task)

    def name(self, class_id: int) -> str:
        """The name of `class_id`, or its number as a string when the names are unknown."""
        if self.class_names is not None and 0 <= class_id < len(self.class_names):
            return str(self.class_names[class_id])
        return str(class_id)


def load_predictor(path) -> Predictor:
    """Load a `.keras` file, a run folder, a SavedModel folder, a `.tflite` or an `.onnx` file in its runtime.

    Raises:
        ModelError: the path is missing, not an artifact kapps can run, unreadable, or its input is not one
            fixed-size image; nothing says its task, or its task has no output kind.
    """
    from kapps.export import runtimes
    from kapps.export.source import load_keras

    given = str(path)
    path = Path(path)
    if not path.exists():
        raise ModelError(f"The artifact {given!r} does not exist.")
    facts, model_file, loader = None, None, None
    if path.is_dir() and (path / "model.keras").is_file():
        runtime, model_file, facts = "keras", path / "model.keras", run_config(path)
    elif path.is_dir() and (path / "saved_model.pb").is_file():
        runtime, loader = "SavedModel", runtimes.saved_model_runner
    elif path.is_file() and path.suffix == ".keras":
        runtime, model_file, facts = "keras", path, run_config(path)
    elif path.is_file() and path.suffix == ".tflite":
        runtime, loader = "TFLite", runtimes.tflite_runner
    elif path.is_file() and path.suffix == ".onnx":
        runtime, loader = "ONNX", runtimes.onnx_runner
    else:
        raise ModelError(
            f"{given!r} is not an artifact kapps can run: give a .keras file, a run folder, a SavedModel folder, "
            "a .tflite or an .onnx file."
        )
    model_name = None
    if model_file is not None:
        model = load_keras(model_file)  # fails in one sentence of its own
        runner = _proposal_runner(model, facts) if takes_proposals(model) else runtimes.keras_runner(model)
        model_name = model.name
    else:
        try:
            runner = loader(path)
        except Exception as err:  # each runtime fails in its own way on a damaged file; all mean the same here
            raise ModelError(f"{given!r} could not be loaded as a {runtime} model ({type(err).__name__}).") from None
    if facts is None:
        facts = _export_facts(path)
    task = recorded_task(facts, model_name=model_name)
    if task is None:
        beside = "config.json" if model_file is not None else REPORT_FILE
        raise ModelError(
            f"Nothing says the task of {given!r}: there is no {beside} beside it that names it"
            + (f", and its model name {model_name!r} is not a registered kapps model" if model_name else "")
            + "; predict with the run folder, or with an artifact inside its export folder."
        )
    kind = kind_for(task)  # a task without an output kind is refused before any image is read
    shape = tuple(runner.input_shape)
    refusal = f"{given!r} does not take fixed-size grey or RGB images (its input shape is {shape})."
    if kind.own_inputs is not None:  # a generator: one fixed-size noise vector in
        if len(shape) != 1 or None in shape:
            raise ModelError(f"{given!r} does not take fixed-size noise vectors (its input shape is {shape}).")
    elif len(shape) == 2 and None not in shape:
        # a recurrent classifier reads a grey image row by row (kapps.data.digit_rows); nothing else takes one
        if task != "classification":
            raise ModelError(refusal)
        runner, shape = _row_reader(runner), (*shape, 1)
    elif len(shape) != 3 or None in shape or shape[-1] not in (1, 3):
        raise ModelError(refusal)
    class_names = facts.get("data", {}).get("class_names") or facts.get("class_names")
    convention = check_convention(facts.get("preprocessing", "unit"))
    return Predictor(given, runner, shape, class_names, task, convention)


def _row_reader(runner: Runner) -> Runner:
    """A runner of `(batch, steps, features)` sequences as a runner of grey `(batch, steps, features, 1)` images,
    each read as its rows of pixels, top to bottom, as `kapps.data.digit_rows` gives them in training."""

    def run(images: np.ndarray) -> dict[str, np.ndarray]:
        return runner(images[..., 0])

    run.keepalive = runner
    run.input_shape = (*runner.input_shape, 1)
    return run


def takes_proposals(model) -> bool:
    """Whether `model` is a network that takes proposals beside the image (`kapps.models.fast_rcnn`)."""
    return isinstance(model.input, dict) and set(model.input) == {"image", "proposals"}


def _proposal_runner(model, facts: dict) -> Runner:
    """Fast R-CNN's network behind the selective search its run recorded: a runner of images, as any other."""
    from kapps.detection.regions import SelectiveSearch
    from kapps.models.detection.fast import FastRCNN

    detector = FastRCNN(model, SelectiveSearch(**(facts.get("proposals") or {})))

    def run(images: np.ndarray) -> dict[str, np.ndarray]:
        return detector(images)

    run.input_shape = tuple(model.input["image"].shape[1:])
    return run


def _export_facts(path: Path) -> dict:
    """The export report beside an exported artifact (its `task` and `class_names`), or `{}`."""
    report = path.parent / REPORT_FILE
    try:
        facts = json.loads(report.read_text()) if report.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return facts if isinstance(facts, dict) else {}


def read_image(path, *, channels: int) -> np.ndarray:
    """Decode an image file (PNG, JPEG, BMP, the first frame of a GIF...) as uint8 (H, W, channels).

    Raises:
        DataError: the file is missing or is not an image.
    """
    from PIL import Image, UnidentifiedImageError

    if not Path(path).is_file():
        raise DataError(f"The image {str(path)!r} does not exist.")
    try:
        with Image.open(path) as image:
            image.seek(0)
            array = np.asarray(image.convert("L" if channels == 1 else "RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise DataError(f"{str(path)!r} is not an image file (PNG, JPEG, BMP or GIF).") from None
    return array[..., None] if array.ndim == 2 else array


def prepare(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A uint8 image stretched to `size` (height, width) as float32 in [0, 1], bilinear as the folder sources."""
    import tensorflow as tf

    return tf.image.resize(tf.image.convert_image_dtype(image, tf.float32), size).numpy()


def result(
    outputs: dict[str, np.ndarray],
    predictor: Predictor,
    *,
    image: str,
    width: int,
    height: int,
    top_k: int = 5,
    score_threshold: float = 0.25,
) -> dict:
    """The JSON-ready prediction of one image from the outputs of a batch of one: the fields every result has, and
    those of the predictor's output kind (a classifier's `top5`, a detector's `detections` in pixels of the original
    `width` x `height` image)."""
    entry = {"image": image, "artifact": predictor.path, "task": predictor.task, "width": width, "height": height}
    options = PredictOptions(top_k=top_k, score_threshold=score_threshold)
    fields = predictor.kind.result(outputs, class_name=predictor.name, width=width, height=height, options=options)
    return {**entry, **fields}


def predict(artifact, images, *, out="predictions", top_k: int = 5, score_threshold: float = 0.25) -> list[dict]:
    """Run `artifact` on every image file and write `<stem>.json` and `<stem>.png` for each into `out`.

    A generator (a model of a kind with inputs of its own, `Kind.own_inputs`) takes no images: each file is then a
    NumPy `.npy` file of one noise vector, and `<stem>.png` is the image it generates.

    Everything is checked (artifact, images, the model's kind, the output folder) and computed before the first file
    is written, and each file is written under a temporary name and renamed, so a failure leaves no partial file.

    Args:
        artifact: a `.keras` file, a run folder, a SavedModel folder, a `.tflite` or an `.onnx` file.
        images: image file paths (a generator's: `.npy` noise files).
        out: the folder to write into (made if missing).
        top_k: how many classes a classifier's result lists.
        score_threshold: detections scoring lower are left out.

    Returns:
        The results, one dict a image, as written to the JSON files.

    Raises:
        ModelError, DataError, OutputError, OptionError: one sentence saying what to fix.
    """
    from kapps.errors import OptionError

    if not isinstance(top_k, int) or top_k < 1:
        raise OptionError(f"--top-k must be a positive integer, not {top_k!r}.")
    if not 0 <= score_threshold <= 1:
        raise OptionError(f"--score-threshold must be between 0 and 1, not {score_threshold!r}.")
    images = [str(i) for i in images]
    if not images:
        raise OptionError("Name at least one image file to predict.")
    stems: dict[str, str] = {}
    for image in images:
        other = stems.setdefault(Path(image).stem, image)
        if other != image:
            raise OptionError(f"The images {other!r} and {image!r} would both write {Path(image).stem}.json.")
    predictor = load_predictor(artifact)
    kind = predictor.kind
    if kind.own_inputs is not None:  # a generator: each file holds its noise, and the picture is what it makes
        decoded = {image: kind.read_input(image, predictor.input_shape) for image in images}
    else:
        height, width, channels = predictor.input_shape
        decoded = {image: read_image(image, channels=channels) for image in images}
    results = []
    for image, pixels in decoded.items():
        if kind.own_inputs is not None:
            outputs = predictor.runner(pixels[None])
        else:
            outputs = predictor.runner(preprocess(prepare(pixels, (height, width))[None], predictor.preprocessing))
        kind.check({k: np.shape(v) for k, v in outputs.items()}, what=repr(predictor.path))
        if kind.own_inputs is not None:
            pixels = kind.picture(outputs)
        entry = result(
            outputs,
            predictor,
            image=image,
            width=pixels.shape[1],
            height=pixels.shape[0],
            top_k=top_k,
            score_threshold=score_threshold,
        )
        results.append((entry, pixels))
    out = Path(out)
    check_output_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    for entry, pixels in results:
        stem = Path(entry["image"]).stem
        write_atomic(out / f"{stem}.json", lambda f, e=entry: f.write((json.dumps(e, indent=2) + "\n").encode()))
        write_atomic(out / f"{stem}.png", lambda f, e=entry, p=pixels: predictor.kind.draw(p, e, f))
    return [entry for entry, _ in results]
