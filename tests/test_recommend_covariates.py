"""EASE with patient covariates: the closed form over [drugs | covariates], what a diagnosis changes, save/load."""

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

import recommend  # noqa: F401
from recommend.interactions import Weighting, build_interactions
from recommend.models import EASERecommender, FitContext, build_model, load_model
from recommend.patients import Patients, covariate_matrix
from recommend.run import fit_fold
from recommend.splits import make_split
from tests.test_recommend_newstart import _people

ITEMS = pl.DataFrame({"item": ["A", "B", "C", "D"]})


def _context(with_x: list[bool]) -> tuple[FitContext, sp.csr_matrix]:
    events, patients = _people(with_x)
    users = events["person_id"].unique().sort()
    return FitContext(ITEMS, users, events, None, Weighting(), patients), build_interactions(events, users,
                                                                                             ITEMS["item"]).matrix


@pytest.mark.parametrize("weight", [1.0, 0.3])
def test_ease_with_covariates_is_ease_over_drugs_and_features(weight):
    context, matrix = _context([True, False, False] * 10)
    model = EASERecommender(l2=2.0, covariates=["conditions"], covariate_weight=weight).with_context(context)
    model.fit(matrix)
    assert model.active.tolist() == [0, 1, 2] and model.covariates.features.tolist() == ["condition=X"]
    covariates, _ = covariate_matrix(context.patients, context.events, context.users, ["conditions"])
    X = np.hstack([matrix.toarray()[:, :3], weight * covariates.toarray()])  # a present feature takes the weight
    P = np.linalg.inv(X.T @ X + 2.0 * np.eye(4))
    B = P / -np.diag(P)
    np.fill_diagonal(B, 0.0)
    np.testing.assert_allclose(model.B, B[:, :3], rtol=1e-4, atol=1e-6)  # rows: A B C, condition=X; columns: A B C
    np.testing.assert_allclose(model.score(np.arange(3), matrix[:3])[:, :3], (X @ B)[:3, :3], rtol=1e-4, atol=1e-6)


def test_a_diagnosis_moves_ease_and_the_model_reloads_with_it(tmp_path):
    context, matrix = _context([True, False] * 30)
    params = {"name": "ease", "l2": 1.0, "covariates": ["conditions"], "covariate_weight": 0.5}
    model = build_model(params).with_context(context).fit(matrix)
    only_a = sp.csr_matrix(np.array([[1, 0, 0, 0], [1, 0, 0, 0]], dtype=np.float32))  # both before their new drug
    scores = model.score(np.arange(2), only_a)
    assert scores[0, 1] > scores[0, 2] and scores[1, 2] > scores[1, 1]  # X -> B, no X -> C
    model.save(tmp_path / "ease")
    loaded = load_model(tmp_path / "ease")
    assert loaded.params() == {"l2": 1.0, "covariates": ["conditions"], "covariate_weight": 0.5}
    with pytest.raises(RuntimeError, match="ease with covariates .* call with_context"):
        loaded.score(np.arange(2), only_a)
    np.testing.assert_allclose(loaded.with_context(context).score(np.arange(2), only_a), scores)
    assert loaded.explain(0, only_a, 1) == model.explain(0, only_a, 1)  # drugs only: A
    (feature, contribution), = model.explain_patient(0, 1)  # B for the patient with X: because of X
    assert feature == "condition=X" and contribution > 0 and model.explain_patient(1, 1) == []
    no_patients = FitContext(ITEMS, context.users, context.events, None, Weighting())
    with pytest.raises(ValueError, match=r"ease: covariates \['sex'\] need the OMOP PERSON table"):
        EASERecommender(covariates=["sex"]).with_context(no_patients).fit(matrix)
    with pytest.raises(ValueError, match="ease: covariate_weight must be > 0, got 0"):
        EASERecommender(covariates=["sex"], covariate_weight=0)


def test_a_fold_hands_its_model_only_the_diagnoses_before_its_prediction_time():
    events, patients = _people([True, False] * 20)
    late = patients.conditions.with_columns(start=pl.col("start").dt.offset_by("200d"))  # after the cutoff
    patients = Patients(None, pl.concat([patients.conditions, late.with_columns(item=pl.lit("Y"))]))
    fold = make_split(events, {"name": "time", "quantile": 0.6, "validation_quantile": 0.3})["test"]
    model, _, _ = fit_fold({"name": "ease", "l2": 1.0, "covariates": ["conditions"]}, fold, ITEMS,
                           events["person_id"].unique().sort(), Weighting(), patients=patients)
    given = model.covariates.context.patients.conditions
    assert given["item"].unique().to_list() == ["X"] and (given["start"] < fold.history["reference"][0]).all()
    assert model.covariates.features.tolist() == ["condition=X"]


def test_only_configs_that_ask_for_covariates_read_the_patient_tables():
    from recommend.patients import uses_covariates

    assert not uses_covariates({"name": "ease", "l2": 1.0, "covariates": []})
    assert uses_covariates({"name": "hybrid", "behaviour": [{"name": "ease", "covariates": ["sex"]}]})
    assert not uses_covariates([({"name": "newstart"}, {"scheme": "binary"})])


def test_als_takes_covariates_as_pseudo_items_and_reloads_with_them(tmp_path):
    # 20 patients with X took A and B, 20 without X took A and C; the last 10 took only A, half of them with X.
    with_x = [True] * 20 + [False] * 20 + [True] * 5 + [False] * 5
    events, patients = _people(with_x)
    events = events.filter((pl.col("person_id") < 40) | (pl.col("item") == "A"))
    users = events["person_id"].unique().sort()
    context = FitContext(ITEMS, users, events, None, Weighting(), patients)
    matrix = build_interactions(events, users, ITEMS["item"]).matrix
    params = {"name": "als", "factors": 4, "regularization": 0.1, "iterations": 30, "random_state": 0}
    model = build_model({**params, "covariates": ["conditions"]}).with_context(context).fit(matrix)
    assert model.n_items == 4 and model.model.item_factors.shape[0] == 5  # A B C D + condition=X
    only_a = np.arange(40, 50)  # rows: 40-44 with X, 45-49 without
    scores = model.score(only_a, matrix[only_a])
    b_over_c = scores[:, 1] - scores[:, 2]
    assert scores.shape == (10, 4) and b_over_c[:5].min() > b_over_c[5:].max()  # X -> B rather than C
    plain = build_model(params).fit(matrix).score(only_a, matrix[only_a])
    np.testing.assert_allclose(plain[:5], plain[5:], atol=1e-5)  # from the drugs alone the two halves are alike
    assert all(j < 4 for j, _ in model.explain(0, matrix, 1))  # past drugs only
    model.save(tmp_path / "als")
    loaded = load_model(tmp_path / "als").with_context(context)
    assert loaded.params()["covariates"] == ["conditions"] and loaded.covariates.features.tolist() == ["condition=X"]
    np.testing.assert_allclose(loaded.score(only_a, matrix[only_a]), scores)
    assert loaded.explain(0, matrix, 1) == model.explain(0, matrix, 1)


def test_als_covariate_weight_is_the_pseudo_items_value(tmp_path):
    context, matrix = _context([True, False] * 10)
    params = {"name": "als", "factors": 4, "regularization": 0.1, "iterations": 5, "random_state": 0}
    model = build_model({**params, "covariates": ["conditions"], "covariate_weight": 3.0}).with_context(context)
    model.fit(matrix)
    covariates, _ = covariate_matrix(context.patients, context.events, context.users, ["conditions"])
    by_hand = build_model(params).fit(sp.hstack([matrix, 3.0 * covariates], format="csr"))
    np.testing.assert_allclose(model.model.item_factors, by_hand.model.item_factors, rtol=1e-4, atol=1e-6)
    model.save(tmp_path / "als")
    assert load_model(tmp_path / "als").params()["covariate_weight"] == 3.0
