"""Faster R-CNN exports, with and without FPN: SavedModel, TFLite (builtins only) and ONNX give Keras's detections on
scenes, on a blank image and on batches of 1 and 3 in every runtime; dynamic-range and float16 files meet the
detection kind's quantised criterion; int8 is refused in one sentence; `kapps predict` draws the exported detections.

The FPN detector is trained here on scenes written as a COCO folder, so that the exporter verifies it on the run's
own test scenes, where its detections follow the objects (a random detector's detections hinge on the ranking of
near-equal proposals, which no quantisation keeps). The detector without FPN has planted weights whose detections
depend on the image; it checks the float artifacts.
"""

import json

import kapps.export
import kapps.models
import kapps.predict
from kapps.cli import main
from kapps.data.detection import load_detection
from kapps.export import onnx_runner, saved_model_runner, tflite_runner, writers
from kapps.kinds.detection import Detection, compare_detections, score_threshold
from kapps.models.detection.two_stage import FasterRCNNTrainer

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter
from click.testing import CliRunner
from PIL import Image

from tests.conftest import error_line, run_cli, tflite_ops
from tests.detection.test_suppression import iou_matrix
from tests.models.test_faster_rcnn import SIZE, small_detector

CLASSES = ("square", "disc")
RUNNERS = {"saved_model": saved_model_runner, "model.tflite": tflite_runner, "model.onnx": onnx_runner}


def write_scenes(root, *, count: int, seed: int) -> None:
    """`count` 64x64 scenes as a COCO folder (`annotations.json`, `images/`): one to three red squares and green discs
    of 14 to 25 pixels, one a quadrant, on dark noise."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    coco = {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)]}
    for i in range(count):
        image = rng.uniform(0.0, 0.2, (SIZE, SIZE, 3))
        for quadrant in rng.permutation(4)[: rng.integers(1, 4)]:
            side = int(rng.integers(14, 26))
            x = int(quadrant % 2 * 32 + rng.integers(0, 33 - side))
            y = int(quadrant // 2 * 32 + rng.integers(0, 33 - side))
            cls = int(rng.integers(0, 2))
            if cls == 0:
                image[y : y + side, x : x + side] = (0.9, 0.2, 0.2)
            else:
                r = side / 2
                image[(yy - y - r + 0.5) ** 2 + (xx - x - r + 0.5) ** 2 <= r * r] = (0.2, 0.9, 0.2)
            box = {"bbox": [x, y, side, side], "area": side * side, "iscrowd": 0}
            coco["annotations"].append(
                {"id": len(coco["annotations"]) + 1, "image_id": i + 1, "category_id": cls + 1, **box}
            )
        Image.fromarray((image * 255).round().astype("uint8")).save(root / "images" / f"{i:03d}.png")
        coco["images"].append({"id": i + 1, "file_name": f"{i:03d}.png", "width": SIZE, "height": SIZE})
    (root / "annotations.json").write_text(json.dumps(coco))


@pytest.fixture(scope="module")
def scene_run(tmp_path_factory):
    """A run folder of the small FPN detector trained for 150 steps on 112 scenes (test mAP@0.5 0.42: detections on
    the objects, a few more beside them), with the COCO folder as its data: 32 test scenes."""
    root = tmp_path_factory.mktemp("two_stage")
    write_scenes(root / "scenes", count=160, seed=0)
    data = load_detection(f"folder:{root / 'scenes'}", image_size=(SIZE, SIZE), seed=0, max_boxes=4)
    keras.utils.set_random_seed(0)
    detector = kapps.models.set_bn_momentum(small_detector(num_classes=2, score_threshold=0.05), 0.9)
    trainer = FasterRCNNTrainer(detector, rpn_samples=64, roi_samples=32, train_proposals=60, train_pre_nms_top_n=200)
    trainer.compile(optimizer=keras.optimizers.Adam(6e-3))
    trainer.fit(data.train.cache().shuffle(256, seed=0).batch(8).repeat(), steps_per_epoch=150, epochs=1, verbose=0)
    run = root / "run"
    run.mkdir()
    detector.save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({"task": "detection", "data": data.describe(), "options": {"seed": 0}}))
    test = [(image, targets) for image, targets in data.test.as_numpy_iterator()]
    return run, np.stack([image for image, _ in test]), [targets for _, targets in test]


@pytest.fixture(scope="module")
def fpn_export(scene_run):
    run, _, _ = scene_run
    out = run.parent / "export"
    report = kapps.export.export(run, formats="all", quantize="dynamic", out=out, latency_runs=2)
    return out, report


def test_every_artifact_gives_the_detections_of_keras(fpn_export, scene_run):
    """Float artifacts: every one of the 32 test scenes by the exact criterion. Dynamic range: 31 of 32 by the
    quantised criterion (measured). The check is not blind: the same conversions of a copy with one batch norm's
    moving mean and variance swapped agree with this detector on 0 of 32 scenes (the backbone's last) or 2 (its
    first) with dynamic range, on none with float16 weights."""
    out, report = fpn_export
    _, images, targets = scene_run
    assert report["inputs"]["count"] == len(images) == 32
    entries = {entry["path"]: entry for entry in report["artifacts"]}
    for path in RUNNERS:
        entry = entries[path]
        assert entry["passed"] and entry["detection_agreement"] == 1.0 and entry["count_agreement"] == 1.0, entry
        assert entry["max_box_diff"] <= 1e-5 and entry["max_score_diff"] <= 1e-5, entry
    dynamic = entries["model_dynamic.tflite"]
    assert dynamic["passed"] and dynamic["detection_agreement"] >= 0.9, dynamic
    # dynamic range stores the weights of convolutions and dense layers in int8, and nothing of the proposals (it
    # stored their table of anchors, when there was one, and moved them by up to 0.006 of the image)
    int8 = [
        t["name"] for t in Interpreter(str(out / "model_dynamic.tflite")).get_tensor_details() if t["dtype"] == np.int8
    ]
    assert int8 and not [name for name in int8 if "proposals" in name], int8
    for path in ("model.tflite", "model_dynamic.tflite"):
        ops = tflite_ops(out / path)
        assert "NON_MAX_SUPPRESSION_V5" in ops and "WHILE" in ops
        assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), (path, ops)
    # the detections follow the objects: on most scenes each object has a detection of its class at IoU >= 0.5
    found = kapps.export.keras_runner(keras.saving.load_model(out.parent / "run" / "model.keras"))(images)
    hits = []
    for i, target in enumerate(targets):
        n = found["num_detections"][i]
        for box, cls in zip(target["boxes"], target["classes"], strict=True):
            if cls >= 0:
                same = found["boxes"][i, :n][found["classes"][i, :n] == cls]
                hits.append(iou_matrix(np.concatenate([box[None], same]))[0, 1:].max(initial=0.0) >= 0.5)
    assert np.mean(hits) >= 0.8, np.mean(hits)


def test_blank_images_and_batches_of_one_and_three_in_every_runtime(fpn_export, scene_run):
    out, _ = fpn_export
    run, images, _ = scene_run
    model = keras.saving.load_model(run / "model.keras")
    blank = np.zeros((1, SIZE, SIZE, 3), "float32")
    batches = {"blank": blank, "one scene": images[:1], "three with a blank": np.concatenate([images[1:3], blank])}
    runners = {path: make(out / path) for path, make in RUNNERS.items()}
    threshold = score_threshold(model)
    for name, batch in batches.items():
        expected = kapps.export.keras_runner(model)(batch)
        for path, run_artifact in runners.items():
            got = run_artifact(batch)
            assert got["boxes"].shape == (len(batch), 100, 4), (name, path)
            comparison = compare_detections(got, expected, score_threshold=threshold)
            assert comparison["detection_agreement"] == 1.0, (name, path, comparison)
    # a blank image has no object: nothing a user would see (score >= 0.25)
    assert (kapps.export.keras_runner(model)(blank)["scores"] < 0.25).all()


def test_float16_weights_keep_every_detection(fpn_export, scene_run):
    """float16 weights: all 32 scenes by the quantised criterion (measured: boxes within 0.06 and scores within 0.03 of
    Keras on the paired detections)."""
    out, _ = fpn_export
    run, images, _ = scene_run
    path = writers.write_tflite(out / "saved_model", out.parent / "model_float16.tflite", quantize="float16")
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in tflite_ops(path))
    model = keras.saving.load_model(run / "model.keras")
    expected = kapps.export.keras_runner(model)(images)
    comparison = Detection().compare(tflite_runner(path)(images), expected, quantized=True, model=model)
    assert comparison["passed"] and comparison["detection_agreement"] == 1.0, comparison


def test_int8_is_refused_in_one_sentence_and_writes_nothing(scene_run, empty_cwd):
    run, _, _ = scene_run
    result = CliRunner().invoke(main, ["export", str(run), "--format", "all", "--quantize", "int8"])
    assert error_line(result) == (
        "error: int8 quantization of a detector is not supported: TFLite's calibrator crashes on the NMS loop in its "
        "graph; use --quantize dynamic or float16."
    )
    assert list(empty_cwd.iterdir()) == []


def test_predict_in_a_fresh_process_draws_the_detections(fpn_export, scene_run, tmp_path):
    """`kapps predict` on a scene PNG: the `.keras` file loads in a new process (the two-stage layers are registered
    by `kapps.layers`), and the TFLite file gives its detections, drawn in a PNG."""
    out, _ = fpn_export
    run, _, _ = scene_run
    scene = run.parent / "scenes" / "images" / "000.png"
    done = run_cli("predict", str(run / "model.keras"), str(scene), "--out", str(tmp_path / "keras"))
    assert done.returncode == 0, done.stderr
    expected = json.loads((tmp_path / "keras" / "000.json").read_text())
    got = kapps.predict.predict(out / "model.tflite", [scene], out=tmp_path / "tflite")[0]
    assert (tmp_path / "keras" / "000.png").is_file() and (tmp_path / "tflite" / "000.png").is_file()
    assert got["detections"] and [d["class"] for d in got["detections"]] == [d["class"] for d in expected["detections"]]
    np.testing.assert_allclose(
        [d["box"] for d in got["detections"]], [d["box"] for d in expected["detections"]], atol=0.01
    )


def image_dependent_detector(*, seed: int = 0, **kwargs) -> keras.Model:
    """The small detector without FPN (C4, 9 anchors a cell), with weights planted so that its detections follow the
    image: batch norm statistics of its inputs on 32 random images (gamma and beta random), the RPN's objectness
    logits spread over anchors and images (mean 0, std 2) and deltas (std 0.3), the box head's class logits around
    1.5 for the background and -0.5 for each class (std 1.2) and deltas (std 0.5)."""
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    detector = small_detector(fpn=False, feature_map="C4", anchor_sizes=[[8, 16, 32]], **kwargs)
    images = rng.uniform(0, 1, (32, SIZE, SIZE, 3)).astype("float32")
    body = detector.get_layer("resnet10_narrow_backbone")
    for layer in body.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            inputs = np.asarray(keras.Model(body.input, layer.input)(images))
            n = inputs.shape[-1]
            stats = [inputs.mean((0, 1, 2)), inputs.var((0, 1, 2))]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0.0, 0.3, n), *stats])
    anchors_per_cell = detector.get_layer("rpn_head").get_layer("rpn_cls").filters
    _, logits, deltas = detector.get_layer("class_boxes")._inbound_nodes[0].arguments.args
    rpn = [detector.get_layer("rpn_objectness").output, detector.get_layer("rpn_deltas").output]
    outputs = [np.asarray(v) for v in keras.Model(detector.input, [*rpn, logits, deltas])(images)]
    classes = outputs[2].shape[-1] - 1
    plan = [
        ("rpn_head", "rpn_cls", anchors_per_cell, 0.0, 2.0),
        ("rpn_head", "rpn_box", 4 * anchors_per_cell, 0.0, 0.3),
        ("box_head", "cls", classes + 1, np.r_[1.5, [-0.5] * classes], 1.2),
        ("box_head", "box", 4 * classes, 0.0, 0.5),
    ]
    for values, (model, name, units, mean, spread) in zip(outputs, plan, strict=True):
        layer = detector.get_layer(model).get_layer(name)
        kernel, bias = layer.get_weights()
        values = values.reshape(-1, units)
        scale = spread / values.std(0)
        layer.set_weights([kernel * scale, (bias - values.mean(0)) * scale + mean])
    return detector


def test_without_fpn_every_runtime_gives_the_detections_of_keras(tmp_path):
    """Planted weights: 7 to 28 detections on 16 random images, no two images with the same best one; a blank image
    gives one."""
    detector = image_dependent_detector(score_threshold=0.3)
    images = np.random.default_rng(1).uniform(0, 1, (16, SIZE, SIZE, 3)).astype("float32")
    blank = np.zeros((1, SIZE, SIZE, 3), "float32")
    expected = kapps.export.keras_runner(detector)(images)
    counts = expected["num_detections"]
    assert len(set(counts.tolist())) >= 8 and counts.min() > 0 and counts.max() < 100  # the image decides
    best = zip(expected["classes"][:, 0], expected["boxes"][:, 0], strict=True)
    best = {(int(c), *np.round(b, 2).tolist()) for c, b in best}
    assert len(best) == len(images)
    saved = writers.write_saved_model(detector, tmp_path / "saved_model")
    tflite = writers.write_tflite(saved, tmp_path / "model.tflite")
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in tflite_ops(tflite))
    runners = {
        "saved_model": saved_model_runner(saved),
        "model.tflite": tflite_runner(tflite),
        "model.onnx": onnx_runner(writers.write_onnx(detector, tmp_path / "model.onnx")),
    }
    for batch in (images, images[:1], np.concatenate([images[1:3], blank]), blank):
        reference = kapps.export.keras_runner(detector)(batch)
        for name, run in runners.items():
            comparison = compare_detections(run(batch), reference, score_threshold=0.3)
            assert comparison["detection_agreement"] == 1.0 and comparison["max_abs_diff"] <= 1e-4, (name, comparison)
    assert kapps.export.keras_runner(detector)(blank)["num_detections"][0] > 0
