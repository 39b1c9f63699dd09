"""Input conventions: how the pixels a model was trained on relate to kapps' images, float32 RGB (or grey) in [0, 1].

Every kapps data source and `kapps predict` decode images to [0, 1]. Models trained by kapps from scratch take them
as they are (`"unit"`). Weights from keras.applications were trained on other inputs, and the model only gives
their answers on the same inputs, so each registered model names the convention of its ImageNet weights and a run
records the one it trained with (config.json `"preprocessing"`); the data pipeline, the export verification and
`kapps predict` apply it, for every runtime alike:

- `unit`: the images as they are; every model kapps trains from scratch.
- `caffe`: x 255, RGB -> BGR, minus the ImageNet mean (103.939, 116.779, 123.68) in BGR; keras.applications'
  `mode="caffe"`, the VGG16/19 and ResNet50/101/152 weights.
- `tf`: x 2 - 1, in [-1, 1]; `mode="tf"`, the InceptionV3 weights.
- `torch`: minus the mean (0.485, 0.456, 0.406), over the std (0.229, 0.224, 0.225), per RGB channel;
  `mode="torch"`, torchvision's weights.
"""

from __future__ import annotations

from kapps.errors import OptionError

import numpy as np

CONVENTIONS = ("unit", "caffe", "tf", "torch")
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)


def check_convention(convention: str) -> str:
    """`convention` if it is one of `CONVENTIONS`; raises `OptionError` naming them otherwise."""
    if convention not in CONVENTIONS:
        raise OptionError(f"Unknown input convention {convention!r}; choose one of {', '.join(CONVENTIONS)}.")
    return convention


def preprocess(images, convention: str):
    """Map images in [0, 1] to the input convention a model takes.

    Args:
        images: `(..., height, width, channels)` float images in [0, 1], a NumPy array or a TensorFlow tensor (the
            result is of the same kind, so this runs in tf.data pipelines and on NumPy batches alike).
        convention: one of `CONVENTIONS`.

    Returns:
        The images in the model's convention, float32.

    Raises:
        OptionError: an unknown convention, or an RGB convention for images that are not RGB.
    """
    check_convention(convention)
    if convention == "unit":
        return images
    channels = images.shape[-1]
    if channels != 3:
        raise OptionError(f"The {convention!r} input convention is for RGB images, not images of {channels} channels.")
    if isinstance(images, np.ndarray):
        return _preprocess_numpy(images.astype("float32"), convention)
    return _preprocess_tensor(images, convention)


def _preprocess_numpy(images: np.ndarray, convention: str) -> np.ndarray:
    if convention == "tf":
        return images * 2.0 - 1.0
    if convention == "torch":
        return (images - np.float32(TORCH_MEAN)) / np.float32(TORCH_STD)
    return images[..., ::-1] * 255.0 - np.float32(CAFFE_MEAN_BGR)


def _preprocess_tensor(images, convention: str):
    import tensorflow as tf

    images = tf.cast(images, tf.float32)
    if convention == "tf":
        return images * 2.0 - 1.0
    if convention == "torch":
        return (images - tf.constant(TORCH_MEAN)) / tf.constant(TORCH_STD)
    return tf.reverse(images, axis=[-1]) * 255.0 - tf.constant(CAFFE_MEAN_BGR)
