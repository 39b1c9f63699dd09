"""SegNet and the encoder-decoder as SavedModel, TFLite (builtin ops only) and ONNX: the same score maps as Keras
at an odd size, with random weights and batch-norm statistics (see tests/models/parity.py)."""

import kapps.models

import numpy as np
import pytest

from tests.conftest import tflite_ops
from tests.models import parity

# Softmax scores, max |difference| from Keras. Measured at 45x61 with random weights: TFLite 2.1e-5 and 2.5e-5,
# ONNX 2.2e-5 and 1.6e-5 (both fold batch norm into the convolutions), SavedModel exact; with the batch-norm
# statistics dropped the scores move by 0.9.
SCORE_TOLERANCE = 1e-4
# The criterion for float artifacts: the same class at every pixel where Keras's top score leads the
# second by more than this.
CONFIDENT_MARGIN = 1e-4


def images(count: int, height: int, width: int, seed: int) -> np.ndarray:
    """Noise with a random contrast and colour cast per image, as `parity.varied_images`, of any height and width."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(size=(count, height, width, 3))
    return (noise * rng.uniform(0.2, 2.0, (count, 1, 1, 3)) + rng.normal(0.0, 1.0, (count, 1, 1, 3))).astype("float32")


def class_agreement(expected: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    """(share of pixels whose top score leads by more than CONFIDENT_MARGIN, the share of those of the same class)."""
    top2 = np.sort(expected, axis=-1)[..., -2:]
    confident = top2[..., 1] - top2[..., 0] > CONFIDENT_MARGIN
    same = np.argmax(got, axis=-1) == np.argmax(expected, axis=-1)
    return float(confident.mean()), float(same[confident].mean())


@pytest.mark.parametrize("name", ["segnet", "encoder_decoder"])
def test_exports_give_keras_score_maps(tmp_path, name):
    model = kapps.models.build(name, input_shape=(45, 61, 3), width=0.0625, num_classes=5)
    batch = images(3, 45, 61, seed=0)
    parity.randomise_weights(model, batch, seed=1)
    expected = parity.keras_logits(model, batch)["scores"]
    # the comparison can fail: a converter that dropped the batch-norm statistics would be far off
    misfolded = parity.keras_logits(parity.misfold_batch_norm(model, "drop"), batch)["scores"]
    assert np.max(np.abs(misfolded - expected)) > 1000 * SCORE_TOLERANCE
    assert class_agreement(expected, misfolded)[1] < 0.8

    outputs = parity.exported_outputs(model, batch, tmp_path)
    assert sorted(outputs) == ["onnx", "saved_model", "tflite"]
    for artifact, got in outputs.items():
        assert list(got) == ["scores"] and got["scores"].shape == (3, 45, 61, 5), artifact
        assert np.max(np.abs(got["scores"] - expected)) <= SCORE_TOLERANCE, artifact
        confident, agreement = class_agreement(expected, got["scores"])
        assert confident > 0.99 and agreement == 1.0, (artifact, confident, agreement)
    ops = tflite_ops(tmp_path / "model.tflite")
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), ops
    assert ("DEPTH_TO_SPACE" in ops) == (name == "segnet")  # the switches are there, as builtins
