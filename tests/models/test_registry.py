"""Every registered model builds at its defaults with exactly its reference parameter count."""

import kapps.models
from kapps.errors import ModelError

import pytest


@pytest.mark.parametrize("name", kapps.models.list_models())
def test_registered_model_matches_reference_count(name):
    info = kapps.models.info(name)
    model = kapps.models.build(name)
    image = model.input["image"] if isinstance(model.input, dict) else model.input  # Fast R-CNN takes proposals too
    assert tuple(image.shape[1:]) == info.input_shape
    if info.task == "classification":
        assert model.output_shape[-1] == info.num_classes
    assert kapps.models.count_params(model, info.count_kind) == info.param_count, info.source
    # The declared feature maps are layers of the model, with the declared channels (strides: test_backbones.py).
    for feature in info.feature_maps:
        assert model.get_layer(feature.layer).output.shape[-1] == feature.channels, feature


def test_reference_counts_of_the_design():
    # ../shared/REFERENCE.md: lenet5, 32x32x1, 10 classes, full C3 -> 61,706 (all weights).
    assert kapps.models.info("lenet5").param_count == 61_706
    assert kapps.models.info("lenet5").count_kind == "all"


def test_list_models_filters_by_task():
    assert "lenet5" in kapps.models.list_models(task="classification")
    assert "lenet5" not in kapps.models.list_models(task="detection")
    assert "yolo_v1" in kapps.models.list_models(task="detection")
    with pytest.raises(ValueError, match="task must be"):
        kapps.models.list_models(task="poetry")


def test_unknown_model_names_the_known_ones():
    with pytest.raises(ModelError, match="no model named 'lenet6'.*lenet5"):
        kapps.models.build("lenet6")


def test_build_passes_keywords():
    model = kapps.models.build("lenet5", num_classes=3, input_shape=(36, 36, 3))
    assert model.input_shape == (None, 36, 36, 3)
    assert model.output_shape == (None, 3)
