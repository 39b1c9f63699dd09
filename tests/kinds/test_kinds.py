"""Output kinds: found from the task, every registry task either has a kind or is refused; the classification kind."""

import kapps.kinds
from kapps.errors import ModelError
from kapps.kinds import PredictOptions, classification, kind_for, recorded_task
from kapps.registry import TASKS

import keras
import numpy as np
import pytest
import tensorflow as tf

KIND = kind_for("classification")


def test_every_registry_task_has_a_kind_or_is_refused_in_one_sentence():
    kinds = [
        "classification",
        "detection",
        "generative",
        "heatmap",
        "instance_segmentation",
        "instance_sequence",
        "regression",
        "segmentation",
    ]
    assert sorted(kapps.kinds.KINDS) == kinds
    for task in TASKS:
        if task in kapps.kinds.KINDS:
            assert kind_for(task).task == task
            continue
        with pytest.raises(ModelError) as caught:
            kind_for(task)
        assert str(caught.value).startswith(f"The task {task!r} has no output kind in kapps yet")
        assert str(caught.value).endswith(
            "the tasks that have one are classification, detection, instance_segmentation, segmentation, heatmap, "
            "generative, regression and instance_sequence."
        )
    with pytest.raises(ModelError, match="^Unknown task 'poetry'; the tasks with an output kind are"):
        kind_for("poetry")


def test_the_task_is_what_was_recorded_else_the_registrys():
    assert recorded_task({"task": "segmentation"}, model_name="lenet5") == "segmentation"
    assert recorded_task({}, model_name="lenet5") == "classification"
    assert recorded_task({}, model_name="yolo_v1") == "detection"
    assert recorded_task({}, model_name="my_net") is None
    assert recorded_task({"task": ""}) is None


def test_classifier_outputs_are_one_batch_of_scores():
    KIND.check({"predictions": (None, 10)}, what="'m'")
    for bad in ({"value": (None, 1)}, {"map": (None, 8, 8, 3)}, {"a": (None, 10), "b": (None, 10)}, {}):
        with pytest.raises(
            ModelError, match=r"^'m' is not a classifier: its outputs are .*, not one \(batch, classes\)"
        ):
            KIND.check(bad, what="'m'")


def test_float_and_quantised_criteria(monkeypatch):
    expected = {"p": np.array([[0.7, 0.3], [0.4, 0.6], [0.9, 0.1]])}
    close = {"p": expected["p"] + 5e-5}
    swapped = {"p": np.array([[0.7, 0.3], [0.6, 0.4], [0.9, 0.1]])}  # one image of three changes class
    assert KIND.compare(close, expected, quantized=False, model=None) == {
        "max_abs_diff": pytest.approx(5e-5),
        "top1_agreement": 1.0,
        "passed": True,
    }
    entry = KIND.compare(swapped, expected, quantized=True, model=None)
    assert entry["top1_agreement"] == pytest.approx(2 / 3) and not entry["passed"]
    assert KIND.describe(entry) == "max abs diff 0.2, top-1 agreement 66.7%"
    monkeypatch.setattr(classification, "QUANTIZED_TOP1", 0.6)  # the criterion reads the documented threshold
    assert KIND.compare(swapped, expected, quantized=True, model=None)["passed"]
    assert KIND.criterion(quantized=True) == "the top-1 class is Keras's on at least 60% of the images"


def test_result_lists_the_top_k_classes():
    outputs = {"predictions": np.array([[0.1, 0.6, 0.3]], "float32")}
    fields = KIND.result(outputs, class_name="abc".__getitem__, width=5, height=5, options=PredictOptions(top_k=2))
    assert [(t["class_id"], t["class"]) for t in fields["top5"]] == [(1, "b"), (2, "c")]
    assert [t["score"] for t in fields["top5"]] == pytest.approx([0.6, 0.3])
    assert KIND.summary(fields) == "b 0.600, c 0.300"


def test_evaluate_is_top1_accuracy():
    # The identity as a classifier: the best class is the input's largest feature.
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, use_bias=False, kernel_initializer="identity")])
    features = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0]], "float32")
    labels = np.array([0, 1, 2, 2, 2])
    dataset = tf.data.Dataset.from_tensor_slices((features, labels)).batch(2)
    assert KIND.evaluate(model, dataset) == {"accuracy": 0.6, "count": 5}
    assert KIND.evaluate(model, dataset, limit=3) == {"accuracy": 1.0, "count": 3}
