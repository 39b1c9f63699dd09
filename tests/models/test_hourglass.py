"""Stacked hourglass: parameter counts against a count written from the paper's architecture, 256 -> 64 shapes,
the detector on the last stack, saving, bad arguments, and a tiny network that learns to find a dot."""

import kapps.models
from kapps.keypoints import heatmap_peaks, heatmap_targets
from kapps.layers import HeatmapPeaks
from kapps.losses import heatmap_mse

import keras
import numpy as np
import pytest
import tensorflow as tf


def conv(cin: int, cout: int, k: int = 1) -> int:
    return k * k * cin * cout + cout  # Torch's convolutions have biases


def bn(channels: int) -> int:
    return 4 * channels  # gamma, beta, moving mean and variance


def residual(cin: int, cout: int) -> int:
    mid = cout // 2
    skip = conv(cin, cout) if cin != cout else 0
    return bn(cin) + conv(cin, mid) + bn(mid) + conv(mid, mid, 3) + bn(mid) + conv(mid, cout) + skip


def expected_count(*, channels=3, types=16, stacks=8, features=256, modules=1, depth=4) -> int:
    """Newell et al.'s network counted from its description (and the authors' hg.lua): stem, stacks of an
    hourglass (3 positions a level, 1 at the bottom, each `modules` residual modules), modules after it, a 1x1
    convolution with BN, the heatmaps, and the re-projections into every stack but the last."""
    f = features
    stem = conv(channels, f // 4, 7) + bn(f // 4) + residual(f // 4, f // 2) + residual(f // 2, f // 2)
    stem += residual(f // 2, f)
    per_stack = (3 * depth + 1 + 1) * modules * residual(f, f) + conv(f, f) + bn(f) + conv(f, types)
    back = conv(f, f) + conv(types, f)
    return stem + stacks * per_stack + (stacks - 1) * back


def test_the_papers_count_is_the_architectures():
    info = kapps.models.info("stacked_hourglass")
    assert info.task == "heatmap" and info.input_shape == (256, 256, 3) and info.num_classes == 16
    assert expected_count() == info.param_count == 25_554_688  # built and counted in test_registry.py
    assert residual(256, 256) == 215_552  # a stack, and its re-projections into the next:
    assert expected_count(stacks=2) - expected_count(stacks=1) == 3_088_656 + 70_144


@pytest.mark.parametrize(
    "settings",
    [
        {"num_stacks": 2, "features": 64, "num_types": 3},
        {"num_stacks": 3, "features": 32, "num_modules": 2, "depth": 3, "num_types": 5, "size": 128},
    ],
)
def test_small_networks_count_and_shapes(settings):
    settings = dict(settings)
    size = settings.pop("size", 256)
    model = kapps.models.stacked_hourglass(input_shape=(size, size, 3), **settings)
    count = expected_count(
        types=settings["num_types"],
        stacks=settings["num_stacks"],
        features=settings["features"],
        modules=settings.get("num_modules", 1),
        depth=settings.get("depth", 4),
    )
    assert model.count_params() == count
    out = size // 4
    assert model.output_shape == (None, settings["num_stacks"], out, out, settings["num_types"])  # 256 -> 64
    lowest = model.get_layer(f"stack1_hg_level{settings.get('depth', 4)}_pool").output.shape
    assert lowest[1:3] == (out // 2 ** settings.get("depth", 4),) * 2  # 4 x 4 at the paper's depth 4


def test_the_cpu_network_is_small():
    model = kapps.models.stacked_hourglass(num_stacks=2, features=64)
    assert model.count_params() == expected_count(stacks=2, features=64) == 431_680


def test_the_detector_reads_the_last_stack_and_saves(tmp_path):
    model = kapps.models.stacked_hourglass(input_shape=(64, 64, 3), num_types=2, num_stacks=2, features=16, depth=2)
    detector = kapps.models.hourglass_detector(model, max_points=3, score_threshold=-10.0)
    assert detector.name == model.name == "stacked_hourglass"
    assert {k: tuple(v.shape) for k, v in detector.output.items()} == {
        "points": (None, 2, 3, 2),
        "scores": (None, 2, 3),
        "num_points": (None, 2),
    }
    images = np.random.default_rng(0).uniform(0, 1, (2, 64, 64, 3)).astype("float32")
    stacks = model(images)
    assert stacks.shape == (2, 2, 16, 16, 2)
    got = detector(images)
    last = heatmap_peaks(stacks[:, 1], max_points=3, score_threshold=-10.0)
    first = heatmap_peaks(stacks[:, 0], max_points=3, score_threshold=-10.0)
    np.testing.assert_allclose(got["scores"], last["scores"], atol=1e-6)
    assert not np.allclose(got["scores"], first["scores"], atol=1e-3)
    detector.save(tmp_path / "d.keras")
    loaded = keras.saving.load_model(tmp_path / "d.keras", safe_mode=True)
    assert isinstance(loaded.get_layer("peaks"), HeatmapPeaks)
    np.testing.assert_allclose(loaded(images)["points"], got["points"], atol=1e-6)
    with pytest.raises(ValueError, match="must be a stacked_hourglass model"):
        kapps.models.hourglass_detector(kapps.models.build("lenet5"))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"num_stacks": 0}, "num_stacks must be a positive integer. Received: num_stacks=0"),
        ({"features": 30}, "features must be a positive multiple of 4"),
        ({"input_shape": (96, 96, 3), "depth": 4}, "multiples of 64 for depth=4"),
        ({"num_types": 1.5}, "num_types must be a positive integer"),
    ],
)
def test_bad_arguments(settings, message):
    with pytest.raises(ValueError, match=message):
        kapps.models.stacked_hourglass(**settings)


def dots(count: int, seed: int):
    """32 x 32 grey noise images, each with one bright 3x3 dot; the dots' centres as relative [x, y]."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.0, 0.3, (count, 32, 32, 1)).astype("float32")
    xy = rng.integers(3, 29, (count, 2))
    for image, (x, y) in zip(images, xy, strict=True):
        image[y - 1 : y + 2, x - 1 : x + 2] = 1.0
    return images, ((xy + 0.5) / 32).astype("float32")


def found_within(detector, images, truth, *, pixels: float) -> float:
    """The share of images whose best point is within `pixels` input pixels of the dot."""
    points = np.asarray(detector(images)["points"])[:, 0, 0]
    return float(np.mean(np.linalg.norm(points - truth, axis=-1) * 32 <= pixels))


def test_a_one_stack_network_learns_to_find_a_dot():
    """30 steps of 16 images (8 x 8 heatmaps, sigma 1): the best peak lands within one heatmap pixel (4 image
    pixels) of the dot on at least 90% of new images; untrained, by chance (about 5 of 64 cells)."""
    keras.utils.set_random_seed(0)
    model = kapps.models.stacked_hourglass(input_shape=(32, 32, 1), num_types=1, num_stacks=1, features=16, depth=1)
    kapps.models.set_bn_momentum(model, 0.8)  # moving statistics settle within the few steps
    detector = kapps.models.hourglass_detector(model, max_points=1, score_threshold=-1e9)
    test, truth = dots(64, seed=1)
    before = found_within(detector, test, truth, pixels=4.0)
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    for step in range(30):  # eagerly: tracing a training step costs more than these steps here
        images, points = dots(16, seed=100 + step)
        targets = heatmap_targets(points[:, None], np.zeros((16, 1), "int32"), num_types=1, size=(8, 8))
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(heatmap_mse(targets, model(images, training=True)))
        optimizer.apply(tape.gradient(loss, model.trainable_weights), model.trainable_weights)
    assert float(loss) < 0.02
    assert before < 0.3 and found_within(detector, test, truth, pixels=4.0) >= 0.9
