"""Recurrent sequence models: a plain RNN, an LSTM or a GRU reads a sequence and its last hidden state is classified
(digits read row by row) or regressed (the adding problem).

Cells: the plain recurrent net h' = tanh(W x + U h + b) (Elman, "Finding structure in time", Cognitive Science
1990); the LSTM (Hochreiter & Schmidhuber, "Long short-term memory", Neural Computation 1997, with the forget gate
of Gers et al. 2000); the GRU (Cho et al., "Learning phrase representations using RNN encoder-decoder for
statistical machine translation", EMNLP 2014). All three are Keras's own layers: `tests/models/test_recurrent.py`
checks one step of each against the gate equations computed in NumPy from the layer's weights.

Parameters, from the gate equations, for F input features and n units: a plain RNN has W (F x n), U (n x n) and b
(n): n (F + n) + n. An LSTM has four such sets (input, forget and output gates and the candidate cell), concatenated
in the order i, f, c, o in Keras's `kernel`, `recurrent_kernel` and `bias`: 4 (n (F + n) + n). Keras's GRU with
`reset_after=True` (its default, cuDNN's form, which applies the reset gate after the recurrent product:
c~ = tanh(W_h x + b_h + r * (U_h h + b'_h))) has three sets, in the order z, r, h, and a second bias vector for
the recurrent products (`bias` of shape (2, 3n)): 3 (n (F + n) + 2 n).
"""

from __future__ import annotations

from typing import Any

from kapps.registry import register_model

import keras

CELLS = ("rnn", "lstm", "gru")
HEADS = ("classification", "regression")

_LAYERS = {"rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}


_HEAD = "dense 128 x 10 + 10 = 1,290"
_SETTING = "computed from the gate equations, 28 steps of 28 features, 128 units"


@register_model(
    task="classification",
    input_shape=(28, 28),
    num_classes=10,
    param_count=21_386,
    source=f"{_SETTING}: W, U, b: 128 (28 + 128) + 128 = 20,096 (Elman 1990); {_HEAD}",
)
def rnn_classifier(
    *,
    input_shape: tuple[int | None, int] = (28, 28),
    num_classes: int = 10,
    units: int = 128,
    cell: str = "rnn",
    head: str = "classification",
    classifier_activation: str | None = "softmax",
    unroll: bool = False,
    name: str | None = None,
) -> keras.Model:
    """A recurrent layer reads a sequence step by step; a dense layer reads its last hidden state.

    Sequences are `(steps, features)`: a digit image read row by row is `(rows, pixels per row)`, 28x28 for MNIST,
    32x32 for the embedded digits (`kapps.data.sequences.digit_rows`); the adding problem is `(length, 2)`
    (`kapps.data.sequences.adding_problem`).

    Export. The recurrence runs as a loop by default, which trains faster (an LSTM of 128 units over 200 steps on
    2 CPU cores: 0.16 s a step against 0.29 s unrolled, and 2.5 s to build against 19 s; on a GPU only the loop
    runs on cuDNN). TFLite's builtin ops cannot convert Keras 3's loop (a `tf.while_loop` over TensorLists) and
    Keras 3 no longer emits the function TFLite fuses into its UNIDIRECTIONAL_SEQUENCE_LSTM op, so `kapps export`
    writes the same weights unrolled over the fixed steps (`kapps.export.unrolled_twin`): one copy of the cell per
    step, all builtins (FULLY_CONNECTED, LOGISTIC, TANH, MUL, ADD, SPLIT, UNPACK, PACK), verified against the
    model as trained. A model of free length (`steps=None`) exports to SavedModel and ONNX only.

    Args:
        input_shape: (steps, features); steps may be None for sequences of any length, which cannot be unrolled
            (and so do not export to TFLite).
        num_classes: size of the output layer with the classification head.
        units: size of the hidden state (and of the LSTM's cell state).
        cell: `"rnn"` (Keras's SimpleRNN, tanh), `"lstm"` or `"gru"` (Keras's LSTM and GRU, sigmoid gates).
        head: `"classification"` (`num_classes` outputs, `classifier_activation`) or `"regression"` (one linear
            output, the adding problem's sum).
        classifier_activation: activation of the classification head, `None` for logits.
        unroll: unroll the recurrence over the steps when building (needs a fixed number of steps); exports
            unroll it in any case.
        name: model name; `<cell>_classifier` or `<cell>_regressor` by default (kapps export finds the task of a
            classifier by this name).

    Returns:
        A functional `keras.Model` from `(batch, steps, features)` to `(batch, num_classes)` (classification) or
        `(batch, 1)` (regression), the output layer `"predictions"` in float32.
    """
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {CELLS}. Received: cell={cell!r}")
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}. Received: head={head!r}")
    shape = tuple(input_shape)
    if (
        len(shape) != 2
        or not (shape[0] is None or (isinstance(shape[0], int) and shape[0] > 0))
        or not (isinstance(shape[1], int) and shape[1] > 0)
    ):
        raise ValueError(f"input_shape must be (steps, features). Received: input_shape={input_shape!r}")
    if not isinstance(units, int) or units < 1:
        raise ValueError(f"units must be a positive integer. Received: units={units!r}")
    if head == "classification" and (not isinstance(num_classes, int) or num_classes < 2):
        raise ValueError(f"num_classes must be an integer of at least 2. Received: num_classes={num_classes!r}")
    if unroll and shape[0] is None:
        raise ValueError(f"unroll=True needs a fixed number of steps. Received: input_shape={input_shape!r}")

    inputs = keras.Input(shape=shape, name="sequence")
    x = _LAYERS[cell](units, unroll=unroll, name=cell)(inputs)  # (B, units): the last hidden state
    if head == "classification":
        outputs = keras.layers.Dense(num_classes, activation=classifier_activation, dtype="float32", name="predictions")
    else:
        outputs = keras.layers.Dense(1, dtype="float32", name="predictions")
    default_name = f"{cell}_classifier" if head == "classification" else f"{cell}_regressor"
    return keras.Model(inputs, outputs(x), name=name or default_name)


def cell_pair(
    *,
    length: int,
    features: int,
    head: str,
    units: int = 128,
    num_classes: int = 10,
    cells: tuple[str, ...] = ("rnn", "lstm"),
) -> dict[str, keras.Model]:
    """The models a memory comparison trains side by side on sequences of one length: one per cell, the same
    head and hidden size, named `<cell>_<head>_<length>`.

    Args:
        length: steps of every sequence (20 to 200 for the adding problem; the rows of a digit image).
        features: inputs per step (2 for the adding problem; the pixels of a row).
        head: `"regression"` (the adding problem) or `"classification"` (digits).
        units: hidden size of every model.
        num_classes: classes of the classification head.
        cells: the cells to compare, each in `CELLS`.

    Returns:
        `{cell: model}`, uncompiled, in the order of `cells`.
    """
    if not cells or len(set(cells)) != len(cells):
        raise ValueError(f"cells must name distinct cells of {CELLS}. Received: cells={cells!r}")
    return {
        cell: rnn_classifier(
            input_shape=(length, features),
            num_classes=num_classes,
            units=units,
            cell=cell,
            head=head,
            name=f"{cell}_{head}_{length}",
        )
        for cell in cells
    }


@register_model(
    task="classification",
    input_shape=(28, 28),
    num_classes=10,
    param_count=81_674,
    source=f"{_SETTING}: gates i, f, o and candidate c~, each W, U, b: 4 (128 (28 + 128) + 128) = 80,384 "
    f"(Hochreiter & Schmidhuber 1997); {_HEAD}",
)
def lstm_classifier(**kwargs: Any) -> keras.Model:
    """`rnn_classifier` with `cell="lstm"`: an LSTM of 128 units reads the rows; 81,674 parameters on 28x28."""
    return rnn_classifier(**{"cell": "lstm", **kwargs})


@register_model(
    task="classification",
    input_shape=(28, 28),
    num_classes=10,
    param_count=61_962,
    source=f"{_SETTING}: gates z, r and candidate h~, each W, U and two biases (Keras's reset_after=True biases "
    f"the recurrent product too, bias shape (2, 384)): 3 (128 (28 + 128) + 2 x 128) = 60,672 (Cho et al. 2014); "
    f"{_HEAD}",
)
def gru_classifier(**kwargs: Any) -> keras.Model:
    """`rnn_classifier` with `cell="gru"`: a GRU of 128 units reads the rows; 61,962 parameters on 28x28."""
    return rnn_classifier(**{"cell": "gru", **kwargs})
