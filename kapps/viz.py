"""Drawing, below both training and prediction: training and error curves, boxes on images, detectors compared,
segmenters' masks, as PNGs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(history: list[dict], path: Path, *, title: str = "") -> Path | None:
    """Plot every logged quantity against the epoch; `val_X` and `test_X` share the panel of `X`. Returns the PNG
    path."""
    if not history:
        return None
    keys = [k for k in history[0] if k not in ("epoch", "learning_rate")]
    names = [k for k in keys if not k.startswith(("val_", "test_"))]
    # quantities measured only on validation or test data (a detector's mAP) get a panel of their own
    names += sorted({k.split("_", 1)[1] for k in keys if k.startswith(("val_", "test_"))} - set(names))
    epochs = [int(row["epoch"]) + 1 for row in history]
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        if name in history[0]:
            ax.plot(epochs, [row.get(name) for row in history], label="train")
        for prefix, label in (("val_", "validation"), ("test_", "test")):
            if f"{prefix}{name}" in history[0]:
                ax.plot(epochs, [row.get(f"{prefix}{name}") for row in history], label=label)
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path, title=title)


def plot_error_curves(histories: dict[str, list[dict]], path: Path, *, panels: dict[str, list[str]], title: str = ""):
    """Training (thin, dashed) and test (bold) error per epoch of several runs, grouped into panels.

    The layout of He et al. (2016), Fig. 6: plain networks on the left, residual networks on the right.

    Args:
        histories: run name -> history rows with `accuracy` and `test_accuracy`.
        path: the PNG to write.
        panels: panel title -> the run names drawn in it.
        title: figure title.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False, sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (panel, names) in zip(axes[0], panels.items(), strict=True):
        for colour, name in zip(colours, names, strict=False):
            rows = histories[name]
            epochs = [int(r["epoch"]) + 1 for r in rows]
            ax.plot(epochs, [100 * (1 - r["accuracy"]) for r in rows], "--", lw=1, color=colour, label=f"{name} train")
            ax.plot(
                epochs, [100 * (1 - r["test_accuracy"]) for r in rows], "-", lw=2.2, color=colour, label=f"{name} test"
            )
        ax.set_title(panel)
        ax.set_xlabel("epoch")
        ax.set_ylabel("error (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path, title=title)


def plot_memory(
    adding: Mapping[str, Mapping[int, Mapping[str, float]]],
    path: Path,
    *,
    digits: Mapping[str, float] | None = None,
    baseline_mse: float,
    solved_mse: float,
    title: str = "",
) -> Path:
    """Recurrent cells against the length of what they must remember: the adding problem's test MSE (log scale,
    left) and accuracy (middle) against the sequence length, one line a cell, with the trivial baseline's MSE and
    the MSE that counts as solved as dashed lines; the digits read row by row (right, when given), a bar a cell.

    Args:
        adding: cell -> sequence length -> `{"mse", "accuracy"}` on the test split.
        path: the PNG to write.
        digits: cell -> test accuracy on the digits read row by row.
        baseline_mse: the MSE of always answering the mean target (1/6 for the adding problem).
        solved_mse: the MSE below which a length counts as solved.
        title: figure title.
    """
    panels = 3 if digits else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.8 * panels, 3.8))
    mse_ax, accuracy_ax = axes[0], axes[1]
    for cell, by_length in adding.items():
        lengths = sorted(by_length)
        mse_ax.plot(lengths, [by_length[n]["mse"] for n in lengths], "o-", lw=2, label=cell)
        accuracy_ax.plot(lengths, [100 * by_length[n]["accuracy"] for n in lengths], "o-", lw=2, label=cell)
    mse_ax.axhline(baseline_mse, color="grey", ls="--", lw=1, label=f"always 1.0 ({baseline_mse:.3f})")
    mse_ax.axhline(solved_mse, color="tab:green", ls=":", lw=1, label=f"solved (< {solved_mse:g})")
    mse_ax.set_yscale("log")
    mse_ax.set_ylabel("test MSE")
    mse_ax.set_title("adding problem: error")
    accuracy_ax.set_ylim(0, 100)
    accuracy_ax.set_ylabel("test sums within 0.04 (%)")
    accuracy_ax.set_title("adding problem: accuracy")
    lengths = sorted({n for by_length in adding.values() for n in by_length})
    for ax in (mse_ax, accuracy_ax):
        ax.set_xticks(lengths)
        ax.set_xlabel("sequence length (steps)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if digits:
        bars = axes[2].bar(list(digits), [100 * a for a in digits.values()], color="tab:gray")
        axes[2].bar_label(bars, fmt="%.1f", fontsize=8)
        axes[2].set_ylim(0, 105)
        axes[2].set_ylabel("test accuracy (%)")
        axes[2].set_title("digits read row by row")
    fig.tight_layout()
    return _save(fig, path, title=title)


def plot_progression(rows: Sequence[dict], path: Path, *, title: str = "") -> Path:
    """Bars of detectors side by side: mAP@0.5 and mAP@[.5:.95] on the left, seconds per image on the right (log
    scale, the value written on each bar), in the order given: a detection lineage's accuracy and speed.

    Args:
        rows: one dict a detector, `{"detector": name, "map50", "map", "seconds_per_image"}`.
        path: the PNG to write.
        title: figure title.
    """
    names = [row["detector"] for row in rows]
    places = np.arange(len(rows))
    fig, (accuracy, speed) = plt.subplots(1, 2, figsize=(max(8.0, 2.2 * len(rows) + 4), 4))
    width = 0.38
    for offset, key, label in ((-width / 2, "map50", "mAP@0.5"), (width / 2, "map", "mAP@[.5:.95]")):
        bars = accuracy.bar(places + offset, [row[key] for row in rows], width, label=label)
        accuracy.bar_label(bars, fmt="%.3f", fontsize=8)
    accuracy.set_ylim(0, 1.08)
    accuracy.set_title("accuracy on the same test scenes")
    accuracy.legend(loc="lower right")
    seconds = [row["seconds_per_image"] for row in rows]
    bars = speed.bar(places, seconds, 0.6, color="tab:gray")
    speed.bar_label(bars, labels=[_duration(s) for s in seconds], fontsize=8)
    speed.set_yscale("log")
    speed.set_ylim(min(seconds) / 3, max(seconds) * 3)
    speed.set_title("seconds per image (log scale)")
    for ax in (accuracy, speed):
        ax.set_xticks(places, names)
        ax.grid(alpha=0.3, axis="y")
    return _save(fig, path, title=title)


def _duration(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1000:.1f} ms"


def plot_points(
    detector, dataset, path: Path, *, class_names: Sequence[str], count: int = 9, columns: int = 3, title: str = ""
) -> Path:
    """Draw a point detector's points (filled dots) and the true points (open circles) on the first `count` images
    of a batched `(images, {"points", "types"})` dataset, in a grid of `columns`, one colour a point type.

    Args:
        detector: a model from images to `{"points": (B, T, K, 2) relative [x, y], "scores", "num_points"}`
            (`kapps.models.keypoints.hourglass.hourglass_detector`).
        dataset: batches of images and targets with relative points, type -1 for padding.
        path: the PNG to write.
        class_names: the point types' names.
        count: images to draw.
        columns: images a row.
        title: figure title.
    """
    from kapps.keypoints import points_from_outputs

    images, truths, found = [], [], []
    for batch_images, targets in dataset:
        batch_images = np.asarray(batch_images)[: count - len(images)]
        height, width = batch_images.shape[1:3]
        outputs = {k: np.asarray(v)[: len(batch_images)] for k, v in detector(batch_images, training=False).items()}
        found += points_from_outputs(outputs, width=width, height=height)
        kept = len(batch_images)
        for points, types in zip(targets["points"][:kept].numpy(), targets["types"][:kept].numpy(), strict=True):
            truths.append({"points": points[types >= 0] * [width, height], "types": types[types >= 0]})
        images += list(batch_images)
        if len(images) == count:
            break
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, truth, predicted in zip(axes.flat, images, truths, found, strict=False):
        ax.imshow(image, vmin=0, vmax=1)
        for t, name in enumerate(class_names):
            colour = class_colour(t)
            true_xy = truth["points"][truth["types"] == t]
            found_xy = predicted["points"][predicted["types"] == t]
            ax.scatter(*true_xy.T, s=30, facecolors="none", edgecolors=[colour], linewidths=1.0)
            label = f"{name} {len(found_xy)}/{len(true_xy)}"
            ax.scatter(*found_xy.T, s=8, color=[colour], edgecolors="white", linewidths=0.3, label=label)
        ax.legend(loc="upper right", fontsize=6, framealpha=0.6, handletextpad=0.2, borderpad=0.3)
    return _save(fig, path, title=title or "detected points (dots) and true points (circles): found/true a type")


def plot_detections(
    detector,
    dataset,
    path: Path,
    *,
    class_names: Sequence[str],
    count: int = 16,
    score_threshold: float = 0.3,
    title: str = "",
) -> Path:
    """Draw a detector's boxes (solid, with class and score) and the true boxes (dashed) on the first `count`
    images of a batched `(images, targets)` dataset, in a square grid; an instance segmenter's masks (its
    `"masks"` output, pixels at 0.5 or more) as translucent overlays in the box's colour.

    Args:
        detector: a model from images to `{"boxes", "scores", "classes", "num_detections"}` (and optionally
            `"masks" (B, K, H, W)`), boxes normalised `[x1, y1, x2, y2]`.
        dataset: batches of images and targets `{"boxes", "classes"}` (class -1 for padding).
        path: the PNG to write.
        class_names: names of the classes.
        count: images to draw.
        score_threshold: detections scoring below it are left out.
        title: figure title.
    """
    images, truths, found = [], [], []
    for batch_images, targets in dataset:
        detections = detector(batch_images, training=False)
        for i in range(len(batch_images)):
            if len(images) == count:
                break
            images.append(np.asarray(batch_images[i]))
            valid = np.asarray(targets["classes"][i]) >= 0
            truths.append(np.asarray(targets["boxes"][i])[valid])
            n = int(detections["num_detections"][i])
            keep = np.asarray(detections["scores"][i][:n]) >= score_threshold
            masks = np.asarray(detections["masks"][i][:n])[keep] >= 0.5 if "masks" in detections else None
            found.append(
                (
                    np.asarray(detections["boxes"][i][:n])[keep],
                    np.asarray(detections["classes"][i][:n])[keep],
                    np.asarray(detections["scores"][i][:n])[keep],
                    masks,
                )
            )
        if len(images) == count:
            break
    side = int(np.ceil(np.sqrt(len(images))))
    fig, axes = plt.subplots(side, side, figsize=(2.6 * side, 2.6 * side), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, true_boxes, (boxes, classes, scores, masks) in zip(axes.flat, images, truths, found, strict=False):
        height, width = image.shape[:2]
        ax.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None, vmin=0, vmax=1)
        for mask, cls in zip(masks if masks is not None else [], classes, strict=False):
            overlay = np.zeros((height, width, 4), "float32")
            overlay[mask] = (*matplotlib.colors.to_rgb(colours[cls % len(colours)]), 0.45)
            ax.imshow(overlay, interpolation="nearest")
        for box in true_boxes:
            draw_box(ax, box * [width, height, width, height], colour="white", dashed=True)
        for box, cls, score in zip(boxes, classes, scores, strict=True):
            label = f"{class_names[cls] if 0 <= cls < len(class_names) else cls} {score:.2f}"
            draw_box(ax, box * [width, height, width, height], colour=colours[cls % len(colours)], label=label)
    shown = "masks and boxes" if found and found[0][3] is not None else "boxes"
    return _save(fig, path, title=title or f"predicted {shown} (solid) and true boxes (dashed)")


def plot_segmentation(
    model, dataset, path: Path, *, class_names: Sequence[str], count: int = 6, ignore_label: int = 255, title: str = ""
) -> Path:
    """Draw a semantic segmenter's masks beside the true ones for the first `count` images of a batched
    `(images, masks)` dataset: one row an image, its columns the image, the true mask and the predicted mask
    (each pixel's best-scored class), one colour a class (`class_colour`; background dark grey, ignored pixels
    white), and a legend of the classes.

    A model whose masks are smaller than its images (a valid-padding U-Net) is shown on the centre of each image
    that its masks cover.

    Args:
        model: images -> `(B, h, w, C)` per-pixel class scores.
        dataset: batches of images and `(B, h, w)` masks of class indices.
        path: the PNG to write.
        class_names: the name of each class id.
        count: images to draw.
        ignore_label: the label of unlabelled pixels in the true masks.
        title: figure title.
    """
    rows = _segmentation_rows([model], dataset, count=count)
    return _draw_segmentations(
        rows, ["predicted mask"], path, class_names=class_names, ignore_label=ignore_label, title=title
    )


def plot_segmentation_comparison(
    models: Mapping[str, object],
    dataset,
    path: Path,
    *,
    class_names: Sequence[str],
    count: int = 4,
    ignore_label: int = 255,
    title: str = "",
) -> Path:
    """Draw several semantic segmenters' masks on the same images: one row an image, its columns the image, the
    true mask, then each model's predicted mask under the model's name, in `plot_segmentation`'s colours and
    legend; the FCN-32s / FCN-8s / U-Net comparison of Long et al. (2015) and Ronneberger et al. (2015).

    A model whose masks are smaller than the true ones (a valid-padding U-Net beside same-size models) is shown
    at its own size, centred where it lies, on a faded copy of the image inside a dashed frame, and its heading
    says so: every mask keeps its pixels where the model put them, and none is stretched.

    Args:
        models: name -> model (images -> `(B, h, w, C)` per-pixel class scores), in the order of the columns.
        dataset: batches of images and `(B, H, W)` masks of class indices, each model's masks at most `H x W`.
        path: the PNG to write.
        class_names: the name of each class id.
        count: images to draw.
        ignore_label: the label of unlabelled pixels in the true masks.
        title: figure title.

    Raises:
        ValueError: `models` is empty, or a model's masks are larger than the true ones or off their centre by
            half a pixel.
    """
    if not models:
        raise ValueError("models must map at least one name to a segmenter. Received: models={}")
    rows = _segmentation_rows(list(models.values()), dataset, count=count)
    return _draw_segmentations(
        rows, list(models), path, class_names=class_names, ignore_label=ignore_label, title=title
    )


def _segmentation_rows(models: Sequence, dataset, *, count: int) -> list[tuple[np.ndarray, np.ndarray, list]]:
    """`(image, true mask, [each model's class map])` for the first `count` images of `dataset`; the image cut to
    the centre the true mask covers."""
    rows = []
    for images, masks in dataset:
        predicted = [np.argmax(np.asarray(model(images, training=False)), axis=-1) for model in models]
        for index, (image, truth) in enumerate(zip(np.asarray(images), np.asarray(masks), strict=True)):
            top, left = ((np.array(image.shape[:2]) - truth.shape) // 2).tolist()
            image = image[top : top + truth.shape[0], left : left + truth.shape[1]]
            rows.append((image, truth, [guesses[index] for guesses in predicted]))
            if len(rows) == count:
                return rows
    return rows


def _draw_segmentations(
    rows, headings: Sequence[str], path: Path, *, class_names: Sequence[str], ignore_label: int, title: str
) -> Path:
    """The figure of `plot_segmentation` and `plot_segmentation_comparison`: one row of `rows` a row, the image
    and true mask then one predicted mask a heading, and the legend of the classes below."""
    from matplotlib.patches import Patch, Rectangle

    palette = np.array([(0.15, 0.15, 0.15), *(class_colour(c)[:3] for c in range(1, len(class_names)))], "float32")

    def colours(mask):
        known = (mask >= 0) & (mask < len(palette))
        drawn = np.ones((*mask.shape, 3), "float32")  # ignored (or unknown) pixels white
        drawn[known] = palette[mask[known]]
        return drawn

    # each model's mask size against the true masks': where its masks lie inside theirs (None: the same size)
    frame = rows[0][1].shape
    places = []
    for heading, guess in zip(headings, rows[0][2], strict=True):
        margins = np.subtract(frame, guess.shape)
        if min(margins) < 0 or any(margins % 2):
            raise ValueError(
                f"every model's masks must be the true masks' {frame[0]}x{frame[1]} or their centre. Received: "
                f"{guess.shape[0]}x{guess.shape[1]} masks from {heading!r}"
            )
        places.append(None if not margins.any() else (margins // 2).tolist())
    headings = [
        heading if place is None else f"{heading}\n(its {guess.shape[0]}x{guess.shape[1]} centre)"
        for heading, place, guess in zip(headings, places, rows[0][2], strict=True)
    ]

    # one row an image, and a short last row across the columns for the legend
    columns = 2 + len(headings)
    fig = plt.figure(figsize=(2.5 * columns, 2.5 * len(rows) + 0.6))
    grid = fig.add_gridspec(len(rows) + 1, columns, height_ratios=[1] * len(rows) + [0.2])
    axes = np.array([[fig.add_subplot(grid[row, column]) for column in range(columns)] for row in range(len(rows))])
    legend = fig.add_subplot(grid[len(rows), :])
    legend.set_axis_off()
    for (image, truth, guesses), (image_ax, truth_ax, *mask_axes) in zip(rows, axes, strict=True):
        image_ax.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None, vmin=0, vmax=1)
        truth_ax.imshow(colours(truth), interpolation="nearest")
        for ax, guess, place in zip(mask_axes, guesses, places, strict=True):
            if place is None:
                ax.imshow(colours(guess), interpolation="nearest")
                continue
            # the image faded where the model says nothing, its mask on the centre it scores, framed
            drawn = 0.35 * np.broadcast_to(image, (*image.shape[:2], 3)) + 0.65
            (top, left), (height, width) = place, guess.shape
            drawn[top : top + height, left : left + width] = colours(guess)
            ax.imshow(drawn, interpolation="nearest")
            ax.add_patch(Rectangle((left - 0.5, top - 0.5), width, height, fill=False, edgecolor="black", ls="--"))
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, heading in zip(axes[0], ("image", "true mask", *headings), strict=True):
        ax.set_title(heading)
    handles = [Patch(facecolor=palette[c], label=name) for c, name in enumerate(class_names)]
    handles.append(Patch(facecolor="white", edgecolor="grey", label=f"ignored ({ignore_label})"))
    legend.legend(handles=handles, loc="center", ncol=min(len(handles), max(6, 2 * columns)), fontsize=8, frameon=False)
    return _save(fig, path, title=title)


def draw_box(ax, box, *, colour, label: str | None = None, dashed: bool = False, fontsize: float = 7) -> None:
    """Draw one pixel box `[x1, y1, x2, y2]` on a matplotlib image axis, with an optional label above it."""
    x1, y1, x2, y2 = (float(v) for v in box)
    ax.add_patch(
        matplotlib.patches.Rectangle(
            (x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=1.5, linestyle="--" if dashed else "-"
        )
    )
    if label:
        ax.text(
            x1, y1, label, color="white", fontsize=fontsize, va="bottom", bbox={"facecolor": colour, "pad": 1, "lw": 0}
        )


def picture(pixels: np.ndarray, *, long_side: float = 6.0):
    """A figure showing one uint8 image `(H, W, 1 | 3)`, `long_side` inches on its longer side, axes hidden.

    Returns:
        `(figure, image axis)`; draw on the axis in pixel coordinates, then `write_png` the figure.
    """
    fig, ax = plt.subplots(figsize=_picture_size(pixels, long_side))
    _show(ax, pixels)
    return fig, ax


def picture_with_panel(pixels: np.ndarray, *, panel_width: float = 4.0, long_side: float = 6.0):
    """A figure showing one uint8 image as `picture` does, with a panel `panel_width` inches wide on its right.

    Returns:
        `(figure, image axis, panel axis)`, for a chart beside the image (a classifier's top-k scores).
    """
    width, height = _picture_size(pixels, long_side)
    fig, (ax, panel) = plt.subplots(1, 2, figsize=(width + panel_width, height), width_ratios=[width, panel_width])
    _show(ax, pixels)
    return fig, ax, panel


def class_colour(class_id: int):
    """The colour of a class in pictures of predictions: matplotlib's ten-colour `tab10` cycle."""
    return plt.get_cmap("tab10")(int(class_id) % 10)


def instance_colour(index: int):
    """The colour of instance `index` (a step of a recurrent segmenter) in pictures: matplotlib's twenty-colour
    `tab20` cycle, dark shades first, so that the first ten instances have ten distinct strong colours."""
    return plt.get_cmap("tab20")((2 * int(index) + int(index) // 10) % 20)


def write_png(fig, file) -> None:
    """Lay out `fig`, write it as a PNG into `file` (a path or a binary file object), then free it."""
    fig.tight_layout()
    fig.savefig(file, format="png", dpi=100)
    plt.close(fig)


def _picture_size(pixels: np.ndarray, long_side: float) -> tuple[float, float]:
    height, width = pixels.shape[:2]
    return (long_side, long_side * height / width) if width >= height else (long_side * width / height, long_side)


def _show(ax, pixels: np.ndarray) -> None:
    grey = pixels.shape[-1] == 1
    ax.imshow(pixels[..., 0] if grey else pixels, cmap="gray" if grey else None, vmin=0, vmax=255)
    ax.set_axis_off()


def _save(fig, path: Path, *, title: str) -> Path:
    """Title and write `fig` as a PNG at `path` (creating its folder), then free it."""
    if title:
        fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(fig, path)
    return path


STRIP_HEADER = 14  # pixels of the text band above each panel of a step strip


def instance_step_strip(
    image: np.ndarray, masks: np.ndarray, count: int, *, truth: np.ndarray | None = None, scale: int = 2
) -> np.ndarray:
    """A recurrent segmenter's instances step by step, as one picture (uint8 (H', W', 3)): panels side by side, each
    the image enlarged `scale` times (nearest neighbour) under a text band. First the image; then one panel per kept
    step t = 1..count, headed "step t: count t", showing the label image of steps 1..t (`masks_to_labels`), the
    earlier leaves faint in their steps' colours (`instance_colour`) and step t's leaf strong; a count of 0 gives one
    panel "count 0"; last, when `truth` (a label image) is given, the true leaves, headed with their number.

    Args:
        image: (H, W, 3) in [0, 1] or uint8.
        masks: (T, H, W) the steps' mask probabilities.
        count: the steps kept (the segmenter's count).
        truth: (H, W) the true label image, or None.
        scale: the enlargement of every panel.
    """
    from kapps.instance_metrics import masks_to_labels

    from PIL import Image, ImageDraw

    pixels = np.asarray(image)
    pixels = (np.clip(pixels, 0, 1) * 255).round().astype(np.uint8) if pixels.dtype != np.uint8 else pixels
    count = max(int(count), 0)
    palette = np.array([instance_colour(i)[:3] for i in range(max(len(masks), count, 1))], np.float32) * 255

    def overlay(labels, strong=None) -> np.ndarray:
        out = pixels.astype(np.float32)
        for value in np.unique(labels[labels > 0]):
            alpha = 0.85 if strong is None or value == strong else 0.4
            colour = palette[(value - 1) % len(palette)]
            out[labels == value] = (1 - alpha) * out[labels == value] + alpha * colour
        return out.round().astype(np.uint8)

    panels = [(pixels, "image")]
    if count == 0:
        panels.append((pixels, "count 0"))
    for t in range(1, count + 1):
        panels.append((overlay(masks_to_labels(masks, count=t), strong=t), f"step {t}: count {t}"))
    if truth is not None:
        truth = np.asarray(truth)
        values = np.unique(truth[truth > 0])
        renumbered = np.searchsorted(values, truth) + 1
        panels.append((overlay(np.where(truth > 0, renumbered, 0)), f"truth: {len(values)}"))
    height, width = pixels.shape[:2]
    tile_w, gap = width * scale, 2
    strip = Image.new("RGB", (len(panels) * (tile_w + gap) - gap, height * scale + STRIP_HEADER), "white")
    draw = ImageDraw.Draw(strip)
    for i, (panel, text) in enumerate(panels):
        left = i * (tile_w + gap)
        big = np.repeat(np.repeat(panel, scale, axis=0), scale, axis=1)
        strip.paste(Image.fromarray(big), (left, STRIP_HEADER))
        draw.text((left + 2, 1), text, fill="black")
    return np.asarray(strip)
