"""Training logs (``conf/logger``): CSV by default; TensorBoard or MLflow when installed.

A logger is built with the run folder; it receives the run's flattened config once
(``log_params``), ``log_epoch(member, epoch, values)`` for every epoch of every ensemble
member, the final flattened metrics (``log_metrics``) and ``close()``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from featurestore.io import atomic_path


class TrainingLogger(Protocol):
    """What the training app calls on its logger, in this order."""

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_epoch(self, member: int, epoch: int, values: dict[str, float]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float]) -> None: ...

    def close(self) -> None: ...


class CSVLogger:
    """One CSV row per member x epoch (``member, epoch, train_loss, val_loss, lr``), rewritten atomically each epoch."""

    def __init__(self, out_dir: str | os.PathLike, filename: str = "epochs.csv") -> None:
        self.path = Path(out_dir) / filename
        self.rows: list[dict[str, float]] = []

    def log_epoch(self, member: int, epoch: int, values: dict[str, float]) -> None:
        self.rows.append({"member": member, **values, "epoch": epoch})
        with atomic_path(self.path) as tmp:
            pl.DataFrame(self.rows).write_csv(tmp)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """The config is in the run folder already (run.json, .hydra/)."""

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        """The final metrics are in metrics.json already."""

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

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.writer.add_text("config", "\n".join(f"    {key}: {value}" for key, value in sorted(params.items())))

    def log_epoch(self, member: int, epoch: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            if name != "epoch":
                self.writer.add_scalar(f"member{member}/{name}", value, epoch)

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(f"final/{name}", value, 0)

    def close(self) -> None:
        self.writer.close()


class MLflowLogger:
    """An MLflow run in a tracking store under the run folder (``<run>/mlflow.db``, SQLite, by default).

    MLflow 3 refuses new plain-file stores, so the local default is one SQLite file; browse
    it with ``mlflow ui --backend-store-uri sqlite:///<run>/mlflow.db``, or point
    ``tracking_uri`` at a shared server or database to gather many runs. Params are the
    flattened config (values as text, MLflow's limit is 6,000 characters), metrics are
    per-epoch ``member<k>/<name>`` and the final flattened metrics.
    """

    def __init__(self, out_dir: str | os.PathLike, tracking_uri: str | None = None,
                 experiment: str = "discovery.train", run_name: str | None = None) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as exc:
            raise ImportError(
                "logger=mlflow needs MLflow: pip install 'mlflow-skinny>=3' (the 'tracking' extra of this project); "
                "or use logger=csv"
            ) from exc
        out_dir = Path(out_dir).resolve()
        out_dir.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=tracking_uri or f"sqlite:///{out_dir / 'mlflow.db'}")
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else self.client.create_experiment(
            experiment, artifact_location=(out_dir / "mlartifacts").as_uri())
        self.run_id = self.client.create_run(experiment_id, run_name=run_name or out_dir.name).info.run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(key, str(value)[:6000]) for key, value in sorted(params.items())]
        for lo in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[lo:lo + 100])

    def _log(self, values: Mapping[str, float], step: int, prefix: str = "") -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(f"{prefix}{name}", float(value), now, step) for name, value in values.items()]
        for lo in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[lo:lo + 1000])

    def log_epoch(self, member: int, epoch: int, values: dict[str, float]) -> None:
        self._log({name: value for name, value in values.items() if name != "epoch"}, epoch, f"member{member}/")

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        self._log(metrics, 0)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)
