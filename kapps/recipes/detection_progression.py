"""The course's detection story in measured numbers: R-CNN, Fast R-CNN, Faster R-CNN and YOLO on the same test scenes.

Each step of the lineage removes the bottleneck of the one before: R-CNN runs a CNN on every warped proposal; Fast
R-CNN runs it once per image and pools the proposals' features, but still waits for selective search; Faster R-CNN
learns its proposals with an RPN inside the network; YOLO drops the proposals altogether and reads boxes off one
grid. This script takes the run folders those recipes wrote (`recipes/rcnn.py`, `fast_rcnn.py`, `faster_rcnn.py`,
`yolo.py`, and `mask_rcnn.py` if there is one), runs every detector on the same test scenes, one image at a time
(the seconds an image of a user's single picture: selective search included where a detector needs it), and
writes `progression.json`, a Markdown table and a bar chart of mAP and seconds per image. For R-CNN and Fast
R-CNN the table also gives the seconds of selective search alone, timed again on the same scenes: on small scenes
with few proposals it is most of both detectors' time, which is the bottleneck Faster R-CNN's RPN removes.

A detector whose input size differs from the scenes' gets them resized (YOLO's default is 112 pixels, the others'
128); boxes are relative, so the ground truth is the same for all.

    python recipes/rcnn.py; python recipes/fast_rcnn.py; python recipes/faster_rcnn.py; python recipes/yolo.py
    python recipes/detection_progression.py      # reads saved_models/{rcnn,fast_rcnn,faster_rcnn,yolo}
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import kapps.files
from kapps.cli import Command
from kapps.data.detection import load_detection
from kapps.detection.regions import to_uint8
from kapps.errors import OptionError
from kapps.metrics import evaluate_detector
from kapps.models.detection.fast import FastRCNN
from kapps.models.detection.rcnn import RCNN
from kapps.viz import plot_progression

import click
import keras
import numpy as np
import tensorflow as tf

# The lineage, in the course's order: run folder name, the name shown, whether the table needs it.
LINEAGE = (
    ("rcnn", "R-CNN", True),
    ("fast_rcnn", "Fast R-CNN", True),
    ("faster_rcnn", "Faster R-CNN", True),
    ("mask_rcnn", "Mask R-CNN", False),
    ("yolo", "YOLO v1", True),
)


def load_run(folder: Path):
    """The detector a run folder holds, as a callable on images in [0, 1], and the input side it takes (None for
    any): R-CNN's and Fast R-CNN's pipelines, or the inference model of the others."""
    config = json.loads((folder / "config.json").read_text())
    name = config.get("model", {}).get("name")
    if name == "rcnn":
        return RCNN.load(folder / "rcnn"), None, config
    if name == "fast_rcnn":
        detector = FastRCNN.load(folder)
        return detector, tuple(detector.network.input["image"].shape[1:3]), config
    model = keras.saving.load_model(folder / "model.keras", compile=False, safe_mode=True)
    return model, tuple(model.input_shape[1:3]), config


def proposal_seconds(name: str, detector, images: np.ndarray) -> float | None:
    """The seconds an image the detector's selective search takes alone (R-CNN's and Fast R-CNN's, on the CPU),
    or None for a detector whose proposals are part of its network or that has none."""
    if name == "rcnn":
        propose, pixels = detector.proposals, images
    elif name == "fast_rcnn":
        propose, pixels = detector.search, to_uint8(images)
    else:
        return None
    start = time.perf_counter()
    for image in pixels:
        propose(image)
    return (time.perf_counter() - start) / len(pixels)


@click.command(cls=Command, help="Run the trained R-CNN, Fast R-CNN, Faster R-CNN and YOLO on the same test scenes.")
@click.option(
    "--runs",
    default="saved_models",
    show_default=True,
    help="Folder holding the recipes' run folders rcnn/, fast_rcnn/, faster_rcnn/, yolo/ (and mask_rcnn/).",
)
@click.option("--scenes", type=int, default=500, show_default=True, help="Test scenes (shapes; the first N).")
@click.option("--image-size", type=int, default=128, show_default=True, help="Side of the test scenes.")
@click.option("--batch-size", type=int, default=1, show_default=True, help="Images a call (1: a user's picture).")
@click.option("--allow-missing", is_flag=True, help="Tabulate the runs there are, and name the missing ones.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the test scenes.")
@click.option("--out", default="saved_models/detection_progression", show_default=True)
def main(
    runs: str, scenes: int, image_size: int, batch_size: int, allow_missing: bool, seed: int, out: str
) -> list[dict]:
    for option, value in (("--scenes", scenes), ("--image-size", image_size), ("--batch-size", batch_size)):
        if value < 1:
            raise OptionError(f"{option} must be a positive whole number, not {value}.")
    folder = Path(out)
    kapps.files.check_output_folder(folder)  # before minutes of evaluation
    found = {name: Path(runs) / name for name, _, _ in LINEAGE if (Path(runs) / name / "config.json").is_file()}
    missing = [name for name, _, needed in LINEAGE if needed and name not in found]
    if missing and (not allow_missing or not found):
        commands = "; ".join(f"python recipes/{name}.py" for name in missing)
        raise OptionError(f"{runs} has no run folder for {', '.join(missing)}: train them first ({commands}).")
    for name in missing:
        click.echo(f"{name}: no run in {runs}, left out (python recipes/{name}.py makes one)")

    # 1. The detectors, and the test scenes of the source they trained on (the same source for all).
    detectors = {name: load_run(folder) for name, folder in found.items()}
    specs = {config.get("data", {}).get("spec") for _, _, config in detectors.values()}
    if len(specs) != 1:
        raise OptionError(f"The runs trained on different data ({', '.join(sorted(map(str, specs)))}).")
    spec = specs.pop()
    kwargs = {"sizes": (1, 1, scenes)} if spec == "shapes" else {}
    data = load_detection(spec, image_size=(image_size, image_size), seed=seed, **kwargs)
    test = data.test.take(scenes)
    images = np.stack([image for image, _ in test.as_numpy_iterator()])
    count = len(images)
    click.echo(f"{count} test scenes of {spec} at {image_size}x{image_size}, {batch_size} an evaluation call")

    # 2. Each detector on the same scenes, one after another: mAP and the seconds an image.
    rows = []
    for name, label, _ in LINEAGE:
        if name not in detectors:
            continue
        detector, size, config = detectors[name]
        scenes_for = test
        if size is not None and size != (image_size, image_size):
            scenes_for = test.map(lambda image, targets, size=size: (tf.image.resize(image, size), targets))
        start = time.perf_counter()
        metrics = evaluate_detector(
            detector, scenes_for.batch(batch_size), class_names=data.class_names, image_size=(image_size,) * 2
        )
        row = {
            "detector": label,
            "run": str(found[name]),
            "input": f"{size[0]}x{size[1]}" if size else f"{image_size}x{image_size}",
            "map50": round(metrics["map50"], 4),
            "map": round(metrics["map"], 4),
            "seconds_per_image": round(metrics["seconds_per_image"], 5),
            "proposal_seconds_per_image": proposal_seconds(name, detector, images),
            "trained_map50": json.loads((found[name] / "metrics.json").read_text()).get("map50"),
        }
        rows.append(row)
        searching = row["proposal_seconds_per_image"]
        click.echo(
            f"{label}: mAP@0.5 {row['map50']:.3f}, mAP@[.5:.95] {row['map']:.3f}, "
            f"{row['seconds_per_image'] * 1000:.1f} ms an image"
            + (f" ({searching * 1000:.1f} ms of them selective search)" if searching is not None else "")
            + f" ({time.perf_counter() - start:.0f} s)"
        )

    # 3. The table, the chart and the numbers.
    folder.mkdir(parents=True, exist_ok=True)
    slowest = max(row["seconds_per_image"] for row in rows)
    lines = [
        "| detector | input | test mAP@0.5 | mAP@[.5:.95] | seconds an image | of them, selective search |"
        " faster than the slowest |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        searching = row["proposal_seconds_per_image"]
        lines.append(
            f"| {row['detector']} | {row['input']} | {row['map50']:.3f} | {row['map']:.3f} | "
            f"{row['seconds_per_image']:.4f} | {'-' if searching is None else f'{searching:.4f}'} | "
            f"{slowest / row['seconds_per_image']:.1f}x |"
        )
    table = "\n".join(lines) + "\n"
    kapps.files.write_atomic(folder / "progression.md", lambda f: f.write(table.encode()))
    text = json.dumps({"scenes": count, "image_size": image_size, "batch_size": batch_size, "rows": rows}, indent=2)
    kapps.files.write_atomic(folder / "progression.json", lambda f: f.write((text + "\n").encode()))
    chart = plot_progression(rows, folder / "progression.png", title=f"{count} test scenes of {spec}, one at a time")
    click.echo(table + f"wrote {folder / 'progression.md'}, {folder / 'progression.json'} and {chart}")
    return rows


if __name__ == "__main__":
    main()
