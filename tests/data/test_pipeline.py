"""The recipe skeleton's data side: three batched splits in the model's input convention, and the default
augmentation of a source."""

import kapps.data
import kapps.train
from kapps.preprocessing import CAFFE_MEAN_BGR

import numpy as np


def _first_images(ds):
    return next(iter(ds))[0].numpy()


def test_splits_batch_and_convert_every_split():
    data = kapps.data.load("digits", image_size=(16, 16), seed=0, channels=3)
    plain = kapps.data.splits(data, batch_size=8, seed=0)
    caffe = kapps.data.splits(data, batch_size=8, seed=0, preprocessing="caffe", eval_batch_size=5)
    assert _first_images(plain.train).shape == (8, 16, 16, 3) and _first_images(caffe.val).shape == (5, 16, 16, 3)
    for split in ("train", "val", "test"):
        converted = _first_images(getattr(caffe, split))
        images = _first_images(getattr(plain, split))[: len(converted)]
        assert images.min() >= 0.0 and images.max() <= 1.0
        # caffe: x 255, RGB -> BGR, minus the BGR mean; the training stream is the same (seeded) first batch
        np.testing.assert_allclose(converted, images[..., ::-1] * 255 - np.float32(CAFFE_MEAN_BGR), atol=1e-3)


def test_default_augmentation_never_mirrors_digits():
    digits = kapps.data.default_augment("digits", image_size=32, seed=0)
    mnist = kapps.data.default_augment("tfds:mnist", image_size=32, seed=0)
    cifar = kapps.data.default_augment("tfds:cifar10", image_size=32, seed=0)
    names = {
        label: [layer.name for layer in fn.__closure__[0].cell_contents.layers]
        for label, fn in (("digits", digits), ("mnist", mnist), ("cifar", cifar))
    }
    assert not any("flip" in n for n in names["digits"] + names["mnist"])
    assert any("flip" in n for n in names["cifar"])


def test_run_config_comes_from_the_registry():
    data = kapps.data.load("digits", image_size=(32, 32), seed=0)
    config = kapps.train.run_config("resnet50", kwargs={"weights": "imagenet", "num_classes": 10}, data=data)
    assert config["task"] == "classification" and config["preprocessing"] == "caffe"
    assert config["model"] == {"name": "resnet50", "kwargs": {"weights": "imagenet", "num_classes": 10}}
    assert config["data"]["spec"] == "digits"
    assert kapps.train.run_config("yolo_v1", kwargs={}, data=data, phase="x")["task"] == "detection"
    assert kapps.train.run_config("lenet5", kwargs={}, data=data)["preprocessing"] == "unit"
