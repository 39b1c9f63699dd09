"""Train every registered classifier with the classify recipe, one after another, and tabulate the results.

This is how the README's model table gets its "recipe result" column: each model goes through
`recipes/classify.py` with the same data, seed and budget, in its own process, and its test accuracy and wall
time land in `results.json` and a Markdown table. Models that already have a result are skipped, so an
interrupted sweep goes on where it stopped.

Nets normalised throughout (batch norm, and no hidden dense layer: the ResNets, googlenet, inception_v3) train at
`--lr` (0.05 at batch 64: He et al.'s 0.1 at batch 128). The others (lenet5, the VGGs, googlenet_paper) train at
`--lr-unnormalised` (0.01, Simonyan & Zisserman's rate, which torchvision also uses for its batch-norm VGGs). At
0.05 the VGGs without batch norm sat at chance for most of the 10 epochs (vgg16_c ended at 11.7%, vgg11_lrn at
21.7%) and vgg16_bn, whose 4096-wide dense layers have no batch norm, diverged in its first epoch (loss 7.6) and
ended at 42.8%: that measured the learning rate, not the architecture.

    python recipes/classify_all.py                          # digits, 10 epochs each, saved_models/classify_all/
    python recipes/classify_all.py --models resnet20,vgg11_bn --epochs 30
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import kapps.files
import kapps.models
from kapps.cli import Command
from kapps.errors import OptionError

import click
import keras

RECIPE = Path(__file__).with_name("classify.py")


def probe(name: str, wanted: int) -> tuple[int, bool]:
    """The recipe's image size for `name` (`wanted`, or the smallest size its architecture accepts above it) and
    whether the model is normalised throughout: it has batch norm and no dense layer but its output."""
    for size in (wanted, 64, 75, 96, 128):
        if size < wanted:
            continue
        try:
            model = kapps.models.build(name, input_shape=(size, size, 1), num_classes=10)
        except ValueError:
            continue
        dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
        return size, bool(kapps.models.batch_norm_layers(model)) and len(dense) <= 1
    raise OptionError(f"{name} cannot be built at {wanted} to 128 pixels.")


def read_results(path: Path) -> dict:
    """The sweep's results so far: model name to its measurement."""
    return json.loads(path.read_text()) if path.exists() else {}


@click.command(
    cls=Command, help="Train every registered classifier with recipes/classify.py and tabulate test accuracy."
)
@click.option("--models", "names", default=None, help="Comma-separated models [default: every classifier].")
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("--data", default="digits", show_default=True)
@click.option("--image-size", type=int, default=32, show_default=True, help="Smallest input side to use.")
@click.option("--lr", type=float, default=0.05, show_default=True, help="Peak learning rate of normalised nets.")
@click.option(
    "--lr-unnormalised",
    type=float,
    default=0.01,
    show_default=True,
    help="Peak learning rate of nets without batch norm or with hidden dense layers (lenet5, VGG, googlenet_paper).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", default="saved_models/classify_all", show_default=True)
def main(
    names: str | None, epochs: int, data: str, image_size: int, lr: float, lr_unnormalised: float, seed: int, out: str
) -> None:
    chosen = names.split(",") if names else kapps.models.list_models(task="classification")
    for name in chosen:
        kapps.models.info(name)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results_file = out_dir / "results.json"
    for name in chosen:
        if name in read_results(results_file):  # read afresh: another sweep may share the folder
            continue
        size, normalised = probe(name, image_size)
        rate = lr if normalised else lr_unnormalised
        args = ["--model", name, "--data", data, "--epochs", str(epochs), "--image-size", str(size)]
        args += ["--lr", str(rate), "--seed", str(seed), "--out", str(out_dir / name)]
        start = time.perf_counter()
        done = subprocess.run([sys.executable, str(RECIPE), *args], env=os.environ, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            click.echo(f"{name}: failed: {done.stderr.strip().splitlines()[-1:]}", err=True)
            continue
        metrics = json.loads((out_dir / name / "metrics.json").read_text())
        results = read_results(results_file)
        results[name] = {
            "test_accuracy": metrics["test_accuracy"],
            "image_size": size,
            "lr": rate,
            "epochs": epochs,
            "data": data,
            "seconds": round(seconds),
        }
        text = json.dumps(results, indent=2) + "\n"
        kapps.files.write_atomic(results_file, lambda file, text=text: file.write(text.encode()))
        click.echo(f"{name}: test accuracy {metrics['test_accuracy']:.4f} at {size}x{size} in {seconds:.0f} s")
    lines = ["| model | input | lr | test accuracy | wall time |", "|---|---|---|---|---|"]
    for name, r in read_results(results_file).items():
        size = f"{r['image_size']}x{r['image_size']}"
        lines.append(f"| `{name}` | {size} | {r.get('lr', '-')} | {r['test_accuracy']:.2%} | {r['seconds']} s |")
    (out_dir / "results.md").write_text("\n".join(lines) + "\n")
    click.echo(f"wrote {out_dir / 'results.md'}")


if __name__ == "__main__":
    main()
