"""The `kapps` command: the model table, export, and one clear sentence for every user mistake."""

import json
import re

from kapps.cli import main
from kapps.errors import ModelError

import pytest
from click.testing import CliRunner

from tests.conftest import error_line, run_kapps


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_models_table():
    result = invoke("models")
    assert result.exit_code == 0
    header, *rows = result.output.splitlines()
    assert header.split()[:3] == ["model", "task", "input"]
    lenet = next(r for r in rows if r.startswith("lenet5 "))
    assert "61,706" in lenet and "classification" in lenet and "32x32x1" in lenet


def test_models_json_and_task_filter():
    rows = json.loads(invoke("models", "--json", "--task", "classification").output)
    lenet = next(r for r in rows if r["name"] == "lenet5")
    assert lenet["param_count"] == 61_706 and lenet["input_shape"] == [32, 32, 1]
    assert lenet["feature_maps"][1] == {"name": "C2", "layer": "s4", "stride": 4, "channels": 16}
    resnet50 = next(r for r in rows if r["name"] == "resnet50")
    assert resnet50["imagenet_preprocessing"] == "caffe" and resnet50["feature_maps"][-1]["channels"] == 2048
    detectors = json.loads(invoke("models", "--json", "--task", "detection").output)
    assert [(r["name"], r["param_count"]) for r in detectors] == [
        ("fast_rcnn", 134_674_341),
        ("faster_rcnn", 41_830_866),
        ("yolo_v1", 271_703_550),
    ]


def test_export_prints_the_verification_table(lenet_export):
    lines = lenet_export.stdout.splitlines()
    assert lines[0].startswith("model: lenet5, test accuracy")
    assert "agree: same top-1 class;" in lines[1]
    table = [line.split() for line in lines if line.startswith(("saved_model", "tflite", "onnx"))]
    assert [row[:2] for row in table] == [
        ["saved_model", "none"],
        ["tflite", "none"],
        ["onnx", "none"],
        ["tflite", "int8"],
    ]
    assert all(row[-1] == "yes" and row[-4] == "100.0%" for row in table[:3])
    assert table[3][-1] == "yes" and float(table[3][-4].rstrip("%")) >= 99.0
    assert lines[-1] == f"report: {lenet_export.path}/export_report.json"


def test_export_prints_a_line_per_stage_with_its_time_on_stderr(lenet_export):
    lines = lenet_export.stderr.splitlines()
    assert all(re.fullmatch(r".+ \(\d+\.\d s\)", line) for line in lines), lines
    expected = [
        "loaded lenet5 (classification) from ",
        "read 256 inputs from digits (seed 0)",
        "ran the Keras model on them and timed 50 batch-1 calls",
        "wrote the SavedModel",
        "verified saved_model in TensorFlow: ",
        "converted model.tflite (TFLite, quantization none)",
        "verified model.tflite in LiteRT: ",
        "converted model.onnx (ONNX, opset 17)",
        "verified model.onnx in onnxruntime: ",
        "converted model_int8.tflite (TFLite, quantization int8)",
        "verified model_int8.tflite in LiteRT: ",
        f"moved 4 artifacts and export_report.json into {lenet_export.path}",
    ]
    assert len(lines) == len(expected) and all(line.startswith(s) for line, s in zip(lines, expected, strict=True))
    assert lines[-2].split(" (")[0].endswith(", passed")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "/no/such/run"], "error: '/no/such/run' does not exist."),
        (["models", "--task", "poetry"], "error: Unknown task 'poetry'"),
    ],
)
def test_user_mistakes_are_one_line(empty_cwd, args, message):
    assert error_line(CliRunner().invoke(main, args)).startswith(message)
    assert list(empty_cwd.iterdir()) == []


def test_unknown_format_and_quantization_are_refused_before_work(lenet_run):
    for args in (["--format", "coreml"], ["--quantize", "int4"]):
        result = CliRunner().invoke(main, ["export", str(lenet_run.path), *args])
        assert result.exit_code == 2
        assert "is not one of" in result.output and "Traceback" not in result.output


def test_export_errors_are_one_sentence_and_write_nothing(tmp_path, empty_cwd):
    folder = tmp_path / "not-a-run"
    folder.mkdir()
    bad = tmp_path / "model.keras"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    for args, message in (
        (["export", folder], "is not a run folder: it has no model.keras."),
        (["export", bad], "is not a Keras model file (.keras)."),
        (["export", tmp_path / "missing"], "does not exist."),
    ):
        assert error_line(invoke(*args)).endswith(message)
    assert sorted(tmp_path.iterdir()) == sorted([folder, bad])  # nothing written beside the inputs
    assert list(empty_cwd.iterdir()) == []  # nor in the default export/<name>


def test_the_process_prints_one_sentence_without_tensorflow_chatter(tmp_path):
    """`python -m kapps.cli` as a real process, whose import of TensorFlow would print absl's and oneDNN's start-up
    lines on stderr if kapps did not keep them off: stderr is the one sentence, exit status 1, nothing written in
    the working directory. (tests/cli/test_predict.py does the same for the `kapps` console script.)"""
    folder = tmp_path / "not-a-run"
    folder.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    result = run_kapps("export", str(folder), cwd=cwd)
    assert result.returncode == 1, result.stderr
    assert result.stderr == f"error: {str(folder)!r} is not a run folder: it has no model.keras.\n"
    assert result.stdout == ""
    assert list(cwd.iterdir()) == [] and list(folder.iterdir()) == []


def test_debug_lets_the_exception_through(tmp_path):
    """With --debug the error is not turned into a sentence: it leaves `main`, and Python prints its traceback."""
    with pytest.raises(ModelError, match="does not exist"):
        invoke("--debug", "export", tmp_path / "missing")


def test_export_of_a_task_without_an_output_kind_is_one_sentence(tmp_path, empty_cwd):
    import keras

    image = keras.Input((16, 16, 3))
    run = tmp_path / "run"
    run.mkdir()
    keras.Model(image, keras.layers.Conv2D(3, 3, padding="same", activation="sigmoid")(image)).save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({"task": "recurrent"}))
    result = CliRunner().invoke(main, ["export", str(run), "--quantize", "dynamic", "--out", str(tmp_path / "out")])
    assert error_line(result) == (
        "error: The task 'recurrent' has no output kind in kapps yet, so its outputs can be neither verified after "
        "export nor predicted; the tasks that have one are classification, detection, instance_segmentation, "
        "segmentation, heatmap, generative, regression and instance_sequence."
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert list(empty_cwd.iterdir()) == []
