"""The options every recipe shares, as a dataclass and as click options with per-recipe defaults."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

from kapps.cli import Command
from kapps.errors import OptionError
from kapps.train.distribute import STRATEGIES, make_strategy
from kapps.train.precision import PRECISIONS

import click


@dataclass
class TrainOptions:
    """What a recipe was asked to do. Every field is written to the run's config.json."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    precision: str = "auto"
    strategy: str = "auto"
    data: str = "digits"
    data_dir: str | None = None
    out: str = "saved_models/run"
    seed: int = 0
    resume: bool = True
    steps_per_epoch: int | None = None
    deterministic: bool = True

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise `OptionError` for a value out of its range."""
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise OptionError(f"--epochs must be a positive whole number, not {self.epochs!r}.")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise OptionError(f"--batch-size must be a positive whole number, not {self.batch_size!r}.")
        if not self.lr > 0:
            raise OptionError(f"--lr must be positive, not {self.lr!r}.")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise OptionError(f"--steps-per-epoch must be a positive whole number, not {self.steps_per_epoch!r}.")
        if self.precision not in PRECISIONS:
            raise OptionError(f"Unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}.")
        if self.strategy not in STRATEGIES:
            raise OptionError(f"Unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}.")

    def epoch_steps(self, examples: int) -> int:
        """Batches per training epoch over `examples`, capped by `--steps-per-epoch`."""
        steps = -(-examples // self.batch_size)
        return min(steps, self.steps_per_epoch) if self.steps_per_epoch else steps

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def recipe_command(*, name: str, help: str, **defaults):
    """Turn `main(opts: TrainOptions, **extra)` into a click command with the shared recipe options.

    Args:
        name: the recipe's name, which is also its default run folder `saved_models/<name>`.
        help: the command's help text.
        **defaults: recipe defaults for TrainOptions fields (`epochs=60, lr=3e-3, ...`).

    The command is a `kapps.cli.Command`: a `KappsError` is one line on stderr and exit status 1 (`--debug` shows
    the traceback), a malformed command line one line and status 2.
    Recipe-specific click options can be stacked under this decorator; they arrive as keyword arguments.
    """
    fields = {f.name: f.default for f in dataclasses.fields(TrainOptions)}
    unknown = set(defaults) - set(fields)
    if unknown:
        raise ValueError(f"unknown recipe defaults: {sorted(unknown)}")
    base = {**fields, "out": f"saved_models/{name}", **defaults}

    def decorate(main):
        @click.command(name=name, cls=Command, help=help, context_settings={"show_default": True})
        @click.option("--epochs", type=int, default=base["epochs"], help="Training epochs.")
        @click.option("--batch-size", type=int, default=base["batch_size"], help="Global batch size.")
        @click.option("--lr", type=float, default=base["lr"], help="Peak learning rate.")
        @click.option("--precision", type=str, default=base["precision"], help=f"One of {', '.join(PRECISIONS)}.")
        @click.option("--strategy", type=str, default=base["strategy"], help=f"One of {', '.join(STRATEGIES)}.")
        @click.option("--data", type=str, default=base["data"], help="Data source: 'digits' or 'tfds:NAME'.")
        @click.option("--data-dir", type=str, default=None, help="tensorflow-datasets data folder (offline copies).")
        @click.option("--out", type=str, default=base["out"], help="Run folder.")
        @click.option("--seed", type=int, default=base["seed"], help="Seed of data split, shuffling and weights.")
        @click.option("--resume/--no-resume", default=True, help="Resume an interrupted run in --out.")
        @click.option("--steps-per-epoch", type=int, default=None, help="Cap on batches per epoch (smoke runs).")
        @click.option(
            "--deterministic/--no-deterministic", default=True, help="Deterministic TensorFlow ops (slower on GPU)."
        )
        @click.option("--debug", is_flag=True, help="Show tracebacks.")
        @functools.wraps(main)
        def command(debug, **kwargs):  # debug is read by Command when an error arrives
            extra = {k: v for k, v in kwargs.items() if k not in fields}
            opts = TrainOptions(**{k: v for k, v in kwargs.items() if k in fields})
            if opts.strategy == "multi-worker":
                make_strategy("multi-worker")  # before the recipe loads data: see make_strategy
            return main(opts, **extra)

        return command

    return decorate
