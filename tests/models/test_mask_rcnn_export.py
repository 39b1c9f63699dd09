"""A small Mask R-CNN exports to a SavedModel, TFLite builtins and ONNX, and each artifact gives Keras's detections
and masks by the instance-mask kind's float criterion, on a batch of two scenes and on a blank image."""

from kapps.export import runtimes, writers
from kapps.kinds import kind_for

import keras
import numpy as np

from tests.conftest import tflite_ops
from tests.models.test_mask_rcnn import masked_scenes, small_mask_rcnn


def decisive_model() -> keras.Model:
    """The small model with its class and mask logits scaled up, so that random weights give a few confident
    detections of distinct classes and masks far from 0.5 (an untrained head's are all ~0.5: nothing to compare)."""
    keras.utils.set_random_seed(3)
    model = small_mask_rcnn(score_threshold=0.3)
    head = model.get_layer("box_head")
    cls = head.get_layer("cls")
    kernel, bias = cls.get_weights()
    cls.set_weights([kernel * 300.0, bias])
    logits = model.get_layer("mask_head").get_layer("mask_fcn_logits")
    kernel, bias = logits.get_weights()
    logits.set_weights([kernel * 3000.0, bias])
    return model


def test_mask_rcnn_exports_with_the_same_detections_and_masks(tmp_path):
    model = decisive_model()
    images, _ = masked_scenes(2)
    blank = np.zeros((1, *images.shape[1:]), "float32")
    expected = {name: runtimes.keras_runner(model)(batch) for name, batch in (("scenes", images), ("blank", blank))}
    found = expected["scenes"]["num_detections"]
    assert found.min() >= 1, found  # something to compare
    masks = expected["scenes"]["masks"][0, : found[0]]
    assert (masks >= 0.5).any() and (np.abs(masks - 0.5) > 0.1).mean() > 0.9  # decisive masks
    saved_model = writers.write_saved_model(model, tmp_path / "saved_model")
    tflite = writers.write_tflite(saved_model, tmp_path / "model.tflite")
    onnx = writers.write_onnx(model, tmp_path / "model.onnx")
    assert not any(op.startswith("Flex") for op in tflite_ops(tflite))  # builtins only
    kind = kind_for("instance_segmentation")
    for fmt, path in (("saved_model", saved_model), ("tflite", tflite), ("onnx", onnx)):
        runner = runtimes.RUNNERS[fmt](path)
        for name, batch in (("scenes", images), ("blank", blank)):
            got = runner(batch)
            kind.check({k: v.shape for k, v in got.items()}, what=fmt)
            result = kind.compare(got, expected[name], quantized=False, model=model)
            assert result["passed"], (fmt, name, result)
        assert result["mask_pairs"] == expected["blank"]["num_detections"][0]
