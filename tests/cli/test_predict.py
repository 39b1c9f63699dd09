"""`kapps predict`: one JSON form from `.keras`, SavedModel, TFLite and ONNX, pictures drawn, one sentence a mistake."""

import json

import kapps.export
import kapps.predict
from kapps.cli import main

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.conftest import run_cli

FORMATS = ("saved_model", "model.tflite", "model.onnx")
SHAPES = ["circle", "square", "triangle"]


def digit_files(folder, count=3):
    """sklearn digits drawn as the digits source draws them (8x8 upscaled into the middle 3/4 of 32x32, ink white),
    the first as a grey PNG, the next as RGB PNG and BMP (converted to grey by predict), at 64x64 pixels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    paths, labels = [], []
    for i in range(count):
        inner = np.kron(digits.images[i] / 16.0, np.ones((6, 6)))  # 48x48 of 64x64: the same 3/4 margin
        pixels = (np.pad(inner, 8) * 255).round().astype("uint8")
        image = Image.fromarray(pixels, "L")
        if i == 0:
            path = folder / f"digit{i}.png"
        else:
            image = image.convert("RGB")
            path = folder / f"digit{i}.{'png' if i == 1 else 'bmp'}"
        image.save(path)
        paths.append(path)
        labels.append(int(digits.target[i]))
    return paths, labels


@pytest.fixture(scope="module")
def lenet_artifacts(lenet_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("predict-export") / "lenet5"
    result = run_cli("export", str(lenet_run.path), "--format", "all", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_classifier_predictions_agree_across_runtimes(lenet_run, lenet_artifacts, tmp_path):
    paths, _ = digit_files(tmp_path)
    artifacts = {"keras": lenet_run.path / "model.keras", **{f: lenet_artifacts / f for f in FORMATS}}
    results = {}
    for name, artifact in artifacts.items():
        out = tmp_path / f"out-{name}"
        result = run_cli("predict", str(artifact), *map(str, paths), "--out", str(out), "--top-k", "5")
        assert result.returncode == 0, result.stderr
        assert sorted(p.name for p in out.iterdir()) == sorted(
            f"digit{i}.{ext}" for i in range(3) for ext in ("json", "png")
        )
        for i in range(3):
            assert (out / f"digit{i}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        results[name] = [json.loads((out / f"digit{i}.json").read_text()) for i in range(3)]

    # The reference: the Keras model itself on the images as predict prepares them (grey, 32x32, [0, 1]).
    for i, path in enumerate(paths):
        pixels = kapps.predict.read_image(path, channels=1)
        probabilities = lenet_run.model(kapps.predict.prepare(pixels, (32, 32))[None]).numpy()[0]
        top = np.argsort(-probabilities)[:5]
        keras_entry = results["keras"][i]
        assert keras_entry["task"] == "classification"
        assert (keras_entry["width"], keras_entry["height"]) == (64, 64)
        assert keras_entry["image"] == str(path)
        assert keras_entry["artifact"] == str(artifacts["keras"])
        assert [t["class_id"] for t in keras_entry["top5"]] == top.tolist()
        assert [t["class"] for t in keras_entry["top5"]] == [str(c) for c in top]  # digits' names are "0".."9"
        np.testing.assert_allclose([t["score"] for t in keras_entry["top5"]], probabilities[top], atol=1e-6)
        for name in FORMATS:
            entry = results[name][i]
            assert entry["artifact"] == str(artifacts[name])
            assert {k: v for k, v in entry.items() if k not in ("artifact", "top5")} == {
                k: v for k, v in keras_entry.items() if k not in ("artifact", "top5")
            }
            assert [t["class"] for t in entry["top5"]] == [t["class"] for t in keras_entry["top5"]], name
            np.testing.assert_allclose(
                [t["score"] for t in entry["top5"]], [t["score"] for t in keras_entry["top5"]], atol=1e-4
            )


def test_top_k_is_capped_at_the_number_of_classes(lenet_run, tmp_path):
    paths, _ = digit_files(tmp_path, count=1)
    (entry,) = kapps.predict.predict(lenet_run.path, paths, out=tmp_path / "out", top_k=20)
    assert len(entry["top5"]) == 10
    assert sum(t["score"] for t in entry["top5"]) == pytest.approx(1.0, abs=1e-5)  # the whole softmax


def test_export_report_carries_task_and_class_names(lenet_artifacts):
    report = json.loads((lenet_artifacts / "export_report.json").read_text())
    assert report["task"] == "classification"
    assert report["class_names"] == [str(d) for d in range(10)]


# A small honest detector: boxes (B, 12, 4) as centre +- half size and class scores (B, 12, 3) from a conv feature,
# decoded by the kapps NMS layer into the inference outputs every detector has.
def toy_detector(seed=0):
    from kapps.layers.detection import NonMaxSuppression

    keras.utils.set_random_seed(seed)
    image = keras.Input((64, 64, 3), name="image")
    x = keras.layers.Conv2D(8, 3, strides=4, activation="relu")(image)
    x = keras.layers.Flatten()(x)
    centres = keras.layers.Reshape((12, 2))(keras.layers.Dense(24, activation="sigmoid")(x))
    sizes = keras.layers.Reshape((12, 2))(keras.layers.Dense(24, activation="sigmoid")(x))
    half = keras.layers.Rescaling(0.25)(sizes)  # at most half the image wide or tall
    boxes = keras.layers.Concatenate()([keras.layers.Subtract()([centres, half]), keras.layers.Add()([centres, half])])
    scores = keras.layers.Reshape((12, 3))(keras.layers.Dense(36, activation="sigmoid")(x))
    outputs = NonMaxSuppression(max_detections=8, iou_threshold=0.5, score_threshold=0.3, per_class=True)(boxes, scores)
    return keras.Model(image, outputs, name="toy_detector")


@pytest.fixture(scope="module")
def detector_artifacts(tmp_path_factory):
    run = tmp_path_factory.mktemp("detector") / "run"
    run.mkdir()
    toy_detector().save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({"task": "detection", "data": {"class_names": SHAPES}}))
    report = kapps.export.export(run / "model.keras", formats="all", out=run.parent / "export", latency_runs=3)
    return run, run.parent / "export", report


def test_detector_export_compares_detections(detector_artifacts):
    _, out, report = detector_artifacts
    assert report["task"] == "detection" and report["class_names"] == SHAPES
    for entry in report["artifacts"]:
        assert entry["passed"] and entry["detection_agreement"] == 1.0 and entry["count_agreement"] == 1.0, entry
        assert entry["max_box_diff"] <= 1e-3 and entry["max_score_diff"] <= 1e-3
        assert entry["top1_agreement"] is None


def test_detections_in_pixels_of_the_original_image_in_every_runtime(detector_artifacts, tmp_path):
    run, out, _ = detector_artifacts
    rng = np.random.default_rng(3)
    paths = []
    for i in range(2):
        path = tmp_path / f"scene{i}.png"
        Image.fromarray(rng.integers(0, 256, (100, 200, 3), dtype="uint8")).save(path)  # 200 wide, 100 high
        paths.append(path)
    model = keras.saving.load_model(run / "model.keras")
    artifacts = {"keras": run / "model.keras", **{f: out / f for f in FORMATS}}
    results = {}
    for name, artifact in artifacts.items():
        results[name] = kapps.predict.predict(artifact, paths, out=tmp_path / name, score_threshold=0.4)
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == sorted(
            f"scene{i}.{e}" for i in range(2) for e in ("json", "png")
        )
    for i, path in enumerate(paths):
        pixels = kapps.predict.read_image(path, channels=3)
        raw = {k: np.asarray(v) for k, v in model(kapps.predict.prepare(pixels, (64, 64))[None]).items()}
        n = int(raw["num_detections"][0])
        keep = raw["scores"][0, :n] >= 0.4
        expected_boxes = (raw["boxes"][0, :n][keep] * [200, 100, 200, 100]).clip(0, [200, 100, 200, 100])
        entry = results["keras"][i]
        assert (entry["width"], entry["height"], entry["task"]) == (200, 100, "detection")
        assert len(entry["detections"]) == int(keep.sum()) > 0
        np.testing.assert_allclose([d["box"] for d in entry["detections"]], expected_boxes, atol=0.006)
        assert [d["class"] for d in entry["detections"]] == [SHAPES[c] for c in raw["classes"][0, :n][keep]]
        scores = [d["score"] for d in entry["detections"]]
        assert scores == sorted(scores, reverse=True) and min(scores) >= 0.4
        for name in FORMATS:
            got = results[name][i]["detections"]
            assert [d["class"] for d in got] == [d["class"] for d in entry["detections"]], name
            np.testing.assert_allclose([d["box"] for d in got], [d["box"] for d in entry["detections"]], atol=0.2)
            np.testing.assert_allclose([d["score"] for d in got], scores, atol=1e-4)


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def sentence(result):
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and lines[0].endswith("."), result.stderr
    return lines[0]


def test_error_cases_are_one_sentence_and_write_nothing(lenet_run, lenet_artifacts, tmp_path):
    (image,), _ = digit_files(tmp_path, count=1)
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    fake_png = tmp_path / "fake.png"
    fake_png.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    unknown = tmp_path / "model.pt"
    unknown.write_bytes(b"weights")
    broken = tmp_path / "model.tflite"
    broken.write_bytes(b"not a flatbuffer")
    # A regressor: one (B, 1) output is not a classifier's (B, C > 1); its task is known only from a run folder.
    inputs = keras.Input((32, 32, 1))
    regressor = keras.Model(
        inputs, keras.layers.Dense(1, name="value")(keras.layers.Flatten()(inputs)), name="regressor"
    )
    regressor.save(tmp_path / "regressor.keras")
    for folder, task in (("regressor_run", "classification"), ("segmenter_run", "segmentation")):
        (tmp_path / folder).mkdir()
        regressor.save(tmp_path / folder / "model.keras")
        (tmp_path / folder / "config.json").write_text(json.dumps({"task": task}))
    (tmp_path / "lone.tflite").write_bytes((lenet_artifacts / "model.tflite").read_bytes())  # no report beside it
    model = lenet_run.path / "model.keras"
    out = tmp_path / "out"
    cases = [
        ((tmp_path / "missing.keras", image), "does not exist"),
        ((unknown, image), "is not an artifact kapps can run"),
        ((broken, image), "could not be loaded as a TFLite model"),
        ((model, tmp_path / "missing.png"), "does not exist"),
        ((model, text), "is not an image file"),
        ((model, image, fake_png), "is not an image file"),
        ((tmp_path / "regressor.keras", image), "its model name 'regressor' is not a registered kapps model"),
        ((tmp_path / "lone.tflite", image), "there is no export_report.json beside it that names it"),
        ((tmp_path / "regressor_run", image), "is not a classifier: its outputs are value (1, 1)"),
        ((tmp_path / "segmenter_run", image), "The task 'segmentation' has no output kind in kapps yet"),
    ]
    for args, message in cases:
        line = sentence(invoke("predict", *args, "--out", out))
        assert message in line, line
        assert not out.exists(), args
    blocker = tmp_path / "file"
    blocker.write_text("")
    for target in (blocker, blocker / "sub", "/proc/kapps-predict-test"):
        line = sentence(invoke("predict", model, image, "--out", target))
        assert "cannot be written" in line or "is a file, not a folder" in line, line
    assert blocker.read_text() == ""


def test_the_process_prints_one_sentence(tmp_path):
    image = tmp_path / "x.png"
    image.write_text("plain text")
    result = run_cli("predict", str(tmp_path / "none.onnx"), str(image), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: The artifact {str(tmp_path / 'none.onnx')!r} does not exist."
    assert not (tmp_path / "out").exists()
