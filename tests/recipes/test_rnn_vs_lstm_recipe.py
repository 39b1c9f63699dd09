"""The RNN-vs-LSTM recipe at a tiny budget: a run folder a cell and task, the numbers of metrics.json against the
kept models and the adding problem's own test split, the figure, exports with parity (the recurrence unrolled into
TFLite builtins, ONNX without a loop), a digit predicted row by row, and the refusals."""

import json

import kapps.data
from kapps.cli import main as kapps_main
from kapps.export.source import load_keras

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.conftest import tflite_ops
from tests.recipes.conftest import assert_refused, invoke_recipe, load_recipe

LENGTHS = (4, 9)
TINY = [
    "--epochs",
    "1",
    "--digit-epochs",
    "1",
    "--steps-per-epoch",
    "2",
    "--units",
    "4",
    "--sequences",
    "64",
    "--lengths",
    "4,9",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("rnn_vs_lstm") / "run"
    result = invoke_recipe("rnn_vs_lstm", *TINY, "--out", out)
    assert result.exit_code == 0, (result.output, result.exception)
    return out, result.stdout


def test_every_cell_and_task_gets_a_run_folder_and_a_line(run):
    out, stdout = run
    for cell in ("rnn", "lstm"):
        for task in ("adding_4", "adding_9", "digits"):
            for name in ("model.keras", "config.json", "history.csv", "metrics.json", "plots/curves.png"):
                assert (out / cell / task / name).is_file(), (cell, task, name)
        assert f"{cell} on digits read row by row: test accuracy" in stdout
        for length in LENGTHS:
            assert f"{cell} on the adding problem of {length} steps: test MSE" in stdout
    assert not (out / "gru").exists()
    config = json.loads((out / "lstm" / "adding_9" / "config.json").read_text())
    assert config["task"] == "regression" and config["data"]["spec"] == "adding"
    assert config["model"] == {
        "name": "rnn_classifier",
        "kwargs": {"input_shape": [9, 2], "units": 4, "cell": "lstm", "head": "regression"},
    }
    assert config["data"]["sizes"] == {"train": 64, "val": 1000, "test": 1000}
    digits = json.loads((out / "rnn" / "digits" / "config.json").read_text())
    assert digits["task"] == "classification" and digits["data"]["input_shape"] == [32, 32]
    assert digits["model"]["kwargs"]["cell"] == "rnn"


def test_metrics_are_the_kept_models_on_the_adding_test_split(run):
    """The summary's MSE and accuracy are each kept model's on the test split (`adding_problem` of seed 3 x 0 + 2,
    1,000 sequences), recomputed here; the baseline is always answering 1.0 on those sums, near 1/6."""
    out, _ = run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["cells"] == ["rnn", "lstm"] and metrics["units"] == 4 and metrics["solved_mse"] == 0.05
    assert sorted(metrics["adding"]) == ["lstm", "rnn"] and sorted(metrics["digits"]) == ["lstm", "rnn"]
    for cell in ("rnn", "lstm"):
        assert sorted(metrics["adding"][cell]) == ["4", "9"]
        for length in LENGTHS:
            entry = metrics["adding"][cell][str(length)]
            inputs, targets = kapps.data.adding_problem(length=length, count=1000, seed=2)
            baseline = float(np.mean((targets - 1.0) ** 2))
            assert entry["baseline_mse"] == pytest.approx(baseline, rel=1e-6)
            assert abs(baseline - 1 / 6) < 0.025
            model = load_keras(out / cell / f"adding_{length}" / "model.keras")
            errors = np.asarray(model(inputs), "float64") - targets
            assert entry["mse"] == pytest.approx(np.mean(errors**2), rel=1e-4)
            assert entry["accuracy"] == pytest.approx(np.mean(np.abs(errors) < 0.04), abs=1e-9)
            assert entry["explained_variance"] == pytest.approx(1 - entry["mse"] / baseline)
            assert entry["beats_baseline"] == (entry["mse"] <= 0.9 * baseline)
            assert entry["solved"] == (entry["mse"] < 0.05)
            run_metrics = json.loads((out / cell / f"adding_{length}" / "metrics.json").read_text())
            assert run_metrics["test_mse"] == entry["mse"] and run_metrics["epochs_run"] == 1
        run_metrics = json.loads((out / cell / "digits" / "metrics.json").read_text())
        assert metrics["digits"][cell]["accuracy"] == run_metrics["test_accuracy"]


def test_the_figure_is_drawn(run):
    out, _ = run
    with Image.open(out / "rnn_vs_lstm.png") as picture:
        pixels = np.asarray(picture.convert("L"))
    assert pixels.shape[1] > 1000  # three panels: error, accuracy, digits
    assert pixels.std() > 10 and len(np.unique(pixels)) > 50


@pytest.mark.parametrize(("cell", "task", "gate_ops"), [("lstm", "adding_9", {"LOGISTIC"}), ("rnn", "digits", set())])
def test_runs_export_with_parity_to_builtin_tflite_and_onnx(run, tmp_path, cell, task, gate_ops):
    out, _ = run
    exported = CliRunner().invoke(
        kapps_main, ["export", str(out / cell / task), "--format", "all", "--out", str(tmp_path / "export")]
    )
    assert exported.exit_code == 0, exported.output
    report = json.loads((tmp_path / "export" / "export_report.json").read_text())
    assert report["task"] == ("regression" if task.startswith("adding") else "classification")
    assert report["inputs"]["data"] == ("adding (seed 0)" if task.startswith("adding") else "digits (seed 0)")
    assert sorted(a["path"] for a in report["artifacts"]) == ["model.onnx", "model.tflite", "saved_model"]
    for artifact in report["artifacts"]:
        assert artifact["passed"] and artifact["max_abs_diff"] <= 1e-4, artifact
    ops = tflite_ops(tmp_path / "export" / "model.tflite")
    assert not any(op.startswith("Flex") or op in ("CUSTOM", "WHILE") for op in ops), ops
    assert {"FULLY_CONNECTED", "TANH"} | gate_ops <= ops, ops
    graph = onnx.load(str(tmp_path / "export" / "model.onnx")).graph
    assert not {node.op_type for node in graph.node} & {"Loop", "Scan", "LSTM", "RNN"}


def test_a_digit_image_is_predicted_row_by_row(run, tmp_path):
    out, _ = run
    data = kapps.data.load("digits", image_size=(32, 32), seed=0)
    image, _ = next(iter(data.test))
    Image.fromarray((image.numpy()[..., 0] * 255).round().astype("uint8")).save(tmp_path / "digit.png")
    model = load_keras(out / "lstm" / "digits" / "model.keras")
    saved = np.asarray(Image.open(tmp_path / "digit.png"), "float32") / 255  # the PNG's own rounding
    expected = np.asarray(model(saved[None]))[0]
    predicted = CliRunner().invoke(
        kapps_main, ["predict", str(out / "lstm" / "digits"), str(tmp_path / "digit.png"), "--out", str(tmp_path / "p")]
    )
    assert predicted.exit_code == 0, predicted.output
    entry = json.loads((tmp_path / "p" / "digit.json").read_text())
    assert entry["task"] == "classification" and (entry["width"], entry["height"]) == (32, 32)
    assert entry["top5"][0]["class_id"] == int(np.argmax(expected))
    assert entry["top5"][0]["score"] == pytest.approx(float(expected.max()), abs=1e-5)


def test_an_adding_regressor_is_not_predicted_from_an_image(run, tmp_path):
    out, _ = run
    Image.fromarray(np.zeros((9, 2), "uint8")).save(tmp_path / "blank.png")
    refused = CliRunner().invoke(kapps_main, ["predict", str(out / "lstm" / "adding_9"), str(tmp_path / "blank.png")])
    assert refused.exit_code == 1
    assert "does not take fixed-size grey or RGB images (its input shape is (9, 2))" in refused.output


def test_option_parsers():
    recipe = load_recipe("rnn_vs_lstm")
    assert recipe.parse_cells("lstm, rnn,gru") == ("lstm", "rnn", "gru")
    assert recipe.parse_lengths("200,20,50") == (20, 50, 200)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--cells", "rnn,transformer"],
            "error: --cells takes distinct names of rnn, lstm, gru, not 'rnn,transformer'.",
        ),
        (["--cells", "lstm,lstm"], "error: --cells takes distinct names of rnn, lstm, gru, not 'lstm,lstm'."),
        (["--lengths", "1,20"], "error: --lengths takes distinct whole numbers of at least 2, such as 20,50,100, not"),
        (["--lengths", "20,x"], "error: --lengths takes distinct whole numbers of at least 2"),
        (["--epochs", "0"], "error: --epochs must be a positive whole number, not 0."),
    ],
)
def test_bad_options_are_one_sentence(empty_cwd, args, message):
    assert_refused(invoke_recipe("rnn_vs_lstm", *args, "--out", "run"), message, cwd=empty_cwd)


def test_mnist_read_row_by_row_with_mock_data(tmp_path):
    """`--data tfds:mnist --image-size 28`: 28 steps of 28 pixels, on tensorflow-datasets' mock data (no download;
    its labels are random, so the accuracy measures nothing), one cell."""
    import tensorflow_datasets as tfds

    out = tmp_path / "mnist"
    with tfds.testing.mock_data(num_examples=64):
        args = [*TINY[:-2], "--lengths", "3", "--cells", "lstm", "--data", "tfds:mnist", "--image-size", "28"]
        result = invoke_recipe("rnn_vs_lstm", *args, "--out", out)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "lstm on tfds:mnist read row by row: test accuracy" in result.stdout
    config = json.loads((out / "lstm" / "digits" / "config.json").read_text())
    assert config["data"]["spec"] == "tfds:mnist" and config["model"]["kwargs"]["input_shape"] == [28, 28]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["cells"] == ["lstm"] and list(metrics["adding"]["lstm"]) == ["3"]
    assert (out / "rnn_vs_lstm.png").is_file() and not (out / "rnn").exists()
