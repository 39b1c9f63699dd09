"""SegNet and the transposed-convolution encoder-decoder: counts against the authors' Caffe model, scores of the
input's size (odd and free sizes), unpooling at the switches, encoder weights from VGG16-BN, saving."""

import kapps.models
from kapps.layers import MaxUnpooling

import keras
import numpy as np
import pytest

# The authors' CamVid SegNet, convolution by convolution (SegNet-Tutorial, Models/segnet_train.prototxt): 3x3
# kernels with biases, (input channels, output channels). Every one but the classifier is followed by batch norm.
ENCODER = (
    [(3, 64), (64, 64)]  # conv1_1, conv1_2
    + [(64, 128), (128, 128)]  # conv2_1, conv2_2
    + [(128, 256), (256, 256), (256, 256)]  # conv3_1 .. conv3_3
    + [(256, 512), (512, 512), (512, 512)]  # conv4_1 .. conv4_3
    + [(512, 512)] * 3  # conv5_1 .. conv5_3
)
DECODER = (
    [(512, 512)] * 3  # conv5_3_D .. conv5_1_D
    + [(512, 512), (512, 512), (512, 256)]  # conv4_3_D .. conv4_1_D
    + [(256, 256), (256, 256), (256, 128)]  # conv3_3_D .. conv3_1_D
    + [(128, 128), (128, 64)]  # conv2_2_D, conv2_1_D
    + [(64, 64)]  # conv1_2_D
)
CLASSIFIER = (64, 11)  # conv1_1_D, to CamVid's 11 classes, no batch norm
UPSAMPLED = [512, 512, 256, 128, 64]  # the maps each decoder block upsamples, coarse to fine


def counts(scale: float = 1.0, num_classes: int = 11, transposed: bool = False) -> tuple[int, int]:
    """(all weights, trainable weights) of the table above with every width but the image's and the classes'
    multiplied by `scale`; `transposed` adds a 2x2 transposed convolution c -> c with bias per decoder block."""

    def size(c: int) -> int:
        return c if c == 3 else max(1, round(c * scale))

    convs = [(size(a), size(b)) for a, b in ENCODER + DECODER]
    total = sum(9 * a * b + b for a, b in convs) + 9 * size(CLASSIFIER[0]) * num_classes + num_classes
    if transposed:
        total += sum(4 * size(c) ** 2 + size(c) for c in UPSAMPLED)
    normalised = sum(b for _, b in convs)
    return total + 4 * normalised, total + 2 * normalised


def test_segnet_count_is_the_authors_model():
    all_weights, trainable = counts()
    assert (all_weights, trainable) == (29_465_227, 29_449_355)
    # The paper gives SegNet 29.5M parameters (one decimal): the count with the batch-norm statistics rounds to it.
    assert round(all_weights / 1e6, 1) == 29.5 and round(trainable / 1e6, 1) == 29.4
    info = kapps.models.info("segnet")
    assert (info.param_count, info.count_kind, info.input_shape, info.num_classes) == (
        all_weights,
        "all",
        (360, 480, 3),
        11,
    )
    assert info.task == "segmentation"
    model = kapps.models.segnet()
    assert kapps.models.count_params(model, "trainable") == trainable
    assert sum(isinstance(layer, MaxUnpooling) for layer in model.layers) == 5


def test_encoder_decoder_count_adds_the_transposed_convolutions():
    all_weights, trainable = counts(transposed=True)
    assert all_weights == 29_465_227 + 2_442_688 == kapps.models.info("encoder_decoder").param_count
    model = kapps.models.encoder_decoder()
    assert kapps.models.count_params(model, "trainable") == trainable
    assert not any(isinstance(layer, MaxUnpooling) for layer in model.layers)


@pytest.mark.parametrize("name", ["segnet", "encoder_decoder"])
def test_narrow_variants_are_the_same_table_scaled(name):
    model = kapps.models.build(name, input_shape=(64, 64, 3), width=0.125, num_classes=5)
    assert model.count_params() == counts(0.125, 5, transposed=name == "encoder_decoder")[0]
    assert model.get_layer("block5_conv3").filters == 64 and model.get_layer("block1_conv1").filters == 8


@pytest.fixture
def mixed_precision():
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    yield
    keras.config.set_dtype_policy(before)


@pytest.mark.parametrize("name", ["segnet", "encoder_decoder"])
def test_scores_have_the_input_size_in_float32(name, mixed_precision):
    model = kapps.models.build(name, input_shape=(97, 131, 3), width=0.0625, num_classes=4)
    assert model.get_layer("block1_conv1").compute_dtype == "float16"
    images = np.random.default_rng(0).uniform(size=(2, 97, 131, 3)).astype("float32")
    scores = model(images)
    assert scores.shape == (2, 97, 131, 4) and scores.dtype == "float32"
    np.testing.assert_allclose(np.sum(np.asarray(scores), axis=-1), 1.0, atol=1e-5)


def test_segnet_takes_any_size():
    model = kapps.models.segnet(input_shape=(None, None, 3), width=0.0625, num_classes=3)
    for height, width in ((97, 131), (64, 80), (33, 1)):
        assert model(np.zeros((1, height, width, 3), "float32")).shape == (1, height, width, 3)


def test_encoder_decoder_needs_a_known_size():
    with pytest.raises(ValueError, match="encoder_decoder needs a known height and width"):
        kapps.models.encoder_decoder(input_shape=(None, None, 3))


def test_segnet_unpools_at_the_encoders_switches():
    keras.utils.set_random_seed(0)
    model = kapps.models.segnet(input_shape=(45, 61, 3), width=0.0625, num_classes=3)
    probe = keras.Model(
        model.input,
        [
            model.get_layer("block1_pool").output[1],  # the first block's switches, (B, 45, 61, 4)
            model.get_layer("decoder2_conv1_relu").output,  # what the decoder unpools there, (B, 23, 31, 4)
            model.get_layer("decoder1_unpool").output,
        ],
    )
    batch = np.random.default_rng(1).uniform(size=(2, 45, 61, 3)).astype("float32")
    switches, values, unpooled = (np.asarray(t) for t in probe(batch))
    assert switches.sum() == 2 * 23 * 31 * 4  # one per 2x2 window (odd sizes round up) and channel
    assert np.count_nonzero(values) > 0.1 * values.size  # 27% to 66% of fresh ReLU outputs are not zero
    # each decoder value goes to its window's switch, the rest of the window stays zero
    spread = values.repeat(2, axis=1).repeat(2, axis=2)[:, :45, :61]
    np.testing.assert_array_equal(unpooled, spread * switches)


def test_encoder_takes_vgg16_bn_weights():
    classifier = kapps.models.vgg16_bn(input_shape=(64, 64, 3), include_top=False)
    statistics = classifier.get_layer("block5_conv3_bn").moving_mean
    statistics.assign(np.random.default_rng(3).normal(size=statistics.shape))  # not the fresh layer's zeros
    model = kapps.models.segnet(input_shape=(64, 64, 3))
    copied = kapps.models.transfer_backbone(classifier, model, backbone_name="vgg16_bn")
    assert copied == 26  # 13 convolutions and their batch norms
    for name in ("block1_conv1", "block5_conv3", "block5_conv3_bn"):
        expected = classifier.get_layer(name).get_weights()
        for got, want in zip(model.get_layer(name).get_weights(), expected, strict=True):
            np.testing.assert_array_equal(got, want)


def test_saves_and_loads_in_safe_mode(tmp_path):
    model = kapps.models.segnet(input_shape=(37, 45, 3), width=0.0625, num_classes=3)
    model.save(tmp_path / "segnet.keras")
    loaded = keras.saving.load_model(tmp_path / "segnet.keras", safe_mode=True)
    images = np.random.default_rng(2).uniform(size=(1, 37, 45, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(loaded(images)), np.asarray(model(images)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width": 0}, "width must be a positive number"),
        ({"width": -0.5}, "width must be a positive number"),
        ({"width": True}, "width must be a positive number"),
        ({"num_classes": 0}, "num_classes must be a positive integer"),
        ({"input_shape": (64, 64)}, "input_shape must be"),
    ],
)
@pytest.mark.parametrize("name", ["segnet", "encoder_decoder"])
def test_bad_arguments(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        kapps.models.build(name, **kwargs)
