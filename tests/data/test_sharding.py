"""How a worker of multi-worker training reads its input: by file for a folder source's training split (each
worker its own files, in per-replica batches), by data for everything else (the same global batches everywhere).
The workers are simulated with `set_input_workers`; the cluster runs in tests/train/test_multi_worker.py."""

import kapps.data
from kapps.data.sharding import input_workers, is_worker_share, set_input_workers
from kapps.errors import DataError

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from tests.data.shares import assert_shared_by_file

DATA, OFF = tf.data.experimental.AutoShardPolicy.DATA, tf.data.experimental.AutoShardPolicy.OFF
COUNT = 40  # images, each filled with its own grey level


@pytest.fixture
def worker():
    """`worker(count, index)` makes this process that worker, until the test ends."""
    yield lambda count, index: set_input_workers(count, index, replicas=count)
    set_input_workers(1, 0, replicas=1)


@pytest.fixture(scope="module")
def numbered_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("numbered")
    for i in range(COUNT):
        (root / str(i % 2)).mkdir(exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), 5 * i, np.uint8)).save(root / str(i % 2) / f"{i:02d}.png")
    return f"folder:{root}"


def _numbers(images) -> list[int]:
    return [round(float(v) * 255 / 5) for v in images[:, 0, 0, 0]]


def _first_examples(ds, count: int) -> list[int]:
    numbers = []
    for images, _ in ds:
        numbers += _numbers(images.numpy())
        if len(numbers) >= count:
            return numbers[:count]
    raise AssertionError("the stream ended")


def test_a_folder_is_read_by_file_in_training(numbered_folder, worker):
    data = kapps.data.load(numbered_folder, image_size=(8, 8), seed=0)
    assert_shared_by_file(data)
    train_numbers = sorted(_numbers(kapps.data.base.as_arrays(data.train)[0]))
    assert len(train_numbers) == data.sizes["train"] == 28
    shares = []
    for index in (0, 1):
        worker(2, index)
        splits = kapps.data.splits(data, batch_size=8, seed=0)
        assert is_worker_share(splits.train)
        first = next(iter(splits.train))[0]
        assert first.shape == (4, 8, 8, 3)  # the global batch of 8 split between 2 replicas
        # The worker's first epoch is its half of the training files, each once.
        shares.append(_first_examples(splits.train, 14))
        assert len(set(shares[-1])) == 14
        # Validation and test: the whole split in global batches, for tf.distribute to shard by data.
        for split in (splits.val, splits.test):
            assert not is_worker_share(split)
            assert split.options().experimental_distribute.auto_shard_policy == DATA
    assert not set(shares[0]) & set(shares[1])
    assert sorted(shares[0] + shares[1]) == train_numbers


def test_an_embedded_source_is_read_by_data(worker):
    data = kapps.data.load("digits", image_size=(16, 16), seed=0)
    reference = kapps.data.splits(data, batch_size=8, seed=0).train
    worker(2, 1)
    splits = kapps.data.splits(data, batch_size=8, seed=0)
    assert not is_worker_share(splits.train)
    assert splits.train.options().experimental_distribute.auto_shard_policy == DATA
    # Every worker makes the global batches one process makes; tf.distribute gives each its slice.
    for got, expected in zip(splits.train.take(3), reference.take(3), strict=True):
        np.testing.assert_array_equal(got[1], expected[1])


def test_a_batch_that_does_not_split_between_replicas(numbered_folder, worker):
    data = kapps.data.load(numbered_folder, image_size=(8, 8), seed=0)
    worker(2, 0)
    with pytest.raises(DataError, match="The batch size 9 does not split evenly between the 2 replicas"):
        kapps.data.splits(data, batch_size=9, seed=0)


def test_one_process_reads_everything(numbered_folder):
    assert input_workers() == (1, 0)
    data = kapps.data.load(numbered_folder, image_size=(8, 8), seed=0)
    splits = kapps.data.splits(data, batch_size=8, seed=0)
    assert not is_worker_share(splits.train)
    assert next(iter(splits.train))[0].shape[0] == 8


def test_places_out_of_range():
    with pytest.raises(ValueError, match="index must be in"):
        set_input_workers(2, 2, replicas=2)


class KappsShardedNumbers(tfds.core.GeneratorBasedBuilder):
    """A tensorflow-datasets set written here, not downloaded: 40 training and 10 test images, each filled with its
    own grey level, the training split in 4 TFRecord files."""

    VERSION = tfds.core.Version("1.0.0")
    # No source folder for checksums: finding one needs the importlib_resources backport, which nothing else needs.
    code_path = None

    def _info(self):
        features = {"image": tfds.features.Image(shape=(8, 8, 1)), "label": tfds.features.ClassLabel(num_classes=2)}
        return tfds.core.DatasetInfo(
            builder=self, features=tfds.features.FeaturesDict(features), supervised_keys=("image", "label")
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 40), "test": self._generate_examples(40, 50)}

    def _generate_examples(self, start, stop):
        for i in range(start, stop):
            yield i, {"image": np.full((8, 8, 1), 5 * i, np.uint8), "label": i % 2}


def test_a_tfds_split_is_read_by_file_when_its_files_go_round(tmp_path, worker):
    KappsShardedNumbers(data_dir=tmp_path).download_and_prepare(
        download_config=tfds.download.DownloadConfig(num_shards=4)
    )
    data = kapps.data.load("tfds:kapps_sharded_numbers", data_dir=str(tmp_path), image_size=(8, 8))
    assert data.sizes == {"train": 36, "val": 4, "test": 10}  # train[:90%] spans the 4 files
    assert_shared_by_file(data)
    worker(2, 1)
    assert is_worker_share(kapps.data.splits(data, batch_size=8, seed=0).train)
    # More workers than files: every worker reads the whole split, sharded by data.
    assert data.worker_train(5, 0) is None
    worker(5, 0)
    assert not is_worker_share(kapps.data.splits(data, batch_size=10, seed=0).train)
