"""LeNet-5 (LeCun et al., "Gradient-based learning applied to document recognition", Proc. IEEE 1998)."""

from __future__ import annotations

from kapps.layers import ConnectionTableConv2D
from kapps.models._common import classifier_head, load_weights, model_input
from kapps.registry import FeatureMap, register_model

import keras

# Table I of the paper: which of S2's six maps each of C3's sixteen maps reads (rows are S2 maps).
# Maps 0-5 read 3 contiguous maps, 6-11 read 4 contiguous, 12-14 read 4 non-contiguous, 15 reads all six.
C3_TABLE = (
    (1, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1, 1),
    (1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1),
    (1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 1, 1),
    (0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 1, 0, 1, 1),
    (0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1, 1, 0, 1),
    (0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1, 1, 1),
)

# The subsampled maps: S2 (6 maps, stride 2) and S4 (16 maps, stride 4). C5 is a vector on LeNet's 32x32 input.
FEATURE_MAPS = (FeatureMap("C1", "s2", 2, 6), FeatureMap("C2", "s4", 4, 16))

_POOLS = {"avg": keras.layers.AveragePooling2D, "max": keras.layers.MaxPooling2D}


@register_model(
    task="classification",
    input_shape=(32, 32, 1),
    num_classes=10,
    param_count=61_706,
    source="computed: conv 6@5x5 and 16@5x5, dense 120/84/10 (LeCun et al. 1998)",
    feature_maps=FEATURE_MAPS,
)
def lenet5(
    *,
    input_shape: tuple[int, int, int] = (32, 32, 1),
    num_classes: int = 10,
    include_top: bool = True,
    weights: str | None = None,
    pooling: str | None = None,
    classifier_activation: str | None = "softmax",
    activation: str = "tanh",
    subsampling: str = "avg",
    connection_table: bool = False,
    dropout: float = 0.0,
    name: str = "lenet5",
) -> keras.Model:
    """LeNet-5: C1 6@5x5, S2, C3 16@5x5, S4, C5 120@5x5, F6 84, and the output layer.

    The common modern form: dense C3, parameter-free subsampling and a softmax output in place of the paper's
    trainable subsampling coefficients and RBF output units; 61,706 parameters on 32x32x1 with 10 classes.

    Args:
        input_shape: (height, width, channels); 32x32 is the paper's, at least 32x32 keeps C5 at 1x1.
        num_classes: size of the output layer.
        include_top: whether to add F6 and the output layer after C5.
        weights: `None` or the path of a weight file (`.weights.h5`) saved from this architecture.
        pooling: without the top, `None` (C5's feature map), `"avg"` or `"max"` global pooling.
        classifier_activation: activation of the output layer, `None` for logits.
        activation: activation of the hidden layers (`"tanh"` as in the paper, or `"relu"`).
        subsampling: `"avg"` (the paper's S2/S4) or `"max"`.
        connection_table: use the paper's sparse C3 (Table I), 1,516 parameters instead of 2,416.
        dropout: dropout rate before the output layer (0 disables it).
        name: model name.

    Returns:
        A functional `keras.Model`.
    """
    if subsampling not in _POOLS:
        raise ValueError(f"subsampling must be 'avg' or 'max'. Received: subsampling={subsampling!r}")
    inputs = model_input(input_shape, weights=weights)
    pool = _POOLS[subsampling]
    x = keras.layers.Conv2D(6, 5, activation=activation, name="c1")(inputs)
    x = pool(2, name="s2")(x)
    if connection_table:
        x = ConnectionTableConv2D(C3_TABLE, 5, activation=activation, name="c3")(x)
    else:
        x = keras.layers.Conv2D(16, 5, activation=activation, name="c3")(x)
    x = pool(2, name="s4")(x)
    x = keras.layers.Conv2D(120, 5, activation=activation, name="c5")(x)
    if include_top:
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Dense(84, activation=activation, name="f6")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name="dropout")(x)
    x = classifier_head(
        x,
        include_top=include_top,
        num_classes=num_classes,
        pooling=pooling,
        classifier_activation=classifier_activation,
    )
    model = keras.Model(inputs, x, name=name)
    load_weights(model, weights)
    return model
