"""A DCGAN generator exports (noise in, images out) to SavedModel, TFLite (float, dynamic and float16, builtin ops
only) and ONNX, each verified by the generated-image kind on the noise it makes itself, never on the run's data.

The generator's last kernel is scaled so that its images span [-1, 1] (an untrained DCGAN draws everything near 0,
where any artifact would agree): the PSNR bar is then measured on images with the range it is stated for. Full int8
(calibrated on the kind's train noise) passes too but at the bar, 30.3 dB on its worst image (40.4 dB on average,
measured), so it is not asserted here.
"""

import json

import kapps.export
from kapps.kinds import kind_for
from kapps.models.generative import dcgan_generator

import keras
import numpy as np
import pytest

from tests.conftest import tflite_ops

LATENT = 16


def spread_generator() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = dcgan_generator(latent_dim=LATENT, image_shape=(16, 16, 1), base_filters=8, name="tiny_generator")
    last = model.get_layer("up2_conv")
    kernel, bias = last.get_weights()
    # At N(0, 0.02) everywhere and batch norm's initial statistics the tanh reads values of std 1e-3 (measured);
    # 1,500 times the last kernel brings them to std ~1.5, which spans the tanh's range.
    last.set_weights([kernel * 1500, bias])
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("generator_export")
    run = root / "run"
    run.mkdir()
    spread_generator().save(run / "model.keras")
    # A data source that does not exist: read, it would fail; the kind's noise is what the export runs on.
    config = {"task": "generative", "data": {"spec": f"folder:{root / 'missing'}"}, "options": {"seed": 0}}
    (run / "config.json").write_text(json.dumps(config))
    out = root / "export"
    kapps.export.export(run, formats="all", quantize="dynamic", out=out, latency_runs=2)
    report = kapps.export.export(run, formats="tflite", quantize="float16", out=out, latency_runs=2)
    return run, out, report


def test_the_keras_images_span_the_range():
    images = np.asarray(spread_generator()(kind_for("generative").inputs((LATENT,), 64, split="test")))
    assert images.min() < -0.9 and images.max() > 0.9 and images.std() > 0.4


def test_every_artifact_passes_on_the_kinds_noise(exported):
    _, out, report = exported
    assert report["task"] == "generative"
    assert report["inputs"]["shape"] == [LATENT] and report["inputs"]["count"] == 256
    assert report["inputs"]["data"].startswith("standard normal noise")
    entries = {(e["format"], e["quantization"]): e for e in report["artifacts"]}
    assert set(entries) == {
        ("saved_model", "none"),
        ("tflite", "none"),
        ("onnx", "none"),
        ("tflite", "dynamic"),
        ("tflite", "float16"),
    }
    assert all(e["passed"] for e in entries.values())
    for key in (("saved_model", "none"), ("tflite", "none"), ("onnx", "none")):
        assert entries[key]["max_abs_diff"] <= 1e-4 and entries[key]["image_agreement"] == 1.0, key
        assert entries[key]["criterion"] == "every pixel within 0.0001 of Keras's"
    # Measured at the worst image: float16 weights 73.0 dB, dynamic-range int8 weights 44.7 dB.
    for quantization in ("float16", "dynamic"):
        entry = entries[("tflite", quantization)]
        assert entry["min_psnr_db"] >= 30 and entry["max_abs_diff"] > 1e-4, entry
    assert entries[("tflite", "float16")]["min_psnr_db"] > entries[("tflite", "dynamic")]["min_psnr_db"]
    for name in ("model.tflite", "model_dynamic.tflite", "model_float16.tflite"):
        ops = tflite_ops(out / name)
        assert ops and not any(op.startswith("Flex") for op in ops), (name, ops)
