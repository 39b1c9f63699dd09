"""The detection progression: tiny runs of the four recipes, then the table, the numbers and the chart of all
four on the same test scenes; and its refusals."""

import json

import pytest

from tests.recipes.conftest import assert_refused, invoke_recipe

TINY = {
    "rcnn": ["--scenes", "24,8,8", "--proposal-mode", "single", "--max-proposals", "40", "--warp-size", "32"],
    "fast_rcnn": ["--scenes", "24,8,8", "--proposal-mode", "single", "--max-proposals", "40"],
    "faster_rcnn": ["--scenes", "24,8,8", "--batch-size", "4"],
    "yolo": ["--scenes", "24,8,8", "--batch-size", "8"],
}


def test_the_four_detectors_on_the_same_scenes(tmp_path):
    runs = tmp_path / "runs"
    for name, args in TINY.items():
        budget = ["--epochs", "1", "--steps-per-epoch", "2", "--pretrain-epochs", "1"]
        result = invoke_recipe(name, *args, *budget, "--out", runs / name)
        assert result.exit_code == 0, (name, result.output, result.exception)
    out = tmp_path / "progression"
    result = invoke_recipe("detection_progression", "--runs", runs, "--scenes", "4", "--out", out)
    assert result.exit_code == 0, (result.output, result.exception)
    numbers = json.loads((out / "progression.json").read_text())
    assert numbers["scenes"] == 4 and numbers["batch_size"] == 1
    rows = numbers["rows"]
    assert [row["detector"] for row in rows] == ["R-CNN", "Fast R-CNN", "Faster R-CNN", "YOLO v1"]
    assert [row["input"] for row in rows] == ["128x128", "128x128", "128x128", "112x112"]  # YOLO's scenes resized
    for row in rows:
        assert 0.0 <= row["map"] <= row["map50"] <= 1.0 and row["seconds_per_image"] > 0, row
    table = (out / "progression.md").read_text().splitlines()
    assert table[0].startswith("| detector | input | test mAP@0.5 |") and len(table) == 6
    assert min(rows[0]["proposal_seconds_per_image"], rows[1]["proposal_seconds_per_image"]) > 0
    assert rows[2]["proposal_seconds_per_image"] is None
    assert any(line.endswith("| 1.0x |") for line in table[2:])  # the slowest, against itself
    assert (out / "progression.png").stat().st_size > 10_000
    assert "YOLO v1: mAP@0.5" in result.stdout


def test_missing_runs_are_named_with_the_commands_that_make_them(empty_cwd):
    message = (
        "error: saved_models has no run folder for rcnn, fast_rcnn, faster_rcnn, yolo: train them first "
        "(python recipes/rcnn.py; python recipes/fast_rcnn.py; python recipes/faster_rcnn.py; python recipes/yolo.py)."
    )
    assert_refused(invoke_recipe("detection_progression"), message, cwd=empty_cwd)


@pytest.mark.parametrize("args", [["--scenes", "0"], ["--batch-size", "-1"]])
def test_bad_options_are_one_sentence(empty_cwd, args):
    result = invoke_recipe("detection_progression", *args)
    assert_refused(result, f"error: {args[0]} must be a positive whole number, not {args[1]}.", cwd=empty_cwd)
