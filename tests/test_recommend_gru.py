"""GRU next-drug recommender: sequences from the fit context, learning an order, save/load, a Hydra run."""

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
import torch

import recommend  # noqa: F401
from recommend.models import FitContext, GRURecommender, build_model, load_model
from recommend.models.sequential import _length_batches, _seen_before, item_sequences
from recommend.run import run_recommend
from tests.test_recommend_run import tiny_omop_config

ITEMS = pl.DataFrame({"item": ["A", "B", "C", "D"], "name": ["a", "b", "c", "d"]})
SMALL = {"embedding_dim": 8, "hidden": 16, "epochs": 25, "batch_size": 64, "learning_rate": 0.05}


def _context(histories: dict[int, list[str]]) -> FitContext:
    """One event per listed item, a day apart, in the given order."""
    day = datetime(2020, 1, 1)
    events = pl.DataFrame(
        [(person, item, day + timedelta(days=step)) for person, items in histories.items()
         for step, item in enumerate(items)],
        schema={"person_id": pl.Int64, "item": pl.String, "start": pl.Datetime("us")}, orient="row",
    )
    return FitContext(ITEMS, pl.Series("person_id", sorted(histories), dtype=pl.Int64), events)


def _fitted(histories: dict[int, list[str]], **params) -> tuple[GRURecommender, FitContext]:
    context = _context(histories)
    model = GRURecommender(**{**SMALL, **params}).with_context(context)
    rows, cols = zip(*[(r, ITEMS["item"].to_list().index(i)) for r, p in enumerate(sorted(histories))
                       for i in histories[p]])
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(histories), 4))
    matrix.sum_duplicates()
    return model.fit(matrix), context


# 8 patients A, A (refill), B, C and 8 patients B, A, D: what follows {A, B} depends on the order.
TOY = {**{p: ["A", "A", "B", "C"] for p in range(8)}, **{p: ["B", "A", "D"] for p in range(8, 16)},
       16: ["A", "B"], 17: ["B", "A"]}


def test_sequences_are_time_ordered_with_consecutive_repeats_collapsed():
    indptr, columns = item_sequences(_context({7: ["A", "A", "B", "A", "C", "C"], 3: ["D"], 5: []}))
    # Rows follow context.users (3, 5, 7); person 5 has no events.
    assert indptr.tolist() == [0, 1, 1, 5]
    assert columns.tolist() == [3, 0, 1, 0, 2]


def test_training_batches_cover_every_row_once_grouped_by_length():
    lengths = np.array([5, 1, 9, 3, 3, 7, 2, 8, 4, 6])
    batches = _length_batches(np.arange(10), lengths, 4, torch.Generator().manual_seed(0))
    assert sorted(len(b) for b in batches) == [2, 4, 4]
    assert sorted(np.concatenate(batches).tolist()) == list(range(10))
    # One group (< 32 batches): rows sorted by length, so batches hold neighbouring lengths.
    assert sorted(lengths[b].tolist() for b in batches) == [[1, 2, 3, 3], [4, 5, 6, 7], [8, 9]]


def test_learns_the_order_of_a_toy_sequence():
    model, _ = _fitted(TOY)
    scores = model.score(np.array([16, 17]), None)
    # After A then B comes C; after B then A comes D (same item set, different order).
    assert np.argmax(scores[0, [2, 3]]) == 0 and np.argmax(scores[1, [2, 3]]) == 1
    seen = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 0, 0]], dtype=np.float32))
    ids, _ = model.recommend(np.array([16, 17]), seen, N=1)
    assert ids[:, 0].tolist() == [2, 3]


def test_training_is_seeded_and_save_load_round_trip_gives_identical_scores(tmp_path):
    model, context = _fitted(TOY, epochs=3)
    twin, _ = _fitted(TOY, epochs=3)
    users = np.arange(18)
    np.testing.assert_array_equal(model.score(users, None), twin.score(users, None))
    arrays, config = model.save(tmp_path / "gru")
    assert arrays.suffix == ".npz" and config.suffix == ".json"
    loaded = load_model(tmp_path / "gru")
    assert isinstance(loaded, GRURecommender) and loaded.params() == model.params() and loaded.n_items == 4
    with pytest.raises(RuntimeError, match="with_context"):
        loaded.score(users, None)
    np.testing.assert_array_equal(loaded.with_context(context).score(users, None), model.score(users, None))


def test_new_only_masks_steps_whose_item_came_before():
    tokens = torch.tensor([[1, 2, 1, 3, 2, 0, 0], [4, 4, 0, 0, 0, 0, 0]])
    assert _seen_before(tokens).tolist() == [[False, False, True, False, True, False, False],
                                             [False, True, False, False, False, False, False]]
    # Histories A -> B -> A with new_only train exactly like histories A -> B (the step back to A is masked).
    users = np.arange(10)
    new, _ = _fitted({p: ["A", "B", "A"] for p in range(10)}, new_only=True, epochs=5)
    short, _ = _fitted({p: ["A", "B"] for p in range(10)}, epochs=5)
    plain, _ = _fitted({p: ["A", "B", "A"] for p in range(10)}, epochs=5)
    weights = {name: [m.net.state_dict()[name] for m in (new, short, plain)] for name in new.net.state_dict()}
    for name, (w_new, w_short, _) in weights.items():
        torch.testing.assert_close(w_new, w_short, rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.allclose(weights["output.weight"][0], weights["output.weight"][2])
    assert new.score(users, None).shape == (10, 4)


@pytest.mark.filterwarnings("error::UserWarning")  # the validation fold has no history: no empty-layer warning
def test_hydra_run_with_gru(tmp_path):
    result = run_recommend(tiny_omop_config("recommender=gru", "recommender.epochs=2"), tmp_path)
    assert result["metrics"]["recommender"]["name"] == "gru"
    assert result["metrics"]["test"]["tasks"]["all"]["patients"] == 2
    assert isinstance(load_model(tmp_path / "model"), GRURecommender)
    recs = pl.read_parquet(tmp_path / "recommendations.parquet")
    assert set(recs["person_id"]) == {1, 2} and recs.group_by("person_id").len()["len"].to_list() == [10, 10]
    assert build_model({"name": "gru"}).params()["max_len"] == 50


def _diagnosed(with_x: list[bool], second: dict[bool, str | None]) -> FitContext:
    """Patient p takes A on day 0, is diagnosed X on day 1 when ``with_x[p]``, then takes ``second[with_x[p]]`` on
    day 2 (None: nothing more)."""
    from recommend.patients import Patients

    day = datetime(2020, 1, 1)
    base = _context({p: ["A"] + ([second[x]] if second[x] else []) for p, x in enumerate(with_x)})
    events = base.events.with_columns(start=pl.when(pl.col("item") == "A").then(pl.col("start"))
                                      .otherwise(pl.lit(day + timedelta(days=2))))
    conditions = pl.DataFrame({"person_id": [p for p, x in enumerate(with_x) if x], "item": "X",
                               "start": day + timedelta(days=1)})
    return FitContext(ITEMS, base.users, events, None, None, Patients(None, conditions))


def test_covariates_at_each_step_decide_the_next_drug_and_reload(tmp_path):
    # 20 patients diagnosed X between A and B, 20 without X took A then C; 40-49 took only A, 40-44 diagnosed X.
    with_x = [True] * 20 + [False] * 20 + [True] * 5 + [False] * 5
    context = _diagnosed(with_x[:40], {True: "B", False: "C"})
    context = FitContext(ITEMS, pl.Series("person_id", range(50), dtype=pl.Int64),
                         pl.concat([context.events, _diagnosed(with_x[40:], {True: None, False: None}).events
                                    .with_columns(pl.col("person_id") + 40)]),
                         patients=_diagnosed(with_x, {True: None, False: None}).patients)
    model = GRURecommender(**SMALL, covariates=["conditions"]).with_context(context)
    # Each step's features are taken at a time between it and the next start (after the last: just after it), so
    # X (day 1) is known after a patient's A (day 0) from a time drawn after day 1 on, and always after B (day 2).
    times = model.covariate_times()
    reference, day = times["reference"].to_list(), datetime(2020, 1, 1)
    assert day < reference[0] < day + timedelta(days=2) and reference[1] == day + timedelta(days=2, microseconds=1)
    known = model.covariates.fit_at(times).toarray()[:, 0]
    after_x = [with_x[p] and r > day + timedelta(days=1) for p, r in zip(times["person_id"], reference)]
    np.testing.assert_array_equal(known, after_x)
    assert 0 < known[0:40:2].sum() < 20 and model.covariate_times().equals(times)  # seeded
    model.fit(sp.csr_matrix((50, 4), dtype=np.float32))
    scores = model.score(np.arange(40, 50), None)
    assert (scores[:5, 1] > scores[:5, 2]).all() and (scores[5:, 2] > scores[5:, 1]).all()  # X -> B, else C
    (feature, share), = model.explain_patient(40, 1, N=3)
    assert feature == "condition=X" and share > 0 and model.explain_patient(45, 1) == []
    model.save(tmp_path / "gru")
    loaded = load_model(tmp_path / "gru")
    assert loaded.params() == model.params() and loaded.params()["covariates"] == ["conditions"]
    np.testing.assert_array_equal(loaded.with_context(context).score(np.arange(40, 50), None), scores)


def test_app_run_on_eunomia_with_covariates_explains_by_diagnosis(tmp_path):
    from tests.test_recommend_run import _compose

    result = run_recommend(_compose("recommender=gru", "recommender.epochs=2", "recommender.new_only=true",
                                    "recommender.covariates=[sex,age,conditions]"), tmp_path)
    assert result["report"]["patients"]["persons"] == 2694
    features = load_model(tmp_path / "model").covariates.features
    assert {"sex=8507", "sex=8532"} <= set(features.tolist()) and any(f.startswith("condition=") for f in features)
    because = pl.read_parquet(tmp_path / "recommendations.parquet")["patient_explanation"].explode().drop_nulls()
    assert because.str.starts_with("diagnosis: ").any()
