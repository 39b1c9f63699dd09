"""Input conventions: kapps' transforms of [0, 1] images equal keras.applications' `preprocess_input`, and a
kapps model with keras.applications weights and its registered convention answers as keras.applications does."""

import kapps.models
from kapps.errors import OptionError
from kapps.preprocessing import CONVENTIONS, preprocess

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf


@pytest.fixture(scope="module")
def photo():
    """scikit-image's astronaut photograph (shipped with the package), 64x64 uint8 RGB."""
    from skimage import data, transform

    image = transform.resize(data.astronaut(), (64, 64), anti_aliasing=True, preserve_range=True)
    return image.round().astype("uint8")


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
def test_conventions_are_keras_applications_modes(mode, photo):
    pixels = photo[None].astype("float32")
    expected = keras.applications.imagenet_utils.preprocess_input(pixels.copy(), mode=mode)
    np.testing.assert_allclose(preprocess(pixels / 255.0, mode), expected, rtol=1e-5, atol=1e-4)
    tensor = preprocess(tf.constant(pixels / 255.0), mode)
    assert isinstance(tensor, tf.Tensor)
    np.testing.assert_allclose(tensor.numpy(), expected, rtol=1e-5, atol=1e-4)


def test_unit_is_the_identity_and_bad_conventions_are_one_sentence(photo):
    images = photo[None] / 255.0
    assert preprocess(images, "unit") is images
    assert CONVENTIONS == ("unit", "caffe", "tf", "torch")
    with pytest.raises(OptionError, match="Unknown input convention 'bgr'; choose one of unit, caffe, tf, torch."):
        preprocess(images, "bgr")
    with pytest.raises(OptionError, match="is for RGB images, not images of 1 channels"):
        preprocess(np.zeros((1, 8, 8, 1), "float32"), "caffe")


def test_registered_conventions():
    conventions = {name: kapps.models.info(name).input_convention("imagenet") for name in kapps.models.list_models()}
    assert {name for name, c in conventions.items() if c == "caffe"} == {
        "vgg16",
        "vgg19",
        "resnet50",
        "resnet101",
        "resnet152",
    }
    assert conventions["inception_v3"] == "tf"
    assert kapps.models.info("resnet50").input_convention(None) == "unit"  # trained by kapps: its own [0, 1]
    assert kapps.models.info("resnet50").input_convention("weights.keras") == "unit"


def _random_statistics(model, seed):
    """Random batch-norm scales, offsets and moving statistics (the kernels keep their random initialisation), so a
    weight file that swapped any two of them would not give keras.applications' outputs."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                    rng.normal(0, 0.1, beta.shape).astype("float32"),
                    rng.normal(0, 0.1, mean.shape).astype("float32"),
                    rng.uniform(0.5, 1.5, variance.shape).astype("float32"),
                ]
            )
    return model


def _cache(model, folder, file):
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

    (folder / "models").mkdir(exist_ok=True)
    with h5py.File(folder / "models" / file, "w") as f:
        save_weights_to_hdf5_group(f, model)


@pytest.mark.parametrize(
    ("name", "reference", "module", "file", "kwargs"),
    [
        ("resnet50", keras.applications.ResNet50, keras.applications.resnet50,
         "resnet50_weights_tf_dim_ordering_tf_kernels.h5", {"classifier_activation": None}),
        ("vgg16", keras.applications.VGG16, keras.applications.vgg16,
         "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", {"include_top": False, "pooling": "avg"}),
    ],
)  # fmt: skip
def test_imagenet_weights_with_their_convention_answer_as_keras_applications(
    tmp_path, monkeypatch, photo, name, reference, module, file, kwargs
):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    keras.utils.set_random_seed(0)
    theirs = _random_statistics(reference(weights=None, input_shape=(64, 64, 3), **kwargs), 0)
    _cache(theirs, tmp_path, file)
    ours = kapps.models.build(name, weights="imagenet", input_shape=(64, 64, 3), **kwargs)
    expected = np.asarray(theirs(module.preprocess_input(photo[None].astype("float32"))))
    convention = kapps.models.info(name).input_convention("imagenet")
    got = np.asarray(ours(preprocess(photo[None] / 255.0, convention)))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    unconverted = np.asarray(ours(photo[None] / 255.0))
    assert np.abs(unconverted - expected).max() > 10 * np.abs(got - expected).max() + 1e-6
