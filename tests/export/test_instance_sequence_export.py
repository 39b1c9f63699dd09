"""The recurrent instance segmenter exports to SavedModel, TFLite (builtin ops only) and ONNX, each verified by the
instance-sequence kind (same count, mask IoU) on the run's own data, a CVPPP-layout folder of rosettes; an artifact
a converter gets wrong is refused and nothing is written; quantisation is refused in one sentence; `kapps predict`
gives the same instances, in step order, from the run folder, the TFLite file and the ONNX file.

The segmenter's heads are planted so that its outputs say something: the mask head's kernel is scaled up (mask
probabilities spread over [0, 1] instead of sitting near 0.5) and the confidence head is set so that the test
images stop at different steps (an untrained head keeps every step above 0.5).
"""

import json

import kapps.export
import kapps.predict
from kapps.data.leaves import render_rosette
from kapps.errors import ExportError
from kapps.export import writers
from kapps.kinds import kind_for
from kapps.models import recurrent_instance_segmenter

import keras
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from tests.conftest import tflite_ops

SIZE = 32
STEPS = 6


def planted_segmenter(images: np.ndarray) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = recurrent_instance_segmenter(
        input_shape=(SIZE, SIZE, 3), max_instances=STEPS, encoder_filters=(8, 16), lstm_filters=8
    )
    mask = model.get_layer("mask_head")
    kernel, bias = mask.get_weights()
    mask.set_weights([kernel * 30, bias])
    head = model.get_layer("confidence_head")
    kernel, _ = head.get_weights()
    head.set_weights([kernel * 100, np.zeros(1, "float32")])
    logits = np.asarray(keras.Model(model.input, model.get_layer("step_confidence_logits").output)(images))
    # The logits grow step by step (measured); negated and offset by their median, they fall below 0 at a step
    # that depends on the image.
    head.set_weights([-kernel * 100, np.median(logits, keepdims=True)[0]])
    return model


def write_rosettes(root, *, count: int, test: int) -> np.ndarray:
    """`count` rosettes in the CVPPP layout (plantNNN_rgb.png, plantNNN_label.png), the first `test` listed in
    splits/test.txt; returns the test images as float32 in [0, 1]."""
    (root / "A1").mkdir(parents=True)
    (root / "splits").mkdir()
    rng = np.random.default_rng(0)
    images = []
    for i in range(count):
        scene = render_rosette(rng, image_size=(SIZE, SIZE), leaves=(1, 5))
        Image.fromarray(scene["image"]).save(root / "A1" / f"plant{i:03d}_rgb.png")
        Image.fromarray(scene["labels"].astype("uint8"), mode="P").save(root / "A1" / f"plant{i:03d}_label.png")
        images.append(scene["image"])
    (root / "splits" / "test.txt").write_text("".join(f"A1/plant{i:03d}\n" for i in range(test)))
    return np.stack(images[:test]).astype("float32") / 255


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("instance_sequence_export")
    images = write_rosettes(root / "plants", count=30, test=20)
    run = root / "run"
    run.mkdir()
    planted_segmenter(images).save(run / "model.keras")
    data = {"spec": f"folder:{root / 'plants'}", "class_names": ["background", "leaf"]}
    (run / "config.json").write_text(json.dumps({"task": "instance_sequence", "data": data, "options": {"seed": 0}}))
    out = root / "export"
    report = kapps.export.export(run, formats="all", out=out, latency_runs=2)
    return run, out, report


def test_every_artifact_passes_with_the_same_counts(exported):
    _, out, report = exported
    assert report["task"] == "instance_sequence" and report["inputs"]["count"] == 20
    entries = {entry["path"]: entry for entry in report["artifacts"]}
    assert sorted(entries) == ["model.onnx", "model.tflite", "saved_model"]
    for name, entry in entries.items():
        assert entry["passed"], (name, entry)
        assert entry["count_agreement"] == 1.0 and entry["decisive_images"] == 20, (name, entry)
        assert entry["mean_mask_iou"] >= 0.99 and entry["max_abs_diff"] < 1e-4, (name, entry)
        assert entry["mask_pairs"] == 60, (name, entry)  # the kept steps compared: counts 2 to 5, 60 in all
        assert entry["criterion"] == kind_for("instance_sequence").criterion(quantized=False)
    ops = tflite_ops(out / "model.tflite")
    assert {"CONV_2D", "LOGISTIC", "TANH", "CUMSUM"} <= ops and not any(op.startswith("Flex") for op in ops), ops
    assert not {"WHILE", "UNIDIRECTIONAL_SEQUENCE_LSTM"} & ops, ops  # unrolled: no loop


def test_the_planted_outputs_vary(exported):
    run, _, _ = exported
    model = keras.saving.load_model(run / "model.keras")
    images = run_test_images(run)
    outputs = model(images)
    counts = np.asarray(outputs["count"])
    masks = np.asarray(outputs["masks"])
    assert len(set(counts.tolist())) >= 3, counts  # images stop at different steps
    kept = masks[masks > 0]
    assert np.mean(kept >= 0.5) > 0.05 and np.mean(kept < 0.5) > 0.05  # masks are not all in or all out


def run_test_images(run):
    """The run's test images, read back from its folder source."""
    data = kind_for("instance_sequence").load_data(
        json.loads((run / "config.json").read_text())["data"]["spec"], image_size=(SIZE, SIZE), seed=0, data_dir=None
    )
    return np.stack([image for image, _ in data.test.as_numpy_iterator()])


def test_an_artifact_the_converter_gets_wrong_is_refused_and_nothing_is_written(exported, monkeypatch, tmp_path):
    run, _, _ = exported
    real = writers.write_onnx

    def wrong_onnx(model, path, **kwargs):  # a converter that drops the recurrent kernel
        twin = keras.models.clone_model(model)
        twin.set_weights(model.get_weights())
        cell = twin.get_layer("conv_lstm")
        kernel, recurrent, bias = cell.get_weights()
        cell.set_weights([kernel, np.zeros_like(recurrent), bias])
        return real(twin, path, **kwargs)

    monkeypatch.setattr(writers, "write_onnx", wrong_onnx)
    out = tmp_path / "export"
    with pytest.raises(ExportError, match=r"^The onnx \(none\) artifact disagrees with Keras \(.*Keras's count on"):
        kapps.export.export(run, formats="all", out=out, latency_runs=1)
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("quantize", ["dynamic", "float16", "int8"])
def test_quantisation_is_refused_in_one_sentence(exported, quantize, tmp_path):
    run, _, _ = exported
    with pytest.raises(ExportError) as caught:
        kapps.export.export(run, formats="tflite", quantize=quantize, out=tmp_path / "q", latency_runs=1)
    message = str(caught.value)
    assert message.startswith(f"--quantize {quantize} is not offered for a recurrent instance segmenter")
    assert message.count(".") == 1 and message.endswith("(no --quantize).")
    assert not (tmp_path / "q").exists()


def test_predict_gives_the_same_instances_in_every_runtime(exported, tmp_path):
    run, out, _ = exported
    rng = np.random.default_rng(5)
    scene = render_rosette(rng, image_size=(40, 48), leaves=(3, 5))  # not the model's size: masks come back 40 x 48
    Image.fromarray(scene["image"]).save(tmp_path / "plant.png")
    results = []
    for artifact in (run, out / "model.tflite", out / "model.onnx"):
        (entry,) = kapps.predict.predict(artifact, [tmp_path / "plant.png"], out=tmp_path / artifact.name)
        assert (entry["width"], entry["height"], entry["task"]) == (48, 40, "instance_sequence")
        assert [i["step"] for i in entry["instances"]] == list(range(1, entry["count"] + 1))
        for instance in entry["instances"]:
            assert instance["mask"]["size"] == [40, 48] and instance["confidence"] >= 0.5
            decoded = mask_utils.decode({"size": [40, 48], "counts": instance["mask"]["counts"].encode("ascii")})
            assert decoded.sum() == instance["pixels"]
        assert (tmp_path / artifact.name / "plant.png").is_file()
        results.append(entry)
    assert results[0]["count"] >= 1
    for entry in results[1:]:
        assert entry["count"] == results[0]["count"]
        for mine, theirs in zip(entry["instances"], results[0]["instances"], strict=True):
            assert abs(mine["pixels"] - theirs["pixels"]) <= 2 and abs(mine["confidence"] - theirs["confidence"]) < 1e-4
