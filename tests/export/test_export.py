"""Exports: each artifact runs in its own runtime and matches Keras on the run's own data; failures leave nothing."""

import json
import os
import zipfile

import kapps.export
from kapps.errors import ExportError, ModelError
from kapps.export import exporter

import numpy as np
import pytest


@pytest.fixture(scope="module")
def exported(lenet_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "lenet5"
    report = kapps.export.export(lenet_run.path, formats="all", quantize="int8", out=out, latency_runs=10)
    return out, report


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
def test_other_quantizations(lenet_run, tmp_path, quantize):
    report = kapps.export.export(lenet_run.path, formats="tflite", quantize=quantize, out=tmp_path, latency_runs=3)
    (entry,) = report["artifacts"]
    assert entry["path"] == f"model_{quantize}.tflite" and entry["passed"]
    assert entry["top1_agreement"] >= 0.99


def test_a_second_export_adds_to_the_report(lenet_run, tmp_path):
    kapps.export.export(lenet_run.path, formats="onnx", out=tmp_path, latency_runs=3)
    kapps.export.export(lenet_run.path, formats="tflite", out=tmp_path, latency_runs=3)
    report = json.loads((tmp_path / "export_report.json").read_text())
    assert [a["path"] for a in report["artifacts"]] == ["model.onnx", "model.tflite"]


def test_a_keras_file_without_data_is_checked_on_random_images(lenet_run, tmp_path):
    report = kapps.export.export(lenet_run.path / "model.keras", formats="onnx", out=tmp_path, latency_runs=3)
    assert report["inputs"]["data"].startswith("random uniform")
    assert report["artifacts"][0]["passed"]


def test_default_output_folder_is_export_run_name(lenet_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    report = kapps.export.export(lenet_run.path, formats="onnx", latency_runs=3)
    assert report["out"] == os.path.join("export", "lenet5")
    assert (tmp_path / "export" / "lenet5" / "model.onnx").is_file()


def test_a_failed_verification_leaves_nothing(lenet_run, tmp_path, monkeypatch):
    monkeypatch.setattr(exporter, "FLOAT_MAX_ABS_DIFF", -1.0)  # no artifact can pass
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="disagrees with Keras.*nothing was written"):
        kapps.export.export(lenet_run.path, formats="all", out=out, latency_runs=3)
    assert not out.exists()
    assert os.listdir(tmp_path) == []  # no temporary folder left either


def test_a_failed_export_keeps_what_was_there(lenet_run, tmp_path, monkeypatch):
    kapps.export.export(lenet_run.path, formats="onnx", out=tmp_path / "out", latency_runs=3)
    before = (tmp_path / "out" / "model.onnx").read_bytes()
    monkeypatch.setattr(exporter, "FLOAT_MAX_ABS_DIFF", -1.0)
    with pytest.raises(ExportError):
        kapps.export.export(lenet_run.path, formats="onnx", out=tmp_path / "out", latency_runs=3)
    assert (tmp_path / "out" / "model.onnx").read_bytes() == before


def test_a_mixed_precision_run_exports_in_float32(tmp_path):
    from tests.conftest import train_lenet

    train_lenet(tmp_path / "mixed", epochs=1, steps=2, precision="mixed_float16")
    report = kapps.export.export(tmp_path / "mixed", formats="all", out=tmp_path / "out", latency_runs=3)
    assert report["trained_policy"] == "mixed_float16"
    for entry in report["artifacts"]:
        assert entry["passed"] and entry["max_abs_diff"] <= 1e-4, entry


def test_missing_path(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        kapps.export.export(tmp_path / "nothing")


def test_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(ModelError, match="is not a run folder: it has no model.keras"):
        kapps.export.export(tmp_path)


def test_non_keras_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(ModelError, match=r"is not a Keras model file \(.keras\)"):
        kapps.export.export(path)


def test_corrupt_keras_file(lenet_run, tmp_path):
    path = tmp_path / "broken.keras"
    with zipfile.ZipFile(lenet_run.path / "model.keras") as source, zipfile.ZipFile(path, "w") as target:
        for item in source.infolist():
            if item.filename != "model.weights.h5":
                target.writestr(item, source.read(item))
            else:
                target.writestr(item, b"not hdf5")
    with pytest.raises(ModelError, match="could not be loaded as a Keras model"):
        kapps.export.export(path, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_truncated_keras_file(lenet_run, tmp_path):
    path = tmp_path / "cut.keras"
    path.write_bytes((lenet_run.path / "model.keras").read_bytes()[:1000])
    with pytest.raises(ModelError, match=r"not a Keras model file|could not be loaded"):
        kapps.export.export(path)


@pytest.mark.parametrize(
    ("formats", "quantize", "message"),
    [
        ("coreml", "none", "Unknown export format 'coreml'"),
        ("tflite", "int4", "Unknown quantization 'int4'"),
        ("onnx", "int8", "applies to TFLite"),
    ],
)
def test_bad_format_or_quantization(lenet_run, formats, quantize, message):
    with pytest.raises(ExportError, match=message):
        kapps.export.export(lenet_run.path, formats=formats, quantize=quantize)


def test_opset_out_of_range(lenet_run):
    with pytest.raises(ExportError, match="--opset must be between 9 and 18"):
        kapps.export.export(lenet_run.path, formats="onnx", opset=30)


def test_int8_needs_calibration_data(lenet_run, tmp_path):
    with pytest.raises(ExportError, match="int8 quantization needs calibration data"):
        kapps.export.export(lenet_run.path / "model.keras", formats="tflite", quantize="int8", out=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_int8_calibrates_a_keras_file_on_a_named_source(lenet_run, tmp_path):
    report = kapps.export.export(
        lenet_run.path / "model.keras", formats="tflite", quantize="int8", data="digits", out=tmp_path, latency_runs=3
    )
    assert report["artifacts"][0]["top1_agreement"] >= 0.99


def test_unwritable_output_folder(lenet_run):
    # /proc takes no new files, not even from root (CI runs as root, so permission bits would not stop it).
    with pytest.raises(ExportError, match="cannot be written"):
        kapps.export.export(lenet_run.path, out="/proc/kapps-export-test")


def test_output_under_a_file(lenet_run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ExportError, match="cannot be written"):
        kapps.export.export(lenet_run.path, out=blocker / "sub" / "out")


def detections(boxes, scores, classes, k=3):
    """One image's detector outputs, padded to k rows as the inference models pad them."""
    n = len(scores)
    padded_boxes = np.zeros((1, k, 4), "float32")
    padded_boxes[0, :n] = np.reshape(boxes, (-1, 4))
    return {
        "boxes": padded_boxes,
        "scores": np.array([list(scores) + [0.0] * (k - n)], "float32"),
        "classes": np.array([list(classes) + [-1] * (k - n)], "int32"),
        "num_detections": np.array([n], "int32"),
    }


def stack(*images):
    return {k: np.concatenate([d[k] for d in images]) for k in images[0]}


def test_detections_are_compared_row_by_row_not_as_raw_tensors():
    reference = detections([[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]], [0.9, 0.8], [0, 2])
    close = detections([[0.1005, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]], [0.9008, 0.8], [0, 2])
    close["boxes"][0, 2] = 0.7  # a padding row differs: it is not a detection, so it does not count
    result = exporter.compare_detections(close, reference, exact=True)
    assert result["detection_agreement"] == 1.0 and result["count_agreement"] == 1.0
    assert result["max_box_diff"] == pytest.approx(0.0005, abs=1e-7)
    assert result["max_score_diff"] == pytest.approx(0.0008, abs=1e-7)
    assert result["max_abs_diff"] == result["max_score_diff"]


def test_detections_disagree_on_count_class_box_or_score():
    reference = detections([[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]], [0.9, 0.8], [0, 2])
    other_class = detections([[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]], [0.9, 0.8], [0, 1])
    moved = detections([[0.1, 0.1, 0.5, 0.5], [0.62, 0.6, 0.9, 0.9]], [0.9, 0.8], [0, 2])
    fewer = detections([[0.1, 0.1, 0.5, 0.5]], [0.9], [0])
    got = stack(reference, other_class, moved, fewer)
    result = exporter.compare_detections(got, stack(*[reference] * 4), exact=True)
    assert result["detection_agreement"] == 0.25  # only the first image
    assert result["count_agreement"] == 0.75
    assert result["max_box_diff"] == pytest.approx(0.02, abs=1e-6)
    # Quantised rule: the moved box still overlaps at IoU 0.28 * 0.3 / (0.3 * 0.3) = 0.933 >= 0.5, same class.
    loose = exporter.compare_detections(got, stack(*[reference] * 4), exact=False)
    assert loose["detection_agreement"] == 0.5


def test_quantised_detections_pair_in_any_order_at_iou_half():
    reference = detections([[0.0, 0.0, 0.4, 0.4], [0.5, 0.5, 1.0, 1.0]], [0.9, 0.8], [1, 1])
    swapped = detections([[0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 0.4, 0.4]], [0.81, 0.79], [1, 1])
    # IoU of [0, 0, 0.4, 0.4] and [0, 0, 0.4, 0.2] is 0.5 exactly: still a pair; [0, 0, 0.4, 0.19] is 0.475: not.
    half = detections([[0.0, 0.0, 0.4, 0.2], [0.5, 0.5, 1.0, 1.0]], [0.9, 0.8], [1, 1])
    under = detections([[0.0, 0.0, 0.4, 0.19], [0.5, 0.5, 1.0, 1.0]], [0.9, 0.8], [1, 1])
    result = exporter.compare_detections(stack(swapped, half, under), stack(*[reference] * 3), exact=False)
    assert result["detection_agreement"] == pytest.approx(2 / 3)
    assert exporter.compare_detections(swapped, reference, exact=True)["detection_agreement"] == 0.0


def test_float_detections_pair_in_any_order_and_may_differ_at_the_score_threshold():
    three = [[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9], [0.2, 0.6, 0.3, 0.7]]
    reference = detections(three, [0.5, 0.5, 0.0105], [0, 1, 2])
    # the two near-equal scores swap places, and the detection just above the threshold (0.01) falls below it
    swapped = detections([[0.6, 0.6, 0.9, 0.9], [0.1, 0.1, 0.5, 0.5]], [0.5002, 0.4999], [1, 0])
    # a detection well above the threshold may not go missing, nor may an extra one appear
    missing = detections([[0.1, 0.1, 0.5, 0.5], [0.2, 0.6, 0.3, 0.7]], [0.5, 0.0105], [0, 2])
    extra = detections(three, [0.5, 0.5, 0.02], [0, 1, 2])
    result = exporter.compare_detections(
        stack(swapped, missing, extra), stack(*[reference] * 3), exact=True, score_threshold=0.01
    )
    assert result["detection_agreement"] == pytest.approx(1 / 3)
    # without a threshold to be near, the dropped detection counts against the first image too
    assert exporter.compare_detections(swapped, reference, exact=True)["detection_agreement"] == 0.0


def test_quantised_detections_are_compared_above_the_score_floor():
    reference = detections([[0.0, 0.0, 0.4, 0.4], [0.5, 0.5, 1.0, 1.0]], [0.9, 0.02], [1, 0])
    # the low-scoring detection is lost and another appears below the floor (0.25): the image still agrees
    tail_moved = detections([[0.0, 0.0, 0.4, 0.4], [0.1, 0.6, 0.2, 0.7]], [0.88, 0.2], [1, 2])
    # a detection above the floor that Keras does not have: disagrees
    new_above = detections([[0.0, 0.0, 0.4, 0.4], [0.1, 0.6, 0.2, 0.7]], [0.88, 0.3], [1, 2])
    result = exporter.compare_detections(stack(tail_moved, new_above), stack(reference, reference), exact=False)
    assert result["detection_agreement"] == 0.5 and exporter.QUANTIZED_SCORE_FLOOR == 0.25


def test_no_detections_anywhere_agree():
    empty = detections([], [], [])
    result = exporter.compare_detections(empty, empty, exact=True)
    assert result == {
        "detection_agreement": 1.0,
        "count_agreement": 1.0,
        "max_box_diff": 0.0,
        "max_score_diff": 0.0,
        "max_abs_diff": 0.0,
    }


def test_report_names_the_task_and_the_classes(exported):
    _, report = exported
    assert report["task"] == "classification"
    assert report["class_names"] == [str(d) for d in range(10)]
