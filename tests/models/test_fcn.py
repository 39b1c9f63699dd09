"""FCN-32s/16s/8s (Long et al. 2015): counts computed from the paper, output size = input size, aligned
upsampling, zero-initialised scoring, fixed and learned upsampling, and a VGG classifier made convolutional."""

import kapps.models
from kapps.errors import ModelError
from kapps.layers import bilinear_kernel
from kapps.models.segmentation import convolutionalise
from kapps.models.segmentation.fcn import CONFIGS
from kapps.models.vgg import fully_convolutional

import keras
import numpy as np
import pytest

VARIANTS = ["fcn32s", "fcn16s", "fcn8s"]
SMALL = {"width": 1 / 16, "input_shape": (None, None, 3)}  # 4 to 32 filters, fc6/fc7 of 256


def _vgg16_convs() -> int:
    filters = [3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    return sum(9 * cin * cout + cout for cin, cout in zip(filters[:-1], filters[1:], strict=True))


def test_counts_are_the_papers_vgg16_fcn():
    # Independently of the builder: VGG-16 convolutions, fc6 as a 7x7x512x4096 convolution, fc7 1x1x4096x4096,
    # 1x1 scoring layers, transposed convolutions 2f x 2f x 21 x 21 without bias (21 classes as voc-fcn*s).
    assert _vgg16_convs() == 14_714_688
    trunk = _vgg16_convs() + (7 * 7 * 512 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 21 + 21)
    assert trunk == 134_346_581  # the paper's Table 1: 134M for FCN-VGG16

    def up(factor):
        return (2 * factor) ** 2 * 21 * 21

    pool4, pool3 = 512 * 21 + 21, 256 * 21 + 21
    expected = {
        "fcn32s": (trunk + up(32), trunk),
        "fcn16s": (trunk + pool4 + up(2) + up(16), trunk + pool4 + up(2)),
        "fcn8s": (trunk + pool4 + pool3 + 2 * up(2) + up(8), trunk + pool4 + pool3 + 2 * up(2)),
    }
    for name, (count, trainable) in expected.items():
        info = kapps.models.info(name)
        assert (info.task, info.num_classes, info.count_kind, info.param_count) == (
            "segmentation",
            21,
            "all",
            count,
        )
        assert f"trainable {trainable:,}" in info.source
    model = kapps.models.build("fcn8s")  # the registry test checks all three; here the trainable part too
    assert kapps.models.count_params(model, "trainable") == expected["fcn8s"][1]
    assert model.output_shape == (None, 512, 512, 21) and model.layers[-1].name == "scores"


@pytest.mark.parametrize("name", VARIANTS)
def test_output_has_the_input_size_odd_or_even(name):
    model = kapps.models.build(name, num_classes=3, **SMALL)
    for height, width in [(224, 224), (225, 225), (97, 130), (33, 31)]:
        scores = model(np.zeros((1, height, width, 3), "float32"))
        assert scores.shape == (1, height, width, 3), (height, width)
        np.testing.assert_allclose(np.sum(scores, -1), 1.0, rtol=1e-5)  # softmax per pixel
    fixed = kapps.models.build(name, num_classes=3, width=1 / 16, input_shape=(97, 130, 3))
    assert fixed.output_shape == (None, 97, 130, 3)


def _decode(model, name, maps):
    """Run the model's own upsampling, crop and fusion layers on hand-made score maps (`"score_fr"` at stride 32,
    `"score_pool4"` and `"score_pool3"`); `maps["image"]` fixes the output's size."""
    x, source = maps["score_fr"], "upscore2"
    for block in CONFIGS[name].skips:
        finer = maps[f"score_pool{block}"]
        up = model.get_layer(f"{source}_crop")([model.get_layer(source)(x), finer])
        x = model.get_layer(f"fuse_pool{block}")([up, finer])
        source = f"upscore_pool{block}"
    stride = CONFIGS[name].output_stride
    final = "upscore" if stride == 32 else f"upscore{stride}"
    return np.asarray(model.get_layer(f"{final}_crop")([model.get_layer(final)(x), maps["image"]]))


@pytest.mark.parametrize(("name", "stride"), [("fcn32s", 32), ("fcn16s", 16), ("fcn8s", 8)])
def test_upsampled_scores_are_centred_on_their_cells(name, stride):
    # One unit of score in a single cell of a map of stride s must come out as a bump centred on that cell's
    # pixels, [s i, s i + s): centre s i + (s - 1) / 2. A crop off by one pixel moves the centre by one.
    model = kapps.models.build(name, num_classes=1, **SMALL)
    size = 225  # odd: 8 cells at stride 32 (the last one partly outside the image), 15 at 16, 29 at 8
    strides = {"score_fr": 32, "score_pool4": 16, "score_pool3": 8}
    cells = {"score_fr": (3, 4), "score_pool4": (6, 5), "score_pool3": (11, 14)}
    for spiked, map_stride in strides.items():
        if map_stride < stride:
            continue
        maps = {m: np.zeros((1, -(-size // s), -(-size // s), 1), "float32") for m, s in strides.items()}
        maps[spiked][(0, *cells[spiked], 0)] = 1.0
        maps["image"] = np.zeros((1, size, size, 1), "float32")
        out = _decode(model, name, maps)[0, :, :, 0]
        assert out.shape == (size, size)
        rows, cols = np.indices(out.shape)
        centre = (np.sum(rows * out) / out.sum(), np.sum(cols * out) / out.sum())
        expected = tuple(map_stride * c + (map_stride - 1) / 2 for c in cells[spiked])
        np.testing.assert_allclose(centre, expected, atol=1e-3, err_msg=spiked)
        np.testing.assert_allclose(out.sum(), map_stride**2, rtol=1e-4)  # interpolation keeps the mass


@pytest.mark.parametrize("name", VARIANTS)
def test_scoring_starts_at_zero_and_upsampling_at_bilinear(name):
    model = kapps.models.build(name, num_classes=4, **SMALL)
    scoring = [layer for layer in model.layers if layer.name.startswith("score_")]
    assert len(scoring) == 1 + VARIANTS.index(name)
    for layer in scoring:
        assert not any(np.any(w) for w in layer.get_weights()), layer.name
    stride = {"fcn32s": 32, "fcn16s": 16, "fcn8s": 8}[name]
    final = model.get_layer("upscore" if stride == 32 else f"upscore{stride}")
    assert not final.trainable  # fixed bilinear (the paper's Sec. 4.2)
    np.testing.assert_array_equal(final.kernel.numpy(), bilinear_kernel(2 * stride, 4))
    learned = [layer for layer in model.layers if layer.name in ("upscore2", "upscore_pool4")]
    assert len(learned) == VARIANTS.index(name)
    for layer in learned:
        assert layer.trainable
        np.testing.assert_array_equal(layer.kernel.numpy(), bilinear_kernel(4, 4))
    # a net of zeros scores every class alike: uniform probabilities
    np.testing.assert_allclose(model(np.ones((1, 40, 40, 3), "float32")), 0.25, rtol=1e-6)


def test_training_learns_the_2x_upsampling_and_keeps_the_final_one():
    keras.utils.set_random_seed(0)
    model = kapps.models.build("fcn8s", num_classes=3, width=1 / 16, input_shape=(64, 64, 3), dropout=0.0)
    trainable = {w.path.split("/")[0] for w in model.trainable_weights}
    assert {"upscore2", "upscore_pool4", "score_fr", "score_pool4", "score_pool3"} <= trainable
    assert "upscore8" not in trainable
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(4, 64, 64, 3)).astype("float32")
    labels = (images[..., 0] > 0.5).astype("int32") + (images[..., 1] > 0.5)
    model.fit(images, labels, epochs=3, batch_size=4, verbose=0)  # the first step only moves the zero scores
    np.testing.assert_array_equal(model.get_layer("upscore8").kernel.numpy(), bilinear_kernel(16, 3))
    for learned in ("upscore2", "upscore_pool4"):
        assert np.abs(model.get_layer(learned).kernel.numpy() - bilinear_kernel(4, 3)).max() > 1e-6, learned


def test_a_vgg16_classifier_becomes_the_fcn_trunk():
    # A classifier of 64x64 images (pool5 is 2x2, so fc1 is a 2x2 convolution) with random weights, biases
    # included, as a trained one has.
    keras.utils.set_random_seed(1)
    classifier = kapps.models.build("vgg16", input_shape=(64, 64, 3), num_classes=5, fc_units=16)
    rng = np.random.default_rng(1)
    for layer in classifier.layers:
        if layer.weights:
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0.0, 0.05, bias.shape).astype("float32")])
    fcn = kapps.models.build("fcn8s", num_classes=21, input_shape=(None, None, 3), fc_units=16, fc6_kernel=2)
    assert convolutionalise(classifier, fcn) == 15  # 13 convolutions, fc6, fc7
    trunk = keras.Model(fcn.input, fcn.get_layer("fc7").output)  # dropout is inactive outside training
    fc2 = keras.Model(classifier.input, classifier.get_layer("fc2").output)

    # On the classifier's own input size, the cell that sees the whole image holds the classifier's features.
    image = rng.uniform(0, 1, (1, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(trunk(image)[0, 0, 0], fc2(image)[0], rtol=1e-4, atol=1e-5)

    # On a larger image, every position holds the features of a 64x64 window of VGG run as a sliding classifier
    # (`fully_convolutional`: fc6 without padding, one window every 32 pixels), and the classifier's own class
    # layer on them gives that sliding classifier's class scores. (Not the classifier's scores on the window cut
    # out: VGG's "same" convolutions see the pixels around the window, not zero padding.) The FCN's fc6 pads
    # "same", so it has one more row and column of windows, reaching past the image's edge.
    larger = rng.uniform(0, 1, (1, 128, 160, 3)).astype("float32")
    sliding = fully_convolutional(classifier)(larger)
    features = np.asarray(trunk(larger))
    assert features.shape == (1, 4, 5, 16) and sliding["fc7"].shape == (1, 3, 4, 16)
    np.testing.assert_allclose(features[:, :3, :4], sliding["fc7"], rtol=1e-4, atol=1e-5)
    kernel, bias = classifier.get_layer("predictions").get_weights()
    logits = features[:, :3, :4] @ kernel + bias
    scores = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(scores / scores.sum(-1, keepdims=True), sliding["scores"], rtol=1e-4, atol=1e-6)

    with pytest.raises(ModelError, match="do not have the shapes"):
        convolutionalise(classifier, kapps.models.build("fcn32s", input_shape=(None, None, 3), fc_units=16))


def test_mixed_precision_scores_are_float32():
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = kapps.models.build("fcn16s", num_classes=3, **SMALL)
    finally:
        keras.config.set_dtype_policy(policy)
    assert model.get_layer("fc7").compute_dtype == "float16"
    assert model.output.dtype == "float32"
    assert model(np.zeros((1, 50, 50, 3), "float32")).dtype == "float32"


def test_saves_and_loads_in_safe_mode(tmp_path):
    keras.utils.set_random_seed(2)
    model = kapps.models.build("fcn8s", num_classes=3, **SMALL)
    for layer in model.layers:
        if layer.name.startswith("score_"):
            layer.set_weights([np.random.default_rng(3).normal(size=w.shape).astype("float32") for w in layer.weights])
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    image = np.random.default_rng(4).uniform(size=(1, 45, 61, 3)).astype("float32")
    np.testing.assert_allclose(loaded(image), model(image), atol=1e-6)
    assert not loaded.get_layer("upscore8").trainable
    model.save_weights(tmp_path / "m.weights.h5")
    rebuilt = kapps.models.build("fcn8s", num_classes=3, weights=tmp_path / "m.weights.h5", **SMALL)
    np.testing.assert_allclose(rebuilt(image), model(image), atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width": 0}, "width must be in \\(0, 1\\]. Received: width=0"),
        ({"fc_units": 0}, "fc_units must be a positive integer. Received: fc_units=0"),
        ({"fc6_kernel": 0}, "fc6_kernel must be a positive integer"),
        ({"num_classes": 0}, "num_classes must be a positive integer"),
        ({"dropout": 1.0}, "dropout must be in \\[0, 1\\)"),
        ({"weights": "imagenet"}, "convolutionalise"),
        ({"input_shape": (64, 64)}, "input_shape must be \\(height, width, channels\\)"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kapps.models.build("fcn8s", **kwargs)
