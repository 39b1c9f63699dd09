"""R-CNN's linear heads on CNN features (Girshick et al. 2014): one linear SVM a class, trained with hard negative
mining (Sec. 2.3), and one ridge regressor a class for the box (Appendix C). scikit-learn fits them; what is kept is
plain coefficients (`Linear`), which `kapps.models.detection.rcnn.RCNN` saves as `.npz`, not pickles.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from kapps.detection.coder import encode

import numpy as np

# R-CNN's own code scales features so that their mean L2 norm is 20 before the SVMs (rcnn's `feat_norm_mean`).
FEATURE_NORM = 20.0
PLAIN = (1.0, 1.0, 1.0, 1.0)  # the paper's (t_x, t_y, t_w, t_h), not rescaled by variances


@dataclass(frozen=True)
class Linear:
    """`features @ weights + bias`: weights `(D, O)`, bias `(O,)`, after the features are multiplied by `scale`."""

    weights: np.ndarray
    bias: np.ndarray
    scale: float = 1.0

    def __call__(self, features) -> np.ndarray:
        return (np.asarray(features, np.float32) * self.scale) @ self.weights + self.bias


def feature_scale(features, *, norm: float = FEATURE_NORM) -> float:
    """The factor that brings the mean L2 norm of the rows of `features` to `norm`."""
    mean = float(np.mean(np.linalg.norm(np.asarray(features, np.float64), axis=1)))
    return norm / mean if mean > 0 else 1.0


def hard_negatives(scores, cached, *, threshold: float = -1.0) -> np.ndarray:
    """The negatives to add to the cache: those not in it that the SVM scores above `threshold`.

    A negative scoring above -1 is misclassified or inside the margin, so it bears on the hinge loss; the rest are
    easy and leave the solution as it is (Girshick et al. 2014, Sec. 2.3, after Felzenszwalb et al. 2010).

    Args:
        scores: `(M,)` SVM scores of all the negatives.
        cached: `(M,)` bool, which negatives the cache holds.
        threshold: the score above which a negative is hard.

    Returns:
        Sorted indices of the hard negatives not yet cached.
    """
    scores, cached = np.asarray(scores), np.asarray(cached, bool)
    if scores.shape != cached.shape:
        raise ValueError(
            f"scores and cached must have one entry per negative. Received: {scores.shape}, {cached.shape}"
        )
    return np.flatnonzero((scores > threshold) & ~cached)


def train_svm(
    positives,
    negatives,
    *,
    C: float = 1e-3,
    positive_weight: float = 2.0,
    first_negatives: int = 5000,
    rounds: int = 4,
    hard_threshold: float = -1.0,
    easy_threshold: float = -1.2,
    seed: int = 0,
) -> tuple[Linear, list[dict]]:
    """One linear SVM, positives against negatives, with hard negative mining.

    It starts from `first_negatives` random negatives; each round then scores every negative, adds the hard ones
    (`hard_negatives`), drops cached ones scoring below `easy_threshold`, and trains again, until no hard negative is
    left out or `rounds` have run. The loss is R-CNN's liblinear setting: hinge loss, L2 penalty, `C` 1e-3, positives
    weighted 2, a bias feature of 10.

    Args:
        positives: `(P, D)` features.
        negatives: `(M, D)` features.
        C: inverse strength of the L2 penalty.
        positive_weight: weight of a positive's loss against a negative's.
        first_negatives: negatives in the first cache.
        rounds: most rounds of mining after the first training.
        hard_threshold: see `hard_negatives`.
        easy_threshold: cached negatives scoring below this are dropped (below `hard_threshold`, so that one is not
            dropped and added back in turn).
        seed: which negatives start the cache.

    Returns:
        `(Linear with weights (D, 1), log)`: one dict a training, `{"cached", "added", "dropped"}`.
    """
    positives, negatives = np.asarray(positives, np.float32), np.asarray(negatives, np.float32)
    if not len(positives) or not len(negatives):
        raise ValueError(f"train_svm needs positives and negatives. Received: {len(positives)} and {len(negatives)}")
    if easy_threshold > hard_threshold:
        raise ValueError(
            f"easy_threshold must not be above hard_threshold. Received: {easy_threshold!r} > {hard_threshold!r}"
        )
    cached = np.zeros(len(negatives), bool)
    cached[np.random.default_rng(seed).permutation(len(negatives))[:first_negatives]] = True
    log, added, dropped = [], int(cached.sum()), 0
    for _ in range(rounds + 1):
        svm = _fit_svm(positives, negatives[cached], C=C, positive_weight=positive_weight)
        log.append({"cached": int(cached.sum()), "added": added, "dropped": dropped})
        scores = svm(negatives)[:, 0]
        hard = hard_negatives(scores, cached, threshold=hard_threshold)
        if not len(hard):
            break
        easy = cached & (scores < easy_threshold)
        cached[easy] = False
        cached[hard] = True
        added, dropped = len(hard), int(easy.sum())
    return svm, log


def _fit_svm(positives, negatives, *, C: float, positive_weight: float) -> Linear:
    from sklearn.exceptions import ConvergenceWarning  # scikit-learn only where a head is fitted
    from sklearn.svm import LinearSVC

    features = np.concatenate([positives, negatives])
    labels = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])
    svm = LinearSVC(
        C=C,
        loss="hinge",
        dual=True,
        class_weight={1: positive_weight, 0: 1.0},
        intercept_scaling=10.0,
        max_iter=20_000,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a few negatives short of optimal is no harm here
        svm.fit(features, labels)
    return Linear(weights=svm.coef_.T.astype(np.float32), bias=svm.intercept_.astype(np.float32))


def fit_svms(
    features, regions: dict, *, num_classes: int, negative_iou: float = 0.3, **svm_options
) -> tuple[Linear, dict]:
    """One SVM a class on R-CNN's training sets (Girshick et al. 2014, Sec. 2.3).

    For class k, the positives are the true boxes of class k only, and the negatives the proposals that overlap no
    true box of class k by `negative_iou` or more; proposals in between are left out.

    Args:
        features: `(R, D)` CNN features of the regions.
        regions: `label_regions`' table of the same R regions (`is_gt`, `class`, `class_iou`).
        num_classes: K.
        negative_iou: proposals below this IoU with every true box of a class are its negatives.
        **svm_options: passed to `train_svm`.

    Returns:
        `(Linear with weights (D, K) and the features' scale, {class id: train_svm's log})`.
    """
    scale = feature_scale(features)
    features = np.asarray(features, np.float32) * scale
    is_gt, classes, class_iou = (np.asarray(regions[key]) for key in ("is_gt", "class", "class_iou"))
    weights, biases, logs = [], [], {}
    for k in range(num_classes):
        positives = is_gt & (classes == k)
        negatives = ~is_gt & (class_iou[:, k] < negative_iou)
        svm, logs[k] = train_svm(features[positives], features[negatives], **svm_options)
        weights.append(svm.weights)
        biases.append(svm.bias)
    return Linear(weights=np.concatenate(weights, 1), bias=np.concatenate(biases), scale=scale), logs


def box_targets(proposals, gt_boxes) -> np.ndarray:
    """R-CNN's regression targets (Appendix C): `t_x = (G_x - P_x) / P_w`, `t_y = (G_y - P_y) / P_h`,
    `t_w = log(G_w / P_w)`, `t_h = log(G_h / P_h)` of true boxes G from proposals P (centres and sizes), which is
    `kapps.detection.encode` without variances; `kapps.detection.decode(..., variances=(1, 1, 1, 1))` inverts it.

    Returns:
        `(N, 4)` float32.
    """
    return np.asarray(encode(gt_boxes, proposals, variances=PLAIN), np.float32)


def fit_box_regressors(
    features, regions: dict, *, num_classes: int, min_iou: float = 0.6, alpha: float = 1000.0
) -> tuple[Linear, dict]:
    """One ridge regression a class from CNN features to `box_targets` (Girshick et al. 2014, Appendix C).

    Each proposal (true boxes left out) that overlaps a true box by more than `min_iou` learns to move onto the true
    box it overlaps most, in that box's class; the paper uses 0.6 and lambda = 1000. A class with no such proposal
    keeps zero coefficients (no move).

    Args:
        features: `(R, D)` CNN features of the regions (R-CNN's pool5: the last feature map, flattened).
        regions: `label_regions`' table of the same R regions (`is_gt`, `iou`, `class`, `boxes`, `gt_boxes`).
        num_classes: K.
        min_iou: least overlap of a training proposal.
        alpha: the ridge penalty.

    Returns:
        `(Linear with weights (D, 4K), class k's deltas in columns 4k..4k+3, and the features' scale,
        {class id: training proposals})`.
    """
    from sklearn.linear_model import Ridge

    scale = feature_scale(features)
    features = np.asarray(features, np.float32) * scale
    near = ~np.asarray(regions["is_gt"]) & (np.asarray(regions["iou"]) > min_iou)
    targets = box_targets(regions["boxes"], regions["gt_boxes"])
    weights = np.zeros((features.shape[1], 4 * num_classes), np.float32)
    bias = np.zeros(4 * num_classes, np.float32)
    counts = {}
    for k in range(num_classes):
        rows = near & (np.asarray(regions["class"]) == k)
        counts[k] = int(rows.sum())
        if counts[k]:
            ridge = Ridge(alpha=alpha).fit(features[rows], targets[rows])
            weights[:, 4 * k : 4 * k + 4] = ridge.coef_.T
            bias[4 * k : 4 * k + 4] = ridge.intercept_
    return Linear(weights=weights, bias=bias, scale=scale), counts
