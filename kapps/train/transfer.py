"""Transfer learning: a trained classifier cut into a backbone, frozen, given a new head, then partly unfrozen.

The two-phase recipe of Yosinski et al. ("How transferable are features in deep neural networks?", NeurIPS 2014)
and the Keras transfer-learning guide: train a new head on frozen features, then fine-tune the top blocks at a
lower learning rate.

    >>> backbone = freeze(cut_backbone(keras.saving.load_model("saved_models/pretrain/model.keras")))
    >>> model = attach_head(backbone, num_classes=5)                 # only the head trains
    >>> unfreeze_top(model)                                          # then the last stage too
"""

from __future__ import annotations

import re

import keras

# Block names of the kapps builders: ResNet `conv4_block3`, VGG `block5`, GoogLeNet `inception_5b`,
# Inception-v3 `mixed10`. A block is the longest such prefix of a layer's name.
BLOCK_PATTERN = r"conv\d+_block\d+|block\d+|inception_\d+[a-z]|mixed\d+"


def cut_backbone(model: keras.Model, *, features: str | None = None, name: str | None = None) -> keras.Model:
    """The part of `model` from its input to its pooled features, sharing `model`'s layers and weights.

    Args:
        model: a functional classifier.
        features: name of the layer whose output is the feature vector (`"avg_pool"` in a ResNet); by default the
            input of the last layer, i.e. whatever the class layer reads.
        name: name of the backbone model; `"<model>_backbone"` by default.

    Returns:
        A functional `keras.Model` mapping the images to the features.
    """
    if features is None:
        output = model.layers[-1].input
    else:
        try:
            output = model.get_layer(features).output
        except ValueError:
            raise ValueError(f"features must name a layer of {model.name!r}. Received: features={features!r}") from None
    return keras.Model(model.inputs, output, name=name or f"{model.name}_backbone")


def freeze(model: keras.Model) -> keras.Model:
    """Make every layer of `model` untrainable (batch normalisation then runs on its moving statistics).

    Returns:
        `model`, for chaining.
    """
    model.trainable = False
    return model


def attach_head(
    backbone: keras.Model,
    *,
    num_classes: int,
    classifier_activation: str | None = "softmax",
    dropout: float = 0.0,
    name: str | None = None,
) -> keras.Model:
    """The backbone's layers followed by a new class layer `predictions` (float32), in one flat functional model.

    A backbone ending in a feature map is pooled first (`head_pool`, global average pooling).

    Args:
        backbone: a functional model; its layers keep their `trainable` state.
        num_classes: size of the new class layer.
        classifier_activation: its activation, `None` for logits.
        dropout: dropout rate before the class layer (`head_dropout`), none at 0.
        name: model name; the backbone's by default.

    Returns:
        A functional `keras.Model` with the backbone's input.
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer. Received: num_classes={num_classes!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")
    x = backbone.outputs[0]
    if len(x.shape) == 4:
        x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    elif len(x.shape) != 2:
        raise ValueError(f"backbone must output features (batch, n) or maps (batch, h, w, c). Received: {x.shape}")
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    x = keras.layers.Dense(num_classes, activation=classifier_activation, dtype="float32", name="predictions")(x)
    return keras.Model(backbone.inputs, x, name=name or backbone.name.removesuffix("_backbone"))


def block_names(model: keras.Model, *, pattern: str = BLOCK_PATTERN) -> list[str]:
    """The blocks of `model` in graph order: the distinct prefixes of layer names that match `pattern`."""
    blocks = []
    for layer in model.layers:
        block = _block_of(layer.name, pattern)
        if block is not None and block not in blocks:
            blocks.append(block)
    return blocks


def last_stage(model: keras.Model, *, pattern: str = BLOCK_PATTERN) -> list[str]:
    """The blocks of the last stage of `model`: those sharing the last block's stage (`conv4` of `conv4_block3`).

    Models without stages (VGG's `block5`, Inception's `mixed10`) give their last block alone.
    """
    blocks = block_names(model, pattern=pattern)
    if not blocks:
        raise ValueError(f"{model.name!r} has no layer names that match pattern={pattern!r}.")
    stage = _stage_of(blocks[-1])
    return [b for b in blocks if _stage_of(b) == stage]


def unfreeze_top(
    model: keras.Model,
    blocks: int | None = None,
    *,
    pattern: str = BLOCK_PATTERN,
    train_batch_norm: bool = False,
) -> list[str]:
    """Make the layers of the top `blocks` blocks of `model` trainable again, for fine-tuning.

    Batch normalisation stays frozen unless `train_batch_norm`: on a small target set its statistics would be
    estimated from a handful of images, and a frozen layer keeps the source's (Keras 3 runs it in inference mode).
    Layers outside the blocks keep their state (a new head stays trainable).

    Args:
        model: a model made by `attach_head` (or any model with block-named layers).
        blocks: how many blocks from the top to unfreeze; the last stage (`last_stage`) when None.
        pattern: the regular expression of block names, `BLOCK_PATTERN` by default.
        train_batch_norm: unfreeze the batch normalisation layers of those blocks too.

    Returns:
        The names of the layers with weights that were made trainable, in graph order.
    """
    every = block_names(model, pattern=pattern)
    if blocks is None:
        chosen = set(last_stage(model, pattern=pattern))
    elif isinstance(blocks, int) and not isinstance(blocks, bool) and 1 <= blocks <= len(every):
        chosen = set(every[-blocks:])
    else:
        raise ValueError(f"blocks must be None or an integer from 1 to {len(every)}. Received: blocks={blocks!r}")
    if not model.trainable:  # a frozen model hides its layers' flags; setting it cascades, so keep theirs
        states = [layer.trainable for layer in model.layers]
        model.trainable = True
        for layer, state in zip(model.layers, states, strict=True):
            layer.trainable = state
    unfrozen = []
    for layer in model.layers:
        if _block_of(layer.name, pattern) in chosen:
            is_bn = isinstance(layer, keras.layers.BatchNormalization)
            layer.trainable = train_batch_norm or not is_bn
            if layer.trainable and layer.weights:
                unfrozen.append(layer.name)
    return unfrozen


def _block_of(layer_name: str, pattern: str) -> str | None:
    found = re.match(rf"(?:{pattern})(?=_|$)", layer_name)
    return found.group(0) if found else None


def _stage_of(block: str) -> str:
    return block.split("_block")[0]
