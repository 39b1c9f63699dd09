"""A run's recorded input convention travels with it: the export verifies in it, the report records it, and one
JPEG gives the same answer from `.keras`, SavedModel, TFLite and ONNX, the answer of the convention applied by hand."""

import json

import kapps.export
import kapps.models
import kapps.predict

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

CLASSES = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def caffe_run(tmp_path_factory):
    """A run folder of an RGB LeNet-5 trained (here: given fixed random weights) on caffe-style inputs, its export
    and a JPEG of scikit-image's astronaut."""
    from skimage import data

    root = tmp_path_factory.mktemp("caffe")
    run = root / "run"
    run.mkdir()
    keras.utils.set_random_seed(7)
    model = kapps.models.build("lenet5", input_shape=(32, 32, 3), num_classes=4, activation="relu")
    model.save(run / "model.keras")
    config = {"task": "classification", "preprocessing": "caffe", "data": {"class_names": CLASSES}}
    (run / "config.json").write_text(json.dumps(config))
    photo = root / "astronaut.jpg"
    Image.fromarray(data.astronaut()).resize((96, 80)).save(photo, quality=95)
    report = kapps.export.export(run, formats="all", out=root / "export", latency_runs=2)
    return run, root / "export", photo, report, model


def test_the_export_verifies_in_the_recorded_convention(caffe_run):
    _, export, _, report, _ = caffe_run
    assert report["preprocessing"] == "caffe"
    assert json.loads((export / "export_report.json").read_text())["preprocessing"] == "caffe"
    assert all(a["passed"] for a in report["artifacts"]) and len(report["artifacts"]) == 3


def test_one_jpeg_gives_one_answer_in_every_runtime(caffe_run, tmp_path):
    run, export, photo, _, model = caffe_run
    # The convention by hand: decode, bilinear resize of [0, 1] pixels, x 255, RGB -> BGR, minus the BGR mean.
    pixels = np.asarray(Image.open(photo).convert("RGB"), "float32") / 255.0
    resized = tf.image.resize(pixels, (32, 32)).numpy()
    caffe = resized[..., ::-1] * 255.0 - np.array([103.939, 116.779, 123.68], "float32")
    expected = np.asarray(model(caffe[None]))[0]
    unconverted = np.asarray(model(resized[None]))[0]
    assert np.abs(expected - unconverted).max() > 1e-3  # the convention changes the answer
    answers = {}
    for artifact in (run, export / "saved_model", export / "model.tflite", export / "model.onnx"):
        (entry,) = kapps.predict.predict(artifact, [photo], out=tmp_path / artifact.name, top_k=4)
        answers[artifact.name] = {t["class"]: t["score"] for t in entry["top5"]}
    for name, scores in answers.items():
        np.testing.assert_allclose([scores[c] for c in CLASSES], expected, atol=1e-4, err_msg=name)
