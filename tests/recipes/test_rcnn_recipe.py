"""The R-CNN recipe: the whole pipeline at a tiny budget, in this process, and the fitted pipeline it leaves."""

import json

from kapps.cli import main
from kapps.models.detection.rcnn import RCNN

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import git_commit_of_checkout
from tests.recipes.conftest import assert_refused, invoke_recipe


def test_tiny_budget_learns_and_writes_a_detector_run_folder(tmp_path):
    """Selective search, pre-training, fine-tuning, SVMs, box regression, evaluation and the picture on 300 small
    training scenes (single-strategy selective search and 32-pixel warps, for time), and the pipeline learns.

    Bars, on held-out scenes, that shuffled labels fail (measured with the classes of the training and validation
    scenes permuted, seed 0): the CNN pre-trained on warped true boxes must classify the validation boxes above 0.5
    (measured 0.693 with seed 0, 0.759 with seed 1; shuffled 0.233, chance being a quarter), and the pipeline's test
    mAP@0.5 must pass 0.3 (measured 0.500 and 0.432; shuffled 0.212, which still finds objects but names them at
    random). Not the training accuracy: the CNN memorises shuffled labels of these few boxes as fast (0.896 against
    0.979 after 6 epochs)."""
    out = tmp_path / "run"
    args = ["--scenes", "300,40,20", "--proposal-mode", "single", "--max-proposals", "50"]
    args += ["--warp-size", "32", "--context", "4", "--pretrain-epochs", "6", "--epochs", "1"]
    result = invoke_recipe("rcnn", *args, "--out", out)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "rcnn on shapes: test mAP@0.5" in result.stdout
    pretrained = json.loads((out / "pretrain" / "metrics.json").read_text())
    assert pretrained["test_accuracy"] > 0.5, pretrained
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.3 < metrics["map50"] <= 1.0 and 0.0 <= metrics["map"] <= metrics["map50"], metrics
    assert set(metrics["per_class_ap50"]) == {"circle", "square", "triangle", "cross"}
    assert metrics["seconds_per_image"] > 0 and metrics["proposal_recall50"]["train"] > 0.9
    assert (out / "plots" / "test_detections.png").stat().st_size > 10_000
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "detection" and config["model"]["settings"]["proposal_mode"] == "single"
    assert config["versions"]["kapps_commit"] == git_commit_of_checkout()  # written by the recipe, not by fit
    rcnn = RCNN.load(out / "rcnn")
    assert rcnn.class_names == ["circle", "square", "triangle", "cross"] and rcnn.warp_size == (32, 32)
    assert rcnn(np.zeros((1, 128, 128, 3), "float32"))["boxes"].shape == (1, 100, 4)
    # A pipeline has no one graph: `kapps export` says so, in one sentence, and writes nothing.
    exported = CliRunner().invoke(main, ["export", str(out), "--format", "tflite", "--out", str(tmp_path / "export")])
    assert exported.exit_code == 1 and "is an R-CNN run, a pipeline of selective search" in exported.output
    assert not (tmp_path / "export").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--context", "40"], "error: --context must be at least 0 and under half of --warp-size, not 40."),
        (["--scenes", "10,10"], "error: --scenes takes three positive counts such as 4000,500,500, not '10,10'."),
        (["--svm-c", "0"], "error: --svm-c must be positive, not 0."),
    ],
)
def test_bad_options_are_one_sentence(empty_cwd, args, message):
    assert_refused(invoke_recipe("rcnn", *args, "--out", "run"), message, cwd=empty_cwd)
