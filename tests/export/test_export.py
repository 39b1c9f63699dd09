"""Exports: each artifact runs in its own runtime and matches Keras on the run's own data; failures leave nothing."""

import json
import os
import re
import shutil
import zipfile

import kapps
import kapps.data
import kapps.export
from kapps.errors import ExportError, ModelError
from kapps.kinds import classification

import keras
import numpy as np
import onnxruntime as ort
import pytest
import tensorflow as tf
import tf2onnx

from tests.conftest import git_commit_of_checkout


@pytest.fixture(scope="module")
def exported(lenet_export):
    return lenet_export.path, lenet_export.report


def test_all_formats_are_written_and_verified(exported):
    out, report = exported
    assert sorted(os.listdir(out)) == [
        "export_report.json",
        "model.onnx",
        "model.tflite",
        "model_int8.tflite",
        "saved_model",
    ]
    assert json.loads((out / "export_report.json").read_text()) == report
    assert report["inputs"]["data"] == "digits (seed 0)" and report["inputs"]["count"] == 256
    by_path = {a["path"]: a for a in report["artifacts"]}
    for path in ("saved_model", "model.tflite", "model.onnx"):
        entry = by_path[path]
        assert entry["quantization"] == "none"
        assert entry["max_abs_diff"] <= 1e-4, entry
        assert entry["top1_agreement"] == 1.0, entry
        assert entry["passed"] and entry["bytes"] > 0 and entry["median_latency_ms"] > 0
    int8 = by_path["model_int8.tflite"]
    assert int8["format"] == "tflite" and int8["quantization"] == "int8"
    assert int8["top1_agreement"] >= 0.99, int8
    assert int8["bytes"] < by_path["model.tflite"]["bytes"] / 2  # int8 weights: about a quarter


def test_artifacts_answer_like_keras_on_new_inputs(exported, lenet_run):
    out, _ = exported
    images = np.random.default_rng(7).uniform(0, 1, (5, 32, 32, 1)).astype("float32")
    expected = kapps.export.keras_runner(lenet_run.model)(images)["predictions"]
    for runner, path in (
        (kapps.export.saved_model_runner, out / "saved_model"),
        (kapps.export.tflite_runner, out / "model.tflite"),
        (kapps.export.onnx_runner, out / "model.onnx"),
    ):
        got = runner(path)(images)
        assert list(got) == ["predictions"]  # the same output name in every runtime
        np.testing.assert_allclose(got["predictions"], expected, atol=1e-5)


def test_int8_model_has_integer_kernels(exported):
    from ai_edge_litert.interpreter import Interpreter

    out, _ = exported
    interpreter = Interpreter(model_path=str(out / "model_int8.tflite"))
    dtypes = {d["dtype"] for d in interpreter.get_tensor_details()}
    assert np.int8 in dtypes
    assert interpreter.get_input_details()[0]["dtype"] == np.float32  # float in, float out


@pytest.mark.parametrize("quantize", ["dynamic", "float16"])
def test_other_quantizations_add_to_an_export(lenet_run, lenet_export, tmp_path, quantize):
    out = tmp_path / "lenet5"
    shutil.copytree(lenet_export.path, out)
    report = kapps.export.export(lenet_run.path, formats="tflite", quantize=quantize, out=out, latency_runs=3)
    entry = report["artifacts"][-1]
    assert entry["path"] == f"model_{quantize}.tflite" and entry["passed"]
    assert entry["top1_agreement"] >= 0.99
    # the earlier export's artifacts stay, with their entries
    assert report["artifacts"][:-1] == lenet_export.report["artifacts"]
    assert json.loads((out / "export_report.json").read_text()) == report
    assert sorted(os.listdir(out)) == sorted([*os.listdir(lenet_export.path), entry["path"]])


def test_a_keras_file_without_data_is_checked_on_random_images(lenet_run, tmp_path):
    report = kapps.export.export(lenet_run.path / "model.keras", formats="onnx", out=tmp_path, latency_runs=3)
    assert report["inputs"]["data"].startswith("random uniform")
    assert report["artifacts"][0]["passed"]


def test_default_output_folder_is_export_run_name(lenet_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    report = kapps.export.export(lenet_run.path, formats="onnx", latency_runs=3)
    assert report["out"] == os.path.join("export", "lenet5")
    assert sorted(os.listdir(tmp_path / "export" / "lenet5")) == ["export_report.json", "model.onnx"]
    assert json.loads((tmp_path / "export" / "lenet5" / "export_report.json").read_text()) == report
    # what wrote it: kapps' version and commit, and the converters' and runtimes' versions
    assert report["versions"]["kapps"] == kapps.__version__
    assert report["versions"]["kapps_commit"] == git_commit_of_checkout() and len(git_commit_of_checkout()) >= 40
    assert report["versions"]["tensorflow"] == tf.__version__ and report["versions"]["onnxruntime"] == ort.__version__
    assert report["versions"]["tf2onnx"] == tf2onnx.__version__


def test_a_failed_verification_leaves_nothing(lenet_run, empty_cwd, monkeypatch):
    monkeypatch.setattr(classification, "FLOAT_MAX_ABS_DIFF", -1.0)  # no artifact can pass
    # tflite: the temporary folder, made in export/, holds a SavedModel folder as well as the file
    with pytest.raises(ExportError, match="disagrees with Keras.*nothing was written"):
        kapps.export.export(lenet_run.path, formats="tflite", latency_runs=3)
    assert os.listdir(empty_cwd) == []  # no export/lenet5, no temporary folder, no export/ either


def test_a_failed_export_keeps_what_was_there(lenet_run, lenet_export, tmp_path, monkeypatch):
    out = tmp_path / "lenet5"
    shutil.copytree(lenet_export.path, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    monkeypatch.setattr(classification, "FLOAT_MAX_ABS_DIFF", -1.0)
    with pytest.raises(ExportError):
        kapps.export.export(lenet_run.path, formats="onnx", out=out, latency_runs=3)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert os.listdir(tmp_path) == ["lenet5"]


# float16 has 11 significant bits: its unit roundoff is 2**-11 (4.9e-4). Computing every layer in it moves this
# LeNet-5's probabilities by up to 3.6e-4 from the same weights in float32 (measured on 64 test digits), so an artifact
# answers as the trained model within float16's machine epsilon; the exporter checks its artifacts against its own
# float32 twin only, which a twin with a wrong weight would pass.
FLOAT16_EPS = 2.0**-10


def test_a_mixed_precision_run_exports_the_model_it_trained(tmp_path):
    from tests.conftest import train_lenet

    train_lenet(tmp_path / "mixed", epochs=1, precision="mixed_float16")
    report = kapps.export.export(tmp_path / "mixed", formats="all", out=tmp_path / "out", latency_runs=3)
    assert report["trained_policy"] == "mixed_float16"
    for entry in report["artifacts"]:
        assert entry["passed"] and entry["max_abs_diff"] <= 1e-4, entry
    # The model as trained, loaded as saved: its layers compute in float16 but for the class layer (float32 by design).
    trained = keras.saving.load_model(tmp_path / "mixed" / "model.keras", compile=False)
    policies = {layer.name: layer.dtype_policy.name for layer in trained.layers if layer.weights}
    assert policies == {**dict.fromkeys(["c1", "c3", "c5", "f6"], "mixed_float16"), "predictions": "float32"}
    data = kapps.data.load("digits", image_size=(32, 32), seed=0)
    images = np.stack([image for image, _ in data.test.take(64).as_numpy_iterator()])
    expected = np.asarray(trained(images), "float32")
    for runner, path in (
        (kapps.export.saved_model_runner, "saved_model"),
        (kapps.export.tflite_runner, "model.tflite"),
        (kapps.export.onnx_runner, "model.onnx"),
    ):
        got = runner(tmp_path / "out" / path)(images)["predictions"]
        np.testing.assert_allclose(got, expected, rtol=0, atol=FLOAT16_EPS, err_msg=path)


# The refusals below write nothing: not beside their inputs, not in the default export/<name> of the working directory.


def test_missing_path(tmp_path, empty_cwd):
    with pytest.raises(ModelError, match="does not exist"):
        kapps.export.export(tmp_path / "nothing")
    assert os.listdir(tmp_path) == [] and os.listdir(empty_cwd) == []


def test_folder_that_is_not_a_run(tmp_path, empty_cwd):
    with pytest.raises(ModelError, match="is not a run folder: it has no model.keras"):
        kapps.export.export(tmp_path)
    assert os.listdir(tmp_path) == [] and os.listdir(empty_cwd) == []


def test_non_keras_file(tmp_path, empty_cwd):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(ModelError, match=r"is not a Keras model file \(.keras\)"):
        kapps.export.export(path)
    assert os.listdir(tmp_path) == ["notes.txt"] and os.listdir(empty_cwd) == []


def test_corrupt_keras_file(lenet_run, tmp_path, empty_cwd):
    path = tmp_path / "broken.keras"
    with zipfile.ZipFile(lenet_run.path / "model.keras") as source, zipfile.ZipFile(path, "w") as target:
        for item in source.infolist():
            if item.filename != "model.weights.h5":
                target.writestr(item, source.read(item))
            else:
                target.writestr(item, b"not hdf5")
    with pytest.raises(ModelError, match="could not be loaded as a Keras model"):
        kapps.export.export(path)
    assert os.listdir(tmp_path) == ["broken.keras"] and os.listdir(empty_cwd) == []


def test_truncated_keras_file(lenet_run, tmp_path, empty_cwd):
    path = tmp_path / "cut.keras"
    path.write_bytes((lenet_run.path / "model.keras").read_bytes()[:1000])
    with pytest.raises(ModelError, match=r"not a Keras model file|could not be loaded"):
        kapps.export.export(path)
    assert os.listdir(tmp_path) == ["cut.keras"] and os.listdir(empty_cwd) == []


@pytest.mark.parametrize(
    ("formats", "quantize", "message"),
    [
        ("coreml", "none", "Unknown export format 'coreml'"),
        ("tflite", "int4", "Unknown quantization 'int4'"),
        ("onnx", "int8", "applies to TFLite"),
    ],
)
def test_bad_format_or_quantization(lenet_run, empty_cwd, formats, quantize, message):
    with pytest.raises(ExportError, match=message):
        kapps.export.export(lenet_run.path, formats=formats, quantize=quantize)
    assert os.listdir(empty_cwd) == []


def test_opset_out_of_range(lenet_run, empty_cwd):
    with pytest.raises(ExportError, match="--opset must be between 9 and 18"):
        kapps.export.export(lenet_run.path, formats="onnx", opset=30)
    assert os.listdir(empty_cwd) == []


def test_int8_needs_calibration_data(lenet_run, empty_cwd):
    with pytest.raises(ExportError, match="int8 quantization needs calibration data"):
        kapps.export.export(lenet_run.path / "model.keras", formats="tflite", quantize="int8")
    assert os.listdir(empty_cwd) == []


def test_int8_calibrates_a_keras_file_on_a_named_source(lenet_run, tmp_path):
    report = kapps.export.export(
        lenet_run.path / "model.keras", formats="tflite", quantize="int8", data="digits", out=tmp_path, latency_runs=3
    )
    assert report["artifacts"][0]["top1_agreement"] >= 0.99


def test_unwritable_output_folder(lenet_run, empty_cwd):
    # /proc takes no new files, not even from root (CI runs as root, so permission bits would not stop it).
    with pytest.raises(ExportError, match="cannot be written"):
        kapps.export.export(lenet_run.path, out="/proc/kapps-export-test")
    assert os.listdir(empty_cwd) == []


def test_output_under_a_file(lenet_run, tmp_path, empty_cwd):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ExportError, match="cannot be written"):
        kapps.export.export(lenet_run.path, out=blocker / "sub" / "out")
    assert os.listdir(tmp_path) == ["file"] and blocker.read_text() == "" and os.listdir(empty_cwd) == []


def test_report_names_the_task_and_the_classes(exported):
    _, report = exported
    assert report["task"] == "classification"
    assert report["class_names"] == [str(d) for d in range(10)]


def test_the_report_states_each_artifacts_criterion(exported):
    _, report = exported
    by_path = {a["path"]: a for a in report["artifacts"]}
    for path in ("saved_model", "model.tflite", "model.onnx"):
        assert by_path[path]["criterion"] == (
            "every score within 0.0001 of Keras's and the same top-1 class on every image"
        )
    assert by_path["model_int8.tflite"]["criterion"] == "the top-1 class is Keras's on at least 99% of the images"


def test_progress_lines_name_each_stage_with_its_time(lenet_run, tmp_path):
    lines = []
    kapps.export.export(lenet_run.path, formats="onnx", out=tmp_path / "o", latency_runs=3, progress=lines.append)
    stages = [line.rsplit(" (", 1)[0] for line in lines]
    assert stages == [
        f"loaded lenet5 (classification) from {lenet_run.path}",
        "read 256 inputs from digits (seed 0)",
        "ran the Keras model on them and timed 3 batch-1 calls",
        "converted model.onnx (ONNX, opset 17)",
        stages[4],
        f"moved 1 artifacts and export_report.json into {tmp_path / 'o'}",
    ]
    assert stages[4].startswith("verified model.onnx in onnxruntime: max abs diff ") and stages[4].endswith(
        ", top-1 agreement 100.0%, passed"
    )
    assert all(re.fullmatch(r".* \(\d+\.\d s\)", line) for line in lines), lines


def save_run(model, folder, task):
    """`model` saved as the model.keras of a run folder whose config.json names `task`."""
    folder.mkdir(parents=True)
    model.save(folder / "model.keras")
    (folder / "config.json").write_text(json.dumps({"task": task}))
    return folder


@pytest.mark.parametrize(("formats", "quantize"), [("tflite", "dynamic"), ("all", "none")])
def test_a_task_without_an_output_kind_is_refused_and_leaves_nothing(tmp_path, empty_cwd, formats, quantize):
    # a map out (B, H, W, 3), recorded as a recurrent model's: nothing in kapps can compare those yet
    image = keras.Input((16, 16, 3))
    out = keras.layers.Conv2D(3, 3, padding="same", activation="sigmoid", name="out")(image)
    run = save_run(keras.Model(image, out, name="tiny_recurrent"), tmp_path / "run", "recurrent")
    with pytest.raises(ModelError) as caught:
        kapps.export.export(run, formats=formats, quantize=quantize, latency_runs=2)
    assert str(caught.value) == (
        "The task 'recurrent' has no output kind in kapps yet, so its outputs can be neither verified after export "
        "nor predicted; the tasks that have one are classification, detection, instance_segmentation, "
        "segmentation, heatmap, generative, regression and instance_sequence."
    )
    assert sorted(os.listdir(tmp_path)) == ["run"] and os.listdir(empty_cwd) == []


def test_a_bare_keras_file_of_a_registered_model_takes_the_registrys_task(tmp_path):
    import kapps.models

    kapps.models.build("lenet5").save(tmp_path / "lenet.keras")  # no run folder, no config.json
    report = kapps.export.export(tmp_path / "lenet.keras", formats="onnx", out=tmp_path / "out", latency_runs=2)
    assert report["task"] == "classification" and report["artifacts"][0]["passed"]
    assert report["artifacts"][0]["top1_agreement"] == 1.0


def test_a_bare_keras_file_of_an_unknown_model_is_refused(tmp_path, empty_cwd):
    image = keras.Input((8, 8, 1))
    keras.Model(image, keras.layers.Dense(3)(keras.layers.Flatten()(image)), name="my_net").save(tmp_path / "m.keras")
    with pytest.raises(ModelError, match="model name 'my_net' is not a registered kapps model; export the run folder"):
        kapps.export.export(tmp_path / "m.keras")
    assert sorted(os.listdir(tmp_path)) == ["m.keras"] and os.listdir(empty_cwd) == []


def test_outputs_that_do_not_fit_the_task_are_refused(tmp_path, empty_cwd):
    image = keras.Input((8, 8, 1))
    regressor = keras.Model(image, keras.layers.Dense(1, name="value")(keras.layers.Flatten()(image)))
    run = save_run(regressor, tmp_path / "run", "classification")
    with pytest.raises(ModelError, match=r"is not a classifier: its outputs are value \(64, 1\), not one"):
        kapps.export.export(run, formats="onnx")
    assert sorted(os.listdir(tmp_path)) == ["run"] and os.listdir(empty_cwd) == []


def test_a_detector_with_an_output_the_kind_does_not_compare_is_refused(tmp_path, empty_cwd):
    from kapps.layers.detection import NonMaxSuppression

    image = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, strides=4)(image))
    boxes = keras.layers.Reshape((6, 4))(keras.layers.Dense(24, activation="sigmoid")(x))
    scores = keras.layers.Reshape((6, 2))(keras.layers.Dense(12, activation="sigmoid")(x))
    detections = NonMaxSuppression(max_detections=4, score_threshold=0.1)(boxes, scores)
    masks = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid", name="masks")(image)
    run = save_run(keras.Model(image, {**detections, "masks": masks}), tmp_path / "run", "detection")
    with pytest.raises(ModelError, match=r"has outputs that the detection kind does not compare \(masks\)"):
        kapps.export.export(run, formats="tflite", quantize="dynamic")
    assert sorted(os.listdir(tmp_path)) == ["run"] and os.listdir(empty_cwd) == []
