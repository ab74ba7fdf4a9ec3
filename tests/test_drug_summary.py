"""The drug_summary view (keywords, generated summary), shared keywords in content explanations, patient queries."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

import recommend  # noqa: F401
from featurestore import FeatureStore, FeatureView
from featurestore.datasets import load_dataset
from featurestore.featurizers.drug import _distinct_terms, _keyword_terms
from recommend.mapping import DrugCatalog
from recommend.models import FitContext, build_model
from recommend.outputs import with_descriptions
from recommend.resources.queries import eunomia_patient, ingredient_names, patient_query

ATORVASTATIN, METFORMIN = "DB01076", "DB00331"
SUMMARY = FeatureView("drug_summary")
NAMES = ["Atorvastatin", "Simvastatin", "Metformin"]
ATORVA, SIMVA, METFORMIN_ITEM = range(3)


def test_keywords_and_summary_of_atorvastatin(store: FeatureStore) -> None:
    table = store.get([ATORVASTATIN, METFORMIN, "DB00000"], SUMMARY)
    atorvastatin = table.row(0, named=True)
    # Its real text: EPC "HMG-CoA Reductase Inhibitor", ChEBI role "hydroxymethylglutaryl-CoA reductase inhibitor".
    assert {"reductase", "hydroxymethylglutaryl-coa", "hmg-coa", "antilipemic"} <= set(atorvastatin["keywords"])
    assert len(atorvastatin["keywords"]) == 8
    # Its own ATC class only (C10AA), not the combination classes C10BA / C10BX it is also listed in.
    assert atorvastatin["summary"].startswith(
        "Atorvastatin — HMG-CoA Reductase Inhibitor [EPC]; Hydroxymethylglutaryl-CoA Reductase Inhibitors [MoA] "
        "(ATC C10AA HMG CoA reductase inhibitors). ChEBI: A dihydroxy monocarboxylic acid")
    assert "C10BA" not in atorvastatin["summary"]
    assert table["summary"][1] == ("Metformin — Biguanide [EPC] (ATC A10BA Biguanides). "
                                   "ChEBI: A guanidine that has formula C4H11N5; roles: hypoglycemic agent.")
    assert table["keywords"][1].to_list()[:3] == ["biguanide", "guanidine", "hypoglycemic"]
    assert table["error"][2] == "drug_id 'DB00000' is not in drug_annotations" and table["summary"][2] is None


def test_keyword_terms_stay_within_a_field_and_skip_repeats() -> None:
    terms = _keyword_terms("HMG-CoA Reductase Inhibitor\nantilipemic drug; substituent at C17")
    assert terms == ["hmg-coa", "reductase", "inhibitor", "hmg-coa reductase", "reductase inhibitor", "antilipemic"]
    ranked = ["reductase", "hmg-coa reductase", "hmg-coa", "coa", "inhibitors", "inhibitor", "lipid"]
    assert _distinct_terms(ranked, 3) == ["reductase", "hmg-coa", "inhibitors"]
    with pytest.raises(ValueError, match="n_keywords must be >= 1"):
        FeatureView("drug_summary", {"n_keywords": 0}).build()


@pytest.fixture(scope="module")
def content(tmp_path_factory):
    """The content model on three real catalog drugs, shipped annotations, ATC + text views."""
    items = pl.DataFrame({"name": NAMES}).join(DrugCatalog(load_dataset("drugs")).items("ingredient"), on="name",
                                              how="left").select("item", "name", "atc")
    store = tmp_path_factory.mktemp("store")
    model = build_model({"name": "content", "weights": {"atc": 1.0, "text": 1.0}, "store_root": str(store)})
    return model.with_context(FitContext(items, pl.Series([0]), pl.DataFrame())).fit(
        np.zeros((1, len(NAMES)), dtype=np.float32))


def test_content_explanation_names_shared_summary_keywords(content) -> None:
    why = content.why_similar(ATORVA, SIMVA)
    assert why["shared_keywords"][:4] == ["reductase", "hydroxymethylglutaryl-coa", "lipid", "modifying"]
    assert set(why["shared_keywords"]) <= set(content.item_keywords(SIMVA))
    assert content.why_similar(ATORVA, METFORMIN_ITEM)["shared_keywords"] == []


def test_recommendation_table_gets_summary_keywords_and_shared_keywords(content) -> None:
    ids = content.features["items"]
    table = pl.DataFrame({"drug_id": [ids[SIMVA], ids[METFORMIN_ITEM]],
                          "explanation": [["Atorvastatin"], ["Atorvastatin"]]})
    described = with_descriptions(table, content)
    assert described.columns == ["drug_id", "explanation", "summary", "keywords", "shared_keywords"]
    assert "(ATC C10AA HMG CoA reductase inhibitors)" in described["summary"][0]
    assert described["shared_keywords"][0].to_list()[:2] == ["reductase", "hydroxymethylglutaryl-coa"]
    assert described["shared_keywords"][1].to_list() == []  # metformin shares no keyword with atorvastatin
    assert with_descriptions(table, build_model({"name": "popularity"})) is table


def test_patient_query_keeps_ingredients_not_doses() -> None:
    concepts = set(load_dataset("eunomia_concept")["concept_name"])
    cases = {
        "Acetaminophen 325 MG / Hydrocodone Bitartrate 7.5 MG Oral Tablet": ["Acetaminophen", "Hydrocodone Bitartrate"],
        "120 ACTUAT Fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler": ["Fluticasone propionate"],
        "{28 (Norethindrone 0.35 MG Oral Tablet) } Pack [Camila 28 Day]": ["Norethindrone"],
        "Vitamin B 12 5 MG/ML Injectable Solution": ["Vitamin B 12"],
    }
    for name, expected in cases.items():
        assert name in concepts  # real Eunomia drug concept names
        assert ingredient_names(name) == expected, name
    assert patient_query(["Acetaminophen 325 MG Oral Tablet", "Acetaminophen 160 MG Oral Tablet"],
                         ["Osteoarthritis"]) == "Acetaminophen Osteoarthritis"
    words = patient_query(*eunomia_patient(6)).split()
    assert "Acetaminophen" in words and "Osteoarthritis" in words
    assert not {"MG", "Oral", "Tablet", "Pack", "[Valium]"} & set(words)
