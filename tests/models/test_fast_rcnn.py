"""Fast R-CNN: the network that takes proposals, its trainer, the detector that runs selective search in front of it,
the proposals carried through tf.data, and the backbone map it reads."""

import kapps.models
from kapps.data.regions import with_proposals
from kapps.detection import regions
from kapps.detection.regions import SelectiveSearch, pad_proposals
from kapps.errors import ModelError
from kapps.metrics import evaluate_detector
from kapps.models.detection.fast import FastRCNN, FastRCNNTrainer, fast_rcnn

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.detection.test_suppression import iou_matrix
from tests.models.test_faster_rcnn import SIZE, scenes


def small_network(**kwargs) -> keras.Model:
    options = {
        "input_shape": (SIZE, SIZE, 3),
        "num_classes": 3,
        "backbone": "resnet10_narrow",
        "feature_map": "C3",
        "head_units": 32,
        **kwargs,
    }
    return fast_rcnn(**options)


def jittered_proposals(boxes, classes, *, count: int = 24, seed: int = 0) -> np.ndarray:
    """Proposals as selective search gives them: boxes near each object (some foreground, some background by IoU)
    and boxes anywhere, `(B, count, 4)` with the last rows zero (padding)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((len(boxes), count, 4), np.float32)
    for i, (image_boxes, image_classes) in enumerate(zip(boxes, classes, strict=True)):
        found = []
        for box in image_boxes[image_classes >= 0]:
            side = box[2:] - box[:2]
            for _ in range(8):
                shift = rng.uniform(-0.4, 0.4, 2) * side
                found.append(np.concatenate([box[:2] + shift, box[2:] + shift]))
        for _ in range(count - 4 - len(found)):
            corner = rng.uniform(0, 0.7, 2)
            found.append(np.concatenate([corner, corner + rng.uniform(0.1, 0.3, 2)]))
        out[i, : len(found)] = np.clip(found, 0.0, 1.0)
    return out


def test_the_registered_default_is_the_papers_vgg16_detector():
    info = kapps.models.info("fast_rcnn")
    assert info.task == "detection" and info.input_shape == (600, 600, 3) and info.num_classes == 20
    # the released Caffe model: conv 14,714,688 + fc6 102,764,544 + fc7 16,781,312 + cls 86,037 + bbox 344,148,
    # less the background's box (4,096 x 4 + 4)
    assert info.param_count == 14_714_688 + 102_764_544 + 16_781_312 + 86_037 + 344_148 - (4_096 * 4 + 4)


def test_the_paper_reads_conv5_3_at_stride_16():
    """A layer of the body is a map too: VGG-16's conv5_3, before the pooling that is C5, is Fast R-CNN's."""
    body = kapps.models.backbone("vgg16", input_shape=(96, 96, 3), maps=["block5_conv3", "C5"])
    assert list(body.output) == ["block5_conv3", "C5"]
    assert body.output["block5_conv3"].shape == (None, 6, 6, 512) and body.output["C5"].shape == (None, 3, 3, 512)
    with pytest.raises(ModelError, match="no map or layer named block9_conv1"):
        kapps.models.backbone("vgg16", maps=["block9_conv1"])


def test_padding_rows_are_never_detections_and_change_nothing():
    keras.utils.set_random_seed(0)
    model = small_network(score_threshold=0.0)
    images = np.random.default_rng(0).uniform(size=(2, SIZE, SIZE, 3)).astype("float32")
    none = model({"image": images, "proposals": np.zeros((2, 10, 4), "float32")})
    assert none["num_detections"].numpy().tolist() == [0, 0]
    boxes = np.array([[0.1, 0.1, 0.5, 0.6], [0.4, 0.3, 0.9, 0.8], [0.0, 0.5, 0.3, 1.0]], "float32")
    few = model({"image": images, "proposals": np.stack([boxes, boxes])})
    padded = model({"image": images, "proposals": pad_proposals([boxes, boxes], rows=40)})
    for key in ("boxes", "scores", "classes", "num_detections"):
        np.testing.assert_allclose(padded[key], few[key], atol=1e-6)
    assert few["num_detections"].numpy().min() > 0


def test_the_trainer_learns_from_given_proposals_and_saves_with_its_network(tmp_path):
    """Trained on proposals jittered around the objects (and boxes anywhere), the network finds every object of
    the scenes at IoU >= 0.5 with its class from new proposals, and the trainer saves and loads."""
    keras.utils.set_random_seed(0)
    network = kapps.models.set_bn_momentum(small_network(score_threshold=0.3), 0.9)
    trainer = FastRCNNTrainer(network, roi_samples=16)
    trainer.compile(optimizer=keras.optimizers.Adam(3e-3))
    images, targets = scenes()
    targets = {**targets, "proposals": jittered_proposals(targets["boxes"], targets["classes"])}
    data = tf.data.Dataset.from_tensor_slices((images, targets)).batch(2).repeat()
    history = trainer.fit(data, steps_per_epoch=20, epochs=4, verbose=0).history
    assert list(history) == ["box_loss", "class_loss", "loss"]
    assert history["loss"][-1] < 0.5 * history["loss"][0], history["loss"]
    fresh = jittered_proposals(targets["boxes"], targets["classes"], seed=1)
    found = network({"image": images, "proposals": fresh})
    for i in range(len(images)):
        for box, cls in zip(targets["boxes"][i][:2], targets["classes"][i][:2], strict=True):
            same = found["classes"][i].numpy() == cls
            best = iou_matrix(np.concatenate([box[None], found["boxes"][i].numpy()[same]]))[0, 1:].max(initial=0)
            assert best >= 0.5, (i, cls)
    trainer.save(tmp_path / "trainer.keras")
    loaded = keras.saving.load_model(tmp_path / "trainer.keras", safe_mode=True, compile=False)
    again = loaded.detector({"image": images, "proposals": fresh})
    for key in ("boxes", "scores", "classes", "num_detections"):
        np.testing.assert_array_equal(again[key], found[key])


def test_the_detector_runs_the_search_then_the_network():
    """`FastRCNN` on images equals the network on the searched proposals, and evaluation takes it."""
    network = small_network(score_threshold=0.0)
    images, targets = scenes(count=3)
    search = SelectiveSearch(mode="single", max_proposals=30)
    found = FastRCNN(network, search)(images)
    proposals = pad_proposals([search(image) for image in np.round(images * 255).astype("uint8")], multiple=64)
    assert proposals.shape == (3, 64, 4)
    direct = tf.function(network)({"image": images, "proposals": proposals})  # traced too: the same arithmetic
    for key in ("boxes", "scores", "classes", "num_detections"):
        np.testing.assert_array_equal(found[key], direct[key])
    dataset = tf.data.Dataset.from_tensor_slices((images, targets)).batch(2)
    metrics = evaluate_detector(FastRCNN(network, search), dataset, class_names=["a", "b", "c"])
    assert 0.0 <= metrics["map50"] <= 1.0 and metrics["seconds_per_image"] > 0


def test_a_remembering_search_searches_each_image_once(monkeypatch):
    calls = []
    real = regions.selective_search
    monkeypatch.setattr(regions, "selective_search", lambda image, **kw: calls.append(1) or real(image, **kw))
    images = (scenes(count=2)[0] * 255).astype("uint8")
    search = SelectiveSearch(mode="single", remember=True)
    first = [search(image) for image in images]
    again = [search(image) for image in images]
    assert len(calls) == 2 and all(a is b for a, b in zip(first, again, strict=True))
    SelectiveSearch(mode="single")(images[0])
    SelectiveSearch(mode="single")(images[0])
    assert len(calls) == 4


def test_proposals_ride_along_with_their_scenes():
    """Each scene's targets carry its own proposals, in order, padded to the longest list."""
    images, targets = scenes(count=5)
    split = tf.data.Dataset.from_tensor_slices((images, targets))

    def search(image):  # a proposal function that says which image it saw: its mean pixel, and as many rows
        return np.full((1 + int(image.mean()) % 4, 4), image.mean() / 255, np.float32)

    joined, table = with_proposals(split, search, progress=False)
    rows = max(1 + int(np.round(i * 255).mean()) % 4 for i in images)
    assert table.shape == (5, rows, 4) and joined.cardinality() == 5
    for index, ((image, example), expected) in enumerate(zip(joined.as_numpy_iterator(), table, strict=True)):
        np.testing.assert_array_equal(example["proposals"], expected)
        np.testing.assert_array_equal(example["boxes"], targets["boxes"][index])
        assert np.isclose(expected[0, 0], np.round(image * 255).astype("uint8").mean() / 255)
