"""The shared training engine that every recipe uses.

`fit` trains a model into a run folder; `recipe_command` gives a recipe the shared options; `make_strategy` and
`resolve_precision` are the tf.distribute strategy and dtype policy of DESIGN.md.
"""

from kapps.train.distribute import STRATEGIES, make_strategy
from kapps.train.engine import Run, fit, fit_classifier, seed_everything, warmup_cosine
from kapps.train.options import TrainOptions, recipe_command
from kapps.train.precision import PRECISIONS, precision_policy, resolve_precision
from kapps.train.transfer import attach_head, freeze, unfreeze_top

__all__ = [
    "PRECISIONS",
    "STRATEGIES",
    "Run",
    "attach_head",
    "freeze",
    "unfreeze_top",
    "TrainOptions",
    "fit",
    "fit_classifier",
    "make_strategy",
    "precision_policy",
    "recipe_command",
    "resolve_precision",
    "seed_everything",
    "warmup_cosine",
]
