"""RoIAlign and RoIPooling: against loop references, against onnxruntime's RoiAlign, and the same in every runtime."""

import math
import re

from kapps.export import keras_runner, onnx_runner, saved_model_runner, tflite_runner, writers
from kapps.layers.roi import RoIAlign, RoIPooling, fpn_level, roi_align

import keras
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tests.conftest import tflite_ops

HEIGHT, WIDTH, CHANNELS = 6, 8, 3

# rel_xyxy boxes on a 6 x 8 map: inside, at each border, partly and wholly outside, smaller than one bin, a point.
BOXES = np.array(
    [
        [0.1, 0.15, 0.7, 0.8],
        [0.0, 0.0, 1.0, 1.0],
        [0.8, 0.6, 1.0, 1.0],
        [-0.2, -0.3, 0.4, 0.5],
        [0.6, 0.7, 1.3, 1.4],
        [1.2, 1.1, 1.6, 1.5],
        [-0.6, 0.2, -0.3, 0.6],
        [0.43, 0.41, 0.47, 0.46],
        [0.3, 0.3, 0.3, 0.3],
    ]
)


def feature_map(batch: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, HEIGHT, WIDTH, CHANNELS)).astype("float32")


def boxes_for(batch: int) -> np.ndarray:
    """Each image gets BOXES, the second one in reverse order, so a wrong batch offset is seen."""
    return np.stack([BOXES if b % 2 == 0 else BOXES[::-1] for b in range(batch)]).astype("float32")


def bilinear(image: np.ndarray, y: float, x: float) -> np.ndarray:
    """ONNX/Detectron2 bilinear read of (H, W, C): 0 beyond one cell outside, the edge cells within that margin."""
    height, width = image.shape[:2]
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return np.zeros(image.shape[-1])
    y, x = min(max(y, 0.0), height - 1.0), min(max(x, 0.0), width - 1.0)
    y0, x0 = int(math.floor(y)), int(math.floor(x))
    y1, x1 = min(y0 + 1, height - 1), min(x0 + 1, width - 1)
    ly, lx = y - y0, x - x0
    return (
        (1 - ly) * (1 - lx) * image[y0, x0]
        + (1 - ly) * lx * image[y0, x1]
        + ly * (1 - lx) * image[y1, x0]
        + ly * lx * image[y1, x1]
    )


def roi_align_reference(features, boxes, out, ratio, aligned):
    features = features.astype("float64")
    batch, count = boxes.shape[:2]
    height, width = features.shape[1:3]
    result = np.zeros((batch, count, out[0], out[1], features.shape[-1]))
    offset = 0.5 if aligned else 0.0
    for b in range(batch):
        for n in range(count):
            x1, y1, x2, y2 = boxes[b, n].astype("float64")
            top, left = y1 * height - offset, x1 * width - offset
            box_h, box_w = y2 * height - offset - top, x2 * width - offset - left
            if not aligned:
                box_h, box_w = max(box_h, 1.0), max(box_w, 1.0)
            for i in range(out[0]):
                for j in range(out[1]):
                    total = 0.0
                    for ky in range(ratio):
                        for kx in range(ratio):
                            y = top + (i + (ky + 0.5) / ratio) * box_h / out[0]
                            x = left + (j + (kx + 0.5) / ratio) * box_w / out[1]
                            total = total + bilinear(features[b], y, x)
                    result[b, n, i, j] = total / ratio**2
    return result


def roi_pool_reference(features, boxes, out):
    """The layer's documented rule, in loops: clip to the image, round the edges, floor/ceil bins, max."""
    features = features.astype("float64")
    batch, count = boxes.shape[:2]
    height, width = features.shape[1:3]
    result = np.zeros((batch, count, out[0], out[1], features.shape[-1]))
    for b in range(batch):
        for n in range(count):
            x1, y1, x2, y2 = np.clip(boxes[b, n].astype("float64"), 0.0, 1.0)
            if x2 <= x1 or y2 <= y1:
                continue  # no area inside the image: zeros
            top, left = min(round(y1 * height), height - 1), min(round(x1 * width), width - 1)
            rows = max(round(y2 * height), top + 1) - top
            cols = max(round(x2 * width), left + 1) - left
            for i in range(out[0]):
                r0, r1 = top + math.floor(i * rows / out[0]), top + math.ceil((i + 1) * rows / out[0])
                for j in range(out[1]):
                    c0, c1 = left + math.floor(j * cols / out[1]), left + math.ceil((j + 1) * cols / out[1])
                    result[b, n, i, j] = features[b, r0:r1, c0:c1].max(axis=(0, 1))
    return result


@pytest.mark.parametrize(("aligned", "ratio", "out"), [(True, 2, (3, 2)), (False, 2, (2, 3)), (True, 3, (2, 2))])
def test_roi_align_is_the_loop_reference(aligned, ratio, out):
    features, boxes = feature_map(), boxes_for(2)
    got = RoIAlign(out, sampling_ratio=ratio, aligned=aligned)(features, boxes)
    expected = roi_align_reference(features, boxes, out, ratio, aligned)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), expected, atol=2e-6)
    assert not expected[0, [5, 6]].any() and expected[0, 3].any()  # wholly outside reads 0, partly outside does not


def test_roi_pooling_is_the_loop_reference():
    features, boxes = feature_map(), boxes_for(2)
    got = keras.ops.convert_to_numpy(RoIPooling((3, 2))(features, boxes))
    expected = roi_pool_reference(features, boxes, (3, 2))
    np.testing.assert_array_equal(got, expected.astype("float32"))
    # The whole-map box's bins partition the map, so their maxima are the map's maximum; outside boxes are zeros.
    np.testing.assert_array_equal(got[0, 1].max(axis=(0, 1)), features[0].max(axis=(0, 1)))
    assert not got[0, 5].any() and not got[0, 6].any()
    # A box smaller than one bin (one cell) repeats that cell in every bin.
    np.testing.assert_array_equal(got[0, 7], np.broadcast_to(got[0, 7, 0, 0], got[0, 7].shape))


def onnx_roi_align(features: np.ndarray, boxes: np.ndarray, out, ratio: int) -> np.ndarray:
    """onnxruntime's own RoiAlign (opset 16, half_pixel, avg): NCHW features, pixel boxes, batch indices."""
    node = onnx.helper.make_node(
        "RoiAlign",
        ["X", "rois", "batch_indices"],
        ["Y"],
        mode="avg",
        output_height=out[0],
        output_width=out[1],
        sampling_ratio=ratio,
        spatial_scale=1.0,
        coordinate_transformation_mode="half_pixel",
    )
    graph = onnx.helper.make_graph(
        [node],
        "roi_align",
        [
            onnx.helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, None),
            onnx.helper.make_tensor_value_info("rois", onnx.TensorProto.FLOAT, None),
            onnx.helper.make_tensor_value_info("batch_indices", onnx.TensorProto.INT64, None),
        ],
        [onnx.helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, None)],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 16)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    batch, count = boxes.shape[:2]
    scale = np.array([WIDTH, HEIGHT, WIDTH, HEIGHT], "float32")
    rois = (boxes * scale).reshape(-1, 4).astype("float32")
    indices = np.repeat(np.arange(batch), count).astype("int64")
    (result,) = session.run(None, {"X": features.transpose(0, 3, 1, 2), "rois": rois, "batch_indices": indices})
    return result.transpose(0, 2, 3, 1).reshape(batch, count, out[0], out[1], -1)


def test_roi_align_is_onnxruntimes_roi_align():
    features, boxes = feature_map(seed=1), boxes_for(2)
    for out, ratio in (((3, 2), 2), ((4, 4), 1)):
        got = keras.ops.convert_to_numpy(RoIAlign(out, sampling_ratio=ratio, aligned=True)(features, boxes))
        np.testing.assert_allclose(got, onnx_roi_align(features, boxes, out, ratio), atol=2e-6)


def test_quantisation_is_where_roi_pooling_and_roi_align_differ():
    """On a ramp f = column index, a box whose edges fall mid-cell: RoIAlign follows them, RoI pooling snaps."""
    ramp = np.broadcast_to(np.arange(WIDTH, dtype="float32")[None, :, None], (1, HEIGHT, WIDTH, 1)).copy()
    # Columns 1.3 .. 5.3 of 8 (x = 1.3 / 8 .. 5.3 / 8), all rows; one bin per box.
    box = np.array([[[1.3 / WIDTH, 0.0, 5.3 / WIDTH, 1.0]]], "float32")
    aligned = keras.ops.convert_to_numpy(RoIAlign(1, sampling_ratio=4)(ramp, box))[0, 0, 0, 0, 0]
    pooled = keras.ops.convert_to_numpy(RoIPooling(1)(ramp, box))[0, 0, 0, 0, 0]
    # Aligned samples at 1.3 + (k + 0.5) - 0.5 = 1.3, 2.3, 3.3, 4.3 in cell-centre units: their mean is 2.8.
    assert aligned == pytest.approx(2.8, abs=1e-5)
    # Pooling rounds the edges to columns 1 .. 4 (end 5 exclusive) and takes the max, 4: column 5, of which the box
    # covers 0.3, is dropped, and column 1, covered 0.7, counts whole.
    assert pooled == 4.0
    # Shifting the box by 0.15 of a cell moves RoIAlign's answer by 0.15; pooling does not see it.
    shifted = box + np.float32(0.15 / WIDTH) * np.array([1, 0, 1, 0], "float32")
    assert keras.ops.convert_to_numpy(RoIAlign(1, sampling_ratio=4)(ramp, shifted))[0, 0, 0, 0, 0] == pytest.approx(
        2.95, abs=1e-5
    )
    assert keras.ops.convert_to_numpy(RoIPooling(1)(ramp, shifted))[0, 0, 0, 0, 0] == 4.0


class FixedBoxes(keras.layers.Layer):
    """The same boxes for every image of the batch (an export model's only input is the image)."""

    def __init__(self, boxes, **kwargs):
        super().__init__(**kwargs)
        self.boxes = np.asarray(boxes, "float32")

    def call(self, features):
        boxes = keras.ops.convert_to_tensor(self.boxes)[None]
        return keras.ops.broadcast_to(boxes, (keras.ops.shape(features)[0],) + self.boxes.shape)


def roi_model() -> keras.Model:
    image = keras.Input((HEIGHT, WIDTH, CHANNELS), name="image")
    features = keras.layers.Conv2D(4, 3, padding="same", name="conv")(image)
    boxes = FixedBoxes(BOXES, name="boxes")(features)
    return keras.Model(
        image,
        {
            "align": RoIAlign((3, 2), sampling_ratio=2, name="align")(features, boxes),
            "pool": RoIPooling((2, 3), name="pool")(features, boxes),
        },
    )


def test_both_layers_are_the_same_in_every_runtime(tmp_path):
    keras.utils.set_random_seed(0)
    model = roi_model()
    saved = writers.write_saved_model(model, tmp_path / "saved_model")
    tflite = writers.write_tflite(saved, tmp_path / "model.tflite")  # TFLITE_BUILTINS only: a Flex op fails here
    onnx_path = writers.write_onnx(model, tmp_path / "model.onnx", opset=17)
    ops = tflite_ops(tflite)
    assert "GATHER" in ops and not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), sorted(ops)
    assert "RoiAlign" not in {node.op_type for node in onnx.load(str(onnx_path)).graph.node}  # gathers, not the op

    runners = {
        "saved_model": saved_model_runner(saved),
        "tflite": tflite_runner(tflite),
        "onnx": onnx_runner(onnx_path),
    }
    for batch in (1, 3):
        images = feature_map(batch, seed=batch)
        expected = keras_runner(model)(images)
        conv = keras.ops.convert_to_numpy(model.get_layer("conv")(images))
        np.testing.assert_allclose(
            expected["align"], roi_align_reference(conv, boxes_for(1).repeat(batch, 0), (3, 2), 2, True), atol=1e-5
        )
        np.testing.assert_allclose(
            expected["pool"], roi_pool_reference(conv, boxes_for(1).repeat(batch, 0), (2, 3)), atol=1e-5
        )
        for name, run in runners.items():
            got = run(images)
            for key in ("align", "pool"):
                np.testing.assert_allclose(got[key], expected[key], atol=1e-5, err_msg=f"{name} {key}")


def test_saves_and_loads_safely(tmp_path):
    features = keras.Input((HEIGHT, WIDTH, CHANNELS))
    boxes = keras.Input((len(BOXES), 4))
    model = keras.Model(
        [features, boxes],
        [
            RoIAlign((3, 2), sampling_ratio=3, aligned=False, name="align")(features, boxes),
            RoIPooling(2)(features, boxes),
        ],
    )
    model.save(tmp_path / "roi.keras")
    loaded = keras.saving.load_model(tmp_path / "roi.keras", safe_mode=True)
    config = loaded.get_layer("align").get_config()
    assert (config["output_size"], config["sampling_ratio"], config["aligned"]) == ([3, 2], 3, False)
    inputs = [feature_map(), boxes_for(2)]
    for got, expected in zip(loaded(inputs), model(inputs), strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(got), keras.ops.convert_to_numpy(expected))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: RoIAlign(0), "output_size must be a positive int or a pair of them. Received: output_size=0"),
        (
            lambda: RoIAlign(7, sampling_ratio=0),
            "sampling_ratio must be a positive integer. Received: sampling_ratio=0",
        ),
        (lambda: RoIPooling((7, 7, 7)), "output_size must be a positive int or a pair of them"),
    ],
)
def test_bad_settings(make, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


def test_bad_input_shapes():
    with pytest.raises(ValueError, match=r"expects features \(batch, height, width, channels\) and boxes"):
        RoIAlign(2)(keras.Input((6, 8, 3)), keras.Input((5, 3)))


def test_fpn_level_is_equation_1():
    """Boxes of 224 px go to k0; each halving or doubling of sqrt(wh) moves one level; the ends are clipped."""
    image = (800, 800)
    sides = np.array([224.0, 223.0, 112.0, 111.0, 448.0, 56.0, 10.0, 800.0, 0.0])
    boxes = np.stack([np.zeros_like(sides), np.zeros_like(sides), sides / 800, sides / 800], axis=-1)
    levels = keras.ops.convert_to_numpy(fpn_level(boxes, image_size=image))
    np.testing.assert_array_equal(levels, [4, 3, 3, 2, 5, 2, 2, 5, 2])
    # A non-square box uses sqrt(w * h): 448 x 112 px has side 224.
    assert keras.ops.convert_to_numpy(fpn_level(np.array([[0.0, 0.0, 0.56, 0.14]]), image_size=image))[0] == 4
    with pytest.raises(ValueError, match="k_min must not exceed k_max"):
        fpn_level(boxes, image_size=image, k_min=5, k_max=2)


def test_roi_align_reads_each_box_from_its_own_level():
    """`roi_align` over a pyramid (one GATHER from the concatenated maps) equals RoIAlign on the box's own map."""
    rng = np.random.default_rng(3)
    maps = [rng.normal(size=(2, 12 // 2**k, 16 // 2**k, CHANNELS)).astype("float32") for k in range(3)]
    boxes = boxes_for(2)
    levels = rng.integers(0, 3, size=boxes.shape[:2]).astype("int32")
    got = keras.ops.convert_to_numpy(
        roi_align(maps, boxes, levels=levels, output_size=(3, 4), sampling_ratio=2, aligned=True)
    )
    layer = RoIAlign((3, 4), sampling_ratio=2, aligned=True)
    per_level = [keras.ops.convert_to_numpy(layer(m, boxes)) for m in maps]
    expected = np.choose(levels[..., None, None, None], per_level)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert np.abs(per_level[0] - per_level[1]).max() > 0.1  # the levels differ, so a wrong level would show
