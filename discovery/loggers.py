"""Per-epoch training logs (``conf/logger``): CSV by default, TensorBoard when installed.

A logger is built with the run folder and receives ``log_epoch(member, epoch, values)``
for every epoch of every ensemble member.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from featurestore.io import atomic_path


class CSVLogger:
    """One CSV row per member x epoch (``member, epoch, train_loss, val_loss, lr``), rewritten atomically each epoch."""

    def __init__(self, out_dir: str | os.PathLike, filename: str = "epochs.csv") -> None:
        self.path = Path(out_dir) / filename
        self.rows: list[dict[str, float]] = []

    def log_epoch(self, member: int, epoch: int, values: dict[str, float]) -> None:
        self.rows.append({"member": member, **values, "epoch": epoch})
        with atomic_path(self.path) as tmp:
            pl.DataFrame(self.rows).write_csv(tmp)

    def close(self) -> None:
        """Nothing is held open: every epoch already replaced the file."""


class TensorBoardLogger:
    """Scalars ``member<k>/<name>`` per epoch in ``<run>/<subdir>`` (an append-only event file, not atomic)."""

    def __init__(self, out_dir: str | os.PathLike, subdir: str = "tensorboard") -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ImportError(
                "logger=tensorboard needs the tensorboard package: pip install 'tensorboard>=2.15' "
                "(the 'tracking' extra of this project); or use logger=csv"
            ) from exc
        self.writer = SummaryWriter(log_dir=str(Path(out_dir) / subdir))

    def log_epoch(self, member: int, epoch: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            if name != "epoch":
                self.writer.add_scalar(f"member{member}/{name}", value, epoch)

    def close(self) -> None:
        self.writer.close()
