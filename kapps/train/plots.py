"""Training curves as a PNG: one panel per quantity, training and validation together."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(history: list[dict], path: Path, *, title: str = "") -> Path | None:
    """Plot every logged quantity against the epoch; `val_X` and `test_X` share the panel of `X`. Returns the PNG
    path."""
    if not history:
        return None
    names = [k for k in history[0] if k not in ("epoch", "learning_rate") and not k.startswith(("val_", "test_"))]
    epochs = [int(row["epoch"]) + 1 for row in history]
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
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


def _save(fig, path: Path, *, title: str) -> Path:
    """Title, lay out and write `fig` as a PNG at `path` (creating its folder), then free it."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
