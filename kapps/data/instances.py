"""Instance segmentation data: one entry point, `load_instances`, for the synthetic leaf rosettes and folders in the
CVPPP leaf segmentation layout, for segmenting and counting leaves one at a time (recurrent instance segmentation,
Romera-Paredes & Torr 2016).

Every source gives unbatched `(image, targets)` examples: image float32 (H, W, 3) in [0, 1] stretched to
`image_size`; targets `{"labels": int32 (H, W), "masks": uint8 (max_leaves, H, W), "count": int32 ()}`. "labels"
is the label image, 0 the background and 1..n the leaves numbered by the pixels they show, most first, with no
gaps; "masks" row k is the mask of label k + 1 and rows n..max_leaves-1 are zero; "count" is n. The masks are in
that fixed order for a segmenter that emits one mask a step and a confidence that a leaf remains: the targets
of the first n steps are the masks (matched to the predictions by the Hungarian algorithm or taken in order)
and the confidence target of step t is `t < count`.

Sources:
    `"leaves"`: the embedded rosettes (`kapps.data.leaves`): 1 to 20 leaves, each in view by at least 30% of its
    own pixels.

    `"folder:PATH"`, the CVPPP layout (the A1..A4 folders of the challenge's training data, or any folder of such
    files; files are found in PATH and every folder below it)::

        PATH/
          A1/plant001_rgb.png       the image (RGB or RGBA PNG)
          A1/plant001_label.png     its instance labels: 0 the background, one value per leaf, as a palette
                                    PNG (its indices), a grey or 16-bit PNG (its values) or an RGB PNG (one colour
                                    per leaf, black the background)
          A1/plant001_fg.png        the foreground mask, not read: the foreground is the union of the leaves,
                                    as CVPPP's evaluation takes it
          splits/train.txt          optional: stems relative to PATH ("A1/plant001"), one a line; also val.txt
          splits/val.txt              and test.txt. Without train.txt the train part is every image no list
          splits/test.txt             names; a missing val or test list is carved from the train part by the
                                      seed (`val_fraction` of it, and 20% for test)

    Labels are resized by nearest neighbour, then numbered as above; a leaf too small to keep a pixel at
    `image_size` is no longer counted. The challenge's test images, whose labels are not public, cannot be loaded.

    >>> data = kapps.data.load_instances("leaves", image_size=(128, 128), seed=0)
    >>> image, targets = next(iter(data.train))  # targets["masks"][: targets["count"]]: one mask per leaf
"""

from __future__ import annotations

from kapps.data.base import Data
from kapps.data.detection_folder import TEST_FRACTION
from kapps.data.leaves import load_leaves
from kapps.data.leaves_folder import load_leaves_folder
from kapps.errors import DataError

INSTANCE_SOURCES = ("leaves", "folder:PATH")
_ACCEPTED = "'leaves' or 'folder:PATH'"


def load_instances(
    spec: str,
    *,
    image_size=(128, 128),
    seed: int = 0,
    max_leaves: int | None = None,
    val_fraction: float = 0.1,
    **source_kwargs,
) -> Data:
    """Load the instance source `spec` as three splits of `(image, {"labels", "masks", "count"})` examples (see
    the module).

    Args:
        spec: `"leaves"` or `"folder:PATH"`.
        image_size: (height, width) every image is drawn at or resized to.
        seed: seed of the embedded source and of the splits a folder does not list.
        max_leaves: rows of the padded masks. By default the most leaves a rosette can have (20 unless `leaves`
            says otherwise) and, for a folder, the most leaves of any of its label images; a folder with more is
            refused.
        val_fraction: share of a folder's images held out for validation when it lists no val split.
        **source_kwargs: further keywords of the embedded source: `sizes` and `leaves`
            (`kapps.data.leaves.load_leaves`).

    Returns:
        The `Data`, whose `class_names` are ("background", "leaf").

    Raises:
        DataError: an unknown source, or a missing or malformed folder.
        ValueError: an argument out of range, or keywords for the folder source.
    """
    if not isinstance(spec, str) or not spec:
        raise DataError(f"An instance source must be one of {_ACCEPTED}, not {spec!r}.")
    size = tuple(image_size) if isinstance(image_size, (tuple, list)) else ()
    if len(size) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in size):
        raise ValueError(f"image_size must be two positive integers (height, width). Received: {image_size!r}")
    if max_leaves is not None and (not isinstance(max_leaves, int) or isinstance(max_leaves, bool) or max_leaves < 1):
        raise ValueError(f"max_leaves must be a positive integer or None. Received: max_leaves={max_leaves!r}")
    if spec == "leaves":
        return load_leaves(image_size=size, seed=seed, max_leaves=max_leaves, **source_kwargs)
    if spec.startswith("folder:") and len(spec) > len("folder:"):
        if source_kwargs:
            raise ValueError(f"Only the 'leaves' source takes extra keywords. Received: {sorted(source_kwargs)}")
        if not 0 < val_fraction < 1 - TEST_FRACTION:
            raise ValueError(f"val_fraction must be in (0, {1 - TEST_FRACTION}). Received: {val_fraction!r}")
        return load_leaves_folder(spec, image_size=size, seed=seed, val_fraction=val_fraction, max_leaves=max_leaves)
    raise DataError(f"Unknown instance source {spec!r}; use {_ACCEPTED}.")
