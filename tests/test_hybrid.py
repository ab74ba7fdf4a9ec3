"""Hybrid recommender tuning: the inner fold mirrors the run's split, uses no test event, and the cold score."""

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from recommend.interactions import Weighting, build_interactions
from recommend.metrics import ranking_metrics
from recommend.models import FitContext, build_model, load_model
from recommend.models.base import _top_n
from recommend.models.hybrid import _merged_ndcg, _top_columns
from recommend.run import fit_fold
from recommend.splits import make_split
from tests.test_content_recommender import ASPIRIN, ATORVA, IBUPROFEN, LISINOPRIL, METFORMIN, SIMVA, _matrix
from tests.test_content_recommender import annotations, items  # noqa: F401 (fixtures)

DAY0 = datetime(2020, 1, 1)
# Every patient takes one statin or NSAID pair: whichever drug is held out, a past drug is like it.
PAIRS = [[ATORVA, SIMVA, LISINOPRIL], [ASPIRIN, IBUPROFEN, METFORMIN], [ATORVA, SIMVA, METFORMIN],
         [ASPIRIN, IBUPROFEN, LISINOPRIL]]


def _events(items: pl.DataFrame, takes: list[tuple[int, int, int]]) -> pl.DataFrame:
    """Usage events from (person, item position, day) triples."""
    person, item, day = zip(*takes)
    return pl.DataFrame({
        "person_id": list(person), "item": [items["item"][i] for i in item],
        "start": [DAY0 + timedelta(days=d) for d in day]}).with_columns(end=pl.col("start"))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One feature store for the module: the 6 drugs' fingerprints are computed once."""
    return tmp_path_factory.mktemp("store")


def _hybrid(annotation_file, store, **params):
    return build_model({"name": "hybrid", "content": {"annotations": str(annotation_file), "store_root": str(store)},
                        "alphas": [0.0], **params})


def _fit(model, catalog, events, split):
    users = events["person_id"].unique().sort()
    matrix = build_interactions(events, users, catalog["item"]).matrix
    return model.with_context(FitContext(catalog, users, events, split, Weighting())).fit(matrix)


def test_cold_items_split_tunes_a_large_cold_weight(items, annotations, store):  # noqa: F811
    takes = [(p, item, p % 3) for p in range(32) for item in PAIRS[p % 4]]
    hybrid = _hybrid(annotations, store, cold_weights=[0.0, 100.0])
    _fit(hybrid, items, _events(items, takes), {"name": "cold_items", "fraction": 0.2, "seed": 0})
    # The inner fold's targets are all drugs without training use: ranked first only with weight 100.
    assert hybrid.fitted["cold_weight"] == 100.0


def test_time_split_tunes_cold_weight_0_when_new_drugs_are_warm(items, annotations, store):  # noqa: F811
    # 15 patients start lisinopril right after atorvastatin, 15 later (the inner fold's future: a warm drug).
    # Simvastatin, like atorvastatin, is never taken: cold weight 100 ranks it above lisinopril.
    takes = [(p, ATORVA, 1) for p in range(30)] + [(p, LISINOPRIL, 2 if p < 15 else 100) for p in range(30)]
    hybrid = _hybrid(annotations, store, cold_weights=[100.0, 0.0])
    _fit(hybrid, items, _events(items, takes), {"name": "time", "quantile": 0.8, "validation_quantile": 0.7,
                                                "cutoff": "2019-01-01"})  # a date before the history: ignored
    assert hybrid.fitted["cold_weight"] == 0.0
    ids, _ = hybrid.recommend(np.array([20]), sp.csr_matrix(np.eye(1, items.height, ATORVA)), N=1)
    assert ids.tolist() == [[LISINOPRIL]]


def test_tuning_uses_no_test_event(items, annotations, store):  # noqa: F811
    takes = [(p, item, p % 3) for p in range(32) for item in PAIRS[p % 4]]
    events = _events(items, takes)
    split = {"name": "cold_items", "fraction": 0.2, "seed": 0}
    test = make_split(events, split)["test"]
    cold = test.info["cold_items"]
    # Other patients take the test drugs: the test fold's future changes, its history does not.
    moved = events.with_columns(
        person_id=pl.when(pl.col("item").is_in(cold)).then((pl.col("person_id") + 7) % 32).otherwise("person_id"))
    altered = make_split(moved, split)["test"]
    assert not altered.future.equals(test.future) and altered.history.equals(test.history)
    spec = {"name": "hybrid", "content": {"annotations": str(annotations), "store_root": str(store)}}
    users = events["person_id"].unique().sort()
    fits = [fit_fold(spec, fold, items, users, Weighting(), split=split)[0] for fold in (test, altered)]
    assert fits[0].fitted == fits[1].fitted and fits[0].fitted["cold_weight"] > 0
    matrix = build_interactions(test.history, users, items["item"]).matrix
    np.testing.assert_array_equal(fits[0].score(np.arange(32), matrix), fits[1].score(np.arange(32), matrix))


def test_propagation_finds_a_cold_drug_like_the_predicted_one(items, annotations, store):  # noqa: F811
    # Aspirin takers mostly take atorvastatin too; simvastatin and ibuprofen are cold. For an aspirin-only
    # patient content favours ibuprofen (an NSAID like aspirin); behavior predicts atorvastatin, and
    # propagated through content similarity that favours simvastatin (a statin like it).
    rows = [[ASPIRIN, ATORVA]] * 4 + [[METFORMIN, LISINOPRIL]] * 3 + [[ATORVA, LISINOPRIL]]
    X = sp.csr_matrix([[float(i in taken) for i in range(items.height)] for taken in rows], dtype=np.float32)
    context = FitContext(items, pl.Series(range(len(rows))), pl.DataFrame())
    fixed = {"alpha": 0.0, "cold_weight": 100.0, "prior": 0.0}
    patient = sp.csr_matrix(np.eye(1, items.height, ASPIRIN, dtype=np.float32))
    first = {}
    for propagation in (0.0, 1.0):
        model = _hybrid(annotations, store, propagation=propagation, **fixed).with_context(context)
        first[propagation] = model.fit(X).recommend(np.array([0]), patient, N=1)[0].item()
    assert first == {0.0: IBUPROFEN, 1.0: SIMVA}


def test_usage_prior_weights_content_similarity_by_use(items, annotations, store, tmp_path):  # noqa: F811
    X = _matrix(items.height, cold=SIMVA)
    model = _hybrid(annotations, store, alpha=0.0, cold_weight=1.0, propagation=0.0, prior=1.0)
    model.with_context(FitContext(items, pl.Series(range(7)), pl.DataFrame())).fit(X)
    similarity = model.content.similarity.toarray()
    expected = X.getnnz(axis=0) @ similarity
    np.testing.assert_allclose(model.usage_prior, expected / expected.max(), rtol=1e-5)
    assert model.usage_prior.max() == pytest.approx(1.0)
    model.save(tmp_path / "hybrid")
    loaded = load_model(tmp_path / "hybrid")
    assert loaded.fitted == model.fitted
    np.testing.assert_array_equal(loaded.score(np.arange(7), X), model.score(np.arange(7), X))


def test_settings_out_of_range_and_untunable_folds_fail_clearly(items, annotations, store):  # noqa: F811
    with pytest.raises(ValueError, match=r"cold_weight must be in \[0, inf\] or None \(tuned\), got -1"):
        build_model({"name": "hybrid", "cold_weight": -1})
    takes = [(p, ATORVA, 1) for p in range(4)]
    with pytest.raises(ValueError, match=r"hybrid: cannot make an inner 'cold_items' fold .* set alpha, cold_weight, "
                                         r"propagation and prior and give one behavior model to fit without tuning"):
        _fit(_hybrid(annotations, store), items, _events(items, takes),
             {"name": "cold_items", "fraction": 0.2, "seed": 0})


def test_the_behavior_candidate_that_blends_best_on_the_inner_fold_is_used(items, annotations, store,  # noqa: F811
                                                                           tmp_path):
    # Lisinopril is what the 15 late patients start; popularity ranks it first, random scores seldom do.
    takes = ([(p, ATORVA, 1) for p in range(30)] + [(p, LISINOPRIL, 2 if p < 15 else 100) for p in range(30)]
             + [(30 + k, drug, 1) for k, drug in enumerate((METFORMIN, ASPIRIN, IBUPROFEN, SIMVA))])
    candidates = [{"name": "random", "seed": 0}, {"name": "popularity"}]
    hybrid = _hybrid(annotations, store, behavior=candidates, cold_weights=[0.0])
    _fit(hybrid, items, _events(items, takes), {"name": "time", "quantile": 0.8, "validation_quantile": 0.7})
    assert hybrid.fitted["behavior"] == 1 and hybrid.behavior_spec == {"name": "popularity"}
    assert hybrid.params()["behavior"] == candidates
    hybrid.save(tmp_path / "hybrid")
    loaded = load_model(tmp_path / "hybrid")
    assert loaded.behavior_spec == {"name": "popularity"} and type(loaded.behavior).__name__ == "PopularityRecommender"
    X = sp.csr_matrix(np.eye(1, items.height, ATORVA, dtype=np.float32))
    np.testing.assert_array_equal(loaded.score(np.array([0]), X), hybrid.score(np.array([0]), X))
    with pytest.raises(ValueError, match="non-empty list of candidates"):
        build_model({"name": "hybrid", "behavior": []})


@pytest.mark.parametrize("history", ["binary", "weighted"])
def test_content_scores_come_from_the_drugs_taken_unless_weighted(items, annotations, store, history):  # noqa: F811
    binary = _matrix(items.height)
    weighted = binary.multiply(np.arange(1, items.height + 1, dtype=np.float32)[None, :] ** 2).tocsr()
    context = FitContext(items, pl.Series(range(7)), pl.DataFrame())
    model = _hybrid(annotations, store, alpha=1.0, cold_weight=1.0, content_history=history).with_context(context)
    model.fit(weighted)
    scores = {name: model.score(np.arange(7), X) for name, X in (("binary", binary), ("weighted", weighted))}
    assert np.array_equal(scores["binary"], scores["weighted"]) == (history == "binary")
    with pytest.raises(ValueError, match="content_history must be one of"):
        _hybrid(annotations, store, content_history="recency")


@pytest.mark.parametrize("weight", [0.0, 0.3, 5.0])
def test_merged_part_rankings_score_like_the_full_ranking(weight):
    # Tuning ranks warm and cold drugs apart and merges their top 10s: the NDCG@10 of the full ranking.
    rng = np.random.default_rng(0)
    warm = np.arange(40) % 2 == 0
    warm_scores, cold_scores = rng.normal(size=(30, 40)), rng.random((30, 40))
    excluded = rng.random((30, 40)) < 0.2
    targets = (rng.random((30, 40)) < 0.15) & ~excluded
    targets[np.arange(30), 1 + 2 * (np.arange(30) % 3)] = True  # every patient has a cold target
    excluded &= ~targets
    truth = sp.csr_matrix(targets)
    full = np.where(excluded, -np.inf, np.where(warm, warm_scores, weight * cold_scores)).astype(np.float32)
    ids, values = np.empty((30, 10), np.int32), np.empty((30, 10), np.float32)
    _top_n(full, ids, values)
    # Weight 0: the cold drugs tie (ranked by index), so their part is ranked from zeros.
    parts = [_top_columns(np.where(excluded, -np.inf, scores).astype(np.float32), np.flatnonzero(keep))
             for scores, keep in ((warm_scores, warm), (cold_scores if weight else 0 * cold_scores, ~warm))]
    merged = _merged_ndcg(parts[0], parts[1], weight, truth)
    assert merged == pytest.approx(ranking_metrics(ids, truth, [10])["ndcg@10"]) and 0 < merged < 1
