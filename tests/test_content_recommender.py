"""Content and hybrid recommenders, the cold-item split, and a content run of the recommend app."""

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

import recommend  # noqa: F401
from featurestore.datasets import load_dataset
from recommend.mapping import DrugCatalog
from recommend.models import FitContext, build_model, load_model
from recommend.models.content import atc_names, atc_similarity
from recommend.run import run_recommend
from recommend.splits import cold_items_split, make_split
from tests.test_recommend_run import DATA, _compose

OMOP_TABLES = ("drug_exposure", "concept", "concept_ancestor")
NAMES = ["Atorvastatin", "Simvastatin", "Acetylsalicylic acid", "Ibuprofen", "Metformin", "Lisinopril"]
ATORVA, SIMVA, ASPIRIN, IBUPROFEN, METFORMIN, LISINOPRIL = range(6)
# Hand-made annotations: the two statins share an MoA class and the words "cholesterol" / "reductase".
ANNOTATIONS = {
    "Atorvastatin": ("A statin lowering cholesterol by blocking HMG-CoA reductase.", ["HMG-CoA Reductase Inhibitor"]),
    "Simvastatin": ("A statin prodrug; inhibits HMG-CoA reductase and lowers cholesterol.",
                    ["HMG-CoA Reductase Inhibitor"]),
    "Acetylsalicylic acid": ("An NSAID that irreversibly inhibits cyclooxygenase; antiplatelet.",
                             ["Cyclooxygenase Inhibitor"]),
    "Ibuprofen": ("An NSAID that inhibits cyclooxygenase; analgesic.", ["Cyclooxygenase Inhibitor"]),
}


@pytest.fixture(scope="module")
def items() -> pl.DataFrame:
    catalog = DrugCatalog(load_dataset("drugs")).items("ingredient")
    return pl.DataFrame({"name": NAMES}).join(catalog, on="name", how="left").select("item", "name", "atc")


@pytest.fixture(scope="module")
def annotations(items, tmp_path_factory) -> Path:
    rows = [{"drug_id": item, "name": name, "synonyms": [], "definition": ANNOTATIONS[name][0], "chebi_roles": [],
             "mesh_actions": [], "epc_classes": [], "moa_classes": ANNOTATIONS[name][1], "atc_codes": []}
            for item, name in items.select("item", "name").iter_rows() if name in ANNOTATIONS]
    path = tmp_path_factory.mktemp("annotations") / "drug_annotations.parquet"
    pl.DataFrame(rows).write_parquet(path)
    return path


def _matrix(n_items: int, cold: int | None = None) -> sp.csr_matrix:
    """7 patients; item ``cold`` (if given) taken by nobody."""
    rows = [[ATORVA, LISINOPRIL], [ATORVA, METFORMIN], [SIMVA, LISINOPRIL], [ASPIRIN, IBUPROFEN],
            [IBUPROFEN, METFORMIN], [SIMVA, METFORMIN, LISINOPRIL], [ATORVA]]
    dense = np.zeros((len(rows), n_items), dtype=np.float32)
    for user, taken in enumerate(rows):
        dense[user, [t for t in taken if t != cold]] = 1.0
    return sp.csr_matrix(dense)


def _content(items, annotations, tmp_path, **params):
    spec = {"name": "content", "annotations": str(annotations), "store_root": str(tmp_path / "store"), **params}
    model = build_model(spec).with_context(FitContext(items, pl.Series(range(7)), pl.DataFrame()))
    return model.fit(_matrix(items.height))


@pytest.fixture(scope="module")
def content(items, annotations, tmp_path_factory):
    return _content(items, annotations, tmp_path_factory.mktemp("content"))


def test_every_drug_is_1_to_itself(content):
    similarity = content.item_similarity(np.arange(len(NAMES)))
    np.testing.assert_allclose(np.diag(similarity), 1.0, rtol=1e-6)


def test_statins_share_c10aa_and_are_closer_in_atc_than_statin_and_aspirin(content):
    # Catalog codes: atorvastatin C10AA C10BA C10BX; simvastatin A10BH C10AA C10BA C10BX; aspirin in 8 classes
    # incl. the combination class C10BX. Best-match average: (1 + 3/4) / 2 vs (3/4 + 1.25/8) / 2.
    statins = content.why_similar(ATORVA, SIMVA)["atc"]
    assert statins == {"level": 4, "code": "C10AA", "name": "HMG CoA reductase inhibitors", "similarity": 0.875}
    assert content.why_similar(ATORVA, ASPIRIN)["atc"]["similarity"] == pytest.approx(0.453125)
    assert atc_similarity([["C10AA"], ["C10AB"], ["C10BA"], ["B01AC"], []]).tolist() == [
        [1.0, 0.75, 0.5, 0.0, 0.0], [0.75, 1.0, 0.5, 0.0, 0.0], [0.5, 0.5, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, 0.0]]


def test_atc_names_come_from_drugs_with_one_class():
    names = atc_names(load_dataset("drugs"))
    assert names["C10AA"] == "HMG CoA reductase inhibitors" and names["C"] == "CARDIOVASCULAR SYSTEM"


def test_explanation_names_shared_classes_keywords_and_tanimoto(content):
    why = content.why_similar(ATORVA, SIMVA)
    assert why["classes"] == ["HMG-CoA Reductase Inhibitor"]
    assert {"cholesterol", "reductase"} <= set(why["keywords"])
    assert 0.0 < why["tanimoto"] < 1.0
    # Weighted mean of the four views (weights 0.3 / 0.4 / 0.15 / 0.15): structure, ATC, Jaccard 1, text cosine.
    assert why["similarity"] > 0.6 and content.why_similar(ATORVA, METFORMIN)["classes"] == []
    ids, _ = content.similar_items(np.array([ATORVA, IBUPROFEN]), N=1)
    assert ids.tolist() == [[SIMVA], [ASPIRIN]]


def test_content_recommends_by_similarity_to_the_patients_drugs(content, items):
    ids, _ = content.recommend(np.array([6]), _matrix(items.height)[6], N=1)
    assert ids.tolist() == [[SIMVA]]  # patient 6 took atorvastatin only
    similarity = content.why_similar(ATORVA, SIMVA)["similarity"]
    assert content.explain(6, _matrix(items.height), SIMVA) == [(ATORVA, pytest.approx(similarity))]


def test_content_needs_context_and_matching_granularity(items):
    with pytest.raises(ValueError, match="call with_context"):
        build_model({"name": "content"}).fit(_matrix(items.height))
    classes = pl.DataFrame({"item": ["C10A", "C10B"], "name": ["C10A", "C10B"], "atc": ["C10A", "C10B"]})
    model = build_model({"name": "content"}).with_context(FitContext(classes, pl.Series([0]), pl.DataFrame()))
    with pytest.raises(ValueError, match=r"2 item\(s\) are not catalog drug_ids, e.g. \['C10A', 'C10B'\]"):
        model.fit(sp.csr_matrix((1, 2), dtype=np.float32))


def test_content_at_atc3_granularity_compares_classes(tmp_path):
    classes = pl.DataFrame({"item": ["C10A", "C10B", "B01A"], "name": ["C10A", "C10B", "B01A"],
                            "atc": ["C10A", "C10B", "B01A"]})
    model = build_model({"name": "content", "granularity": "atc3", "weights": {"structure": 1.0, "atc": 1.0},
                         "annotations": str(tmp_path / "absent.parquet")})
    model.with_context(FitContext(classes, pl.Series([0]), pl.DataFrame())).fit(sp.csr_matrix((1, 3)))
    # Structure skipped (a class is not a molecule): ATC alone, C10A vs C10B share level 2 of 3.
    np.testing.assert_allclose(model.item_similarity(np.arange(3)),
                               [[1, 2 / 3, 0], [2 / 3, 1, 0], [0, 0, 1]], rtol=1e-6)


def test_hybrid_scores_cold_drugs_that_als_leaves_at_zero(items, annotations, tmp_path):
    X = _matrix(items.height, cold=SIMVA)
    context = FitContext(items, pl.Series(range(7)), pl.DataFrame())
    als = build_model({"name": "als", "factors": 4, "iterations": 5, "random_state": 1}).fit(X)
    assert np.all(als.score(np.arange(7), X)[:, SIMVA] == 0.0)
    hybrid = build_model({
        "name": "hybrid", "behavior": {"name": "als", "factors": 4, "iterations": 5, "random_state": 1},
        "content": {"annotations": str(annotations), "store_root": str(tmp_path / "store")}, "alpha": 0.5,
        "cold_weight": 1.0,
    }).with_context(context).fit(X)
    scores = hybrid.score(np.arange(7), X)
    assert np.all(scores[:, SIMVA] > 0)
    # Atorvastatin takers rank the cold statin first among the drugs they have not taken.
    ids, _ = hybrid.recommend(np.array([6]), X[6], N=1)
    assert ids.tolist() == [[SIMVA]]
    hybrid.save(tmp_path / "hybrid")
    np.testing.assert_array_equal(load_model(tmp_path / "hybrid").score(np.arange(7), X), scores)


@pytest.mark.parametrize("baskets, behavior, alphas, expected", [
    # Statins together, NSAIDs together, random behavior: content finds the held-out partner.
    ([[ATORVA, SIMVA], [ASPIRIN, IBUPROFEN]], {"name": "random"}, [0.0, 1.0], 1.0),
    # Baskets of unrelated drugs: co-occurrence (item-kNN) finds the held-out third, content its look-alikes.
    ([[ATORVA, IBUPROFEN, LISINOPRIL], [SIMVA, ASPIRIN, METFORMIN]], {"name": "itemknn", "K": 5}, [1.0, 0.0], 0.0),
])
def test_hybrid_tunes_alpha_on_an_inner_holdout(items, annotations, tmp_path, baskets, behavior, alphas, expected):
    dense = np.zeros((8 * len(baskets), items.height), dtype=np.float32)
    for user in range(dense.shape[0]):
        dense[user, baskets[user % len(baskets)]] = 1.0
    hybrid = build_model({"name": "hybrid", "behavior": behavior, "alphas": alphas, "validation_share": 0.34,
                          "content": {"annotations": str(annotations), "store_root": str(tmp_path / "s")}})
    hybrid.with_context(FitContext(items, pl.Series(range(len(dense))), pl.DataFrame())).fit(sp.csr_matrix(dense))
    assert hybrid.fitted_alpha == expected and hybrid.params()["alpha"] is None


def test_content_save_load_round_trip(content, items, tmp_path):
    arrays, config = content.save(tmp_path / "model")
    assert json.loads(config.read_text())["model"] == "content"
    loaded = load_model(tmp_path / "model")
    X = _matrix(items.height)
    np.testing.assert_array_equal(loaded.score(np.arange(7), X), content.score(np.arange(7), X))
    assert loaded.why_similar(ATORVA, SIMVA) == content.why_similar(ATORVA, SIMVA)


def _events(n_drugs: int = 10) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    rows = [(person, f"D{rng.integers(n_drugs)}", datetime(2020, 1, 1 + int(rng.integers(28))))
            for person in range(30) for _ in range(4)]
    return pl.DataFrame(rows, schema={"person_id": pl.Int64, "item": pl.String, "start": pl.Datetime("us")},
                        orient="row")


def test_cold_item_split_holds_out_every_event_of_its_drugs():
    events = _events()
    folds = make_split(events, {"name": "cold_items", "fraction": 0.2, "seed": 1})
    test, validation = folds["test"], folds["validation"]
    test_drugs, val_drugs = set(test.info["cold_items"]), set(validation.info["cold_items"])
    assert len(test_drugs) == len(val_drugs) == 2 and not test_drugs & val_drugs
    assert not test_drugs & set(test.history["item"]) and set(test.future["item"]) == test_drugs
    assert test.history.height + test.future.height == events.height
    assert not (test_drugs | val_drugs) & set(validation.history["item"])
    assert set(validation.future["item"]) == val_drugs
    assert test.future.height == events.filter(pl.col("item").is_in(list(test_drugs))).height
    assert cold_items_split(events, 0.2, seed=1)["test"].info == test.info  # seeded
    with pytest.raises(ValueError, match="too few to hold out"):
        cold_items_split(events.filter(pl.col("item").is_in(["D0", "D1"])), 0.2)


def test_content_run_writes_neighbourhood_png(tmp_path):
    # The tiny OMOP files of test_recommend_run; the ATC view only (the fast one on the whole catalog).
    cfg = _compose(
        "usage=omop", *(f"usage.tables.{t}.path={DATA / f'omop_{t}.csv'}" for t in OMOP_TABLES),
        "usage_split=leave_last", "recommender=content", "recommender.weights.structure=0",
        "recommender.weights.classes=0", "recommender.weights.text=0", "evaluate.ks=[1,2]",
        "objective.fold=test", "objective.task=all", "objective.metric=recall@2",
    )
    result = run_recommend(cfg, tmp_path)
    assert json.loads((tmp_path / "model.json").read_text())["model"] == "content"
    assert (tmp_path / "neighbourhood.png").read_bytes()[:4] == b"\x89PNG"
    assert result["metrics"]["test"]["tasks"]["all"]["patients"] == 2
    recs = pl.read_parquet(tmp_path / "recommendations.parquet")
    # Both histories hold aspirin only: its content neighbours come first, explained by aspirin.
    assert recs.filter(pl.col("rank") == 1)["explanation"].to_list() == [["Acetylsalicylic acid"]] * 2
