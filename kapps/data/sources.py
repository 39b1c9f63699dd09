"""Data sources by name: embedded ones that need no download, and `tfds:NAME` from tensorflow-datasets."""

from __future__ import annotations

from kapps.data.base import Data, fit_image
from kapps.data.folder import load_folder
from kapps.errors import DataError

import tensorflow as tf

SOURCES = ("digits", "tfds:NAME", "folder:PATH")


def load(
    spec: str,
    *,
    image_size=(32, 32),
    seed: int = 0,
    data_dir: str | None = None,
    val_fraction=0.1,
    channels: int | None = None,
) -> Data:
    """Load the source `spec` with decoded images at `image_size`.

    Args:
        spec: `"digits"` (scikit-learn's 1,797 8x8 handwritten digits, embedded), `"tfds:NAME"` for an image
            classification dataset of tensorflow-datasets (`"tfds:mnist"`, `"tfds:cifar10"`) or `"folder:PATH"`
            for image files in one subfolder per class (see `kapps.data.folder`).
        image_size: (height, width) of the decoded images: smaller images are padded around, larger ones resized.
        seed: seed of the split where the source has none of its own.
        data_dir: tensorflow-datasets' data folder, for offline copies.
        val_fraction: share of the training data held out for validation where the source has no such split.
        channels: 1 or 3 to convert every image to grey or RGB; the source's own channels when None (3 for
            folders).

    Returns:
        The `Data`, whose splits are fixed for one seed.
    """
    if not isinstance(spec, str) or not spec:
        raise DataError(f"A data source must be a name such as 'digits' or 'tfds:mnist', not {spec!r}.")
    if channels not in (None, 1, 3):
        raise DataError(f"channels must be 1 or 3, not {channels!r}.")
    image_size = tuple(image_size)
    if spec == "digits":
        data = _digits(image_size=image_size, seed=seed, val_fraction=val_fraction)
    elif spec.startswith("tfds:") and len(spec) > len("tfds:"):
        data = _tfds(spec, image_size=image_size, data_dir=data_dir, val_fraction=val_fraction)
    elif spec.startswith("folder:") and len(spec) > len("folder:"):
        return load_folder(spec, image_size=image_size, channels=channels or 3, seed=seed, val_fraction=val_fraction)
    else:
        raise DataError(
            f"Unknown data source {spec!r}; use 'digits', 'tfds:NAME' (for example 'tfds:mnist') or 'folder:PATH'."
        )
    return data if channels is None else _with_channels(data, channels)


def _with_channels(data: Data, channels: int) -> Data:
    """The same data with every image converted to `channels` (grey to RGB by repetition, RGB to grey by luma)."""
    if data.input_shape[-1] == channels:
        return data

    def convert(image, label):
        image = tf.image.grayscale_to_rgb(image) if channels == 3 else tf.image.rgb_to_grayscale(image)
        return image, label

    return Data(
        spec=data.spec,
        train=data.train.map(convert),
        val=data.val.map(convert),
        test=data.test.map(convert),
        input_shape=(*data.input_shape[:2], channels),
        class_names=data.class_names,
        sizes=data.sizes,
    )


def _digits(*, image_size, seed: int, val_fraction: float) -> Data:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")[..., None]  # (1797, 8, 8, 1), ink is 1
    labels = digits.target.astype("int32")
    # A fixed stratified 70/10/20 split: the same seed gives the same three sets on every machine.
    rest_x, test_x, rest_y, test_y = train_test_split(images, labels, test_size=0.2, stratify=labels, random_state=seed)
    train_x, val_x, train_y, val_y = train_test_split(
        rest_x, rest_y, test_size=val_fraction / 0.8, stratify=rest_y, random_state=seed
    )
    # Upsample each 8x8 digit to 3/4 of the frame and centre it, as MNIST centres its digits in a margin.
    inner = (image_size[0] * 3 // 4, image_size[1] * 3 // 4)

    def decode(image, label):
        image = tf.image.resize(image, inner, method="bilinear")
        return tf.image.resize_with_crop_or_pad(image, *image_size), label

    def split(x, y):
        return tf.data.Dataset.from_tensor_slices((x, y)).map(decode, num_parallel_calls=tf.data.AUTOTUNE)

    return Data(
        spec="digits",
        train=split(train_x, train_y),
        val=split(val_x, val_y),
        test=split(test_x, test_y),
        input_shape=(*image_size, 1),
        class_names=[str(d) for d in range(10)],
        sizes={"train": len(train_y), "val": len(val_y), "test": len(test_y)},
    )


def _tfds(spec: str, *, image_size, data_dir: str | None, val_fraction: float) -> Data:
    import tensorflow_datasets as tfds

    name = spec[len("tfds:") :]
    val_percent = round(val_fraction * 100)
    splits = [f"train[:{100 - val_percent}%]", f"train[{100 - val_percent}%:]", "test"]
    try:
        (train, val, test), info = tfds.load(
            name, split=splits, data_dir=data_dir, as_supervised=True, with_info=True, shuffle_files=False
        )
    except Exception as err:  # tfds raises many types for a missing or unknown dataset; all are the user's to fix
        where = f" in {data_dir!r}" if data_dir else ""
        raise DataError(
            f"tensorflow-datasets could not load {name!r}{where} ({type(err).__name__}: {str(err).splitlines()[0]})."
        ) from None
    label = info.features["label"]
    channels = info.features["image"].shape[-1]

    def decode(image, label):
        return fit_image(image, image_size), tf.cast(label, tf.int32)

    def split(ds):
        return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)

    def size(ds):
        n = int(ds.cardinality())
        return n if n >= 0 else -1

    try:
        train_files = len(info.splits[splits[0]].file_instructions)
    except Exception:  # a split tfds cannot describe file by file (its mock data, for one): read it by data
        train_files = 0

    def worker_train(count: int, index: int):
        # The training split's TFRecord files dealt out between the workers by tfds itself; with fewer files than
        # workers (MNIST's training set is one file) every worker reads everything, sharded by data.
        if train_files < count:
            return None
        context = tf.distribute.InputContext(num_input_pipelines=count, input_pipeline_id=index)
        share = tfds.load(
            name,
            split=splits[0],
            data_dir=data_dir,
            as_supervised=True,
            shuffle_files=False,
            read_config=tfds.ReadConfig(input_context=context),
        )
        return split(share)

    return Data(
        spec=spec,
        train=split(train),
        val=split(val),
        test=split(test),
        input_shape=(*image_size, channels),
        class_names=list(label.names),
        sizes={"train": size(train), "val": size(val), "test": size(test)},
        worker_train=worker_train,
    )
