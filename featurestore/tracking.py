"""Run tracking for the apps that fit or search (``conf/logger``): CSV by default; TensorBoard or MLflow if installed.

An app builds its logger with :func:`start_logger` (which logs the run's flattened config
as params), then calls ``log_metrics(step, metrics, group)`` for each point of a series
(an epoch of an ensemble member, a fold of a recommender, a block of oracle calls),
``log_summary(metrics)`` once with the final numbers (the ones ``metrics.json`` holds)
and ``close()``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import polars as pl
from hydra.utils import instantiate

from featurestore.io import atomic_path
from featurestore.runs import flatten


class TrackingLogger(Protocol):
    """What an app calls on its logger, in this order (``log_metrics`` any number of times)."""

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, step: int, metrics: Mapping[str, float], group: str | None = None) -> None: ...

    def log_summary(self, metrics: Mapping[str, float]) -> None: ...

    def close(self) -> None: ...


def start_logger(spec: Mapping[str, Any], out_dir: str | os.PathLike, app: str,
                 config: Mapping[str, Any]) -> TrackingLogger:
    """The ``conf/logger`` choice ``spec`` for a run of ``app`` in ``out_dir``, with ``config`` logged as params.

    An MLflow ``experiment`` left null is named after the app (``recommend.run``), so the
    runs of one app gather in one experiment of a shared tracking server.
    """
    named = {"experiment": app} if "experiment" in spec and spec["experiment"] is None else {}
    logger: TrackingLogger = instantiate(spec, out_dir=out_dir, **named)
    logger.log_params(flatten(config))
    return logger


def numbers(values: Mapping[str, Any]) -> dict[str, float]:
    """The int/float entries of a flat mapping (booleans, text and nulls cannot be tracked as metrics)."""
    return {name: value for name, value in values.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


class CSVLogger:
    """One CSV row per ``log_metrics`` call (``group, step, <metrics>``), the file rewritten atomically each time.

    Params and the summary are not repeated here: the run folder has them (run.json, metrics.json).
    """

    def __init__(self, out_dir: str | os.PathLike, filename: str = "metrics_log.csv") -> None:
        self.path = Path(out_dir) / filename
        self.rows: list[dict[str, Any]] = []

    def log_params(self, params: Mapping[str, Any]) -> None:
        """The config is in the run folder already (run.json, .hydra/)."""

    def log_metrics(self, step: int, metrics: Mapping[str, float], group: str | None = None) -> None:
        self.rows.append({"group": group, "step": step, **metrics})
        with atomic_path(self.path) as tmp:
            # every row decides the columns: a series may gain a metric after its first rows
            pl.from_dicts(self.rows, infer_schema_length=None).write_csv(tmp)

    def log_summary(self, metrics: Mapping[str, float]) -> None:
        """The final metrics are in metrics.json already."""

    def close(self) -> None:
        """Nothing is held open: every call already replaced the file."""


def _tag(name: str, group: str | None) -> str:
    return f"{group}/{name}" if group else name


class TensorBoardLogger:
    """Scalars ``<group>/<name>`` per step in ``<run>/<subdir>`` (an append-only event file, not atomic)."""

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

    def log_metrics(self, step: int, metrics: Mapping[str, float], group: str | None = None) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(_tag(name, group), value, step)

    def log_summary(self, metrics: Mapping[str, float]) -> None:
        self.log_metrics(0, metrics, "final")

    def close(self) -> None:
        self.writer.close()


def mlflow_name(name: str) -> str:
    """``name`` in the characters MLflow accepts for params and metrics (``ndcg@10`` -> ``ndcg_at_10``)."""
    return re.sub(r"[^\w./\- ]", "_", name.replace("@", "_at_"))


class MLflowLogger:
    """An MLflow run in a tracking store under the run folder (``<run>/mlflow.db``, SQLite, by default).

    MLflow 3 refuses new plain-file stores, so the local default is one SQLite file; browse
    it with ``mlflow ui --backend-store-uri sqlite:///<run>/mlflow.db``, or point
    ``tracking_uri`` at a shared server or database to gather many runs. Params are the
    flattened config (values as text, MLflow's limit is 6,000 characters), metrics are
    ``<group>/<name>`` per step and the summary's names; characters MLflow refuses
    become ``_`` (``@`` becomes ``_at_``). ``experiment`` defaults to the app's name
    (:func:`start_logger`).
    """

    def __init__(self, out_dir: str | os.PathLike, experiment: str, tracking_uri: str | None = None,
                 run_name: str | None = None) -> None:
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

        items = [Param(mlflow_name(key), str(value)[:6000]) for key, value in sorted(params.items())]
        for lo in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[lo:lo + 100])

    def log_metrics(self, step: int, metrics: Mapping[str, float], group: str | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(mlflow_name(_tag(name, group)), float(value), now, step) for name, value in metrics.items()]
        for lo in range(0, len(items), 1000):  # MLflow takes at most 1000 metrics per batch
            self.client.log_batch(self.run_id, metrics=items[lo:lo + 1000])

    def log_summary(self, metrics: Mapping[str, float]) -> None:
        self.log_metrics(0, metrics)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)
