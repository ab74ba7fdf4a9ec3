"""recommend models: one interface, save/load round trips, EASE closed form, kNN vs implicit, filters."""

import json

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

import recommend  # noqa: F401
from recommend.models import MODELS, FitContext, build_model, load_model

# 8 patients x 6 items; item 5 is never taken (an empty catalog column).
X = sp.csr_matrix(np.array([
    [1, 1, 0, 0, 0, 0],
    [1, 1, 1, 0, 0, 0],
    [0, 1, 1, 0, 0, 0],
    [1, 0, 1, 1, 0, 0],
    [0, 0, 0, 1, 1, 0],
    [0, 0, 1, 1, 1, 0],
    [1, 1, 0, 0, 1, 0],
    [0, 0, 0, 0, 1, 0],
], dtype=np.float32))
USERS = np.arange(X.shape[0])
SMALL = {
    "popularity": {}, "random": {"seed": 3}, "itemknn": {"K": 5}, "bm25": {"similarity": "bm25", "K": 5},
    "als": {"factors": 4, "iterations": 5, "random_state": 1}, "bpr": {"factors": 4, "iterations": 20, "random_state": 1},
    "ease": {"l2": 2.0},
}


def _model(key: str):
    name = "itemknn" if key == "bm25" else key
    return build_model({"name": name, **SMALL[key]}).fit(X)


@pytest.mark.parametrize("key", sorted(SMALL))
def test_save_load_round_trip_gives_identical_recommendations(key, tmp_path):
    model = _model(key)
    arrays, config = model.save(tmp_path / "model")
    assert arrays.name == "model.npz" and json.loads(config.read_text())["model"] == model.name
    loaded = load_model(tmp_path / "model")
    assert type(loaded) is type(model) and loaded.params() == model.params()
    ids, scores = model.recommend(USERS, X, N=4)
    ids2, scores2 = loaded.recommend(USERS, X, N=4)
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_array_equal(scores, scores2)
    for user in (0, 4):
        for item in ids[user][ids[user] >= 0]:
            assert loaded.explain(user, X, int(item)) == model.explain(user, X, int(item))


@pytest.mark.parametrize("key", sorted(SMALL))
def test_recommend_filters_and_pads(key):
    model = _model(key)
    ids, scores = model.recommend(USERS, X, N=6)
    for user in USERS:
        taken = set(X[user].indices)
        valid = ids[user][ids[user] >= 0]
        assert not taken & set(valid.tolist()) and len(valid) == 6 - len(taken)
        assert np.all(np.diff(scores[user][: len(valid)]) <= 0) and np.all(np.isneginf(scores[user][len(valid):]))
    exclude = sp.csr_matrix(([1.0], ([0], [5])), shape=(1, 6))
    ids, _ = model.recommend(USERS[:1], X[:1], N=6, filter_already_liked_items=False, exclude=exclude)
    assert sorted(ids[0][ids[0] >= 0].tolist()) == [0, 1, 2, 3, 4]


def test_popularity_ranks_by_patients():
    ids, scores = _model("popularity").recommend(np.array([7]), X[7:8], N=5)
    # Patients per item: 4, 4, 4, 3, 4, 0; patient 7 took item 4; ties by lower index.
    assert ids[0].tolist() == [0, 1, 2, 3, 5] and scores[0].tolist() == [4, 4, 4, 3, 0]


def test_ease_matches_numpy_closed_form():
    l2 = 2.0
    model = _model("ease")
    dense = X.toarray().astype(np.float64)
    P = np.linalg.inv(dense.T @ dense + l2 * np.eye(6))
    B = np.eye(6) - P / np.diag(P)
    np.testing.assert_allclose(model.score(USERS, X), dense @ B, rtol=1e-5, atol=1e-6)
    assert model.B.shape == (5, 5)  # the empty item 5 is left out of the inversion
    contributions = model.explain(1, X, 3, N=5)
    expected = sorted(((j, B[j, 3]) for j in (0, 1, 2) if B[j, 3] > 0), key=lambda t: -t[1])
    assert [j for j, _ in contributions] == [j for j, _ in expected]
    assert [c for _, c in contributions] == pytest.approx([c for _, c in expected], rel=1e-5)


@pytest.mark.filterwarnings("ignore:Method expects CSR input")  # implicit warns about its own COO
@pytest.mark.parametrize("similarity", ["cosine", "bm25"])
def test_itemknn_matches_implicit(similarity):
    from implicit.nearest_neighbours import BM25Recommender, CosineRecommender

    ours = build_model({"name": "itemknn", "similarity": similarity, "K": 5})
    theirs = BM25Recommender(K=5) if similarity == "bm25" else CosineRecommender(K=5)
    ours.fit(X)
    theirs.fit(X, show_progress=False)
    ids, scores = ours.recommend(USERS, X, N=2)
    their_ids, their_scores = theirs.recommend(USERS, X, N=2)
    np.testing.assert_allclose(scores, their_scores, rtol=1e-5)
    # Where scores tie, the order may differ; the score of each listed item must agree.
    dense = ours.score(USERS, X)
    np.testing.assert_allclose(np.take_along_axis(dense, their_ids, axis=1), their_scores, rtol=1e-5)


def test_explanations_name_past_items():
    for key in ("itemknn", "als", "ease"):
        model = _model(key)
        ids, _ = model.recommend(np.array([5]), X[5:6], N=1)
        contributions = model.explain(5, X, int(ids[0, 0]), N=3)
        assert contributions and {j for j, _ in contributions} <= set(X[5].indices)
        assert all(c > 0 for _, c in contributions)
    assert _model("popularity").explain(0, X, 2) == [] and _model("bpr").explain(0, X, 2) == []


def test_similar_items_and_seeded_determinism():
    ids, _ = _model("ease").similar_items(np.array([0, 4]), N=2)
    assert 0 not in ids[0] and 4 not in ids[1]
    with pytest.raises(NotImplementedError):
        _model("popularity").similar_items(np.array([0]))
    for key in ("als", "bpr"):
        a, b = _model(key), _model(key)
        np.testing.assert_array_equal(a.model.item_factors, b.model.item_factors)


def test_registry():
    assert set(MODELS) == {"popularity", "random", "itemknn", "als", "bpr", "ease", "content", "hybrid", "gru",
                           "newstart"}
    with pytest.raises(KeyError, match="unknown recommender 'nope'"):
        build_model({"name": "nope"})


def test_top_n_breaks_ties_by_index_on_a_large_catalog():
    # The partial-selection path (N < catalog / 4) must keep the lowest-index tied items, as the full sort does,
    # whatever subset np.argpartition happens to return on this CPU.
    from recommend.models.base import _empty_ranking, _top_n

    scores = np.zeros((4, 400), dtype=np.float32)
    scores[0, 300] = 2.0
    scores[1, [7, 399]] = 1.0
    scores[1, 3] = -np.inf  # filtered
    scores[2] = np.arange(400)  # no ties
    scores[3, 100:108] = np.arange(8) + 10.0  # ties at the cut that exactly fill the last two slots
    scores[3, [5, 50]] = 1.0
    ids, values = _empty_ranking(4, 10)
    _top_n(scores, ids, values)
    assert ids[0].tolist() == [300, 0, 1, 2, 3, 4, 5, 6, 7, 8]
    assert ids[1].tolist() == [7, 399, 0, 1, 2, 4, 5, 6, 8, 9] and values[1, :3].tolist() == [1.0, 1.0, 0.0]
    assert ids[2].tolist() == list(range(399, 389, -1))
    assert ids[3].tolist() == [107, 106, 105, 104, 103, 102, 101, 100, 5, 50]


def test_ease_explains_only_past_items_it_was_trained_on():
    model = _model("ease")  # item 5 is never taken in X: not among EASE's active items
    row = sp.csr_matrix(np.array([[1, 0, 0, 0, 0, 1]], dtype=np.float32))
    contributions = model.explain(0, row, 1, N=5)
    assert [item for item, _ in contributions] == [0]
    assert contributions[0][1] == pytest.approx(float(model.B[0, 1]))
    assert model.explain(0, row, 5) == []  # and an untrained item has no explanation


def _new_patients():
    """The context of patients the models were not fitted on (matrix-row models read nothing else from it)."""
    return FitContext(pl.DataFrame({"item": [f"D{j}" for j in range(X.shape[1])]}), pl.Series(USERS), pl.DataFrame())


@pytest.mark.parametrize("key", ["popularity", "itemknn", "bm25", "ease"])
def test_new_patients_score_like_fitted_patients_with_the_same_row(key, tmp_path):
    model = _model(key)
    model.save(tmp_path / "model")
    order = USERS[::-1]  # new patient i has the history of fitted patient order[i]
    loaded = load_model(tmp_path / "model").with_patients(_new_patients())
    np.testing.assert_allclose(loaded.score(USERS, X[order]), model.score(order, X[order]), rtol=1e-6)


def test_als_folds_in_new_patients_from_their_rows(tmp_path):
    model = build_model({"name": "als", "factors": 3, "iterations": 30, "regularization": 0.1,
                         "random_state": 1}).fit(X)
    model.save(tmp_path / "model")
    order = USERS[::-1]
    loaded = load_model(tmp_path / "model").with_patients(_new_patients())
    folded = loaded.score(USERS, X[order])
    # re-solved against the final item factors: the fitted patients' scores, up to the last half-iteration
    np.testing.assert_allclose(folded, model.score(order, X[order]), atol=0.02)
    assert loaded.recommend(USERS, X[order], N=2)[0].tolist() == model.recommend(order, X[order], N=2)[0].tolist()
    # a history nobody had: scored from that history, not from a fitted patient's factors
    unseen = sp.csr_matrix(np.array([[0, 0, 0, 0, 1, 1]], dtype=np.float32))
    assert not np.allclose(loaded.score(USERS[:1], unseen), model.score(USERS[:1], unseen))


def test_bpr_refuses_new_patients():
    with pytest.raises(NotImplementedError, match="bpr cannot score patients it was not fitted on"):
        _model("bpr").with_patients(_new_patients())


def test_als_explanations_match_implicit():
    weighted = X.multiply(np.arange(1, 7, dtype=np.float32)).tocsr()  # unequal confidences
    model = build_model({"name": "als", "factors": 3, "alpha": 2.0, "regularization": 0.3, "iterations": 10,
                         "random_state": 1}).fit(weighted)
    for user in USERS:
        asked = np.arange(6)
        ours = model.explain_many(int(user), weighted, asked, N=2)
        row = sp.csr_matrix(weighted[user])
        for item, explained in zip(asked, ours):
            _, reference, _ = model.model.explain(0, row, int(item), N=2)
            expected = [(j, s) for j, s in reference if s > 0]
            assert [j for j, _ in explained] == [j for j, _ in expected]
            np.testing.assert_allclose([s for _, s in explained], [s for _, s in expected], rtol=1e-5)
