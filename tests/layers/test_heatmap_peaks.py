"""HeatmapPeaks: the layer against a NumPy reference (plateaus, ties, border peaks, top-k, refinement), saving,
settings, and the same points from SavedModel, TFLite builtins and ONNX."""

import kapps.layers
from kapps.export import keras_runner, onnx_runner, saved_model_runner, tflite_runner, writers
from kapps.layers import HeatmapPeaks

import keras
import numpy as np
import onnx
import pytest
from scipy.ndimage import maximum_filter

from tests.conftest import tflite_ops


def reference_peaks(heatmaps: np.ndarray, *, max_points: int, score_threshold: float, refine: bool = True) -> dict:
    """The documented rule, pixel by pixel: a peak is >= its 8 neighbours, > the 4 before it in raster order and
    > the threshold; the K best by score (lower raster index first on ties); quarter-pixel shift off the border."""
    batch, height, width, types = heatmaps.shape
    points = np.zeros((batch, types, max_points, 2), "float32")
    scores = np.zeros((batch, types, max_points), "float32")
    counts = np.zeros((batch, types), "int32")
    for b in range(batch):
        for t in range(types):
            h = heatmaps[b, :, :, t]
            found = []
            for r in range(height):
                for c in range(width):
                    v = h[r, c]
                    if v <= score_threshold:
                        continue
                    around = [(r + dr, c + dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]
                    inside = [(y, x) for y, x in around if 0 <= y < height and 0 <= x < width]
                    before = [(y, x) for y, x in inside if (y, x) < (r, c)]
                    if all(v >= h[p] for p in inside) and all(v > h[p] for p in before):
                        found.append((-v, r * width + c, r, c))
            found.sort()
            for k, (_, _, r, c) in enumerate(found[:max_points]):
                x, y = c + 0.5, r + 0.5
                if refine and 0 < c < width - 1:
                    x += 0.25 * np.sign(h[r, c + 1] - h[r, c - 1])
                if refine and 0 < r < height - 1:
                    y += 0.25 * np.sign(h[r + 1, c] - h[r - 1, c])
                points[b, t, k] = (x / width, y / height)
                scores[b, t, k] = h[r, c]
            counts[b, t] = min(len(found), max_points)
    return {"points": points, "scores": scores, "num_points": counts}


def designed_heatmaps() -> np.ndarray:
    """(2, 8, 10, 3) maps with known peaks: type 0 has a 2x2 plateau, two equal separate peaks and a peak in the
    corner; type 1 a peak on the right border and one below the threshold; type 2 of image 1 is blank."""
    h = np.zeros((2, 8, 10, 3), "float32")
    h[0, 1:3, 1:3, 0] = 0.9  # plateau: one peak at (1, 1)
    h[0, 5, 5, 0] = h[0, 5, 8, 0] = 0.7  # equal scores: lower index first
    h[0, 5, 6, 0] = 0.4  # (5, 5)'s right neighbour: refined to the right
    h[0, 4, 5, 0] = 0.3  # (5, 5)'s upper neighbour: refined up
    h[0, 7, 0, 0] = 0.5  # a corner peak: no refinement across the border
    h[0, 3, 9, 1] = 0.8  # on the right border
    h[0, 2, 9, 1] = 0.6  # not a peak (its neighbour is higher) but moves (3, 9) up
    h[0, 6, 2, 1] = 0.15  # below the threshold
    h[1, :, :, 0] = np.random.default_rng(0).uniform(0, 1, (8, 10))  # many peaks: K cuts them
    h[1, :, :, 1] = np.linspace(0, 1, 80).reshape(8, 10)  # a ramp: one peak in the last corner
    return h


def test_known_peaks_plateaus_ties_and_borders():
    heatmaps = designed_heatmaps()
    got = {k: np.asarray(v) for k, v in HeatmapPeaks(max_points=4, score_threshold=0.2)(heatmaps).items()}
    np.testing.assert_array_equal(got["num_points"], [[4, 1, 0], [4, 1, 0]])
    # image 0, type 0: the plateau's first pixel, the two 0.7 peaks (the left one first), the corner
    np.testing.assert_allclose(got["scores"][0, 0], [0.9, 0.7, 0.7, 0.5])
    expected_xy = [
        [(1 + 0.5 + 0.25) / 10, (1 + 0.5 + 0.25) / 8],  # the plateau's right and lower pixels are higher than
        # its left and upper ones (0.9 against 0): it moves towards the plateau's middle
        [(5 + 0.5 + 0.25) / 10, (5 + 0.5 - 0.25) / 8],  # towards (5, 6) = 0.4 and (4, 5) = 0.3
        [(8 + 0.5) / 10, (5 + 0.5) / 8],  # equal neighbours: no shift
        [(0 + 0.5) / 10, (7 + 0.5) / 8],  # the corner: no neighbour on one side, no shift
    ]
    np.testing.assert_allclose(got["points"][0, 0], expected_xy, atol=1e-7)
    np.testing.assert_allclose(got["points"][0, 1, 0], [(9 + 0.5) / 10, (3 + 0.5 - 0.25) / 8], atol=1e-7)
    np.testing.assert_array_equal(got["points"][0, 1, 1:], 0.0)  # padding rows
    np.testing.assert_array_equal(got["scores"][0, 1, 1:], 0.0)
    np.testing.assert_allclose(got["points"][1, 1, 0], [0.95, 0.9375])  # the ramp's corner (7, 9), not refined
    expected = reference_peaks(heatmaps, max_points=4, score_threshold=0.2)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], atol=1e-7, err_msg=name)


def test_random_maps_match_the_reference_with_and_without_refinement():
    rng = np.random.default_rng(3)
    heatmaps = rng.uniform(0, 1, (3, 9, 7, 2)).astype("float32")
    heatmaps[0, :, :, 0] = np.round(heatmaps[0, :, :, 0] * 3) / 3  # coarse values: many ties and plateaus
    for refine in (True, False):
        layer = HeatmapPeaks(max_points=6, score_threshold=0.3, refine=refine)
        got = {k: np.asarray(v) for k, v in layer(heatmaps).items()}
        expected = reference_peaks(heatmaps, max_points=6, score_threshold=0.3, refine=refine)
        coarse = heatmaps[0, :, :, 0]
        maxima = (coarse == maximum_filter(coarse, size=3, mode="constant", cval=-1)) & (coarse > 0.3)
        assert maxima.sum() > 6 + 2  # max pooling alone keeps every pixel of the plateaus
        assert expected["num_points"].min() >= 3
        for name in expected:
            np.testing.assert_allclose(got[name], expected[name], atol=1e-7, err_msg=name)


def test_output_specs_saving_and_settings(tmp_path):
    heatmaps = keras.Input((16, 12, 5))
    outputs = HeatmapPeaks(max_points=7, name="peaks")(heatmaps)
    assert {k: (tuple(v.shape), v.dtype) for k, v in outputs.items()} == {
        "points": ((None, 5, 7, 2), "float32"),
        "scores": ((None, 5, 7), "float32"),
        "num_points": ((None, 5), "int32"),
    }
    model = keras.Model(heatmaps, outputs)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    layer = loaded.get_layer("peaks")
    assert isinstance(layer, kapps.layers.HeatmapPeaks)
    assert (layer.max_points, layer.score_threshold, layer.refine) == (7, 0.2, True)
    with pytest.raises(ValueError, match="max_points must be a positive integer. Received: max_points=0"):
        HeatmapPeaks(max_points=0)
    with pytest.raises(ValueError, match="score_threshold must be a finite number"):
        HeatmapPeaks(score_threshold=float("nan"))
    with pytest.raises(ValueError, match="static H, W and types"):
        HeatmapPeaks()(keras.Input((None, None, 3)))
    with pytest.raises(ValueError, match="one number or 5, one a point type. Received: 2 thresholds"):
        HeatmapPeaks(score_threshold=[0.1, 0.2])(keras.Input((16, 12, 5)))
    with pytest.raises(ValueError, match="at most H \\* W = 12"):
        HeatmapPeaks(max_points=13)(keras.Input((3, 4, 1)))


def test_a_threshold_a_type(tmp_path):
    """Type 0 at 0.6 drops image 0's 0.5 corner peak that 0.2 keeps, type 1 at 0.1 keeps its 0.15 peak that 0.2
    drops; the same points as each type alone at its own threshold; the list survives saving."""
    heatmaps = designed_heatmaps()
    per_type = [0.6, 0.1, 0.2]
    got = {k: np.asarray(v) for k, v in HeatmapPeaks(max_points=4, score_threshold=per_type)(heatmaps).items()}
    for t, threshold in enumerate(per_type):
        alone = reference_peaks(heatmaps[..., t : t + 1], max_points=4, score_threshold=threshold)
        for name in alone:
            np.testing.assert_allclose(got[name][:, t : t + 1], alone[name], atol=1e-7, err_msg=f"{name}, type {t}")
    single = {k: np.asarray(v) for k, v in HeatmapPeaks(max_points=4, score_threshold=0.2)(heatmaps).items()}
    np.testing.assert_array_equal(got["num_points"][0] - single["num_points"][0], [-1, 1, 0])
    inputs = keras.Input(heatmaps.shape[1:])
    model = keras.Model(inputs, HeatmapPeaks(max_points=4, score_threshold=per_type, name="peaks")(inputs))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert loaded.get_layer("peaks").score_threshold == per_type
    np.testing.assert_array_equal(np.asarray(loaded(heatmaps)["num_points"]), got["num_points"])


def test_a_wider_window_a_type_suppresses_near_bumps(tmp_path):
    """Two bumps 2 px apart (0.9 and 0.6): a 3x3 window keeps both, a 5x5 one only the higher; a window a type
    applies each to its own channel, saves with the model and refuses an even side."""
    h = np.zeros((1, 7, 9, 2), "float32")
    h[0, 3, 2] = 0.9
    h[0, 3, 4] = 0.6
    both = {k: np.asarray(v) for k, v in HeatmapPeaks(max_points=3, score_threshold=0.1)(h).items()}
    np.testing.assert_array_equal(both["num_points"], [[2, 2]])
    per_type = {k: np.asarray(v) for k, v in HeatmapPeaks(max_points=3, score_threshold=0.1, window=[5, 3])(h).items()}
    np.testing.assert_array_equal(per_type["num_points"], [[1, 2]])
    np.testing.assert_allclose(per_type["scores"][0, 0], [0.9, 0, 0])
    np.testing.assert_allclose(per_type["points"][0, 1], both["points"][0, 1])
    inputs = keras.Input(h.shape[1:])
    model = keras.Model(inputs, HeatmapPeaks(max_points=3, score_threshold=0.1, window=[5, 3], name="peaks")(inputs))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert loaded.get_layer("peaks").window == [5, 3]
    np.testing.assert_array_equal(np.asarray(loaded(h)["num_points"]), [[1, 2]])
    with pytest.raises(ValueError, match="window must be an odd integer of at least 3"):
        HeatmapPeaks(window=4)
    with pytest.raises(ValueError, match="window must be one side or 2, one a point type"):
        HeatmapPeaks(window=[3, 5, 7])(keras.Input((7, 9, 2)))


def test_outputs_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        heatmaps = keras.Input((8, 8, 2))
        scaled = keras.layers.Rescaling(1.0)(heatmaps)  # float16 under the policy
        outputs = HeatmapPeaks(max_points=2)(scaled)
        assert outputs["points"].dtype == "float32" and outputs["scores"].dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize(
    "settings",
    [{"score_threshold": 0.2}, {"score_threshold": [0.2, 0.1, 0.5], "window": [5, 3, 3]}],
    ids=["one", "a_type"],
)
def test_points_are_the_same_in_every_runtime(tmp_path, settings):
    heatmaps = keras.Input((8, 10, 3), name="image")
    model = keras.Model(heatmaps, HeatmapPeaks(max_points=4, **settings)(heatmaps))
    saved = writers.write_saved_model(model, tmp_path / "saved_model")
    tflite = writers.write_tflite(saved, tmp_path / "model.tflite")  # builtins only: Select TF ops would fail here
    onnx_path = writers.write_onnx(model, tmp_path / "model.onnx", opset=17)
    ops = tflite_ops(tflite)
    assert ops == {
        *("ADD", "CAST", "FLOOR_DIV", "FLOOR_MOD", "GATHER", "GREATER", "GREATER_EQUAL", "LOGICAL_AND"),
        *("MAX_POOL_2D", "MUL", "PACK", "PADV2", "RANGE", "RESHAPE", "SELECT_V2", "SHAPE", "SIGN"),
        *("STRIDED_SLICE", "SUB", "SUM", "TOPK_V2", "TRANSPOSE"),
    }  # builtins only, as the module's docstring lists them
    assert "TopK" in {node.op_type for node in onnx.load(str(onnx_path)).graph.node}
    runners = {
        "saved_model": saved_model_runner(saved),
        "tflite": tflite_runner(tflite),
        "onnx": onnx_runner(onnx_path),
    }
    designed = designed_heatmaps()
    for inputs in (designed, designed[1:], np.zeros((1, 8, 10, 3), "float32")):  # batches of 2 and 1, a blank map
        expected = keras_runner(model)(inputs)
        for name, run in runners.items():
            got = run(inputs)
            assert set(got) == set(expected), (name, sorted(got))
            # ties, plateaus and borders decided alike: the same peaks; x / W rounds differently (x * (1 / W))
            np.testing.assert_array_equal(got["num_points"], expected["num_points"], err_msg=name)
            np.testing.assert_array_equal(got["scores"], expected["scores"], err_msg=name)
            np.testing.assert_allclose(got["points"], expected["points"], rtol=0, atol=1e-7, err_msg=name)
    assert keras_runner(model)(np.zeros((1, 8, 10, 3), "float32"))["num_points"].sum() == 0
