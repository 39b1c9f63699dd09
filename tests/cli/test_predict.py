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

from tests.conftest import error_line, run_kapps

FORMATS = ("saved_model", "model.tflite", "model.onnx")
SHAPES = ["circle", "square", "triangle"]
# (height, width) of the digit files, in turn: none is a whole multiple of 32, so the resize filter shows, and two
# are not square, so the stretch does.
SIZES = [(48, 48), (40, 56), (56, 40)]
INK = np.array([255, 230, 120]) / 255  # the ink colour of the RGB files: its grey is not the mean of R, G and B


def bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """`image` (H, W) resized to (height, width) by bilinear interpolation between pixel centres, edges clamped and
    no antialiasing: what `tf.image.resize` does, which builds the digits source and the folder sources."""

    def axis(size_in, size_out):
        source = np.clip((np.arange(size_out) + 0.5) * size_in / size_out - 0.5, 0, size_in - 1)
        low = np.floor(source).astype(int)
        return low, np.minimum(low + 1, size_in - 1), source - low

    top, bottom, down = axis(image.shape[0], height)
    left, right, across = axis(image.shape[1], width)
    rows = image[top] * (1 - down)[:, None] + image[bottom] * down[:, None]
    return rows[:, left] * (1 - across) + rows[:, right] * across


def digit_files(folder, count=24):
    """The first `count` digits of the digits source's test split (which lenet_run never trained on), drawn as the
    source draws them (8x8 stretched bilinearly into the middle 3/4 of the frame, white ink on black) at the SIZES in
    turn: grey PNGs, and every other file RGB with coloured ink as PNG or BMP (converted to grey by predict)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    folder.mkdir(exist_ok=True)
    digits = load_digits()
    _, test = train_test_split(np.arange(len(digits.target)), test_size=0.2, stratify=digits.target, random_state=0)
    paths, labels = [], []
    for n, i in enumerate(test[:count]):
        height, width = SIZES[n % len(SIZES)]
        inner = bilinear(digits.images[i] / 16.0, height * 3 // 4, width * 3 // 4)
        top, left = (height - inner.shape[0]) // 2, (width - inner.shape[1]) // 2
        frame = np.zeros((height, width))
        frame[top : top + inner.shape[0], left : left + inner.shape[1]] = inner
        if n % 2 == 0:
            image, path = Image.fromarray((frame * 255).round().astype("uint8"), "L"), folder / f"digit{n}.png"
        else:
            image = Image.fromarray((frame[..., None] * INK * 255).round().astype("uint8"), "RGB")
            path = folder / f"digit{n}.{'bmp' if n % 4 == 3 else 'png'}"
        image.save(path)
        paths.append(path)
        labels.append(int(digits.target[i]))
    return paths, labels


def model_input(path) -> np.ndarray:
    """An image file as LeNet-5 takes it, prepared here without kapps: PIL's grey (ITU-R 601-2 luma), scaled to
    [0, 1], resized bilinearly to 32x32."""
    grey = np.asarray(Image.open(path).convert("L"), "float64") / 255.0
    return bilinear(grey, 32, 32)[..., None].astype("float32")


def test_classifier_predictions_are_right_and_agree_across_runtimes(lenet_run, lenet_export, tmp_path):
    paths, labels = digit_files(tmp_path / "images")
    artifacts = {"keras": lenet_run.path / "model.keras", **{f: lenet_export.path / f for f in FORMATS}}
    results = {}
    for name, artifact in artifacts.items():
        # Every image from Keras; from the exports, the first six: every kind of file, every size (drawing the
        # pictures is most of predict's time).
        images = paths if name == "keras" else paths[:6]
        out = tmp_path / f"out-{name}"
        result = CliRunner().invoke(
            main, ["predict", str(artifact), *map(str, images), "--out", str(out), "--top-k", "10"]
        )
        assert result.exit_code == 0, result.output
        assert sorted(p.name for p in out.iterdir()) == sorted(f"{p.stem}.{e}" for p in images for e in ("json", "png"))
        assert all((out / f"{p.stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in images)
        results[name] = [json.loads((out / f"{p.stem}.json").read_text()) for p in images]

    # The truth: the digits' own labels. This LeNet-5 (94% validation accuracy) gets 23 of these 24 right.
    top1 = [int(entry["top5"][0]["class"]) for entry in results["keras"]]
    assert sum(t == label for t, label in zip(top1, labels, strict=True)) >= 22, (top1, labels)
    # The scores: the Keras model on the images as prepared above, without kapps.predict.
    probabilities = lenet_run.model(np.stack([model_input(p) for p in paths])).numpy()
    for path, keras_entry, expected in zip(paths, results["keras"], probabilities, strict=True):
        with Image.open(path) as image:
            assert (keras_entry["width"], keras_entry["height"]) == image.size
        assert keras_entry["task"] == "classification"
        assert keras_entry["image"] == str(path) and keras_entry["artifact"] == str(artifacts["keras"])
        scores = {int(t["class"]): t["score"] for t in keras_entry["top5"]}  # digits' names are "0".."9"
        assert [t["class_id"] for t in keras_entry["top5"]] == list(scores)
        assert list(scores.values()) == sorted(scores.values(), reverse=True)
        np.testing.assert_allclose([scores[c] for c in range(10)], expected, atol=1e-5, err_msg=str(path))
    for name in FORMATS:
        for keras_entry, entry in zip(results["keras"][:6], results[name], strict=True):
            assert entry["artifact"] == str(artifacts[name])
            assert {k: v for k, v in entry.items() if k not in ("artifact", "top5")} == {
                k: v for k, v in keras_entry.items() if k not in ("artifact", "top5")
            }
            assert entry["top5"][0]["class"] == keras_entry["top5"][0]["class"], name
            got = {t["class"]: t["score"] for t in entry["top5"]}
            np.testing.assert_allclose(
                [got[t["class"]] for t in keras_entry["top5"]], [t["score"] for t in keras_entry["top5"]], atol=1e-4
            )


def test_top_k_is_capped_at_the_number_of_classes(lenet_run, tmp_path):
    paths, _ = digit_files(tmp_path, count=1)
    (entry,) = kapps.predict.predict(lenet_run.path, paths, out=tmp_path / "out", top_k=20)
    assert len(entry["top5"]) == 10
    assert sum(t["score"] for t in entry["top5"]) == pytest.approx(1.0, abs=1e-5)  # the whole softmax


def test_export_report_carries_task_and_class_names(lenet_export):
    report = json.loads((lenet_export.path / "export_report.json").read_text())
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


def test_error_cases_are_one_sentence_and_write_nothing(lenet_run, lenet_export, tmp_path, empty_cwd):
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
    for folder, task in (
        ("regressor_run", "classification"),
        ("segmenter_run", "segmentation"),
        ("recurrent_run", "recurrent"),
    ):
        (tmp_path / folder).mkdir()
        regressor.save(tmp_path / folder / "model.keras")
        (tmp_path / folder / "config.json").write_text(json.dumps({"task": task}))
    (tmp_path / "lone.tflite").write_bytes((lenet_export.path / "model.tflite").read_bytes())  # no report beside it
    model = lenet_run.path / "model.keras"
    before = sorted(tmp_path.rglob("*"))
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
        ((tmp_path / "segmenter_run", image), "is not a semantic segmenter: its outputs are value (1, 1)"),
        ((tmp_path / "recurrent_run", image), "The task 'recurrent' has no output kind in kapps yet"),
    ]
    for args, message in cases:
        line = error_line(invoke("predict", *args, "--out", tmp_path / "out"))
        assert message in line, line
        line = error_line(invoke("predict", *args))  # into the default folder, predictions/ in the working directory
        assert message in line, line
    assert sorted(tmp_path.rglob("*")) == before and list(empty_cwd.iterdir()) == []
    blocker = tmp_path / "file"
    blocker.write_text("")
    for target in (blocker, blocker / "sub", "/proc/kapps-predict-test"):
        line = error_line(invoke("predict", model, image, "--out", target))
        assert "cannot be written" in line or "is a file, not a folder" in line, line
    assert blocker.read_text() == "" and list(empty_cwd.iterdir()) == []


def test_the_kapps_command_prints_one_sentence_without_tensorflow_chatter(tmp_path):
    """The `kapps` console script as a real process (tests/cli/test_cli.py does `python -m kapps.cli`): exit 1, the
    sentence alone on stderr, no default predictions/ folder in the working directory."""
    image = tmp_path / "x.png"
    image.write_text("plain text")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    result = run_kapps("predict", str(tmp_path / "none.onnx"), str(image), cwd=cwd, script=True)
    assert result.returncode == 1
    assert result.stderr == f"error: The artifact {str(tmp_path / 'none.onnx')!r} does not exist.\n"
    assert result.stdout == "" and list(cwd.iterdir()) == []
