"""FCN-8s and U-Net export to SavedModel, TFLite (builtin ops only) and ONNX with score maps matching Keras: the
transposed convolutions and the crops convert, at odd sizes too."""

import kapps.models
from kapps.models.segmentation import unet_output_size

import keras
import numpy as np
import pytest

from tests.conftest import tflite_ops
from tests.models import parity

# A crop off by one pixel, or an upsampling kernel transposed, moves every score: off by far more than this.
FLOAT_TOLERANCE = parity.FLOAT_TOLERANCE


def _shifted(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The score maps one pixel down: what an artifact with a crop off by one would answer."""
    return {k: np.roll(v, 1, axis=1) for k, v in outputs.items()}


@pytest.mark.parametrize(
    ("name", "kwargs", "size"),
    [
        ("fcn8s", {"width": 1 / 16, "num_classes": 5}, (75, 90)),  # odd: every crop at work
        ("unet", {"base_filters": 4, "num_classes": 3, "padding": "valid"}, (252, 252)),  # the paper's crops: 68x68 out
        ("unet", {"base_filters": 4, "num_classes": 3, "padding": "same"}, (61, 50)),
    ],
    ids=["fcn8s", "unet_valid", "unet_same"],
)
def test_exports_match_keras_on_score_maps(name, kwargs, size, tmp_path):
    channels = 3 if name == "fcn8s" else 1
    model = kapps.models.build(name, input_shape=(*size, channels), classifier_activation=None, **kwargs)
    rng = np.random.default_rng(0)
    images = parity.varied_images(rng, 3, max(size))[:, : size[0], : size[1], :channels]
    # random weights everywhere: zero scoring layers and bilinear kernels would leave nothing to compare
    parity.randomise_weights(model, images, seed=1)
    expected = parity.keras_logits(model, images)
    assert list(expected) == ["scores"]
    out_size = [unet_output_size(s, padding=kwargs["padding"]) for s in size] if name == "unet" else list(size)
    assert expected["scores"].shape == (3, *out_size, kwargs["num_classes"])
    assert parity.float_error(expected, _shifted(expected)) > 100 * FLOAT_TOLERANCE

    outputs = parity.exported_outputs(model, images, tmp_path)
    for artifact, got in outputs.items():
        error = parity.float_error(expected, got)
        assert error <= FLOAT_TOLERANCE, (artifact, error)
        agreement = np.mean(np.argmax(got["scores"], -1) == np.argmax(expected["scores"], -1))
        assert agreement == 1.0, (artifact, agreement)

    ops = tflite_ops(tmp_path / "model.tflite")
    assert not [op for op in ops if op.startswith("Flex")], ops
    assert "TRANSPOSE_CONV" in ops, ops
    keras.backend.clear_session()
