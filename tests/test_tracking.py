"""featurestore.tracking: the loggers every app shares (conf/logger), on hand-made series."""

import polars as pl
import pytest
from hydra import compose, initialize_config_dir

from featurestore.tracking import CSVLogger, MLflowLogger, TensorBoardLogger, mlflow_name, numbers, start_logger
from tests.test_configs import CONF


def _logger_spec(option: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("recommend", overrides=[f"logger={option}"]).logger


def test_csv_logger_one_row_per_step_columns_from_every_row(tmp_path):
    logger = start_logger(_logger_spec("csv"), tmp_path, "recommend.run", {"seed": 0})
    assert isinstance(logger, CSVLogger)
    logger.log_metrics(0, {"fit_seconds": 0.5, "all.ndcg@10": 0.25}, "validation")
    logger.log_metrics(1, {"fit_seconds": 1, "all.ndcg@10": 0.5, "new.ndcg@10": 0.75}, "test")  # a new column
    logger.log_summary({"objective": 0.25})  # metrics.json holds it: not in the CSV
    logger.close()
    table = pl.read_csv(tmp_path / "metrics_log.csv")
    assert table.columns == ["group", "step", "fit_seconds", "all.ndcg@10", "new.ndcg@10"]
    assert table.rows() == [("validation", 0, 0.5, 0.25, None), ("test", 1, 1.0, 0.5, 0.75)]


def test_numbers_keeps_ints_and_floats_only():
    assert numbers({"a": 1, "b": 0.5, "c": True, "d": None, "e": "x", "f": "[1, 2]"}) == {"a": 1, "b": 0.5}


def test_mlflow_names_drop_refused_characters():
    assert mlflow_name("validation/all.ndcg@10") == "validation/all.ndcg_at_10"
    assert mlflow_name("a+b (c)") == "a_b _c_"


def test_mlflow_experiment_is_named_after_the_app_unless_set(tmp_path, mlflow_db):
    from mlflow.tracking import MlflowClient

    mlflow_db(tmp_path / "a")
    logger = start_logger(_logger_spec("mlflow"), tmp_path / "a", "recommend.run", {"recommender": {"l2": 500.0}})
    assert isinstance(logger, MLflowLogger)
    logger.log_metrics(0, {"all.ndcg@10": 0.25}, "validation")
    logger.log_metrics(1, {"all.ndcg@10": 0.5}, "validation")
    logger.log_summary({"objective": 0.5})
    logger.close()
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("recommend.run").experiment_id])
    assert (run.info.status, run.info.run_name) == ("FINISHED", "a")
    assert run.data.params == {"recommender.l2": "500.0"} and run.data.metrics["objective"] == 0.5
    history = client.get_metric_history(run.info.run_id, "validation/all.ndcg_at_10")
    assert [(m.step, m.value) for m in history] == [(0, 0.25), (1, 0.5)]
    spec = _logger_spec("mlflow")
    spec.experiment = "mine"
    start_logger(spec, mlflow_db(tmp_path / "b").parent, "recommend.run", {}).close()
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}")
    assert client.get_experiment_by_name("mine") and not client.get_experiment_by_name("recommend.run")


def test_tensorboard_logger_writes_events_or_says_how_to_install_it(tmp_path):
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install 'tensorboard>=2.15'"):
            TensorBoardLogger(tmp_path)
        return
    logger = TensorBoardLogger(tmp_path)
    logger.log_metrics(0, {"train_loss": 1.0, "val_loss": 2.0}, "member0")
    logger.close()
    assert any((tmp_path / "tensorboard").iterdir())
