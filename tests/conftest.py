"""Shared fixtures."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from featurestore import FeatureStore


@pytest.fixture
def store(tmp_path) -> FeatureStore:
    """A fresh single-process store in a temporary folder."""
    return FeatureStore(tmp_path / "store", n_jobs=1, progress=False)


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> Path:
    """An empty MLflow SQLite store, made once: creating one runs MLflow's schema migrations (6-9 s here)."""
    pytest.importorskip("mlflow", reason="the test extra installs mlflow-skinny")
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_db(mlflow_template) -> Callable[[Path], Path]:
    """Puts a copy of the empty store at ``<run>/mlflow.db``, where ``logger=mlflow`` then opens it."""
    def place(run_dir: Path) -> Path:
        run_dir.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(mlflow_template, run_dir / "mlflow.db"))

    return place


@pytest.fixture
def one_torch_thread():
    """Tests run two per core pair (pytest -n 2); more torch threads only fight each other."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
