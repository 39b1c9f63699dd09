"""`kapps predict`: run any artifact (`.keras`, run folder, SavedModel, `.tflite`, `.onnx`) on image files.

Each image gets `<stem>.json` in the form of DESIGN.md ("Predictions"), the same for every runtime, and `<stem>.png`
with the result drawn: boxes with class and score for detectors, the top-k list beside the image for classifiers.

>>> kapps.predict.predict("export/yolo/model.onnx", ["street.jpg"], out="predictions")
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kapps.errors import DataError, ModelError
from kapps.export.runtimes import Runner
from kapps.export.source import DETECTION_OUTPUTS, is_detector, run_config
from kapps.files import check_output_folder, write_atomic

import numpy as np

REPORT_FILE = "export_report.json"


@dataclass
class Predictor:
    """A loaded artifact, ready to run on images.

    Attributes:
        path: the artifact as given.
        runner: `images -> {output name: array}` in the artifact's own runtime.
        input_shape: (height, width, channels) the model takes.
        class_names: one name per class, from the run's config.json or the export's report; None when unknown.
    """

    path: str
    runner: Runner
    input_shape: tuple[int, int, int]
    class_names: list[str] | None

    def name(self, class_id: int) -> str:
        """The name of `class_id`, or its number as a string when the names are unknown."""
        if self.class_names is not None and 0 <= class_id < len(self.class_names):
            return str(self.class_names[class_id])
        return str(class_id)


def load_predictor(path) -> Predictor:
    """Load a `.keras` file, a run folder, a SavedModel folder, a `.tflite` or an `.onnx` file in its runtime.

    Raises:
        ModelError: the path is missing, of an unknown kind, unreadable, or its input is not one fixed-size image.
    """
    from kapps.export import runtimes
    from kapps.export.source import load_keras

    given = str(path)
    path = Path(path)
    if not path.exists():
        raise ModelError(f"The artifact {given!r} does not exist.")
    facts = None
    if path.is_dir() and (path / "model.keras").is_file():
        kind, loader, facts = "keras", lambda p: runtimes.keras_runner(load_keras(p / "model.keras")), run_config(path)
    elif path.is_dir() and (path / "saved_model.pb").is_file():
        kind, loader = "SavedModel", runtimes.saved_model_runner
    elif path.is_file() and path.suffix == ".keras":
        kind, loader, facts = "keras", lambda p: runtimes.keras_runner(load_keras(p)), run_config(path)
    elif path.is_file() and path.suffix == ".tflite":
        kind, loader = "TFLite", runtimes.tflite_runner
    elif path.is_file() and path.suffix == ".onnx":
        kind, loader = "ONNX", runtimes.onnx_runner
    else:
        raise ModelError(
            f"{given!r} is not an artifact kapps can run: give a .keras file, a run folder, a SavedModel folder, "
            "a .tflite or an .onnx file."
        )
    try:
        runner = loader(path)
    except ModelError:
        raise
    except Exception as err:  # each runtime fails in its own way on a damaged file; all mean the same here
        raise ModelError(f"{given!r} could not be loaded as a {kind} model ({type(err).__name__}).") from None
    shape = tuple(runner.input_shape)
    if len(shape) != 3 or None in shape or shape[-1] not in (1, 3):
        raise ModelError(f"{given!r} does not take fixed-size grey or RGB images (its input shape is {shape}).")
    if facts is None:
        facts = _export_facts(path)
    return Predictor(given, runner, shape, facts.get("data", {}).get("class_names") or facts.get("class_names"))


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


def task_of(outputs: dict[str, np.ndarray]) -> str | None:
    """`"detection"` for boxes/scores/classes/num_detections, `"classification"` for one (B, C > 1) output."""
    if is_detector(outputs):
        return "detection"
    if len(outputs) == 1:
        (value,) = outputs.values()
        if value.ndim == 2 and value.shape[-1] > 1:
            return "classification"
    return None


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
    """The JSON-ready prediction of one image from the outputs of a batch of one.

    Classifiers give `top5`: the `top_k` best classes with their scores (the model's outputs, probabilities for a
    softmax head). Detectors give `detections`: the first `num_detections` rows scoring at least
    `score_threshold`, boxes in pixels of the original `width` x `height` image, rounded to 0.01.
    """
    entry = {"image": image, "artifact": predictor.path, "task": task_of(outputs), "width": width, "height": height}
    if entry["task"] == "classification":
        (scores,) = (np.asarray(v, "float64")[0] for v in outputs.values())
        order = np.argsort(-scores, kind="stable")[: min(top_k, len(scores))]
        entry["top5"] = [
            {"class_id": int(i), "class": predictor.name(int(i)), "score": float(scores[i])} for i in order
        ]
        return entry
    count = int(np.asarray(outputs["num_detections"]).reshape(-1)[0])
    boxes = np.asarray(outputs["boxes"], "float64")[0, :count]
    scores = np.asarray(outputs["scores"], "float64")[0, :count]
    classes = np.asarray(outputs["classes"]).astype("int64")[0, :count]
    scale = np.array([width, height, width, height], "float64")
    detections = []
    for box, score, class_id in zip(boxes, scores, classes, strict=True):
        if score < score_threshold:
            continue
        pixels = np.clip(box * scale, 0, scale).round(2)
        detections.append(
            {
                "box": [float(v) for v in pixels],
                "class_id": int(class_id),
                "class": predictor.name(int(class_id)),
                "score": float(score),
            }
        )
    entry["detections"] = sorted(detections, key=lambda d: -d["score"])
    return entry


def predict(artifact, images, *, out="predictions", top_k: int = 5, score_threshold: float = 0.25) -> list[dict]:
    """Run `artifact` on every image file and write `<stem>.json` and `<stem>.png` for each into `out`.

    Everything is checked (artifact, images, the model's kind, the output folder) and computed before the first file
    is written, and each file is written under a temporary name and renamed, so a failure leaves no partial file.

    Args:
        artifact: a `.keras` file, a run folder, a SavedModel folder, a `.tflite` or an `.onnx` file.
        images: image file paths.
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
    height, width, channels = predictor.input_shape
    decoded = {image: read_image(image, channels=channels) for image in images}
    results = []
    for image, pixels in decoded.items():
        outputs = predictor.runner(prepare(pixels, (height, width))[None])
        if task_of(outputs) is None:
            shapes = ", ".join(f"{k} {tuple(np.shape(v))}" for k, v in outputs.items())
            raise ModelError(
                f"{predictor.path!r} is not a classifier or a detector: its outputs are {shapes}, not one "
                f"(batch, classes) array or {'/'.join(DETECTION_OUTPUTS)}."
            )
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
    out.mkdir(exist_ok=True)
    for entry, pixels in results:
        stem = Path(entry["image"]).stem
        write_atomic(out / f"{stem}.json", lambda f, e=entry: f.write((json.dumps(e, indent=2) + "\n").encode()))
        write_atomic(out / f"{stem}.png", lambda f, e=entry, p=pixels: draw(p, e, f))
    return [entry for entry, _ in results]


def draw(pixels: np.ndarray, entry: dict, file) -> None:
    """Draw a result as a PNG into `file`: detections as boxes with "class score", classes as a top-k list."""
    from kapps.viz import draw_box, plt  # viz selects the Agg backend

    height, width = pixels.shape[:2]
    grey = pixels.shape[-1] == 1
    image = pixels[..., 0] if grey else pixels
    long_side = 6.0
    size = (long_side, long_side * height / width) if width >= height else (long_side * width / height, long_side)
    if entry["task"] == "detection":
        fig, ax = plt.subplots(figsize=size)
        ax.imshow(image, cmap="gray" if grey else None, vmin=0, vmax=255)
        colours = plt.get_cmap("tab10")
        for d in entry["detections"]:
            label = f"{d['class']} {d['score']:.2f}"
            draw_box(ax, d["box"], colour=colours(d["class_id"] % 10), label=label, fontsize=9)
        ax.set_title(f"{len(entry['detections'])} detections")
    else:
        fig, (ax, bars) = plt.subplots(1, 2, figsize=(size[0] + 4, size[1]), width_ratios=[size[0], 4])
        ax.imshow(image, cmap="gray" if grey else None, vmin=0, vmax=255)
        top = entry["top5"]
        rows = np.arange(len(top))[::-1]
        bars.barh(rows, [t["score"] for t in top], color="tab:blue")
        bars.set_yticks(rows, [t["class"] for t in top])
        for row, t in zip(rows, top, strict=True):
            bars.text(t["score"], row, f" {t['score']:.3f}", va="center")
        bars.set_xlim(0, max(1.0, max(t["score"] for t in top)) * 1.2)
        bars.set_title(f"top {len(top)}")
    ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(file, format="png", dpi=100)
    plt.close(fig)
