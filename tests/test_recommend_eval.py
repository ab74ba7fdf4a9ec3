"""recommend interactions, splits (leakage), metrics on hand-computed cases."""

import math
from datetime import datetime

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

import recommend  # noqa: F401
from recommend.interactions import Weighting, build_interactions
from recommend.metrics import average_precision, beyond_accuracy, gini, ranking_metrics, set_metrics
from recommend.splits import cold_patients, excluded_items, leave_last_split, task_targets, time_quantile, time_split

D = datetime


def _events(rows: list[tuple]) -> pl.DataFrame:
    """(person, item, start, end, days_supply) rows as canonical events."""
    return pl.DataFrame(
        rows, orient="row",
        schema={"person_id": pl.Int64, "item": pl.String, "start": pl.Datetime("us"), "end": pl.Datetime("us"),
                "days_supply": pl.Float64},
    )


EVENTS = _events([
    (1, "a", D(2020, 1, 1), D(2020, 1, 30), 30.0),
    (1, "a", D(2020, 3, 1), D(2020, 3, 10), 0.0),
    (1, "b", D(2020, 6, 1), D(2020, 6, 1), None),
    (2, "b", D(2020, 2, 1), D(2020, 12, 31), 0.0),
    (2, "c", D(2020, 7, 1), D(2020, 7, 5), 5.0),
    (3, "c", D(2020, 8, 1), None, None),
])
USERS = pl.Series([1, 2, 3, 4])
ITEMS = pl.Series(["a", "b", "c", "d"])


def _dense(events: pl.DataFrame, weighting: Weighting) -> np.ndarray:
    return build_interactions(events, USERS, ITEMS, weighting).matrix.toarray()


def test_weighting_schemes_by_hand():
    assert _dense(EVENTS, Weighting("binary"))[0].tolist() == [1, 1, 0, 0]
    assert _dense(EVENTS, Weighting("count"))[0].tolist() == [2, 1, 0, 0]
    # days: days_supply when > 0, else end - start + 1, else 1.
    days = _dense(EVENTS, Weighting("days"))
    assert days[0].tolist() == [30 + 10, 1, 0, 0] and days[1].tolist() == [0, 335, 5, 0] and days[2, 2] == 1
    reference = EVENTS.with_columns(reference=pl.lit(D(2021, 1, 1), dtype=pl.Datetime("us")))
    recency = _dense(reference, Weighting("recency", half_life_days=100))
    age_days = [(D(2021, 1, 1) - D(2020, 1, 1)).days, (D(2021, 1, 1) - D(2020, 3, 1)).days]
    assert recency[0, 0] == pytest.approx(sum(0.5 ** (a / 100) for a in age_days), rel=1e-6)
    with pytest.raises(KeyError, match="reference"):
        _dense(EVENTS, Weighting("recency"))


def test_bm25_and_tfidf_transforms_by_hand():
    counts = _dense(EVENTS, Weighting("count"))
    bm25 = _dense(EVENTS, Weighting("count", transform="bm25", bm25_k1=2.0, bm25_b=0.5))
    # implicit's bm25_weight on items x patients: idf per patient, length norm per item.
    item_users = counts.T
    idf = np.log(item_users.shape[0]) - np.log1p((item_users > 0).sum(axis=0))
    lengths = item_users.sum(axis=1)
    norm = 0.5 + 0.5 * lengths / lengths.mean()
    expected = np.where(item_users > 0, item_users * 3.0 / (2.0 * norm[:, None] + item_users) * idf[None, :], 0).T
    np.testing.assert_allclose(bm25, expected, rtol=1e-5)
    tfidf = _dense(EVENTS, Weighting("count", transform="tfidf"))
    np.testing.assert_allclose(tfidf, np.where(counts > 0, np.sqrt(counts) * idf[:, None], 0), rtol=1e-5)


def test_unknown_person_or_item_and_bad_weighting_raise():
    with pytest.raises(KeyError, match="outside the vocabularies"):
        build_interactions(EVENTS, USERS, pl.Series(["a", "b"]))
    with pytest.raises(ValueError, match="unknown weighting"):
        Weighting("log")


def test_chunked_build_equals_single_pass(monkeypatch):
    whole = build_interactions(EVENTS, USERS, ITEMS, Weighting("count")).matrix
    monkeypatch.setattr("recommend.interactions.CHUNK_EVENTS", 1)
    chunked = build_interactions(EVENTS, USERS, ITEMS, Weighting("count"), progress=False).matrix
    assert (whole != chunked).nnz == 0


def test_time_split_has_no_leakage():
    folds = time_split(EVENTS, cutoff="2020-06-01", validation_cutoff="2020-03-01")
    test = folds["test"]
    assert (test.history["start"] < D(2020, 6, 1)).all() and (test.future["start"] >= D(2020, 6, 1)).all()
    assert test.history.height + test.future.height == EVENTS.height
    # The training matrix is the same whatever the future holds (here: no future at all),
    # with recency weights too (the reference is the cutoff, not the last event).
    past_only = EVENTS.filter(pl.col("start") < D(2020, 6, 1))
    for weighting in (Weighting("count"), Weighting("recency")):
        with_future = build_interactions(test.history, USERS, ITEMS, weighting).matrix
        without = build_interactions(time_split(past_only, cutoff="2020-06-01", validation_cutoff="2020-03-01")[
            "test"].history, USERS, ITEMS, weighting).matrix
        assert (with_future != without).nnz == 0
    # Item c is only taken after the cutoff: its training column is empty.
    assert build_interactions(test.history, USERS, ITEMS).matrix[:, 2].nnz == 0
    validation = folds["validation"]
    assert validation.future.select("person_id", "item").rows() == [(1, "a")]  # [03-01, 06-01)
    with pytest.raises(ValueError, match="before the test cutoff"):
        time_split(EVENTS, cutoff="2020-03-01", validation_cutoff="2020-06-01")


def test_tasks_filters_and_cold_patients():
    test = time_split(EVENTS, cutoff="2020-06-01", validation_cutoff="2020-03-01")["test"]
    # Patient 3 has no history: cold, never a target row.
    assert task_targets(test, "all").rows() == [(1, "b"), (2, "c")]
    assert task_targets(test, "new").rows() == [(1, "b"), (2, "c")]
    assert cold_patients(test) == 1
    assert excluded_items(test, "history").sort("person_id").rows() == [(1, "a"), (2, "b")]
    assert excluded_items(test, "current").rows() == [(2, "b")]  # b runs to 2020-12-31
    assert excluded_items(test, "none").height == 0
    repeat = time_split(EVENTS, cutoff="2020-02-15", validation_cutoff="2020-01-15")["test"]
    assert task_targets(repeat, "all").filter(pl.col("person_id") == 1).rows() == [(1, "a"), (1, "b")]
    assert task_targets(repeat, "new").filter(pl.col("person_id") == 1).rows() == [(1, "b")]
    assert task_targets(repeat, "visit").filter(pl.col("person_id") == 1).rows() == [(1, "a")]


def test_time_quantile_cutoff():
    assert time_quantile(EVENTS, 0.5) == D(2020, 3, 1)
    folds = time_split(EVENTS, quantile=0.5, validation_quantile=0.2)
    assert folds["test"].info["reference"] == "2020-03-01 00:00:00"
    assert folds["validation"].info["reference"] == "2020-02-01 00:00:00"  # 6 starts: lower of index 1.0


def test_leave_last_split():
    folds = leave_last_split(EVENTS)
    test, validation = folds["test"], folds["validation"]
    assert test.future.select("person_id", "item").rows() == [(1, "b"), (2, "c"), (3, "c")]
    assert test.history.select("person_id", "item").rows() == [(1, "a"), (1, "a"), (2, "b")]
    assert (test.history["start"] < test.history["reference"]).all()
    assert cold_patients(test) == 1  # patient 3 has a single basket
    assert validation.future.select("person_id", "item").rows() == [(1, "a"), (2, "b")]
    assert validation.history.select("person_id", "item").rows() == [(1, "a")]


# Two users over 5 items; user 0 targets {1, 3}, user 1 target {0}.
IDS = np.array([[0, 1, 2, 3], [3, 2, 1, 0]])
TARGETS = sp.csr_matrix(np.array([[0, 1, 0, 1, 0], [1, 0, 0, 0, 0]], dtype=np.float32))


def test_ranking_metrics_by_hand():
    m = ranking_metrics(IDS, TARGETS, [2, 4])
    ndcg2_user0 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    expected = {
        "recall@2": 0.25, "precision@2": 0.25, "hr@2": 0.5, "ndcg@2": ndcg2_user0 / 2, "map@2": 0.125,
        "recall@4": 1.0, "precision@4": 0.375, "hr@4": 1.0, "map@4": (0.5 + 0.25) / 2,
        "ndcg@4": ((1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3)) + 1 / math.log2(5)) / 2,
        "mrr": (1 / 2 + 1 / 4) / 2,
    }
    assert m == pytest.approx(expected)


def test_empty_slots_and_users_without_targets():
    ids = np.array([[1, -1, -1], [0, 1, 2], [4, 3, 2]])
    targets = sp.csr_matrix(np.array([[0, 1, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 1, 1, 0]], dtype=np.float32))
    m = ranking_metrics(ids, targets, [3])
    assert m["recall@3"] == pytest.approx(1.0) and m["precision@3"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    with pytest.raises(ValueError, match="exceeds"):
        ranking_metrics(ids, targets, [4])


def test_beyond_accuracy_by_hand():
    assert gini(np.array([0, 0, 0, 4])) == pytest.approx(0.75)
    assert gini(np.array([2, 2, 2])) == pytest.approx(0.0)
    patients_per_item = np.array([8, 4, 2, 1, 0])
    m = beyond_accuracy(IDS, 5, patients_per_item, 8, [2])
    assert m["coverage@2"] == pytest.approx(4 / 5)
    # Top-2 items 0, 1, 3, 2 recommended once each; popularity 8/8, 4/8, 1/8, 2/8.
    assert m["novelty@2"] == pytest.approx((0 + 1 + 3 + 2) / 4)
    assert m["gini@2"] == pytest.approx(gini(np.array([1, 1, 1, 1, 0])))


def test_visit_set_metrics_by_hand():
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([0, 1, 0, 1])) == pytest.approx(0.5)
    predicted = np.array([[1, 2], [0, -1]])
    scores = np.array([[0.1, 0.9, 0.8, 0.2, 0.0], [0.9, 0.1, 0.1, 0.1, 0.1]])
    m = set_metrics(predicted, scores, TARGETS)
    # Visit 0: {1,2} vs {1,3}: jaccard 1/3, f1 1/2, AP (1 + 2/3) / 2; visit 1: exact.
    assert m == pytest.approx({"jaccard": (1 / 3 + 1) / 2, "f1": (0.5 + 1) / 2, "prauc": ((1 + 2 / 3) / 2 + 1) / 2})


def test_evaluation_on_a_seeded_sample_of_patients():
    """``max_patients`` ranks a seeded sample: the same one each time, all patients when it is not smaller,
    and metrics computed on the sampled patients' targets only."""
    from recommend.evaluate import evaluate_fold
    from recommend.run import fit_fold

    rows = []
    for person in range(1, 41):  # every patient took "a"; odd patients then start "b", even ones "c"
        rows.append((person, "a", D(2020, 1, 1), None, None))
        rows.append((person, "b" if person % 2 else "c", D(2020, 9, 1), None, None))
    rows += [(41, "b", D(2020, 2, 1), None, None)] * 3  # makes "b" the most popular in the history
    fold = time_split(_events(rows), cutoff="2020-06-01", validation_cutoff="2020-03-01")["test"]
    users = pl.Series(range(1, 42))
    model, train, _ = fit_fold({"name": "popularity"}, fold, pl.DataFrame({"item": ITEMS}), users, Weighting())
    tasks = {"new": {"filter": "history"}}
    full = evaluate_fold(model, train, fold, tasks, [1])["new"]
    assert full["patients"] == full["patients_total"] == 40 and full["hr@1"] == pytest.approx(0.5)
    assert evaluate_fold(model, train, fold, tasks, [1], max_patients=40)["new"] == full
    sample = evaluate_fold(model, train, fold, tasks, [1], max_patients=8, seed=3)["new"]
    assert sample == evaluate_fold(model, train, fold, tasks, [1], max_patients=8, seed=3)["new"]
    assert sample["patients"] == 8 and sample["patients_total"] == 40 and sample["targets_per_patient"] == 1.0
    with pytest.raises(ValueError, match="max_patients must be a number of patients >= 1 or null"):
        evaluate_fold(model, train, fold, tasks, [1], max_patients=0)
