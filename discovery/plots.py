"""Figures written by the training app."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402

from featurestore.io import atomic_path  # noqa: E402


def plot_learning_curves(histories: Sequence[Sequence[dict[str, float]]], path: str | os.PathLike, title: str) -> Path:
    """Train and validation loss per epoch for each ensemble member (log scale), saved as PNG."""
    figure, axis = plt.subplots(figsize=(6, 4), dpi=120)
    for member, history in enumerate(histories):
        epochs = [row["epoch"] for row in history]
        suffix = f" (member {member})" if len(histories) > 1 else ""
        axis.plot(epochs, [row["train_loss"] for row in history], color="tab:blue", alpha=0.8, label=f"train{suffix}")
        axis.plot(epochs, [row["val_loss"] for row in history], color="tab:orange", alpha=0.8, label=f"validation{suffix}")
    axis.set_xlabel("epoch")
    axis.set_ylabel("loss (scaled targets)")
    axis.set_yscale("log")
    axis.set_title(title)
    axis.legend(fontsize="small")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
    return Path(path)
