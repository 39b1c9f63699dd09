"""Backbones: a registered classifier's body without its head, as a model whose output is a dict of named feature
maps (keras-hub's `pyramid_outputs` idea).

Each map is named by its stride, `C<k>` for stride 2**k (`C2` .. `C5` for strides 4 .. 32 in the ImageNet nets),
and the registry records, for every classifier, which layer each map is, its stride and its channels
(`kapps.models.info(name).feature_maps`). The backbone is the classifier's own graph cut at those layers: the
layer names and the weight order are the classifier's, so weight files of the classifier fit the backbone and a
head built on a backbone is the classifier again.

    >>> backbone = kapps.models.backbone("resnet50", input_shape=(512, 512, 3))
    >>> backbone.output["C4"].shape   # (None, 32, 32, 1024)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from kapps.errors import ModelError
from kapps.models._common import load_weights
from kapps.registry import FeatureMap, info, list_models

import keras


def feature_maps(name: str) -> tuple[FeatureMap, ...]:
    """The feature maps the backbone of the registered model `name` offers, shallow to deep.

    Raises:
        ModelError: the model is unknown or has no backbone.
    """
    maps = info(name).feature_maps
    if not maps:
        raise ModelError(
            f"The model {name!r} has no backbone feature maps; models with them: {', '.join(list_backbones())}."
        )
    return maps


def backbone(
    name: str,
    *,
    input_shape: tuple[int | None, int | None, int] | None = None,
    weights: str | os.PathLike | None = None,
    maps: Sequence[str] | None = None,
    **kwargs,
) -> keras.Model:
    """The body of the registered classifier `name` as a model from images to its named feature maps.

    Args:
        name: a registered model with feature maps (`kapps.models.list_backbones()`).
        input_shape: (height, width, channels); the model's registered input shape by default. Without a head the
            maps are defined for any size the body accepts, (None, None, 3) included for most.
        weights: `None`; `"imagenet"` where the classifier has keras.applications' ImageNet files (the file
            without the top is loaded); or the path of a `.keras` file of a model that contains this backbone's
            layers (the trained classifier of a run folder, a detector with this backbone, or a saved backbone):
            each weighted layer takes the weights of the layer of the same name.
        maps: the names of the maps to return (`["C3", "C4", "C5"]`); all of them by default. A name that is no
            declared map but a layer of the body returns that layer's output under its name: Fast R-CNN reads
            VGG-16's `"block5_conv3"` (conv5_3, stride 16), the last convolution before the pooling that is `C5`.
        **kwargs: more keywords of the classifier's builder (`batch_norm`, `conv_bias`, ...), except those of its
            head.

    Returns:
        A functional `keras.Model` named `<name>_backbone` whose output is `{map name: (B, h, w, channels)}`.

    Raises:
        ModelError: the model has no backbone, a map name is unknown, or the weights do not fit.
    """
    declared = feature_maps(name)
    declared_names = [feature.name for feature in declared]
    layer_maps = [m for m in maps or () if m not in declared_names]
    chosen = _choose(declared, maps, name)
    for head_option in ("include_top", "pooling", "num_classes", "classifier_activation"):
        if head_option in kwargs:
            raise ValueError(f"{head_option} belongs to the classifier's head, not its backbone. Received: {kwargs}")
    builder_weights = "imagenet" if weights == "imagenet" else None
    body = info(name).builder(
        input_shape=input_shape or info(name).input_shape,
        include_top=False,
        weights=builder_weights,
        **kwargs,
    )
    layers = {layer.name for layer in body.layers}
    unknown = [m for m in layer_maps if m not in layers]
    if unknown:
        raise ModelError(
            f"The backbone of {name!r} has the maps {', '.join(declared_names)} and no map or layer named "
            f"{', '.join(unknown)}."
        )
    outputs = {feature.name: body.get_layer(feature.layer).output for feature in chosen}
    outputs |= {layer: body.get_layer(layer).output for layer in layer_maps}
    outputs = {m: outputs[m] for m in maps} if maps is not None else outputs  # in the order asked for
    model = keras.Model(body.inputs, outputs, name=f"{name}_backbone")
    if weights is not None and weights != "imagenet":
        load_backbone_weights(model, weights)
    return model


def load_backbone_weights(model: keras.Model, weights: str | os.PathLike) -> int:
    """Load `weights` into the backbone (or any model) `model`, layer by layer name.

    Args:
        model: the model to fill.
        weights: a `.keras` file holding every weighted layer of `model` under the same name and shapes, or a
            `.weights.h5` file saved from a model of exactly `model`'s architecture.

    Returns:
        The number of layers whose weights were loaded.
    """
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise ModelError(f"The weight file {path!r} does not exist.")
    if not path.endswith(".keras"):
        load_weights(model, path)
        return sum(1 for layer in model.layers if layer.weights)
    try:
        source = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as err:  # a damaged archive fails in many ways inside Keras; all mean the same here
        raise ModelError(f"{path!r} could not be loaded as a Keras model ({type(err).__name__}).") from None
    return copy_weights(source, model, layers=(layer.name for layer in model.layers if layer.weights))


def copy_weights(source: keras.Model, target: keras.Model, *, layers: Iterable[str]) -> int:
    """Copy the weights of the named `layers` from `source` into the layers of the same names in `target`.

    Returns:
        The number of layers copied.

    Raises:
        ModelError: a layer is missing from `source` or its weights have other shapes.
    """
    copied = 0
    for layer_name in layers:
        try:
            weights = source.get_layer(layer_name).get_weights()
        except ValueError:
            raise ModelError(f"{source.name!r} has no layer {layer_name!r}, so it cannot give its weights.") from None
        destination = target.get_layer(layer_name)
        shapes = [tuple(w.shape) for w in destination.weights]
        if [tuple(w.shape) for w in weights] != shapes:
            raise ModelError(
                f"The weights of layer {layer_name!r} in {source.name!r} do not have the shapes {shapes} of "
                f"{target.name!r}."
            )
        destination.set_weights(weights)
        copied += 1
    return copied


def transfer_backbone(source: keras.Model, target: keras.Model, *, backbone_name: str, **kwargs) -> int:
    """Copy the weights of the backbone `backbone_name`'s layers from `source` into `target`, two models built on
    that backbone (a classifier pre-trained on crops and the detector that reads its feature maps, say).

    Args:
        source: the model giving the weights.
        target: the model receiving them.
        backbone_name: the registered backbone both are built on.
        **kwargs: the backbone's builder keywords both were built with (`batch_norm=True`...).

    Returns:
        The number of layers copied.
    """
    body = backbone(backbone_name, input_shape=source.input_shape[1:], **kwargs)
    return copy_weights(source, target, layers=(layer.name for layer in body.layers if layer.weights))


def stage_layers(model: keras.Model, feature_maps: Sequence[FeatureMap]) -> list[list[str]]:
    """The layers of `model` in each stage of its backbone: those computed after one feature map and up to the next.

    Stage 0 runs from the input to the first map; stage i from map i-1 to map i. Layers after the last map (a
    head) belong to no stage.

    Args:
        model: a classifier, or a model built on the backbone (a new head after `attach_head`), with the maps'
            layers in it.
        feature_maps: the backbone's maps, shallow to deep (`kapps.models.feature_maps(name)`).

    Returns:
        One list of layer names per map, each in graph order.
    """
    seen: set[str] = set()
    stages = []
    for feature in feature_maps:
        try:
            output = model.get_layer(feature.layer).output
        except ValueError:
            raise ModelError(f"{model.name!r} has no layer {feature.layer!r} of feature map {feature.name}.") from None
        upstream = keras.Model(model.inputs, output)
        names = [layer.name for layer in upstream.layers if layer.name not in seen]
        seen.update(names)
        stages.append(names)
    return stages


def list_backbones() -> list[str]:
    """The registered models that offer a backbone, sorted."""
    return sorted(n for n in list_models() if info(n).feature_maps)


def _choose(declared: tuple[FeatureMap, ...], maps: Sequence[str] | None, name: str) -> tuple[FeatureMap, ...]:
    """The declared maps asked for (all of them for None); asking for no map at all is refused."""
    if maps is None:
        return declared
    if not maps:
        names = ", ".join(feature.name for feature in declared)
        raise ModelError(f"Ask the backbone of {name!r} for at least one map: it has {names}.")
    return tuple(feature for feature in declared if feature.name in maps)
