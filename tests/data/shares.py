"""A check the sources' tests share: a source of files deals its training split out between workers by file."""

import numpy as np


def assert_shared_by_file(data, *, workers: int = 2) -> None:
    """`data.worker_train` gives each of `workers` workers its own examples of the training split, all of them
    once between them (examples told apart by their image's bytes)."""

    def images(ds) -> list[bytes]:
        return [np.asarray(example[0]).tobytes() for example in ds.as_numpy_iterator()]

    everything = images(data.train)
    shares = [images(data.worker_train(workers, index)) for index in range(workers)]
    assert all(shares) and len(everything) == data.sizes["train"]
    assert sorted(sum(shares, [])) == sorted(everything)
