"""The RNN, LSTM and GRU classifiers, trained as loops, export through `kapps.export` to SavedModel, TFLite with
builtin ops only (the recurrence unrolled over its fixed steps: no WHILE loop, no Select TF ops) and ONNX, each
artifact verified by the classification kind against the looping Keras model."""

import json

import kapps.data
import kapps.export
import kapps.models
from kapps.data.base import as_arrays
from kapps.errors import ExportError
from kapps.export import keras_runner, onnx_runner, saved_model_runner, tflite_runner
from kapps.kinds import classification

import keras
import numpy as np
import onnx
import pytest

from tests.conftest import tflite_ops

STEPS, FEATURES, UNITS, CLASSES = 8, 3, 6, 4
GATE_OPS = {"rnn": {"TANH"}, "lstm": {"TANH", "LOGISTIC", "MUL"}, "gru": {"TANH", "LOGISTIC", "MUL", "SUB"}}


def random_classifier(cell: str) -> keras.Model:
    """A small classifier of `cell` with random weights (normal, standard deviation 1.2, biases too), so the
    probabilities depend on every gate; the class layer's bias is 0, so the class is the hidden state's doing
    rather than a constant offset's, and varies from sequence to sequence."""
    model = kapps.models.rnn_classifier(input_shape=(STEPS, FEATURES), units=UNITS, num_classes=CLASSES, cell=cell)
    rng = np.random.default_rng(1)
    *weights, head_bias = model.get_weights()
    model.set_weights([rng.normal(0.0, 1.2, w.shape).astype("float32") for w in weights] + [np.zeros_like(head_bias)])
    return model


@pytest.fixture(scope="module", params=["rnn", "lstm", "gru"])
def exported(request, tmp_path_factory):
    cell = request.param
    folder = tmp_path_factory.mktemp(cell)
    model = random_classifier(cell)
    assert kapps.export.recurrent_loops(model) == [cell]  # built as a loop: the export unrolls it
    model.save(folder / f"{cell}_classifier.keras")  # a bare file of a registered name: task classification
    report = kapps.export.export(folder / f"{cell}_classifier.keras", out=folder / "out", latency_runs=2)
    return cell, model, folder / "out", report


def test_every_artifact_answers_like_keras(exported):
    _, _, _, report = exported
    assert report["task"] == "classification"
    assert report["inputs"]["shape"] == [STEPS, FEATURES] and report["inputs"]["count"] == 64
    by_path = {a["path"]: a for a in report["artifacts"]}
    assert sorted(by_path) == ["model.onnx", "model.tflite", "saved_model"]
    for entry in by_path.values():
        assert entry["passed"], entry
        assert entry["max_abs_diff"] <= classification.FLOAT_MAX_ABS_DIFF and entry["top1_agreement"] == 1.0, entry


def test_the_comparison_sees_a_wrong_recurrence(exported):
    """On the export's own inputs (64 random uniform sequences, seed 0), the classes vary and a model whose
    recurrent kernel is transposed (a converter reading it in the wrong layout) is off by far more than the
    criterion: an artifact that passes computed the recurrence as Keras does."""
    cell, model, _, _ = exported
    inputs = np.random.default_rng(0).uniform(0, 1, (64, STEPS, FEATURES)).astype("float32")
    expected = keras_runner(model)(inputs)["predictions"]
    assert len(np.unique(np.argmax(expected, -1))) >= 2
    wrong = keras.models.clone_model(model)
    weights = model.get_weights()
    layer = model.get_layer(cell)
    recurrent = [i for i, w in enumerate(model.weights) if w.path == layer.cell.recurrent_kernel.path][0]
    u = weights[recurrent]
    gates = u.shape[1] // UNITS
    weights[recurrent] = np.concatenate([u[:, g * UNITS : (g + 1) * UNITS].T for g in range(gates)], axis=1)
    wrong.set_weights(weights)
    assert (
        np.max(np.abs(keras_runner(wrong)(inputs)["predictions"] - expected)) > 100 * classification.FLOAT_MAX_ABS_DIFF
    )


def test_tflite_has_builtin_ops_only_and_no_loop(exported):
    cell, _, out, _ = exported
    ops = tflite_ops(out / "model.tflite")
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), ops
    assert "WHILE" not in ops and "UNIDIRECTIONAL_SEQUENCE_LSTM" not in ops, ops  # unrolled: one cell per step
    assert {"FULLY_CONNECTED", "SOFTMAX"} | GATE_OPS[cell] <= ops, ops
    graph = onnx.load(str(out / "model.onnx")).graph
    assert not {node.op_type for node in graph.node} & {"Loop", "Scan", "LSTM", "GRU", "RNN"}


def test_artifacts_answer_like_keras_on_new_sequences(exported):
    _, model, out, _ = exported
    sequences = np.random.default_rng(9).normal(0.5, 1.0, (5, STEPS, FEATURES)).astype("float32")
    expected = keras_runner(model)(sequences)["predictions"]
    for runner, path in (
        (saved_model_runner, out / "saved_model"),
        (tflite_runner, out / "model.tflite"),
        (onnx_runner, out / "model.onnx"),
    ):
        got = runner(path)(sequences)
        assert list(got) == ["predictions"]
        np.testing.assert_allclose(got["predictions"], expected, atol=1e-5, err_msg=str(path))


def test_the_unrolled_twin_is_the_same_model(exported):
    cell, model, _, _ = exported
    twin = kapps.export.unrolled_twin(model, tflite=True)
    assert twin.get_layer(cell).unroll is True and kapps.export.recurrent_loops(twin) == []
    for mine, theirs in zip(model.weights, twin.weights, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    assert kapps.export.unrolled_twin(twin, tflite=True) is twin  # nothing left to unroll


def test_a_loop_over_free_lengths_is_refused_for_tflite_before_anything_is_written(tmp_path, empty_cwd):
    """A model of free length cannot be unrolled, and TFLite's builtins cannot convert its loop: the export says
    so in one sentence and writes nothing; other formats take the loop as it is."""
    model = kapps.models.rnn_classifier(input_shape=(None, FEATURES), units=UNITS, cell="lstm")
    model.save(tmp_path / "lstm_classifier.keras")
    for formats in ("tflite", "all"):
        with pytest.raises(ExportError, match="layer 'lstm' reads a free number of steps.*--format onnx"):
            kapps.export.export(tmp_path / "lstm_classifier.keras", formats=formats, latency_runs=2)
    assert list(empty_cwd.iterdir()) == []
    assert kapps.export.unrolled_twin(model, tflite=False) is model


def test_a_run_on_digit_rows_exports_on_its_own_rows(tmp_path):
    """A run folder whose model reads the digits row by row (32 steps of 32 pixels) is checked on its own test
    digits, read as `kapps.data.digit_rows` gives them."""
    run = tmp_path / "rows"
    run.mkdir()
    model = kapps.models.rnn_classifier(input_shape=(32, 32), units=UNITS, cell="lstm")
    model.save(run / "model.keras")
    (run / "config.json").write_text(
        json.dumps({"task": "classification", "data": {"spec": "digits"}, "options": {"seed": 0}})
    )
    source = kapps.export.load_source(run)
    expected, _ = as_arrays(kapps.data.digit_rows("digits", seed=0).test, 20)
    np.testing.assert_array_equal(source.data("test", 20), expected)
    report = kapps.export.export(run, formats="tflite", out=tmp_path / "out", samples=32, latency_runs=2)
    assert report["inputs"] == {"data": "digits (seed 0)", "count": 32, "shape": [32, 32]}
    (entry,) = report["artifacts"]
    assert entry["passed"] and entry["max_abs_diff"] <= classification.FLOAT_MAX_ABS_DIFF, entry
