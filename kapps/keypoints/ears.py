"""Counting ears (wheat spikes) from detected points: a tip and a base joined by spikelets are one ear.

A spike has one tip and one base, so either type alone counts the spikes, and either alone misses the ears whose
point scores low (a tip among awns, a base in leaves) or counts twice an ear with a second peak. Read together they
are surer: a tip and a base with spikelets detected all along the line between them are one ear even at moderate
scores, and a tip or a base left over counts as an ear only if it is confident on its own. This is the association
step of bottom-up pose estimation (Cao et al., "OpenPose", CVPR 2017: two parts are joined when the field between
them supports a limb), with the detected spikelets as the evidence of the limb; it needs no assumption on the ears'
direction or length.

Points are in pixels, as `kapps.keypoints.points_from_outputs` gives them: `{"points": (N, 2), "types": (N,),
"scores": (N,)}` an image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

SUPPORT_SAMPLES = 16  # points along a tip-base line tested for a spikelet nearby
SUPPORT_SPAN = (0.15, 0.85)  # the part of the line tested: its ends are the tip and the base themselves


@dataclass(frozen=True)
class EarCounter:
    """Counts ears from a detector's tips, bases and spikelets.

    Args:
        tip, base, spikelet: the point types' indices.
        pair_threshold: tips and bases scoring above it may pair into an ear.
        single_threshold: a tip or a base left unpaired counts as an ear if it scores above this.
        spikelet_threshold: the spikelets that support a pair score above it.
        radius: a point of the tip-base line is supported with a spikelet within this many pixels.
        min_support: a tip and a base pair if at least this share of the line's points is supported.
    """

    tip: int
    base: int
    spikelet: int
    pair_threshold: float
    single_threshold: float
    spikelet_threshold: float
    radius: float = 10.0
    min_support: float = 0.8

    def __post_init__(self):
        if not (0 <= self.pair_threshold <= self.single_threshold):
            raise ValueError(
                "pair_threshold must be at least 0 and at most single_threshold. Received: "
                f"pair_threshold={self.pair_threshold}, single_threshold={self.single_threshold}"
            )
        if not (self.radius > 0 and 0 < self.min_support <= 1):
            raise ValueError(
                f"radius must be above 0 and min_support in (0, 1]. Received: radius={self.radius}, "
                f"min_support={self.min_support}"
            )

    def count(self, points: dict) -> int:
        """The ears of one image: tip-base pairs, then the confident tips and bases left unpaired."""
        return self._count(*self.ends(points, floor=self.pair_threshold))

    def counts(self, images: Sequence[dict]) -> np.ndarray:
        return np.array([self.count(points) for points in images], "int64")

    def ends(self, points: dict, *, floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The scores of one image's tips and bases above `floor`, and the support of each tip-base line."""
        xy = np.asarray(points["points"], "float64").reshape(-1, 2)
        types = np.asarray(points["types"]).reshape(-1)
        scores = np.asarray(points["scores"], "float64").reshape(-1)
        tips = (types == self.tip) & (scores > floor)
        bases = (types == self.base) & (scores > floor)
        spikelets = xy[(types == self.spikelet) & (scores > self.spikelet_threshold)]
        return scores[tips], scores[bases], line_support(xy[tips], xy[bases], spikelets, radius=self.radius)

    def _count(self, tip_scores: np.ndarray, base_scores: np.ndarray, support: np.ndarray) -> int:
        tips, bases = tip_scores > self.pair_threshold, base_scores > self.pair_threshold
        paired_tips, paired_bases = pair_ends(support[np.ix_(tips, bases)], min_support=self.min_support)
        single = sum(
            int(np.sum(np.delete(chosen, paired) > self.single_threshold))
            for chosen, paired in ((tip_scores[tips], paired_tips), (base_scores[bases], paired_bases))
        )
        return len(paired_tips) + single


def line_support(tips: np.ndarray, bases: np.ndarray, spikelets: np.ndarray, *, radius: float) -> np.ndarray:
    """`(tips, bases)` shares of each tip-base line's `SUPPORT_SAMPLES` points (over `SUPPORT_SPAN` of it) that
    have a spikelet within `radius` pixels."""
    support = np.zeros((len(tips), len(bases)))
    if not (len(tips) and len(bases) and len(spikelets)):
        return support
    fractions = np.linspace(*SUPPORT_SPAN, SUPPORT_SAMPLES)[:, None]
    for i, tip in enumerate(tips):
        for j, base in enumerate(bases):
            samples = base + fractions * (tip - base)
            nearest = np.min(np.linalg.norm(samples[:, None] - spikelets[None], axis=-1), axis=1)
            support[i, j] = np.mean(nearest <= radius)
    return support


def pair_ends(support: np.ndarray, *, min_support: float) -> tuple[list[int], list[int]]:
    """One-to-one pairs of tips (rows) and bases (columns) whose support is at least `min_support`: as many pairs
    as possible, then the best supported (Hungarian matching, scipy's `linear_sum_assignment`)."""
    if not support.size:
        return [], []
    allowed = support >= min_support
    rows, columns = linear_sum_assignment(np.where(allowed, -(1.0 + support), 0.0))
    kept = [(r, c) for r, c in zip(rows, columns, strict=True) if allowed[r, c]]
    return [r for r, _ in kept], [c for _, c in kept]


def choose_ear_thresholds(
    images: Sequence[dict], true_counts: Sequence[int], *, candidates: Sequence[float], **counter
) -> tuple[EarCounter, dict]:
    """The pair and single thresholds (among `candidates`, single at least pair) whose ear counts are exact on
    the most images, ties to the lower mean absolute error, then to the lower thresholds.

    Args:
        images: one dict of points an image, found at a threshold no higher than the lowest candidate.
        true_counts: the true ears an image.
        candidates: the thresholds tried.
        **counter: the other `EarCounter` fields (`tip`, `base`, `spikelet`, `spikelet_threshold`...).

    Returns:
        The chosen `EarCounter` and its `{"count_accuracy", "count_mae"}` on `images`.
    """
    truth = np.asarray(true_counts, "int64")
    candidates = sorted(candidates)
    lowest = EarCounter(pair_threshold=candidates[0], single_threshold=candidates[0], **counter)
    ends = [lowest.ends(points, floor=candidates[0]) for points in images]  # the lines' support, found once
    best = None
    for pair in candidates:
        for single in (c for c in candidates if c >= pair):
            chosen = EarCounter(pair_threshold=pair, single_threshold=single, **counter)
            errors = np.abs(np.array([chosen._count(*end) for end in ends]) - truth)
            key = (-np.mean(errors == 0), np.mean(errors))
            if best is None or key < best[0]:
                best = (key, chosen)
    (accuracy, mae), chosen = best
    return chosen, {"count_accuracy": float(-accuracy), "count_mae": float(mae)}
