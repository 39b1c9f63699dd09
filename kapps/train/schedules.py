"""Learning-rate schedules the recipes share."""

from __future__ import annotations

import keras


def warmup_cosine(lr: float, *, epochs: int, steps: int) -> keras.optimizers.schedules.CosineDecay:
    """A learning rate that warms up from lr/10 to `lr` over the first epoch (at most a tenth of training), then
    decays to zero along a cosine over `epochs` epochs of `steps` steps."""
    return keras.optimizers.schedules.CosineDecay(
        lr / 10, decay_steps=epochs * steps, warmup_target=lr, warmup_steps=min(steps, epochs * steps // 10)
    )
