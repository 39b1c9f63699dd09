"""tf.data pipelines: named sources and the standard `source -> decode -> cache -> shuffle -> augment -> batch
-> prefetch` chain.

    >>> data = kapps.data.load("digits", image_size=(32, 32), seed=0)
    >>> train = kapps.data.pipeline(data.train, batch_size=64, training=True, augment=kapps.data.digit_augment())
"""

from kapps.data.pipeline import cifar_augment, digit_augment, pipeline, steps_per_epoch
from kapps.data.sources import SOURCES, Data, load
from kapps.data.subsets import subset_classes

__all__ = ["SOURCES", "Data", "cifar_augment", "digit_augment", "load", "pipeline", "steps_per_epoch", "subset_classes"]
