"""Transfer learning: a trained classifier's backbone, frozen, given a new head, then its top stages unfrozen.

The two-phase recipe of Yosinski et al. ("How transferable are features in deep neural networks?", NeurIPS 2014)
and the Keras transfer-learning guide: train a new head on frozen features, then fine-tune the top stages at a
lower learning rate. The backbone and its stages come from the registry's feature maps
(`kapps.models.backbone`, `kapps.models.stage_layers`), not from layer-name patterns.

    >>> backbone = kapps.models.backbone("resnet20", weights="saved_models/pretrain/model.keras")
    >>> model = attach_head(freeze(backbone), num_classes=5)            # only the head trains
    >>> unfreeze_top(model, kapps.models.feature_maps("resnet20"))      # then the last stage too
"""

from __future__ import annotations

from collections.abc import Sequence

from kapps.models import stage_layers
from kapps.registry import FeatureMap

import keras


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
    feature_map: str | None = None,
    name: str | None = None,
) -> keras.Model:
    """The backbone's layers followed by global average pooling and a new class layer, in one flat functional model.

    Args:
        backbone: a model from `kapps.models.backbone` (a dict of feature maps) or any functional model with one
            output; its layers keep their `trainable` state.
        num_classes: size of the new class layer `predictions` (float32).
        classifier_activation: its activation, `None` for logits.
        dropout: dropout rate before the class layer (`head_dropout`), none at 0.
        feature_map: the map the head reads, the deepest by default.
        name: model name; the backbone's without `_backbone` by default.

    Returns:
        A functional `keras.Model` with the backbone's input: `head_pool` (for a feature map), `head_dropout`,
        `predictions`.
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer. Received: num_classes={num_classes!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")
    outputs = backbone.output if isinstance(backbone.output, dict) else {"output": backbone.outputs[0]}
    if feature_map is None:
        feature_map = list(outputs)[-1]
    elif feature_map not in outputs:
        raise ValueError(f"feature_map must be one of {sorted(outputs)}. Received: feature_map={feature_map!r}")
    x = outputs[feature_map]
    if len(x.shape) == 4:
        x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    elif len(x.shape) != 2:
        raise ValueError(f"backbone must output features (batch, n) or maps (batch, h, w, c). Received: {x.shape}")
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    x = keras.layers.Dense(num_classes, activation=classifier_activation, dtype="float32", name="predictions")(x)
    return keras.Model(backbone.inputs, x, name=name or backbone.name.removesuffix("_backbone"))


def unfreeze_top(
    model: keras.Model,
    feature_maps: Sequence[FeatureMap],
    *,
    stages: int = 1,
    train_batch_norm: bool = False,
) -> list[str]:
    """Make the layers of the top `stages` stages of the backbone in `model` trainable again, for fine-tuning.

    A stage is what the backbone computes between two of its feature maps (`kapps.models.stage_layers`): the last
    stage of a ResNet is its `conv5` blocks (`conv4` in the CIFAR nets), of a VGG its block 5. Batch normalisation
    stays frozen unless `train_batch_norm`: on a small target set its statistics would be estimated from a handful
    of images, and a frozen layer keeps the source's (Keras 3 runs it in inference mode). Layers outside those
    stages keep their state (a new head stays trainable).

    Args:
        model: a model built on the backbone, such as `attach_head`'s, with the maps' layers in it.
        feature_maps: the backbone's maps, `kapps.models.feature_maps(name)`.
        stages: how many stages from the top to unfreeze.
        train_batch_norm: unfreeze the batch normalisation layers of those stages too.

    Returns:
        The names of the layers with weights that were made trainable, in graph order.
    """
    every = stage_layers(model, feature_maps)
    if isinstance(stages, bool) or not isinstance(stages, int) or not 1 <= stages <= len(every):
        raise ValueError(f"stages must be an integer from 1 to {len(every)}. Received: stages={stages!r}")
    chosen = {name for stage in every[-stages:] for name in stage}
    if not model.trainable:  # a frozen model hides its layers' flags; setting it cascades, so keep theirs
        states = [layer.trainable for layer in model.layers]
        model.trainable = True
        for layer, state in zip(model.layers, states, strict=True):
            layer.trainable = state
    unfrozen = []
    for layer in model.layers:
        if layer.name in chosen:
            is_bn = isinstance(layer, keras.layers.BatchNormalization)
            layer.trainable = train_batch_norm or not is_bn
            if layer.trainable and layer.weights:
                unfrozen.append(layer.name)
    return unfrozen
