"""NonMaxSuppression: the layer against batched_nms, saving, mixed precision, and detections equal in every runtime."""

import re

import kapps.detection
from kapps.export import keras_runner, onnx_runner, saved_model_runner, tflite_runner, writers
from kapps.layers.detection import NonMaxSuppression

import keras
import numpy as np
import onnx
import pytest
import tensorflow as tf

from tests.conftest import tflite_ops

NUM_BOXES, NUM_CLASSES = 12, 3


def scene(batch: int, seed: int = 0) -> np.ndarray:
    """(batch, 12, 4 + 3) rows [x1, y1, x2, y2, p0, p1, p2]: 4 clusters of 3 jittered boxes, random class scores."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.2, 0.8, (batch, 4, 1, 2))
    xy = (centres + rng.normal(0.0, 0.02, (batch, 4, 3, 2))).reshape(batch, NUM_BOXES, 2)
    half = rng.uniform(0.08, 0.15, (batch, NUM_BOXES, 2))
    scores = rng.uniform(0.0, 1.0, (batch, NUM_BOXES, NUM_CLASSES)) ** 2
    return np.concatenate([xy - half, xy + half, scores], axis=-1).astype("float32")


def selector(rows: range) -> keras.initializers.Initializer:
    """A (4 + C, len(rows)) 0/1 kernel: a Dense layer with it copies those input columns exactly."""
    kernel = np.zeros((4 + NUM_CLASSES, len(rows)), "float32")
    kernel[list(rows), range(len(rows))] = 1.0
    return keras.initializers.Constant(kernel)


def detector(**settings) -> keras.Model:
    """A stand-in detector: 'images' of candidate rows -> boxes and class scores (two Dense copies) -> NMS."""
    rows = keras.Input((NUM_BOXES, 4 + NUM_CLASSES), name="image")
    boxes = keras.layers.Dense(4, use_bias=False, kernel_initializer=selector(range(4)), name="boxes")(rows)
    scores = keras.layers.Dense(
        NUM_CLASSES, use_bias=False, kernel_initializer=selector(range(4, 4 + NUM_CLASSES)), name="class_scores"
    )(rows)
    return keras.Model(rows, NonMaxSuppression(**settings, name="nms")(boxes, scores))


def per_class_detector(**settings) -> keras.Model:
    """The stand-in detector with a box for each class, as Fast R-CNN's box head regresses them: rows of
    `[4 * C box coordinates, C scores]` -> boxes (batch, 12, C, 4) and class scores -> NMS."""
    rows = keras.Input((NUM_BOXES, 5 * NUM_CLASSES), name="image")
    kernel = np.eye(5 * NUM_CLASSES, dtype="float32")
    copy = keras.initializers.Constant(kernel[:, : 4 * NUM_CLASSES])
    boxes = keras.layers.Dense(4 * NUM_CLASSES, use_bias=False, kernel_initializer=copy, name="boxes")(rows)
    boxes = keras.layers.Reshape((NUM_BOXES, NUM_CLASSES, 4), name="box_per_class")(boxes)
    copy = keras.initializers.Constant(kernel[:, 4 * NUM_CLASSES :])
    scores = keras.layers.Dense(NUM_CLASSES, use_bias=False, kernel_initializer=copy, name="class_scores")(rows)
    return keras.Model(rows, NonMaxSuppression(**settings, name="nms")(boxes, scores))


def per_class_scene(batch: int, seed: int = 0) -> np.ndarray:
    """`scene` with each box moved on its own for every class: (batch, 12, 4 * 3 + 3)."""
    rows = scene(batch, seed)
    shift = np.random.default_rng(seed + 100).normal(0.0, 0.02, (batch, NUM_BOXES, NUM_CLASSES, 4))
    boxes = rows[..., None, :4] + shift.astype("float32")
    return np.concatenate([boxes.reshape(batch, NUM_BOXES, 4 * NUM_CLASSES), rows[..., 4:]], axis=-1)


def test_the_layer_is_batched_nms():
    rows = scene(2)
    layer = NonMaxSuppression(max_detections=5, iou_threshold=0.4, score_threshold=0.1, per_class=False)
    got = layer(rows[..., :4], rows[..., 4:])
    expected = kapps.detection.batched_nms(
        rows[..., :4], rows[..., 4:], max_detections=5, iou_threshold=0.4, score_threshold=0.1, per_class=False
    )
    assert set(got) == {"boxes", "scores", "classes", "num_detections"}
    for key, value in expected.items():
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(got[key]), value.numpy(), err_msg=key)


def test_functional_output_specs():
    model = detector(max_detections=7)
    assert {k: (tuple(v.shape), v.dtype) for k, v in model.output.items()} == {
        "boxes": ((None, 7, 4), "float32"),
        "scores": ((None, 7), "float32"),
        "classes": ((None, 7), "int32"),
        "num_detections": ((None,), "int32"),
    }


def test_per_class_boxes_output_specs_and_per_class_only():
    model = per_class_detector(max_detections=7)
    assert {k: tuple(v.shape) for k, v in model.output.items()} == {
        "boxes": (None, 7, 4),
        "scores": (None, 7),
        "classes": (None, 7),
        "num_detections": (None,),
    }
    with pytest.raises(ValueError, match=re.escape("only with per_class=True. Received: boxes.shape=(None, 5, 3, 4)")):
        NonMaxSuppression(per_class=False)(keras.Input((5, 3, 4)), keras.Input((5, 3)))


def test_saves_and_loads_safely(tmp_path):
    model = detector(max_detections=6, iou_threshold=0.3, score_threshold=0.2, per_class=False)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    config = loaded.get_layer("nms").get_config()
    assert (config["max_detections"], config["iou_threshold"], config["score_threshold"], config["per_class"]) == (
        6,
        0.3,
        0.2,
        False,
    )
    rows = scene(2, seed=3)
    for key, value in model(rows).items():
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(rows)[key]), value, err_msg=key)


def test_outputs_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = detector(max_detections=4)
        outputs = model(scene(1))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("boxes").compute_dtype == "float16"
    assert model.get_layer("nms").compute_dtype == "float32"
    assert (outputs["boxes"].dtype, outputs["scores"].dtype) == (tf.float32, tf.float32)
    assert (outputs["classes"].dtype, outputs["num_detections"].dtype) == (tf.int32, tf.int32)


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("max_detections", 0, "max_detections must be a positive integer. Received: max_detections=0"),
        ("iou_threshold", 1.5, "iou_threshold must be in [0, 1]. Received: iou_threshold=1.5"),
    ],
)
def test_bad_settings(setting, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        NonMaxSuppression(**{setting: value})


def test_bad_input_shapes():
    with pytest.raises(ValueError, match=r"expects boxes \(batch, N, 4\)"):
        NonMaxSuppression()(keras.Input((5, 3)), keras.Input((5, 2)))


def graph_ops(graph) -> set[str]:
    """Every node type of an ONNX graph, inside Loop/If bodies too."""
    types = set()
    for node in graph.node:
        types.add(node.op_type)
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                types |= graph_ops(attribute.g)
    return types


def test_detections_are_the_same_in_every_runtime(tmp_path):
    model = detector(max_detections=16, iou_threshold=0.4, score_threshold=0.2)
    saved = writers.write_saved_model(model, tmp_path / "saved_model")
    tflite = writers.write_tflite(saved, tmp_path / "model.tflite")  # builtins only: Select TF ops would fail here
    onnx_path = writers.write_onnx(model, tmp_path / "model.onnx", opset=17)

    assert "NON_MAX_SUPPRESSION_V5" in tflite_ops(tflite)
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in tflite_ops(tflite))
    assert "NonMaxSuppression" in graph_ops(onnx.load(str(onnx_path)).graph)

    runners = {
        "saved_model": saved_model_runner(saved),
        "tflite": tflite_runner(tflite),
        "onnx": onnx_runner(onnx_path),
    }
    for batch in (1, 2):  # the batch axis stays free in every artifact
        rows = scene(batch, seed=batch)
        expected = keras_runner(model)(rows)
        candidates = (rows[..., 4:] > 0.2).sum(axis=(1, 2))
        count = expected["num_detections"]
        assert np.all(count > 0) and np.all(count < candidates) and np.all(count < 16)  # NMS, not K, cut them
        assert len(np.unique(expected["classes"][0, : count[0]])) == NUM_CLASSES
        for name, run in runners.items():
            got = run(rows)
            assert set(got) == set(expected), (name, sorted(got))
            np.testing.assert_array_equal(got["num_detections"], expected["num_detections"], err_msg=name)
            np.testing.assert_array_equal(got["classes"], expected["classes"], err_msg=name)
            np.testing.assert_allclose(got["boxes"], expected["boxes"], atol=1e-5, err_msg=name)
            np.testing.assert_allclose(got["scores"], expected["scores"], atol=1e-5, err_msg=name)


def test_per_class_boxes_export_with_the_same_detections(tmp_path):
    """Boxes one per class go through the same loops of NMS ops: TFLite builtins and ONNX NonMaxSuppression, with
    the Keras model's detections, each box its class's own."""
    model = per_class_detector(max_detections=16, iou_threshold=0.4, score_threshold=0.2)
    saved = writers.write_saved_model(model, tmp_path / "saved_model")
    tflite = writers.write_tflite(saved, tmp_path / "model.tflite")  # builtins only: Select TF ops would fail here
    onnx_path = writers.write_onnx(model, tmp_path / "model.onnx", opset=17)
    assert "NON_MAX_SUPPRESSION_V5" in tflite_ops(tflite)
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in tflite_ops(tflite))
    assert "NonMaxSuppression" in graph_ops(onnx.load(str(onnx_path)).graph)
    runners = {"tflite": tflite_runner(tflite), "onnx": onnx_runner(onnx_path)}
    for batch in (1, 2):
        rows = per_class_scene(batch, seed=batch)
        expected = keras_runner(model)(rows)
        count = expected["num_detections"]
        assert np.all(count > 0) and len(np.unique(expected["classes"][0, : count[0]])) == NUM_CLASSES
        own = rows[0, :, : 4 * NUM_CLASSES].reshape(NUM_BOXES, NUM_CLASSES, 4)
        detections = zip(expected["boxes"][0, : count[0]], expected["classes"][0, : count[0]], strict=True)
        assert all((box == own[:, c]).all(axis=1).any() for box, c in detections)
        for name, run in runners.items():
            got = run(rows)
            np.testing.assert_array_equal(got["num_detections"], count, err_msg=name)
            np.testing.assert_array_equal(got["classes"], expected["classes"], err_msg=name)
            np.testing.assert_allclose(got["boxes"], expected["boxes"], atol=1e-5, err_msg=name)
            np.testing.assert_allclose(got["scores"], expected["scores"], atol=1e-5, err_msg=name)


def test_equal_scores_keep_the_same_boxes_in_every_runtime(tmp_path):
    """Twelve boxes of one score in six overlapping pairs, four kept: TensorFlow's and onnxruntime's NMS ops visit
    equal scores by index, TFLite's in an order of its own (it kept other boxes, in another order, before
    `batched_nms` gave the op ranks in place of scores)."""
    model = detector(max_detections=4, iou_threshold=0.5, score_threshold=0.2)
    left = np.linspace(0.0, 0.75, 6)[:, None] + [0.0, 0.0, 0.2, 0.2]
    boxes = np.stack([left, left + [0.01, 0.01, 0.01, 0.01]], axis=1).reshape(NUM_BOXES, 4)  # pairs at IoU 0.82
    rows = np.concatenate([boxes, np.tile([0.5, 0.0, 0.0], (NUM_BOXES, 1))], axis=-1)[None].astype("float32")
    expected = keras_runner(model)(rows)
    assert expected["num_detections"][0] == 4
    np.testing.assert_array_equal(expected["boxes"][0], boxes[[0, 2, 4, 6]].astype("float32"))  # the first of each pair
    saved = writers.write_saved_model(model, tmp_path / "saved_model")
    for run in (
        tflite_runner(writers.write_tflite(saved, tmp_path / "model.tflite")),
        onnx_runner(writers.write_onnx(model, tmp_path / "model.onnx")),
    ):
        got = run(rows)
        np.testing.assert_array_equal(got["boxes"], expected["boxes"])
        np.testing.assert_array_equal(got["classes"], expected["classes"])
