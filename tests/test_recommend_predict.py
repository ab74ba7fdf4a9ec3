"""recommend.predict: a trained recommend.run folder ranks drugs for patients it never saw."""

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from hydra import compose, initialize_config_dir

import recommend  # noqa: F401
from recommend.predict import load_trained, predict_recommend
from recommend.run import run_recommend
from tests.test_recommend_run import _compose, tiny_omop_config

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "recommend"
ASPIRIN, ACETAMINOPHEN = "DB00945", "DB00316"


def _trained(tmp_path: Path, *overrides: str) -> Path:
    """A recommend.run folder fitted on the tiny OMOP files (leave-last: histories of aspirin only)."""
    run = tmp_path / "train"
    run_recommend(tiny_omop_config(*overrides, "usage_split=time", "usage_split.cutoff=2019-03-15",
                                   "usage_split.validation_cutoff=2019-02-15"), run)
    return run


def _predict_config(run: Path, *overrides: str):
    """Recommend for the generic CSV's patients: u1 took aspirin then acetaminophen, u2 aspirin and an unknown code,
    u3 acetaminophen; 4 rows are malformed (a bad date, no patient, 2 duplicates)."""
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose("recommend_predict", overrides=[f"model_run={run}", "usage=csv",
                                                       f"usage.path={DATA / 'generic.csv'}", *overrides])


def test_new_patients_are_ranked_like_the_model_ranks_their_rows(tmp_path):
    run = _trained(tmp_path, "recommender=ease", "recommender.l2=1")
    report = predict_recommend(_predict_config(run, "output.exclude=history", "output.top_k=3"), tmp_path / "out")
    recs = pl.read_parquet(tmp_path / "out" / "recommendations.parquet")
    assert sorted(recs["person_id"].unique()) == ["u1", "u2", "u3"] and report["recommended_patients"] == 3
    # the app's ranking is the saved model's ranking of each patient's drug row (past drugs excluded)
    trained = load_trained(run)
    column = {item: j for j, item in enumerate(trained.items["item"])}
    rows = sp.lil_matrix((3, trained.items.height), dtype=np.float32)
    rows[0, [column[ASPIRIN], column[ACETAMINOPHEN]]] = 1
    rows[1, column[ASPIRIN]] = 1
    rows[2, column[ACETAMINOPHEN]] = 1
    ids, _ = trained.model.recommend(np.arange(3), rows.tocsr(), N=3)
    for person, expected, row in zip(["u1", "u2", "u3"], ids, rows.tocsr()):
        got = recs.filter(pl.col("person_id") == person).sort("rank")["drug_id"].to_list()
        assert got == trained.items["item"].gather(expected[expected >= 0]).to_list()
        assert not set(got) & set(trained.items["item"].gather(row.indices))
    assert recs.filter(pl.col("person_id") == "u2")["drug_id"][0] == ACETAMINOPHEN  # taken with aspirin in training
    histories = pl.read_parquet(tmp_path / "out" / "histories.parquet")
    assert histories.filter(pl.col("person_id") == "u1")["drug_id"].sort().to_list() == [ACETAMINOPHEN, ASPIRIN]
    # bad rows and unknown codes are reported, not lost
    assert report["mapping"]["top_unmapped"][0]["code"] == "DB99999"
    assert report["ingest"]["dropped"] == {"duplicate_row": 2, "missing_person_id": 1, "unparseable_start": 1}
    assert pl.read_parquet(tmp_path / "out" / "ingest_errors.parquet").height == 4
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert any(path.endswith("model.npz") for path in record["data"])
    # explain=0: the same ranking, no explanations
    assert recs["explanation"].list.len().max() > 0
    predict_recommend(_predict_config(run, "output.exclude=history", "output.top_k=3", "output.explain=0"),
                      tmp_path / "bare")
    bare = pl.read_parquet(tmp_path / "bare" / "recommendations.parquet")
    assert bare.drop("explanation", "contribution").equals(recs.drop("explanation", "contribution"))
    assert bare["explanation"].list.len().max() == 0


def test_prediction_time_cuts_the_records(tmp_path):
    run = _trained(tmp_path, "recommender=popularity")
    report = predict_recommend(_predict_config(run, "at=2020-01-02"), tmp_path / "out")
    assert report["prediction"]["reference"] == "2020-01-02 00:00:00" and report["recommended_patients"] == 1
    histories = pl.read_parquet(tmp_path / "out" / "histories.parquet")
    assert histories.select("person_id", "drug_id").rows() == [("u1", ASPIRIN)]
    with pytest.raises(ValueError, match="no patient has a usage event before the prediction time 2019-01-01"):
        predict_recommend(_predict_config(run, "at=2019-01-01"), tmp_path / "early")


@pytest.mark.parametrize("recommender", [["recommender=als", "recommender.factors=4"],
                                         ["recommender=gru", "recommender.epochs=1"]])
def test_models_fitted_on_other_patients_rank_new_ones(tmp_path, recommender):
    run = _trained(tmp_path, *recommender)
    predict_recommend(_predict_config(run), tmp_path / "out")
    recs = pl.read_parquet(tmp_path / "out" / "recommendations.parquet")
    assert recs.group_by("person_id").len().sort("person_id").rows() == [("u1", 10), ("u2", 10), ("u3", 10)]
    assert recs["score"].is_finite().all()


def test_a_drug_list_cannot_feed_a_model_with_covariates(tmp_path):
    run = tmp_path / "covariates"
    run_recommend(_compose("recommender=ease", "recommender.covariates=[sex,age]"), run)  # on Eunomia
    with pytest.raises(ValueError, match="reads the patients' sex, age and diagnoses, which a drug list does not"):
        predict_recommend(_predict_config(run, "drugs=[aspirin]"), tmp_path / "out")


def test_bpr_and_wrong_folders_fail_clearly(tmp_path):
    run = _trained(tmp_path, "recommender=bpr", "recommender.iterations=2")
    with pytest.raises(NotImplementedError, match="bpr cannot score patients it was not fitted on"):
        predict_recommend(_predict_config(run), tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="not a recommend.run output folder: run.json is missing"):
        predict_recommend(_predict_config(tmp_path / "nothing"), tmp_path / "out2")


def test_final_fit_saves_a_model_of_every_record(tmp_path):
    run = tmp_path / "final"
    result = run_recommend(tiny_omop_config("recommender=ease", "final_fit=true"), run)
    assert result["metrics"]["final_fit"]["split"]["future_events"] == 0
    # the last baskets (patient 1: acetaminophen; patient 2: amoxicillin, clavulanate) are in the saved history now
    histories = pl.read_parquet(run / "histories.parquet")
    assert set(histories.filter(pl.col("person_id") == 1)["drug_name"]) == {"Acetylsalicylic acid", "Acetaminophen"}
    assert load_trained(run).model.active.size == 4  # EASE's drugs with training use: aspirin and the three above
    assert result["metrics"]["test"]["tasks"]["all"]["patients"] == 2  # evaluated as before


def test_bad_prediction_times_and_empty_records_fail_clearly(tmp_path):
    run = _trained(tmp_path, "recommender=popularity")
    with pytest.raises(ValueError, match=r"at must be a date \(YYYY-MM-DD\) or null, got 'soon'"):
        predict_recommend(_predict_config(run, "at=soon"), tmp_path / "soon")
    header = tmp_path / "header.csv"
    header.write_text("user,item,timestamp\nu9,NOTADRUG,2020-01-01\n")
    with pytest.raises(ValueError, match="no usage event left to recommend from after ingest and catalog mapping"):
        predict_recommend(_predict_config(run, f"usage.path={header}"), tmp_path / "unmapped")
    assert json.loads((tmp_path / "unmapped" / "report.json").read_text())["mapping"]["unmapped_codes"] == 1


def test_a_drug_list_is_one_patient_taking_them_now(tmp_path):
    run = _trained(tmp_path, "recommender=popularity")
    report = predict_recommend(_predict_config(run, "drugs=[warfarin,notadrug]", "output.top_k=3"), tmp_path / "out")
    recs = pl.read_parquet(tmp_path / "out" / "recommendations.parquet")
    # popularity ranks aspirin first; warfarin is current, so it is screened against (and not recommended)
    assert recs["person_id"].unique().to_list() == ["patient"] and "DB00682" not in recs["drug_id"].to_list()
    aspirin = recs.filter(pl.col("drug_id") == ASPIRIN).row(0, named=True)
    assert aspirin["rank"] == 1 and aspirin["interaction_severity"] == "contraindicated"
    assert aspirin["interacts_with"] == ["DB00682"]  # warfarin
    assert report["mapping"]["top_unmapped"][0]["code"] == "notadrug"
    assert (tmp_path / "out" / "patient_drugs.csv").read_text().startswith("user,item,start,end")
