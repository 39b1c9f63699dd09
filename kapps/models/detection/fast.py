"""Fast R-CNN (Girshick, "Fast R-CNN", ICCV 2015): one pass of the whole image, RoI pooling, sibling heads.

R-CNN ran its CNN once per proposal; Fast R-CNN runs it once per image and cuts each proposal's features out of
the last convolutional map by RoI max pooling (7x7), then two fully connected layers and two sibling outputs:
K + 1 class scores and a box per class. The proposals still come from outside the network (selective search),
so the model takes them as an input:

- `fast_rcnn` builds the network, `{"image", "proposals"}` in, detections out (per-class box decoding and NMS
  inside); the defaults are the paper's VGG-16 detector.
- `FastRCNNTrainer` trains it on the multitask loss (log loss + smooth L1, lambda 1) over mini-batches of RoIs
  sampled from each image's proposals, 25% foreground (IoU >= 0.5), background in [0.1, 0.5).
- `FastRCNN` is the detector a user calls on images: selective search (OpenCV) on each image, then the network.
  Like R-CNN it is a pipeline, not one graph: its time per image includes the proposals, the bottleneck Faster
  R-CNN's RPN removes.

`box_head` and `FastRCNNTrainer` are also Faster R-CNN's (`kapps.models.detection.two_stage`): its trainer adds
the RPN's loss and takes its proposals from the RPN instead of the data.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from kapps.detection import roi_targets
from kapps.detection.regions import SelectiveSearch, pad_proposals, to_uint8
from kapps.layers.detection import NonMaxSuppression
from kapps.layers.two_stage import ClassBoxes, PyramidRoIPool
from kapps.losses import box_head_losses
from kapps.models._common import load_weights, model_input
from kapps.models.backbones import backbone as make_backbone
from kapps.registry import register_model

import keras
import numpy as np
import tensorflow as tf


@register_model(
    task="detection",
    input_shape=(600, 600, 3),
    num_classes=20,
    param_count=134_674_341,
    source=(
        "Fast R-CNN's VGG-16 (Girshick 2015; the released Caffe model: 14,714,688 convolution weights, fc6 "
        "102,764,544, fc7 16,781,312, 21 class scores 86,037 and 84 box outputs 344,148, 134,690,729 in all), less "
        "the 16,388 weights of the background's box, which kapps does not regress"
    ),
)
def fast_rcnn(
    *,
    input_shape: tuple[int | None, int | None, int] = (600, 600, 3),
    num_classes: int = 20,
    backbone: str = "vgg16",
    backbone_weights: str | None = None,
    feature_map: str = "block5_conv3",
    pooler: str = "max",
    pool_size: int = 7,
    sampling_ratio: int = 2,
    head_units: int = 4096,
    max_detections: int = 100,
    iou_threshold: float = 0.3,
    score_threshold: float = 0.05,
    weights: str | None = None,
    name: str = "fast_rcnn",
    **backbone_kwargs,
) -> keras.Model:
    """Fast R-CNN's network: an image and its proposals in, detections out.

    The defaults are the paper's (Girshick 2015, sec. 2): VGG-16's convolutions up to conv5_3 (stride 16; the
    last max pooling gives way to RoI pooling), RoI max pooling to 7x7, fc6 and fc7 of 4,096 units, K + 1 class
    scores and 4 K box deltas, per-class NMS at IoU 0.3 (the released code's test setting). Any registered
    backbone works, reading one of its maps (`kapps.models.feature_maps`) or a layer of its body.

    Proposals are `rel_xyxy` boxes, as many per image as the caller likes; all-zero rows are padding and never
    become detections.

    Args:
        input_shape: `(H, W, 3)`; height and width may be None, as nothing in the network depends on them.
        num_classes: K, the object classes (the head adds the background).
        backbone: a registered model with feature maps (`kapps.models.list_backbones()`).
        backbone_weights: the backbone's weights: None, `"imagenet"` or a file (`kapps.models.backbone`).
        feature_map: the backbone's map, or a layer of its body, that the RoIs are pooled from.
        pooler: `"max"` (RoI max pooling, the paper's) or `"align"` (RoIAlign).
        pool_size: the pooled grid.
        sampling_ratio: RoIAlign's samples per bin and axis (unused by max pooling).
        head_units: width of fc6 and fc7.
        max_detections: detections kept per image.
        iou_threshold: per-class NMS IoU.
        score_threshold: class scores at or below this are never detections.
        weights: None or the path of a weight file of this architecture.
        name: model name.
        **backbone_kwargs: more keywords of the backbone's builder (`batch_norm`, ...).

    Returns:
        A functional `keras.Model` from `{"image": (B, H, W, 3), "proposals": (B, P, 4)}` to `{"boxes": (B, K, 4)
        rel_xyxy, "scores": (B, K), "classes": (B, K), "num_detections": (B,)}`; its layers include `roi_pool`,
        `box_head` (a nested model) and `class_boxes`, which `FastRCNNTrainer` reads.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer. Received: num_classes={num_classes!r}")
    image = model_input(input_shape, name="image")
    proposals = keras.Input((None, 4), name="proposals")
    body = make_backbone(
        backbone, input_shape=input_shape, weights=backbone_weights, maps=[feature_map], **backbone_kwargs
    )
    feature = body(image)[feature_map]
    pooled = PyramidRoIPool(
        pool_size,
        pooler=pooler,
        sampling_ratio=sampling_ratio,
        image_size=[s or 1 for s in input_shape[:2]],  # only a pyramid's level rule reads it
        name="roi_pool",
    )([feature], proposals)
    class_logits, box_deltas = box_head(
        pool_size=pool_size, channels=feature.shape[-1], units=head_units, num_classes=num_classes
    )(pooled)
    candidates = ClassBoxes(num_classes, name="class_boxes")(proposals, class_logits, box_deltas)
    detections = NonMaxSuppression(
        max_detections=max_detections,
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
        per_class=True,
        name="nms",
    )(candidates["boxes"], candidates["class_scores"])
    model = keras.Model({"image": image, "proposals": proposals}, detections, name=name)
    load_weights(model, weights)
    return model


def box_head(*, pool_size: int, channels: int, units: int, num_classes: int, name: str = "box_head") -> keras.Model:
    """Fast R-CNN's RoI head: each RoI's pooled features through two fully connected layers (`fc6`, `fc7`), then
    sibling layers for K + 1 class logits and 4 K deltas (Girshick 2015, sec. 2; FPN's "2-fc MLP head").

    Returns:
        A `keras.Model` from `(B, N, pool, pool, channels)` to `[(B, N, C + 1), (B, N, 4 C)]`.
    """
    inputs = keras.Input((None, pool_size, pool_size, channels), name=f"{name}_input")
    x = keras.layers.Reshape((-1, pool_size * pool_size * channels), name="roi_flatten")(inputs)
    x = keras.layers.Dense(units, activation="relu", name="fc6")(x)
    x = keras.layers.Dense(units, activation="relu", name="fc7")(x)
    logits = keras.layers.Dense(
        num_classes + 1, kernel_initializer=keras.initializers.RandomNormal(stddev=0.01), dtype="float32", name="cls"
    )(x)
    deltas = keras.layers.Dense(
        4 * num_classes, kernel_initializer=keras.initializers.RandomNormal(stddev=0.001), dtype="float32", name="box"
    )(x)
    return keras.Model(inputs, [logits, deltas], name=name)


@keras.saving.register_keras_serializable(package="kapps")
class FastRCNNTrainer(keras.Model):
    """Trains a `fast_rcnn` network on its multitask loss (Girshick 2015, sec. 2.3).

    A training step takes images and targets `{"boxes": (B, G, 4), "classes": (B, G), "proposals": (B, P, 4)}`
    (ground truth padded with class -1, proposals with zero rows), samples `roi_samples` RoIs per image among the
    proposals and the true boxes with `kapps.detection.roi_targets` (25% foreground at IoU >= 0.5, background at
    IoU in `background_iou`), pools them from the feature map, and minimises the head's log loss plus the smooth
    L1 of the true class's box (lambda 1, `kapps.losses.box_head_losses`). The paper's mini-batch is 2 images of
    64 RoIs. The metrics are `loss`, `class_loss` and `box_loss`; `test_step` samples with a fixed seed. Calling
    the trainer runs the network; it holds and trains the network's own layers (`trainer.detector`).

    `FasterRCNNTrainer` is this trainer with a region proposal network: it overrides `features` and `losses_of`,
    and adds its terms to `TERMS`.

    Args:
        detector: the network to train; its weights are trained in place.
        roi_samples: RoIs sampled per image (64 in Fast R-CNN, 128 in Faster R-CNN's code).
        roi_positive_fraction: the foreground share of the RoIs (0.25).
        background_iou: the IoU range of background RoIs, `[low, high)`: Fast R-CNN's `(0.1, 0.5)` mines hard
            examples among proposals that touch an object.
        seed: the seed of the sampling.
    """

    # The loss terms, in the order the metrics report them; a subclass with more heads adds its own.
    TERMS = ("class_loss", "box_loss")

    def __init__(
        self,
        detector: keras.Model,
        *,
        roi_samples: int = 64,
        roi_positive_fraction: float = 0.25,
        background_iou: Sequence[float] = (0.1, 0.5),
        seed: int = 0,
        **kwargs,
    ):
        kwargs.setdefault("name", f"{detector.name}_trainer")
        super().__init__(**kwargs)
        self.detector = detector
        self.roi_samples = int(roi_samples)
        self.roi_positive_fraction = float(roi_positive_fraction)
        self.background_iou = tuple(float(v) for v in background_iou)
        self.seed = int(seed)
        self.roi_pool = detector.get_layer("roi_pool")
        self.box_head = detector.get_layer("box_head")
        self.features = self.feature_model(detector)
        self.sampling_seed = keras.random.SeedGenerator(self.seed, name="sampling_seed")
        self.trackers = {key: keras.metrics.Mean(name=key) for key in ("loss", *self.TERMS)}
        self.built = True  # every weight is the detector's, built with it

    def feature_model(self, detector: keras.Model) -> keras.Model:
        """A model from the detector's image input to what `losses_of` reads: `{"maps": the RoI pool's maps}`."""
        return keras.Model(detector.get_layer("image").output, {"maps": self.roi_maps(detector)}, name="features")

    def roi_maps(self, detector: keras.Model) -> list:
        """The feature maps the detector's `roi_pool` reads, shallow to deep."""
        return list(detector.get_layer("roi_pool").input[:-1])

    def call(self, inputs, training=False):
        return self.detector(inputs, training=training)

    def compile(self, optimizer, **kwargs):
        super().compile(optimizer=optimizer, **kwargs)
        self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def losses_of(self, images, targets, *, seed, training: bool) -> dict:
        """The loss terms and their sum on one batch, as a dict of scalars."""
        outputs = self.features(images, training=training)
        terms = self.roi_head_terms(outputs["maps"], targets["proposals"], targets, seed=seed, training=training)
        return {"loss": sum(terms.values()), **terms}

    def roi_head_terms(self, maps, proposals, targets, *, seed, training: bool) -> dict:
        """The RoI heads' terms: RoIs sampled among `proposals` and the ground truth, the box head's class and box
        losses, and those of `head_terms`."""
        rois = roi_targets(
            proposals,
            targets["boxes"],
            targets["classes"],
            seed=seed,
            num_samples=self.roi_samples,
            positive_fraction=self.roi_positive_fraction,
            background_iou=self.background_iou,
        )
        pooled = self.roi_pool(maps, rois["rois"])
        class_logits, deltas = self.box_head(pooled, training=training)
        class_loss, box_loss = box_head_losses(rois["labels"], rois["deltas"], class_logits, deltas)
        extra = self.head_terms(maps, rois, targets, training=training)
        return {"class_loss": class_loss, "box_loss": box_loss, **extra}

    def head_terms(self, maps, rois, targets, *, training: bool) -> dict:
        """More loss terms from more RoI heads, by name (`TERMS`): none here; Mask R-CNN's mask loss in a subclass.

        Args:
            maps: the RoI head's feature maps, shallow to deep.
            rois: `kapps.detection.roi_targets`' sampled RoIs, their labels, deltas and matched ground-truth rows.
            targets: the batch's ground truth.
            training: whether the step trains.
        """
        return {}

    def train_step(self, data):
        images, targets = data[0], data[1]  # (x, y) from a dataset, (x, y, None) from train_on_batch
        seed = tf.cast(self.sampling_seed.next(), tf.int64)
        # Each replica's loss is its share of the global batch's: a distribution strategy sums the replicas' gradients.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            terms = self.losses_of(images, targets, seed=seed, training=True)
            # under mixed_float16, compile() made the optimizer a LossScaleOptimizer, which unscales in apply()
            scaled = self.optimizer.scale_loss(terms["loss"] / replicas)
        variables = self.trainable_variables
        self.optimizer.apply(tape.gradient(scaled, variables), variables)
        return self._update(terms)

    def test_step(self, data):
        images, targets = data[0], data[1]  # (x, y) from a dataset, (x, y, None) from train_on_batch
        terms = self.losses_of(images, targets, seed=tf.constant([self.seed, 1], tf.int64), training=False)
        return self._update(terms)

    def _update(self, terms: dict) -> dict:
        for key, value in terms.items():
            self.trackers[key].update_state(value)
        return {key: tracker.result() for key, tracker in self.trackers.items()}

    def get_config(self):
        return {
            **super().get_config(),
            "detector": keras.saving.serialize_keras_object(self.detector),
            "roi_samples": self.roi_samples,
            "roi_positive_fraction": self.roi_positive_fraction,
            "background_iou": list(self.background_iou),
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["detector"] = keras.saving.deserialize_keras_object(config["detector"])
        return cls(**config)


class FastRCNN:
    """A Fast R-CNN detector on images: selective search on each image (OpenCV, on the CPU), then the network.

    Called like an inference model, images `(B, H, W, 3)` in [0, 1] in, `{"boxes", "scores", "classes",
    "num_detections"}` as NumPy arrays out, so `kapps.metrics.evaluate_detector`, `collect_detections` and
    `kapps.viz.plot_detections` take it; their time per image includes the search, as a user's would.

    Args:
        network: a `fast_rcnn` model (`{"image", "proposals"}` in).
        search: the proposal function, `uint8 (H, W, 3) -> (N, 4) rel_xyxy`; selective search's fast mode by default.
    """

    def __init__(self, network: keras.Model, search: Callable[[np.ndarray], np.ndarray] | None = None):
        self.network = network
        self.search = search or SelectiveSearch()
        self._run = tf.function(lambda inputs: network(inputs, training=False), reduce_retracing=True)

    def proposals(self, images) -> np.ndarray:
        """`(B, P, 4)` proposals of a batch of images in [0, 1], padded with zero rows to a multiple of 64."""
        return pad_proposals([self.search(image) for image in to_uint8(images)], multiple=64)

    def __call__(self, images, training: bool = False) -> dict[str, np.ndarray]:
        images = np.asarray(images, np.float32)
        found = self._run({"image": tf.constant(images), "proposals": tf.constant(self.proposals(images))})
        return {key: np.asarray(value) for key, value in found.items()}

    @classmethod
    def load(cls, folder: str | Path) -> FastRCNN:
        """The detector of a `recipes/fast_rcnn.py` run folder: `model.keras` with the search of `config.json`."""
        folder = Path(folder)
        config = json.loads((folder / "config.json").read_text())
        network = keras.saving.load_model(folder / "model.keras", compile=False, safe_mode=True)
        return cls(network, SelectiveSearch(**config.get("proposals", {})))
