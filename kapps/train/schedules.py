"""Learning-rate schedules the recipes share."""

from __future__ import annotations

import keras


def warmup_cosine(lr: float, *, epochs: int, steps: int) -> keras.optimizers.schedules.CosineDecay:
    """A learning rate that warms up from lr/10 to `lr` over the first epoch (at most a tenth of training), then
    decays to zero along a cosine over `epochs` epochs of `steps` steps."""
    return keras.optimizers.schedules.CosineDecay(
        lr / 10, decay_steps=epochs * steps, warmup_target=lr, warmup_steps=min(steps, epochs * steps // 10)
    )


@keras.saving.register_keras_serializable(package="kapps")
class HoldThenLinear(keras.optimizers.schedules.LearningRateSchedule):
    """A learning rate held at `lr` for `hold_steps` steps, then brought down in a straight line to `end` over
    `decay_steps` more, and kept there: the schedule GANs are often finished with (a game with no loss to
    minimise has no plateau to detect, so the decay is set in steps)."""

    def __init__(self, lr: float, *, hold_steps: int, decay_steps: int, end: float = 0.0):
        if hold_steps < 0 or decay_steps < 1:
            raise ValueError(
                f"hold_steps must be at least 0 and decay_steps at least 1. Received: hold_steps={hold_steps}, "
                f"decay_steps={decay_steps}"
            )
        self.lr, self.hold_steps, self.decay_steps, self.end = float(lr), int(hold_steps), int(decay_steps), float(end)

    def __call__(self, step):
        done = keras.ops.clip((keras.ops.cast(step, "float32") - self.hold_steps) / self.decay_steps, 0.0, 1.0)
        return self.lr + (self.end - self.lr) * done

    def get_config(self):
        return {"lr": self.lr, "hold_steps": self.hold_steps, "decay_steps": self.decay_steps, "end": self.end}
