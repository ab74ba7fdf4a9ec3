"""New-start regression: the closed form against scikit-learn's ridge, what it learns, save/load, errors."""

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from sklearn.linear_model import Ridge

import recommend  # noqa: F401
from recommend.interactions import Weighting, build_interactions
from recommend.models import FitContext, NewStartRecommender, build_model, load_model
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
    assert recs["explanation"].list.len().max() > 0  # past drugs that raised the new drug's score
