"""The shared training engine that every recipe uses.

`fit` trains a model into a run folder, whether the engine compiles it or it compiles itself (its own
`train_step`); `fit_classifier` is its classification preset; `recipe_command` gives a recipe the shared options;
`make_strategy` and `resolve_precision` are the tf.distribute strategy and dtype policy of DESIGN.md.
"""

from kapps.train.classification import evaluate_classifier, fit_classifier
from kapps.train.distribute import STRATEGIES, make_strategy
from kapps.train.engine import Run, fit, seed_everything, versions
from kapps.train.options import TrainOptions, recipe_command
from kapps.train.precision import PRECISIONS, precision_policy, resolve_precision
from kapps.train.recipe import run_config, scene_counts
from kapps.train.schedules import warmup_cosine
from kapps.train.transfer import attach_head, freeze, unfreeze_top

__all__ = [
    "PRECISIONS",
    "STRATEGIES",
    "Run",
    "attach_head",
    "freeze",
    "unfreeze_top",
    "versions",
    "TrainOptions",
    "fit",
    "evaluate_classifier",
    "fit_classifier",
    "make_strategy",
    "precision_policy",
    "recipe_command",
    "resolve_precision",
    "run_config",
    "scene_counts",
    "seed_everything",
    "warmup_cosine",
]
