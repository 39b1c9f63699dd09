"""Classes: one `(batch, classes)` score array per image batch, the output of every classifier.

Export criterion. A float artifact (SavedModel, float32 TFLite, ONNX) passes when every score is within
`FLOAT_MAX_ABS_DIFF` of the Keras model's and the top-1 class is the same on every image: a float graph differs
from Keras only by operation order, which moves scores by ~1e-7. A quantised TFLite file passes when its top-1
class is Keras's on at least `QUANTIZED_TOP1` of the images: quantisation moves scores by ~1e-2, which may swap two
near-tied classes on an odd image but not more.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from kapps.errors import ModelError
from kapps.kinds.base import Kind, Outputs, PredictOptions, shapes_text

import numpy as np

FLOAT_MAX_ABS_DIFF = 1e-4
QUANTIZED_TOP1 = 0.99


class Classification(Kind):
    """A classifier's scores: top-1 agreement for export, the top-k list for predict, accuracy for evaluation."""

    task = "classification"
    legend = "same top-1 class"

    def check(self, shapes: Mapping[str, tuple], *, what: str) -> None:
        """Refuse anything but one `(batch, classes)` output with at least two classes."""
        shape = next(iter(shapes.values())) if len(shapes) == 1 else ()
        if len(shape) != 2 or shape[-1] is None or shape[-1] < 2:
            raise ModelError(
                f"{what} is not a classifier: its outputs are {shapes_text(shapes)}, not one (batch, classes) array."
            )

    def criterion(self, *, quantized: bool) -> str:
        if quantized:
            return f"the top-1 class is Keras's on at least {QUANTIZED_TOP1:.0%} of the images"
        return f"every score within {FLOAT_MAX_ABS_DIFF:g} of Keras's and the same top-1 class on every image"

    def compare(self, got: Outputs, expected: Outputs, *, quantized: bool, model) -> dict:
        """`max_abs_diff` over the scores, `top1_agreement` (share of images) and `passed` by `criterion`."""
        (name,) = expected
        scores, reference = np.asarray(got[name], "float64"), np.asarray(expected[name], "float64")
        diff = float(np.max(np.abs(scores - reference)))
        top1 = float(np.mean(np.argmax(scores, -1) == np.argmax(reference, -1)))
        passed = top1 >= QUANTIZED_TOP1 if quantized else diff <= FLOAT_MAX_ABS_DIFF and top1 == 1.0
        return {"max_abs_diff": diff, "top1_agreement": top1, "passed": bool(passed)}

    def agreement(self, entry: dict) -> float | None:
        return entry.get("top1_agreement")

    def describe(self, entry: dict) -> str:
        return f"max abs diff {entry['max_abs_diff']:.3g}, top-1 agreement {entry['top1_agreement']:.1%}"

    def result(
        self, outputs: Outputs, *, class_name: Callable[[int], str], width: int, height: int, options: PredictOptions
    ) -> dict:
        """`top5`: the `options.top_k` best classes with their scores (probabilities for a softmax head)."""
        (scores,) = (np.asarray(v, "float64")[0] for v in outputs.values())
        order = np.argsort(-scores, kind="stable")[: min(options.top_k, len(scores))]
        return {"top5": [{"class_id": int(i), "class": class_name(int(i)), "score": float(scores[i])} for i in order]}

    def summary(self, entry: dict) -> str:
        return ", ".join(f"{t['class']} {t['score']:.3f}" for t in entry["top5"])

    def draw(self, pixels: np.ndarray, entry: dict, file) -> None:
        """The image with its top-k classes as bars on the right."""
        from kapps.viz import picture_with_panel, write_png

        fig, _, bars = picture_with_panel(pixels)
        top = entry["top5"]
        rows = np.arange(len(top))[::-1]
        bars.barh(rows, [t["score"] for t in top], color="tab:blue")
        bars.set_yticks(rows, [t["class"] for t in top])
        for row, t in zip(rows, top, strict=True):
            bars.text(t["score"], row, f" {t['score']:.3f}", va="center")
        bars.set_xlim(0, max(1.0, max(t["score"] for t in top)) * 1.2)
        bars.set_title(f"top {len(top)}")
        write_png(fig, file)

    def evaluate(self, model, dataset, *, class_names: Sequence[str] | None = None, limit: int | None = None) -> dict:
        """Top-1 accuracy of `model` on a batched `(images, labels)` dataset, labels as class ids.

        Returns:
            `{"accuracy": share of images whose best-scored class is the label, "count": images scored}`.
        """
        import tensorflow as tf

        if limit is not None and limit < 1:
            raise ValueError(f"limit must be None or a positive number of images. Received: limit={limit!r}")
        run = tf.function(lambda images: model(images, training=False), reduce_retracing=True)
        correct, count = 0, 0
        for images, labels, *_ in dataset:
            outputs = run(images)
            if isinstance(outputs, Mapping | list | tuple):
                (outputs,) = outputs.values() if isinstance(outputs, Mapping) else outputs
            predicted = np.argmax(np.asarray(outputs), -1)
            labels = np.asarray(labels).reshape(len(predicted), -1)
            truth = labels[:, 0] if labels.shape[1] == 1 else np.argmax(labels, -1)  # class ids or one-hot rows
            keep = len(predicted) if limit is None else min(len(predicted), limit - count)
            correct += int(np.sum(predicted[:keep] == truth[:keep]))
            count += keep
            if limit is not None and count >= limit:
                break
        if count == 0:
            raise ValueError("dataset must hold at least one batch. Received: an empty dataset")
        return {"accuracy": correct / count, "count": count}

    def load_data(self, spec: str, *, image_size: tuple[int, int], seed: int, data_dir: str | None):
        import kapps.data

        return kapps.data.load(spec, image_size=image_size, seed=seed, data_dir=data_dir)
