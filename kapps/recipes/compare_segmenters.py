"""Semantic segmenters side by side: their masks on the same test images, and their scores in one Markdown table.

The course's segmentation story in one picture: FCN-32s reads its masks off a 32-pixel grid, FCN-8s adds the finer
scores of pool4 and pool3 (Long et al. 2015), SegNet and its transposed-convolution twin decode step by step
(Badrinarayanan et al. 2017), and U-Net's skips carry the encoder's full-resolution maps to the decoder
(Ronneberger et al. 2015). This script takes run folders written by `recipes/segment.py` (`RUN...`), checks that
they were tested on the same data (the source, image size, class names, seed and test split's size, and the
boundary F-score's tolerance), and writes into `--out`:

- `comparison.png`: the first `--images` test images, one a row, with the true mask and each model's predicted
  mask, in the order the runs are given. The test split is rebuilt as the runs built it (`kapps.data.
  load_segmentation` with the source, image size, seed and scene counts of their config.json); a valid-padding
  U-Net's masks, smaller than the image, are drawn at their own size on the centre they score.
- `comparison.md`: a row a run: parameters, test mean IoU, boundary F (metrics.json's `boundary_f_score`, the
  boundary F1 of Csurka et al. 2013: each image's mean over the classes in it, averaged over the images),
  outline F (the background class's boundary F-score, `class_boundary_f_score` at "background": where objects
  meet the background, so how well each object's outline is found whatever class it is given; "-" without a
  background class), pixel accuracy, milliseconds an image, epochs and training time (the run's last session; a
  resumed run's earlier sessions are not in it).

The table's numbers are the runs' own metrics.json, measured by `recipes/segment.py` on the whole test split when
each run ended: nothing is evaluated again here, so the table says what each run folder says (the milliseconds
were measured on the machine, and under the load, of each training). Only the picture runs the models.

    python recipes/segment.py --model fcn32s --out saved_models/fcn32s
    python recipes/segment.py --model fcn8s --out saved_models/fcn8s
    python recipes/segment.py --out saved_models/unet
    python recipes/compare_segmenters.py saved_models/fcn32s saved_models/fcn8s saved_models/unet
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import kapps.data
import kapps.files
from kapps.cli import Command
from kapps.errors import ModelError, OptionError
from kapps.export.source import load_keras
from kapps.viz import plot_segmentation_comparison

import click

# What the table reads from each run's metrics.json; recipes/segment.py writes all of them.
METRICS = (
    "parameters",
    "mean_iou",
    "boundary_f_score",
    "class_boundary_f_score",
    "boundary_tolerance",
    "class_names",
    "pixel_accuracy",
    "ms_per_image",
    "epochs_run",
    "train_seconds_this_session",
)
COLUMNS = (
    "model",
    "parameters",
    "mean IoU",
    "boundary F",
    "outline F",
    "pixel accuracy",
    "ms/image",
    "epochs",
    "training time",
)


def read_run(folder: Path) -> tuple[dict, dict]:
    """A segmentation run folder's config.json and metrics.json.

    Raises:
        ModelError: the folder is not a run folder, not a segmentation run, or its metrics.json lacks a test score
            of `METRICS`.
    """
    if not folder.is_dir():
        raise ModelError(f"{str(folder)!r} is not a run folder of recipes/segment.py: no such folder.")
    config = _read_json(folder / "config.json")
    model = config.get("model") or {}
    if config.get("task") != "segmentation":
        task = config.get("task", "unknown")
        raise ModelError(
            f"{str(folder)!r} is a run of {model.get('name', 'an unknown model')} for {task}, not a semantic "
            "segmentation run of recipes/segment.py."
        )
    if not (folder / "model.keras").is_file():
        raise ModelError(f"{str(folder)!r} has no model.keras: its training has not kept a model yet.")
    metrics = _read_json(folder / "metrics.json")
    missing = [key for key in METRICS if key not in metrics]
    if missing:
        raise ModelError(
            f"The metrics.json of {str(folder)!r} has no {missing[0]}: the run stopped before its test, or an "
            "older recipe wrote it; train it again with recipes/segment.py."
        )
    return config, metrics


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise ModelError(f"{str(path.parent)!r} is not a run folder of recipes/segment.py: it has no {path.name}.")
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        content = None
    if not isinstance(content, dict):
        raise ModelError(f"{str(path)!r} is not a JSON object.")
    return content


def tested_on(config: dict, metrics: dict) -> dict:
    """What must be the same for two runs' test scores and masks to compare: the test split (source, image size,
    class names, seed, size) and the boundary F-score's tolerance, each as it reads in a sentence."""
    data = config.get("data") or {}
    height, width = (data.get("input_shape") or [None, None])[:2]
    return {
        "data": data.get("spec"),
        "image size": f"{height}x{width}",
        "classes": ", ".join(data.get("class_names") or []),
        "seed": (config.get("options") or {}).get("seed"),
        "test examples": (data.get("sizes") or {}).get("test"),
        "boundary tolerance": f"{metrics['boundary_tolerance']:g} px",
    }


def label(config: dict) -> str:
    """The model's name with the size it trained at, short: `fcn8s (width 1/16)`, `unet (16 filters)`."""
    model = config["model"]
    kwargs = model.get("kwargs") or {}
    details = []
    if "width" in kwargs:
        details.append(f"width {_fraction(kwargs['width'])}")
    if "base_filters" in kwargs:
        details.append(f"{kwargs['base_filters']} filters")
    if kwargs.get("padding") == "valid":
        details.append("valid padding")
    if config.get("border_weights"):
        details.append("border weights")
    return f"{model['name']} ({', '.join(details)})" if details else model["name"]


def _fraction(value: float) -> str:
    """`1/16` for 0.0625, as the recipe's --width is written; other values as they are."""
    fraction = Fraction(value).limit_denominator(1024)
    return f"1/{fraction.denominator}" if fraction.numerator == 1 and float(fraction) == value else f"{value:g}"


def row(name: str, metrics: dict) -> list[str]:
    """The table's cells of one run, from its metrics.json."""
    names = metrics["class_names"]
    # None also where no test image had a background, which the scores keep as None
    outline = metrics["class_boundary_f_score"][names.index("background")] if "background" in names else None
    minutes, seconds = divmod(round(metrics["train_seconds_this_session"]), 60)
    return [
        name,
        f"{metrics['parameters']:,}",
        f"{metrics['mean_iou']:.3f}",
        f"{metrics['boundary_f_score']:.3f}",
        "-" if outline is None else f"{outline:.3f}",
        f"{metrics['pixel_accuracy']:.3f}",
        f"{metrics['ms_per_image']:.1f}",
        str(metrics["epochs_run"]),
        f"{minutes} min {seconds} s" if minutes else f"{seconds} s",
    ]


@click.command(cls=Command, help="Compare segment.py runs: their masks on the same test images, and a table.")
@click.argument("runs", metavar="RUN...", nargs=-1, required=True)
@click.option("--images", type=int, default=4, show_default=True, help="Test images in the picture (the first).")
@click.option("--out", default="saved_models/segment_comparison", show_default=True, help="Folder to write into.")
def main(runs: tuple[str, ...], images: int, out: str) -> list[list[str]]:
    if images < 1:
        raise OptionError(f"--images must be a positive whole number, not {images}.")
    folder = Path(out)
    kapps.files.check_output_folder(folder)
    folders = [Path(run) for run in runs]
    resolved = [run.resolve() for run in folders]
    for k, run in enumerate(folders):
        if resolved[k] in resolved[:k]:
            raise OptionError(f"{str(run)!r} is given twice; name each run folder once.")

    # 1. The runs, tested on the same data, each under its model's name and size (its folder's name as well when
    #    two runs would read the same).
    found = [read_run(run) for run in folders]
    first = tested_on(*found[0])
    for run, (config, metrics) in zip(folders[1:], found[1:], strict=True):
        facts = tested_on(config, metrics)
        differ = [key for key in first if facts[key] != first[key]]
        if differ:
            raise OptionError(
                f"{str(folders[0])!r} and {str(run)!r} were not tested on the same data: "
                + ", ".join(f"{key} {first[key]} against {facts[key]}" for key in differ)
                + "."
            )
    labels = [label(config) for config, _ in found]
    labels = [
        f"{name} [{run.resolve().name}]" if labels.count(name) > 1 else name
        for name, run in zip(labels, folders, strict=True)
    ]

    # 2. The table, from each run's metrics.json.
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    rows = [row(name, metrics) for name, (_, metrics) in zip(labels, found, strict=True)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    note = (
        f"Test scores of each run's metrics.json on {first['test examples']} test images of {first['data']} at "
        f"{first['image size']} (seed {first['seed']}): boundary F is the boundary F-score at "
        f"{first['boundary tolerance']} (each image's mean over its classes, averaged over the images), outline F "
        "the background class's (where objects meet the background), training time the run's last session."
    )
    table = "\n".join(lines) + "\n\n" + note + "\n"

    # 3. The picture: the test split rebuilt as the runs built it, its first images through every model.
    config = found[0][0]
    recorded, sizes = config["data"], config["data"]["sizes"]
    data = kapps.data.load_segmentation(
        recorded["spec"],
        image_size=tuple(recorded["input_shape"][:2]),
        seed=config["options"]["seed"],
        data_dir=config["options"].get("data_dir"),
        **({"sizes": (sizes["train"], sizes["val"], sizes["test"])} if recorded["spec"] == "shapes" else {}),
    )
    test = kapps.data.pipeline(data.test.take(images), batch_size=min(images, 32), training=False)
    models = {name: load_keras(run / "model.keras") for name, run in zip(labels, folders, strict=True)}
    folder.mkdir(parents=True, exist_ok=True)
    picture = plot_segmentation_comparison(
        models,
        test,
        folder / "comparison.png",
        class_names=data.class_names,
        count=images,
        title=f"{first['data']} test images: true masks and each model's",
    )
    kapps.files.write_atomic(folder / "comparison.md", lambda f: f.write(table.encode()))
    click.echo(table + f"wrote {folder / 'comparison.md'} and {picture}")
    return rows


if __name__ == "__main__":
    main()
