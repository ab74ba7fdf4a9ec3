"""Resource recommendation: BM25 ranking, catalog ingest, MeSH-free queries, metrics, the Hydra app."""

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hydra import compose, initialize_config_dir

from featurestore.datasets.pubmed import parse_citations
from featurestore.datasets import dataset_path
from recommend.resources.catalog import read_user_catalog
from recommend.resources.evaluate import evaluate_methods, evaluation_tasks, relevance
from recommend.resources.queries import drug_queries, drug_query, drug_texts, eunomia_patient, find_drug, patient_query
from recommend.resources.retrieval import Expansion, IndexConfig, ResourceIndex, normalize_term, top_k
from recommend.resources.run import run_resources

DATA = Path(__file__).parent / "data"
CONF = Path(__file__).resolve().parents[1] / "conf"
TINY = IndexConfig(svd_components=4, svd_min_df=1)


@pytest.fixture(scope="module")
def corpus_index() -> ResourceIndex:
    catalog, report = read_user_catalog(DATA / "resources_corpus.csv")
    assert report.rows_kept == 6
    return ResourceIndex.build(catalog, TINY)


def _catalog(texts: list[str], keywords: list[list[str]] | None = None) -> pl.DataFrame:
    return pl.DataFrame({
        "doc_id": [f"doc{i}" for i in range(len(texts))], "title": [""] * len(texts), "text": texts,
        "keywords": keywords or [[] for _ in texts], "url": [None] * len(texts),
    }, schema_overrides={"url": pl.String, "keywords": pl.List(pl.String)})


def test_medline_xml_parsing():
    first, second = parse_citations((DATA / "resources_medline.xml").read_bytes())
    assert first == {
        "pmid": 111, "title": "Effect of aspirin on CO2.", "year": 2018, "journal": "Journal of Tests",
        "abstract": "BACKGROUND: Aspirin is old. RESULTS: It still works.",
        "mesh_terms": ["Humans", "Aspirin"], "chemicals": ["Aspirin"],
    }
    assert (second["pmid"], second["abstract"], second["year"], second["mesh_terms"]) == (222, "", 2021, [])


def test_shipped_pubmed_dataset():
    # Not the abstracts: decompressing them is the slow part, and the builder drops empty ones.
    table = pl.read_parquet(dataset_path("pubmed_resources"), columns=["pmid", "mesh_terms", "chemicals", "url"])
    assert table.height == 33_272 and table["pmid"].n_unique() == table.height
    first = table.row(0, named=True)
    assert first["url"] == "https://pubmed.ncbi.nlm.nih.gov/399296/"
    assert first["mesh_terms"][:3] == ["Abattoirs", "Animals", "Bacteriological Techniques"]


def test_bm25_scores_and_order_match_the_lucene_formula():
    index = ResourceIndex.build(_catalog(["apple banana", "apple apple cherry", "cherry date", "date elder fig grape"]),
                                IndexConfig(svd_components=0))
    table = index.search("Apples!", k=4)  # stemmed: "apples" matches "apple"
    assert table["doc_id"].to_list() == ["doc1", "doc0"]
    idf, avgdl = math.log(1 + (4 - 2 + 0.5) / (2 + 0.5)), 11 / 4
    bm25 = [idf * tf / (tf + 1.5 * (0.25 + 0.75 * dl / avgdl)) for tf, dl in ((2, 3), (1, 2))]
    np.testing.assert_allclose(table["score"].to_numpy(), bm25, rtol=1e-6)
    assert table["matched_terms"].to_list() == [["apples"], ["apples"]]


def test_bm25_ranking_on_the_hand_made_corpus(corpus_index):
    ranked = corpus_index.search("aspirin platelet", k=6)
    assert ranked["doc_id"].to_list() == ["d1", "d2"]
    assert ranked["matched_terms"].to_list() == [["aspirin", "platelet"], ["aspirin"]]
    # Equal term frequency: the shorter document (d4) beats the longer one (d3).
    assert corpus_index.search("diabetes", k=6)["doc_id"].to_list() == ["d4", "d3"]
    assert corpus_index.search("the of and", k=6).is_empty()  # stopwords only


def test_context_words_add_their_weighted_bm25(corpus_index):
    alone = dict(corpus_index.search("aspirin", k=6)[["doc_id", "score"]].iter_rows())
    ranked = corpus_index.search("ibuprofen", k=6, context="aspirin ibuprofen", context_weight=0.5)
    assert ranked["doc_id"].to_list() == ["d2", "d1"]
    ibuprofen_d2 = corpus_index.search("ibuprofen", k=6)["score"][0]
    np.testing.assert_allclose(ranked["score"].to_numpy(), [ibuprofen_d2 + 0.5 * alone["d2"], 0.5 * alone["d1"]])
    assert ranked["matched_terms"].to_list() == [["ibuprofen", "aspirin"], ["aspirin"]]


def test_mesh_expansion_adds_feedback_keywords(corpus_index):
    expansion = Expansion(feedback_docs=1, terms=2, weight=0.5, max_df=1.0)
    assert corpus_index.search("metformin", k=6)["doc_id"].to_list() == ["d3"]
    expanded = corpus_index.search("metformin", k=6, method="expanded", expansion=expansion)
    # d3's keywords by idf: Metformin, then Diabetes Mellitus, Type 2 (shared with d4).
    assert expanded["doc_id"].to_list() == ["d3", "d4"]
    assert expanded["matched_keywords"].to_list() == [["Metformin", "Diabetes Mellitus, Type 2"],
                                                      ["Diabetes Mellitus, Type 2"]]


def test_mesh_name_match_and_top_k_ties(corpus_index):
    names = [corpus_index.keyword_names[j] for j in corpus_index.keyword_matches("my patient: diabetes mellitus, type 2")]
    assert names == ["Diabetes Mellitus, Type 2"]
    assert normalize_term("Acide acétylsalicylique, (R)-") == "acide acetylsalicylique r"
    assert top_k(np.array([1.0, 3.0, 3.0, 2.0]), 3).tolist() == [1, 2, 3]


def test_index_save_load_round_trip_without_pickle(corpus_index, tmp_path):
    corpus_index.save(tmp_path / "index")
    loaded = ResourceIndex.load(tmp_path / "index")
    for method in ("bm25", "svd"):
        before, after = corpus_index.search("insulin diabetes", 6, method), loaded.search("insulin diabetes", 6, method)
        assert before["doc_id"].to_list() == after["doc_id"].to_list()
        np.testing.assert_allclose(before["score"].to_numpy(), after["score"].to_numpy(), rtol=1e-6)
    for array in (tmp_path / "index").rglob("*.np[yz]"):
        np.load(array, allow_pickle=False)  # raises if any array needed pickle


def test_user_csv_catalog_keeps_good_rows_and_reports_bad_ones():
    catalog, report = read_user_catalog(DATA / "resources_user_catalog.csv")
    assert catalog["doc_id"].to_list() == ["u1", "u5"]
    assert catalog.filter(pl.col("doc_id") == "u5")["keywords"].to_list() == [["Myopathy", "Statins"]]
    assert report.bad_rows.rows() == [(1, "missing_id"), (2, "missing_text"), (3, "bad_url"), (4, "duplicate_id"),
                                      (5, "malformed_row")]
    assert report.rows_read == 7 and report.dropped["malformed_row"] == 1


def test_user_jsonl_catalog_and_configured_columns(tmp_path):
    catalog, report = read_user_catalog(DATA / "resources_user_catalog.jsonl")
    assert catalog["doc_id"].to_list() == ["j1", "j3"]
    assert catalog["keywords"].to_list() == [["Warfarin", "Vitamin K"], []]
    assert report.bad_rows.rows() == [(1, "bad_keywords"), (2, "malformed_row")]
    renamed = tmp_path / "mine.csv"
    renamed.write_text("PMID,Headline,Body,MeSH,Link\n7,T,Some text,A|B,https://x.org\n")
    catalog, _ = read_user_catalog(renamed, {"id": "PMID", "title": "Headline", "text": "Body", "keywords": "MeSH",
                                             "url": "Link"}, keyword_separator="|")
    assert catalog.row(0) == ("7", "T", "Some text", ["A", "B"], "https://x.org")
    with pytest.raises(KeyError, match=r"mine.csv: missing column\(s\) id \(for id\), title \(for title\), text"):
        read_user_catalog(renamed)


DRUGS = pl.DataFrame({
    "drug_id": ["DB01050", "DB00331", "DB09999"],
    "name": ["Ibuprofen", "Metformin", "Nothingamab"],
    "synonyms": [["advil"], ["glucophage"], []],
    "definition": ["A propionic acid derivative.", None, None],
    # MeSH fields on the drug side: a query that read them would contain "cyclooxygenase" or "hypoglycemic".
    "mesh_actions": [["Cyclooxygenase Inhibitors"], ["Hypoglycemic Agents"], []],
    "mesh_ids": [["D007052"], ["D008687"], []],
})


def test_queries_never_read_mesh_fields(corpus_index):
    queries = drug_queries(DRUGS)
    assert queries["query"].to_list() == ["Ibuprofen advil A propionic acid derivative.", "Metformin glucophage",
                                          "Nothingamab"]
    split = drug_queries(DRUGS, ["name"], ["synonyms", "definition"])
    assert split.select("query", "context").rows() == [
        ("Ibuprofen", "advil A propionic acid derivative."), ("Metformin", "glucophage"), ("Nothingamab", "")]
    tasks = evaluation_tasks(DRUGS, corpus_index)
    assert tasks["drug_id"].to_list() == ["DB01050", "DB00331"]  # Nothingamab names no keyword: not evaluated
    # Relevance comes from the documents' MeSH (d2: Ibuprofen; d3: Metformin) ...
    assert tasks["relevant"].to_list() == [[1], [2]]
    assert tasks["matched_keywords"].to_list() == [["Ibuprofen"], ["Metformin"]]
    # ... and neither the drug-side MeSH nor the relevant documents' other MeSH terms reach a query or its context.
    split = evaluation_tasks(DRUGS, corpus_index, ["name"], context_fields=["synonyms", "definition"])
    for text in [*tasks["query"], *split["query"], *split["context"]]:
        for leaked in ("cyclooxygenase", "hypoglycemic", "pain", "humans", "diabetes", "d007052"):
            assert leaked not in text.lower()
    assert drug_query("Ibuprofen", ["advil"], "def", fields=["name"]) == "Ibuprofen"


def test_relevance_matches_normalized_synonyms_and_skips_short_ones(corpus_index):
    drugs = pl.DataFrame({"drug_id": ["X1", "X2"], "name": ["Acetylsalicylic acid", "Something"],
                          "synonyms": [["ASPIRIN ", "asa"], ["ins"]]})
    table = relevance(drugs, corpus_index)
    assert table.rows() == [("X1", ["Aspirin"], [0])]


def test_drug_texts_fall_back_to_names_and_find_drug(tmp_path):
    drugs_file = tmp_path / "drugs.parquet"
    DRUGS.select("drug_id", "name").write_parquet(drugs_file)
    texts, note = drug_texts(tmp_path / "absent.parquet", drugs_file)
    assert note.startswith("name only") and texts["synonyms"].to_list() == [[], [], []]
    assert find_drug(DRUGS, "GLUCOPHAGE")["drug_id"] == "DB00331"
    with pytest.raises(KeyError, match="no catalog drug has id, name or synonym 'aspirin'"):
        find_drug(DRUGS, "aspirin")


def test_patient_query_from_eunomia_person():
    drugs, conditions = eunomia_patient(6)
    assert drugs[:2] == ["Naproxen sodium 220 MG Oral Tablet", "celecoxib"] and len(drugs) == 14
    assert conditions[0] == "Osteoarthritis" and len(conditions) == 11
    assert patient_query(["celecoxib"], ["Osteoarthritis"]) == "celecoxib Osteoarthritis"
    with pytest.raises(KeyError, match="Eunomia person -1 has no drug exposure or condition"):
        eunomia_patient(-1)


def test_metrics_on_a_hand_computed_case(corpus_index):
    # "diabetes" ranks d4 then d3; only d3 (row 2) is relevant: recall@1 0, recall@2 1,
    # ndcg@2 = (1 / log2(3)) / 1, mrr = 1/2.
    tasks = pl.DataFrame({"query": ["diabetes"], "relevant": [[2]]})
    metrics = evaluate_methods(corpus_index, tasks, ["bm25"], ks=[1, 2], depth=6)["bm25"]
    assert metrics["recall@1"] == 0.0 and metrics["recall@2"] == 1.0
    assert metrics["ndcg@2"] == pytest.approx(1 / math.log2(3))
    assert metrics["mrr"] == pytest.approx(0.5) and metrics["queries"] == 1


def _app_config(tmp_path: Path, overrides: list[str]):
    annotations = tmp_path / "annotations.parquet"
    DRUGS.drop("mesh_actions", "mesh_ids").write_parquet(annotations)
    base = [f"catalog.path={DATA / 'resources_corpus.csv'}", f"drugs.annotations={annotations}",
            "index.svd_components=4", "index.svd_min_df=1"]
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("resources", overrides=base + overrides)


def test_app_query_and_drug_modes(tmp_path):
    out = tmp_path / "query"
    run_resources(_app_config(tmp_path, ["query=aspirin platelet", "retriever=bm25", "mesh_weight=0"]), out)
    ranked = pl.read_csv(out / "ranked.csv")
    assert ranked["doc_id"].to_list() == ["d1", "d2"] and ranked["matched_terms"][0] == "aspirin; platelet"
    assert pl.read_parquet(out / "ranked.parquet")["matched_terms"].to_list()[1] == ["aspirin"]
    assert json.loads((out / "run.json").read_text())["config"]["query"] == "aspirin platelet"

    out, cache = tmp_path / "drug", f"index_cache={tmp_path / 'index'}"
    for reused in (False, True):  # the second run reads the index the first one cached
        run_resources(_app_config(tmp_path, ["drug=advil", "retriever=bm25", "mesh_weight=1.0", cache]), out)
        report = json.loads((out / "report.json").read_text())
        assert report["index_reused"] is reused
    assert (report["drug_id"], report["query"], report["context"]) == ("DB01050", "Ibuprofen",
                                                                        "advil A propionic acid derivative.")
    assert pl.read_parquet(out / "ranked.parquet")["doc_id"][0] == "d2"


def test_app_evaluate_mode_and_mode_check(tmp_path):
    out = tmp_path / "evaluate"
    result = run_resources(_app_config(tmp_path, ["eval=true", "evaluation.ks=[1,2]"]), out)
    assert set(result["metrics"]) == {"bm25", "expanded", "mesh_feedback", "svd"}
    assert json.loads((out / "metrics.json").read_text())["bm25"]["recall@1"] == 1.0  # both drugs find their doc first
    assert pl.read_parquet(out / "evaluation_tasks.parquet")["n_relevant"].to_list() == [1, 1]

    out = tmp_path / "patient"
    run_resources(_app_config(tmp_path, ["patient.drugs=[Warfarin]", "patient.conditions=[Sleep]", "mesh_weight=0",
                                         "retriever=bm25"]), out)
    assert pl.read_parquet(out / "ranked.parquet")["doc_id"].to_list() == ["d5", "d6"]
    with pytest.raises(ValueError, match="exactly one of"):
        run_resources(_app_config(tmp_path, ["query=x", "drug=advil"]), tmp_path / "bad")
