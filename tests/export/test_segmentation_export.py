"""The semantic-mask kind end to end: a three-layer convolutional segmenter built here exports to SavedModel, TFLite
(float, float16 and int8, builtin ops only) and ONNX, each verified by the kind's class-map comparison on the run's
own data (a VOC-layout folder of shapes scenes); `kapps predict` gives the same masks, as COCO RLE per class at the
image's size, from the run folder, the TFLite file and the ONNX file.

The segmenter's weights are planted so that its class maps follow the image: the first three features of both
hidden layers carry the red, green and blue channels (3x3 averages) through, and the scores are 20 times them, so
a pixel's class is its strongest colour; the other five features are small random weights, so that every layer
has real work for the converters.
"""

import json

import kapps.export
import kapps.predict
from kapps.data.scenes import render_scene
from kapps.export import keras_runner
from kapps.kinds import kind_for

import keras
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from tests.conftest import tflite_ops

SIZE = 32
CLASSES = ["red", "green", "blue"]


def colour_segmenter() -> keras.Model:
    image = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(image)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    scores = keras.layers.Conv2D(3, 1, activation="softmax", name="scores")(x)
    model = keras.Model(image, scores, name="colour_segmenter")
    rng = np.random.default_rng(0)
    for layer, channels in (("conv1", 3), ("conv2", 8)):
        kernel = rng.normal(0.0, 0.05, (3, 3, channels, 8)).astype("float32")
        kernel[:, :, :3, :3] = 0.0
        for c in range(3):
            kernel[:, :, c, c] = 1 / 9
        model.get_layer(layer).set_weights([kernel, np.zeros(8, "float32")])
    final = rng.normal(0.0, 0.1, (1, 1, 8, 3)).astype("float32")
    final[0, 0, :3] = 20 * np.eye(3)
    model.get_layer("scores").set_weights([final, np.zeros(3, "float32")])
    return model


def write_scenes(root, *, count: int) -> None:
    """`count` shapes scenes as a VOC-layout folder: images/*.png and SegmentationClass/*.png palette masks."""
    (root / "images").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        scene = render_scene(rng, image_size=(SIZE, SIZE), max_objects=3)
        Image.fromarray(scene["image"]).save(root / "images" / f"{i:03d}.png")
        Image.fromarray(scene["semantic"].astype("uint8"), mode="P").save(root / "SegmentationClass" / f"{i:03d}.png")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The run folder and its export: `--format all --quantize int8`, then `--format tflite --quantize float16`."""
    root = tmp_path_factory.mktemp("segmentation_export")
    write_scenes(root / "scenes", count=40)
    run = root / "run"
    run.mkdir()
    colour_segmenter().save(run / "model.keras")
    data = {"spec": f"folder:{root / 'scenes'}", "class_names": CLASSES}
    (run / "config.json").write_text(json.dumps({"task": "segmentation", "data": data, "options": {"seed": 0}}))
    out = root / "export"
    kapps.export.export(run, formats="all", quantize="int8", out=out, latency_runs=2, calibration_samples=24)
    report = kapps.export.export(run, formats="tflite", quantize="float16", out=out, latency_runs=2)
    return run, out, report


def test_every_artifact_passes_the_class_map_comparison(exported):
    _, out, report = exported
    assert report["task"] == "segmentation" and report["inputs"]["count"] == 8  # the folder's 20% test split
    entries = {entry["path"]: entry for entry in report["artifacts"]}
    assert sorted(entries) == ["model.onnx", "model.tflite", "model_float16.tflite", "model_int8.tflite", "saved_model"]
    assert all(entry["passed"] for entry in entries.values())
    for name in ("saved_model", "model.tflite", "model.onnx"):
        entry = entries[name]
        assert entry["max_abs_diff"] < 1e-5 and entry["pixel_agreement"] == 1.0, (name, entry)
        assert entry["criterion"] == kind_for("segmentation").criterion(quantized=False)
    assert entries["model_float16.tflite"]["pixel_agreement"] >= 0.999
    int8 = entries["model_int8.tflite"]
    # measured: 99.78% of the pixels (float16: 99.99%), mean IoU 0.9938 against Keras's class maps
    assert int8["pixel_agreement"] >= 0.99 and int8["mean_iou"] >= 0.99 and int8["max_abs_diff"] > 1e-3
    for name in ("model.tflite", "model_int8.tflite", "model_float16.tflite"):
        ops = tflite_ops(out / name)
        assert ops and not any(op.startswith("Flex") for op in ops), (name, ops)


def test_predict_gives_the_same_rle_masks_in_every_runtime(exported, tmp_path):
    run, out, _ = exported
    pixels = np.zeros((40, 48, 3), "uint8")  # not the model's size: masks come back at 40 x 48
    pixels[:, :16, 0] = 220
    pixels[:, 16:30, 1] = 200
    pixels[:, 30:, 2] = 180
    pixels[5:15, 35:45] = (250, 30, 30)
    Image.fromarray(pixels).save(tmp_path / "stripes.png")
    model = keras.saving.load_model(run / "model.keras")
    scores = keras_runner(model)(kapps.predict.prepare(pixels, (SIZE, SIZE))[None])
    (expected,) = (np.argmax(v[0], -1) for v in scores.values())
    expected = kapps.kinds.semantic_masks.resize_class_map(expected, height=40, width=48)
    assert set(np.unique(expected)) == {0, 1, 2}
    results = {}
    for artifact in (run, out / "model.tflite", out / "model.onnx"):
        (entry,) = kapps.predict.predict(artifact, [tmp_path / "stripes.png"], out=tmp_path / artifact.name)
        assert (entry["width"], entry["height"], entry["task"]) == (48, 40, "segmentation")
        assert [m["class"] for m in entry["mask"]] == CLASSES
        decoded = np.zeros((40, 48), "int64")
        for m in entry["mask"]:
            assert m["rle"]["size"] == [40, 48]
            region = mask_utils.decode({"size": m["rle"]["size"], "counts": m["rle"]["counts"].encode("ascii")})
            assert region.sum() == m["pixels"]
            decoded[region > 0] = m["class_id"]
        np.testing.assert_array_equal(decoded, expected)
        assert (tmp_path / artifact.name / "stripes.png").read_bytes().startswith(b"\x89PNG")
        results[artifact.name] = entry["mask"]
    assert results["model.tflite"] == results["run"] == results["model.onnx"]
