"""The recommend app end to end: Hydra multirun on Eunomia (subprocess), and in-process runs on test files."""

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from hydra import compose, initialize_config_dir

import recommend  # noqa: F401
from featurestore.report import render_report
from featurestore.runs import collect_runs
from recommend.run import run_recommend

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "recommend"
FILES = ["metrics.json", "recommendations.parquet", "histories.parquet", "report.json", "ingest_errors.parquet",
         "model.npz", "model.json", "users.parquet", "items.parquet", "run.json"]


def test_multirun_on_eunomia_beats_random_and_writes_outputs(tmp_path):
    sweep = tmp_path / "sweep"
    result = subprocess.run(
        [sys.executable, "-m", "recommend.run", "-m", "recommender=random,als,ease", "evaluate.mrr_depth=20",
         f"hydra.sweep.dir={sweep}"],
        cwd=REPO, capture_output=True, text=True, timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = {name: sweep / f"{i}_eunomia_{name}" for i, name in enumerate(["random", "als", "ease"])}
    for run in runs.values():
        for name in FILES:
            assert (run / name).is_file(), (run, name)
    metrics = {name: json.loads((run / "metrics.json").read_text()) for name, run in runs.items()}
    for task in ("all", "new"):
        floor = metrics["random"]["test"]["tasks"][task]["ndcg@10"]
        assert floor < 0.01
        # Measured: ALS (implicit defaults) 0.31 / 0.08, EASE 0.52 / 0.46 on all / new.
        assert metrics["als"]["test"]["tasks"][task]["ndcg@10"] > 5 * floor
        assert metrics["ease"]["test"]["tasks"][task]["ndcg@10"] > 0.4
    ease = metrics["ease"]
    assert ease["objective"]["value"] == ease["validation"]["tasks"]["new"]["ndcg@10"]
    assert ease["test"]["split"]["reference"] == "2004-09-07 00:00:00"
    assert {"jaccard", "f1", "prauc"} <= set(ease["test"]["tasks"]["visit"])
    report = json.loads((runs["ease"] / "report.json").read_text())
    assert report["mapping"]["codes_mapped"] == 101 and report["ingest"]["dropped"] == {"duplicate_row": 29}
    recs = pl.read_parquet(runs["ease"] / "recommendations.parquet")
    assert recs.columns == ["person_id", "rank", "drug_id", "drug_name", "atc_code", "score", "explanation",
                            "contribution", "interaction_severity", "interacts_with", "interaction_mechanism"]
    assert recs.group_by("person_id").len()["len"].max() == 10
    aspirin = recs.filter(pl.col("drug_id") == "DB00945").row(0, named=True)
    assert aspirin["drug_name"] == "Acetylsalicylic acid" and "B01AC" in aspirin["atc_code"]
    assert recs["explanation"].list.len().max() == 3
    assert (sweep / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert pl.read_parquet(sweep / "comparison.parquet")["label"].unique().sort().to_list() == ["als", "ease",
                                                                                               "random"]


def _compose(*overrides: str):
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose("recommend", overrides=list(overrides))


def tiny_omop_config(*overrides: str):
    """The recommend config on the tiny hand-written OMOP files, leave-last split, K in {1, 2}."""
    return _compose(
        "usage=omop", f"usage.tables.drug_exposure.path={DATA / 'omop_drug_exposure.csv'}",
        f"usage.tables.concept.path={DATA / 'omop_concept.csv'}",
        f"usage.tables.concept_ancestor.path={DATA / 'omop_concept_ancestor.csv'}",
        "usage_split=leave_last", "evaluate.ks=[1,2]", "objective.fold=test", "objective.task=all",
        "objective.metric=recall@2", *overrides,
    )


def test_run_on_omop_files_in_process(tmp_path):
    cfg = tiny_omop_config("recommender=popularity", "output.exclude=history")
    result = run_recommend(cfg, tmp_path)
    for name in FILES:
        assert (tmp_path / name).is_file(), name
    assert result["report"]["ingest"]["rows_kept"] == 7
    assert result["report"]["mapping"]["unmapped_codes"] == 2
    errors = pl.read_parquet(tmp_path / "ingest_errors.parquet")
    assert errors.height == 8 and "duplicate_row" in errors["reason"].to_list()
    test = result["metrics"]["test"]["tasks"]["all"]
    # Last baskets: patient 1 {acetaminophen}, patient 2 {amoxicillin, clavulanate}; histories: aspirin each.
    assert test["patients"] == 2
    # The test histories hold aspirin only: popularity ranks it first, every other drug ties at 0
    # (catalog order), so neither last basket is in the top 2.
    assert test["recall@2"] == 0.0 and result["objective"] == test["recall@2"]
    assert result["metrics"]["validation"]["tasks"]["all"] == {"patients": 0}
    recs = pl.read_parquet(tmp_path / "recommendations.parquet")
    # history filter: nobody is recommended aspirin, which both took before.
    assert "DB00945" not in recs["drug_id"].to_list() and set(recs["person_id"]) == {1, 2}
    assert recs["score"].to_list() == [0.0] * 20 and recs["explanation"].list.len().sum() == 0
    histories = pl.read_parquet(tmp_path / "histories.parquet")
    assert histories.select("person_id", "drug_id", "events").rows() == [(1, "DB00945", 1), (2, "DB00945", 1)]
    page = render_report(tmp_path).read_text()  # the patient's history beside their recommendations
    assert "person_id 1: histories beside recommendations" in page and "Acetylsalicylic acid" in page
    log = pl.read_csv(tmp_path / "metrics_log.csv")  # logger=csv, the default: one row per fold
    assert log.columns[:6] == ["group", "step", "fit_seconds", "all.patients", "new.patients", "visit.patients"]
    assert log.select("group", "step", "all.patients", "all.recall@2").rows() == [("validation", 0, 0, None),
                                                                                 ("test", 1, 2, 0.0)]
    logged = log.row(1, named=True)
    assert {name: logged[f"all.{name}"] for name in test} == test and logged["visit.jaccard"] == 0.0
    runs = collect_runs(tmp_path)  # the run as one row of the runs table: config and metrics columns
    assert runs.select("config.recommender.name", "config.logger._target_", "metrics.test.tasks.all.patients",
                       "metrics.objective.value").row(0) == ("popularity", "featurestore.tracking.CSVLogger", 2, 0.0)


def test_mlflow_logger_records_each_fold_params_and_the_objective(tmp_path, mlflow_db):
    from mlflow.tracking import MlflowClient

    mlflow_db(tmp_path)
    result = run_recommend(tiny_omop_config("recommender=popularity", "logger=mlflow"), tmp_path)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("recommend.run").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["recommender.name"] == "popularity" and run.data.params["usage_split.name"] == "leave_last"
    test = result["metrics"]["test"]["tasks"]
    assert run.data.metrics["test/all.mrr"] == pytest.approx(test["all"]["mrr"]) and test["all"]["mrr"] > 0
    assert run.data.metrics["test/visit.recall_at_2"] == test["visit"]["recall@2"]
    assert run.data.metrics["objective"] == result["objective"]
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "validation/all.patients")] == [
        (0, 0.0)]
    assert "validation/all.recall_at_2" not in run.data.metrics  # no validation patient: nothing to score


@pytest.mark.slow
def test_hparams_search_logs_every_trial_params_and_objective_in_one_mlflow_store(tmp_path, mlflow_db):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    from mlflow.tracking import MlflowClient

    store, sweep = mlflow_db(tmp_path), tmp_path / "sweep"
    tiny = [f"usage.tables.{table}.path={DATA / f'omop_{table}.csv'}" for table in
            ("drug_exposure", "concept", "concept_ancestor")]
    result = subprocess.run(
        [sys.executable, "-m", "recommend.run", "+hparams_search=recommend_ease", "hydra.sweeper.n_trials=2",
         "usage=omop", *tiny, "usage_split=leave_last", "evaluate.ks=[1,2]", "objective.fold=test",
         "objective.task=all", "objective.metric=mrr", "logger=mlflow", f"logger.tracking_uri=sqlite:///{store}",
         f"hydra.sweep.dir={sweep}"],
        cwd=REPO, capture_output=True, text=True, timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    runs = client.search_runs([client.get_experiment_by_name("recommend.run").experiment_id])
    logged = {run.info.run_name: run for run in runs}
    assert sorted(logged) == ["0_omop_ease", "1_omop_ease"]
    for name, run in logged.items():  # each trial: its sampled params and the value optuna maximized
        config = json.loads((sweep / name / "run.json").read_text())["config"]
        assert run.data.params["recommender.l2"] == str(config["recommender"]["l2"])
        assert run.data.params["weighting.scheme"] == config["weighting"]["scheme"]
        objective = json.loads((sweep / name / "metrics.json").read_text())["objective"]["value"]
        assert run.data.metrics["objective"] == objective == run.data.metrics["test/all.mrr"]


def test_split_failure_on_tiny_csv_still_writes_the_ingest_report(tmp_path):
    usage = tmp_path / "tiny.csv"  # no weight column; every event on one day: no time cutoff can split it
    usage.write_text("user,item,timestamp\nu1,DB00945,2020-01-01\nu2,DB00316,2020-01-01\nu2,DB99999,2020-01-01\n")
    cfg = _compose("usage=csv", f"usage.path={usage}", "recommender=popularity")
    message = (r"usage split 'time' failed on 2 mapped events of 2 patients; see .*report\.json: "
               r"validation cutoff 2020-01-01 00:00:00 must be before the test cutoff")
    with pytest.raises(ValueError, match=message):
        run_recommend(cfg, tmp_path / "run")
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["ingest"]["rows_kept"] == 3 and report["mapping"]["unmapped_codes"] == 1
    assert not (tmp_path / "run" / "metrics.json").exists()
