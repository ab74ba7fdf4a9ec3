"""New-start regression: the closed form against scikit-learn's ridge, what it learns (from drugs and from patient
covariates), save/load, errors; the covariates themselves (recommend.patients) on hand-computed cases."""

from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from sklearn.linear_model import Ridge

import recommend  # noqa: F401
from recommend.interactions import Weighting, build_interactions
from recommend.models import FitContext, NewStartRecommender, build_model, load_model
from recommend.patients import Patients, covariate_matrix, covariates_at
from recommend.run import run_recommend
from tests.test_recommend_run import _compose

ITEMS = pl.DataFrame({"item": ["A", "B", "C", "D", "E", "F"]})
DAY0, LATE = datetime(2020, 1, 1), datetime(2020, 6, 1)
# Early drug -> the drug started later: 20 A -> B, 15 C -> D, 30 F -> E (E: the most started new drug),
# 5 A, C -> nothing new (a refill of A), 3 patients A, F -> B.
PATHS = [("A", "B")] * 20 + [("C", "D")] * 15 + [("F", "E")] * 30 + [("AC", "A")] * 5 + [("AF", "B")] * 3


def _events() -> pl.DataFrame:
    rows = []
    for person, (early, late) in enumerate(PATHS):
        rows += [(person, item, DAY0 + timedelta(days=day)) for day, item in enumerate(early)]
        rows.append((person, late, LATE))
    return pl.DataFrame(rows, schema={"person_id": pl.Int64, "item": pl.String, "start": pl.Datetime("us")},
                        orient="row")


def _fitted(split=None, **params) -> tuple[NewStartRecommender, sp.csr_matrix]:
    events = _events()
    users = events["person_id"].unique().sort()
    matrix = build_interactions(events, users, ITEMS["item"]).matrix
    model = NewStartRecommender(**params).with_context(FitContext(ITEMS, users, events, split, Weighting()))
    return model.fit(matrix), matrix


def _row(*items: str) -> sp.csr_matrix:
    return sp.csr_matrix(np.isin(ITEMS["item"].to_numpy(), items).astype(np.float32)[None, :])


def test_closed_form_is_ridge_with_an_unpenalized_intercept():
    model, _ = _fitted(l2=3.0)  # no split given: the history is cut at its 80 % quantile, here LATE
    assert model.inputs.tolist() == [0, 2, 5] and model.outputs.tolist() == [1, 3, 4]  # A C F -> B D E
    X = np.array([[("A" in e), ("C" in e), ("F" in e)] for e, _ in PATHS], dtype=float)
    Y = np.array([[late == "B", late == "D", late == "E"] for _, late in PATHS], dtype=float)  # A after A: not new
    reference = Ridge(alpha=3.0).fit(X, Y)
    np.testing.assert_allclose(model.W, reference.coef_.T, atol=1e-5)
    np.testing.assert_allclose(model.bias, reference.intercept_, atol=1e-5)


def test_history_decides_the_ranking_where_popularity_would_not():
    model, _ = _fitted(split={"name": "time", "quantile": 0.6, "validation_quantile": 0.3}, l2=1.0)
    patients = sp.vstack([_row("A"), _row("C"), _row("F"), _row("A", "F")]).tocsr()
    ids, _ = model.recommend(np.arange(4), patients, N=2)
    names = ITEMS["item"].to_numpy()
    assert [names[i] for i in ids[:, 0]] == ["B", "D", "E", "B"]
    # Drugs nobody started in the inner window score below every drug someone did.
    scores = model.score(np.arange(1), _row("A"))[0]
    assert scores[[0, 2, 5]].max() < scores[[1, 3, 4]].min()
    assert [ITEMS["item"][j] for j, _ in model.explain(0, _row("A"), 1)] == ["A"]
    assert model.explain(0, _row("A"), 0) == []  # A is never a new start: not an output


def test_save_load_round_trip_needs_no_context(tmp_path):
    model, matrix = _fitted()
    model.save(tmp_path / "newstart")
    loaded = load_model(tmp_path / "newstart")
    users = np.arange(matrix.shape[0])
    for a, b in zip(model.recommend(users, matrix, N=6), loaded.recommend(users, matrix, N=6)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.similar_items(np.array([0, 2]), N=1)[0], [[1], [3]])  # A -> B, C -> D
    assert loaded.explain(0, matrix, 1) == model.explain(0, matrix, 1) == [(0, pytest.approx(loaded.W[0, 0]))]


def test_errors_say_what_is_missing():
    with pytest.raises(ValueError, match="l2 must be > 0"):
        build_model({"name": "newstart", "l2": 0})
    with pytest.raises(RuntimeError, match="call with_context"):
        NewStartRecommender().fit(_row("A"))
    events = _events().filter(pl.col("start") < LATE, pl.col("person_id") < 65)  # one drug each: no new start
    users = events["person_id"].unique().sort()
    matrix = build_interactions(events, users, ITEMS["item"]).matrix
    model = NewStartRecommender().with_context(FitContext(ITEMS, users, events, {"name": "leave_last"}))
    with pytest.raises(ValueError, match="newstart: nobody starts a new drug in the inner fold.*or use ease"):
        model.fit(matrix)


def test_app_run_on_eunomia_beats_ease_on_new_drugs(tmp_path):
    result = run_recommend(_compose("recommender=newstart"), tmp_path)
    new = result["metrics"]["test"]["tasks"]["new"]["ndcg@10"]
    # Measured: 0.625 (EASE with its config 0.46 in test_recommend_run; recency-weighted popularity 0.60).
    assert new > 0.6
    loaded = load_model(tmp_path / "model")
    assert isinstance(loaded, NewStartRecommender) and loaded.l2 == 1000.0
    recs = pl.read_parquet(tmp_path / "recommendations.parquet")
    assert "patient_explanation" not in recs.columns  # only models with covariates explain by them
    assert recs["explanation"].list.len().max() > 0  # past drugs that raised the new drug's score


def _people(with_x: list[bool]) -> tuple[pl.DataFrame, Patients]:
    """Everyone takes A at DAY0; those with condition X (diagnosed at DAY0) start B at LATE, the others C."""
    events = pl.DataFrame(
        [(p, "A", DAY0) for p in range(len(with_x))] + [(p, "B" if x else "C", LATE) for p, x in enumerate(with_x)],
        schema={"person_id": pl.Int64, "item": pl.String, "start": pl.Datetime("us")}, orient="row")
    conditions = pl.DataFrame({"person_id": [p for p, x in enumerate(with_x) if x]}, schema={"person_id": pl.Int64})
    return events, Patients(None, conditions.with_columns(item=pl.lit("X"), start=pl.lit(DAY0, pl.Datetime("us"))))


def test_covariates_at_the_prediction_time_leave_the_future_out():
    persons = pl.DataFrame({"person_id": [1, 2, 4, 4, 5], "gender_concept_id": [8507, 8532, 8532, 8532, None],
                            "year_of_birth": [1950, 2001, 1920, 1920, None], "care_site_id": [7, None, 3, 3, 7]})
    # 4 twice: counted once
    conditions = pl.DataFrame({"person_id": [1, 1, 2, 3], "item": ["X", "Y", "X", "Z"],
                               "start": [datetime(2019, 1, 1), datetime(2021, 1, 1), LATE, datetime(2019, 1, 1)]})
    history = pl.DataFrame({"person_id": [1, 2, 3, 4], "start": [DAY0] * 4, "reference": [LATE] * 4})
    assert Patients(persons, conditions).summary() == {
        "persons": 5, "person_rows_repeating_an_id": 1, "persons_without_sex": 1, "persons_without_year_of_birth": 1,
        "diagnoses": 4, "condition_codes": 3}
    patients = Patients(persons, conditions).before(history)
    assert sorted(patients.conditions.rows()) == [(1, "X", datetime(2019, 1, 1)), (3, "Z", datetime(2019, 1, 1))]
    users = pl.Series("person_id", [4, 3, 2, 1, 9])  # 9: no history, no PERSON row
    matrix, features = covariate_matrix(patients, history, users, ["sex", "age", "conditions", "care_site"])
    assert features.tolist() == ["age=10", "age=70", "age=90", "care_site=3", "care_site=7", "condition=X",
                                 "condition=Z", "sex=8507", "sex=8532"]
    dense = matrix.toarray()
    assert [features[dense[row] > 0].tolist() for row in range(5)] == [
        ["age=90", "care_site=3", "sex=8532"],  # born 1920: 100 years old, in the oldest band
        ["condition=Z"],                        # no PERSON row
        ["age=10", "sex=8532"],                 # X diagnosed on the prediction day: not before it
        ["age=70", "care_site=7", "condition=X", "sex=8507"],  # Y diagnosed after it
        [],
    ]
    fixed, _ = covariate_matrix(patients, history, users, ["sex", "conditions"], np.array(["condition=X", "sex=0"]))
    assert fixed.toarray().tolist() == [[0, 0], [0, 0], [0, 0], [1, 0], [0, 0]]
    known = r"\['sex', 'age', 'conditions', 'care_site'\]"
    with pytest.raises(ValueError, match=r"unknown covariate\(s\) \['weight'\]; known: " + known):
        NewStartRecommender(covariates=["weight"])


def test_a_diagnosis_decides_the_new_drug_and_the_model_reloads_with_it(tmp_path):
    events, patients = _people([True, False] * 30)
    users = events["person_id"].unique().sort()
    items = pl.DataFrame({"item": ["A", "B", "C"]})
    matrix = build_interactions(events, users, items["item"]).matrix
    context = FitContext(items, users, events, None, Weighting(), patients)
    model = NewStartRecommender(l2=1.0, covariates=["conditions"]).with_context(context).fit(matrix)
    assert model.covariates.features.tolist() == ["condition=X"]
    # To score: two new patients who took A, the first diagnosed with X.
    now, now_patients = _people([True, False])
    now = now.filter(pl.col("item") == "A")
    now_context = FitContext(items, now["person_id"].unique().sort(), now, None, Weighting(), now_patients)
    taken = build_interactions(now, now_context.users, items["item"]).matrix
    ids, _ = model.with_context(now_context).recommend(np.arange(2), taken, N=1)
    assert ids[:, 0].tolist() == [1, 2]  # X -> B, no X -> C
    model.save(tmp_path / "covariates")
    loaded = load_model(tmp_path / "covariates")
    assert loaded.params() == {"l2": 1.0, "covariates": ["conditions"], "covariate_weight": 1.0}
    assert loaded.covariates.features.tolist() == ["condition=X"]
    with pytest.raises(RuntimeError, match="reads the patients. PERSON and diagnoses: call with_context"):
        loaded.score(np.arange(2), taken)
    np.testing.assert_allclose(loaded.with_context(now_context).score(np.arange(2), taken),
                               model.score(np.arange(2), taken))
    assert [f for f, _ in loaded.explain_patient(0, 1)] == ["condition=X"] and loaded.explain_patient(1, 1) == []
    no_tables = FitContext(items, users, events, None, Weighting())
    with pytest.raises(ValueError, match=r"need the OMOP PERSON table: give usage.tables.person"):
        NewStartRecommender(covariates=["sex"]).with_context(no_tables).fit(matrix)
    no_sites = replace(no_tables, patients=Patients(pl.DataFrame({"person_id": [0], "gender_concept_id": [8507],
                                                                  "year_of_birth": [1950]})))
    with pytest.raises(ValueError, match=r"covariates \['care_site'\] need a care_site_id column in PERSON: give"):
        NewStartRecommender(covariates=["care_site"]).with_context(no_sites).fit(matrix)


def test_app_run_with_covariates_reads_person_and_conditions(tmp_path):
    result = run_recommend(_compose("recommender=newstart", "recommender.covariates=[sex,age,conditions]"), tmp_path)
    # Measured: 0.660 on test task b (0.625 without covariates).
    assert result["metrics"]["test"]["tasks"]["new"]["ndcg@10"] > 0.64
    assert result["report"]["ingest_conditions"]["rows_read"] == 65332
    assert result["report"]["patients"] == {"persons": 2694, "person_rows_repeating_an_id": 0, "persons_without_sex": 0,
                                            "persons_without_year_of_birth": 0, "diagnoses": 65332,
                                            "condition_codes": 80}
    assert (tmp_path / "ingest_condition_errors.parquet").is_file()
    features = load_model(tmp_path / "model").covariates.features
    assert {"sex=8507", "sex=8532"} <= set(features.tolist()) and any(f.startswith("condition=") for f in features)
    because = pl.read_parquet(tmp_path / "recommendations.parquet")["patient_explanation"].explode().drop_nulls()
    assert "diagnosis: Osteoarthritis" in because.to_list()  # condition concepts named from the CONCEPT table
    labels = Patients(condition_names={"320128": "Essential hypertension"}).label
    assert [labels(f) for f in ("condition=320128", "condition=1", "age=60", "age=90", "sex=8532", "care_site=3")] == [
        "diagnosis: Essential hypertension", "diagnosis: 1", "age 60-69", "age 90+", "sex: female", "practice 3"]


def test_covariates_at_two_times_of_one_patient():
    persons = pl.DataFrame({"person_id": [1], "gender_concept_id": [8532], "year_of_birth": [1950]})
    conditions = pl.DataFrame({"person_id": [1, 1, 1], "item": ["X", "Y", "X"],
                               "start": [datetime(2005, 1, 1), datetime(2012, 1, 1), datetime(2012, 2, 1)]})
    queries = pl.DataFrame({"query": [0, 1], "person_id": [1, 1],
                            "reference": [datetime(2005, 1, 1), datetime(2012, 6, 1)]})
    table = covariates_at(Patients(persons, conditions), queries, ["sex", "age", "conditions"])
    # at 2005-01-01: 55 years old, X diagnosed that day not yet known; in 2012: 62, X (twice) and Y
    assert sorted(table.rows()) == [(0, "age=50"), (0, "sex=8532"), (1, "age=60"), (1, "condition=X"),
                                    (1, "condition=Y"), (1, "sex=8532")]


def test_covariate_rows_built_in_chunks_equal_one_build(monkeypatch):
    import recommend.patients as patients_module

    persons = pl.DataFrame({"person_id": [1, 2, 3], "gender_concept_id": [8532, 8507, None],
                            "year_of_birth": [1950, 1990, 1970]})
    conditions = pl.DataFrame({"person_id": [1, 2, 3, 3], "item": ["X", "Y", "Z", "X"],
                               "start": [datetime(2005, 1, 1), datetime(2001, 1, 1), datetime(2010, 1, 1),
                                         datetime(2011, 1, 1)]})
    queries = pl.DataFrame({"query": range(6), "person_id": [1, 1, 2, 3, 3, 3],
                            "reference": [datetime(2004, 1, 1), datetime(2006, 1, 1), datetime(2002, 1, 1), None,
                                          datetime(2010, 6, 1), datetime(2012, 1, 1)]})
    kinds, patients = ["sex", "age", "conditions"], Patients(persons, conditions)
    whole, features = patients_module.covariate_rows(patients, queries, kinds)
    monkeypatch.setattr(patients_module, "QUERIES_PER_CHUNK", 2)  # chunks of unlike columns: X only, Y only, ...
    chunked, chunked_features = patients_module.covariate_rows(patients, queries, kinds)
    assert chunked_features.tolist() == features.tolist() == [
        "age=10", "age=40", "age=50", "condition=X", "condition=Y", "condition=Z", "sex=8507", "sex=8532"]
    np.testing.assert_array_equal(chunked.toarray(), whole.toarray())
    assert whole.toarray()[3].sum() == 0 and whole.toarray()[4].tolist() == [0, 1, 0, 0, 0, 1, 0, 0]
    fixed, _ = patients_module.covariate_rows(patients, queries, kinds, np.array(["condition=X", "sex=8532"]))
    assert fixed.toarray().tolist() == [[0, 1], [1, 1], [0, 0], [0, 0], [0, 0], [1, 0]]
