"""Training curves as a PNG: one panel per quantity, training and validation together."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(history: list[dict], path: Path, *, title: str = "") -> Path | None:
    """Plot every logged quantity against the epoch; `val_X` shares the panel of `X`. Returns the PNG path."""
    if not history:
        return None
    names = [k for k in history[0] if k not in ("epoch", "learning_rate") and not k.startswith("val_")]
    epochs = [int(row["epoch"]) + 1 for row in history]
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        ax.plot(epochs, [row.get(name) for row in history], label="train")
        if f"val_{name}" in history[0]:
            ax.plot(epochs, [row.get(f"val_{name}") for row in history], label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
