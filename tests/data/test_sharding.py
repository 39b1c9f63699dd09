"""How a worker of multi-worker training reads its input: by file for a folder source's training split (each
worker its own files, in per-replica batches), by data for everything else (the same global batches everywhere).
The workers are simulated with `set_input_workers`; the cluster runs in tests/train/test_multi_worker.py."""

import kapps.data
from kapps.data.sharding import input_workers, is_worker_share, set_input_workers
from kapps.errors import DataError

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

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


def assert_shared_by_file(data, *, workers: int = 2) -> None:
    """`data.worker_train` gives each of `workers` workers its own examples of the training split, all of them
    once between them (examples told apart by their image's bytes)."""

    def images(ds) -> list[bytes]:
        return [np.asarray(example[0]).tobytes() for example in ds.as_numpy_iterator()]

    everything = images(data.train)
    shares = [images(data.worker_train(workers, index)) for index in range(workers)]
    assert all(shares) and len(everything) == data.sizes["train"]
    assert sorted(sum(shares, [])) == sorted(everything)
