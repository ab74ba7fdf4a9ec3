"""Drug content data (atc_index, drug_annotations) and the drug-level feature views."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

import featurestore.datasets as ds
from featurestore import FeatureStore, FeatureView, build_drug_views, drug_feature_table
from featurestore.build import build_feature_store
from featurestore.datasets.drug_content import (
    _match_substance,
    _name_index,
    atc_ancestors,
    normalize_name,
    parse_chebi,
)
from featurestore.featurizers import ECFPFeaturizer

ASPIRIN, ATORVASTATIN, SIMVASTATIN = "DB00945", "DB01076", "DB00641"
ECFP4 = FeatureView("ecfp", {"radius": 2, "n_bits": 2048})


def annotation(drug_id: str) -> dict:
    return ds.load_dataset("drug_annotations").filter(pl.col("drug_id") == drug_id).row(0, named=True)


def test_atc_index_known_codes() -> None:
    index = ds.load_dataset("atc_index")
    names = dict(index.select("code", "name").iter_rows())
    assert names["C10AA"] == "HMG CoA reductase inhibitors"
    assert names["C10AA05"] == "atorvastatin"
    assert names["N"] == "NERVOUS SYSTEM"
    lengths = {1: 1, 2: 3, 3: 4, 4: 5, 5: 7}
    assert (index["code"].str.len_chars() == index["level"].replace_strict(lengths, return_dtype=pl.UInt32)).all()
    assert index["code"].is_unique().all()


def test_annotations_schema_and_rows() -> None:
    annotations = ds.load_dataset("drug_annotations")
    lists = pl.List(pl.String)
    assert annotations.schema == pl.Schema(
        {"drug_id": pl.String, "name": pl.String, "synonyms": lists, "definition": pl.String, "chebi_roles": lists,
         "mesh_actions": lists, "epc_classes": lists, "moa_classes": lists, "atc_codes": lists}
    )
    assert annotations["drug_id"].to_list() == ds.load_dataset("drugs")["drug_id"].to_list()


def test_statins_share_the_atc_hierarchy() -> None:
    for drug_id in (ATORVASTATIN, SIMVASTATIN):
        row = annotation(drug_id)
        assert {"C", "C10", "C10A", "C10AA"} <= set(row["atc_codes"]), row["name"]
        assert row["epc_classes"] == ["HMG-CoA Reductase Inhibitor"]
        assert "hydroxymethylglutaryl-CoA reductase inhibitor" in row["chebi_roles"]


def test_aspirin_annotations() -> None:
    row = annotation(ASPIRIN)
    assert "anti-inflammatory" in row["definition"]
    assert "non-steroidal anti-inflammatory drug" in row["chebi_roles"]
    assert "aspirin" in row["synonyms"] and "acetylsalicylic acid" not in row["synonyms"]
    assert row["moa_classes"] == ["Cyclooxygenase Inhibitors"]
    assert row["mesh_actions"] == []


def test_atc_ancestors_and_names() -> None:
    assert atc_ancestors(["N02BA"]) == ["N", "N02", "N02B", "N02BA"]
    assert atc_ancestors(["C10AA", "C10BA"]) == ["C", "C10", "C10A", "C10AA", "C10B", "C10BA"]
    assert atc_ancestors([]) == []
    assert normalize_name("Penicillin G-Benzathine ") == "penicillin g benzathine"


def test_ndc_substances_match_without_salt_words_only() -> None:
    catalog = pl.DataFrame(
        {"drug_id": ["D1", "D2", "D3"], "name": ["Atorvastatin", "Choline", "Fenofibric acid"],
         "synonyms": [["lipitor"], [], ["shared"]]},
        schema={"drug_id": pl.String, "name": pl.String, "synonyms": pl.List(pl.String)},
    )
    index = _name_index(catalog)
    assert _match_substance("ATORVASTATIN CALCIUM TRIHYDRATE", index) == ("D1", "name without salt words")
    assert _match_substance("LIPITOR", index) == ("D1", "synonym")
    # "fenofibrate" is not a salt word: choline fenofibrate must not become choline.
    assert _match_substance("CHOLINE FENOFIBRATE", index) == (None, "none")


def test_parse_chebi_stanza() -> None:
    text = "\n".join([
        "format-version: 1.2", "", "[Term]", "id: CHEBI:1", "name: drugol",
        'def: "A \\"made-up\\" drug." []',
        'synonym: "Drugolum" RELATED INN [ChemIDplus:]', 'synonym: "C2H6O" RELATED FORMULA [KEGG:]',
        'synonym: "InChIKey=LFQSCWFLJHTTHZ-UHFFFAOYSA-N" RELATED InChIKey [ChEBI:]',
        'xref: DrugBank:DB99999 "DrugBank"', "relationship: has_role CHEBI:2", "is_a: CHEBI:3", "",
        "[Term]", "id: CHEBI:2", "name: antiseptic", "", "[Typedef]", "id: has_role", "name: has role",
    ])
    terms = parse_chebi(text)
    assert set(terms) == {"CHEBI:1", "CHEBI:2"}
    term = terms["CHEBI:1"]
    assert term.definition == 'A "made-up" drug.'
    assert term.synonyms == ["Drugolum"]
    assert term.inchikey == "LFQSCWFLJHTTHZ-UHFFFAOYSA-N"
    assert term.drugbank_ids == ["DB99999"] and term.roles == ["CHEBI:2"]


def test_drug_atc_view_of_simvastatin(store: FeatureStore) -> None:
    view = FeatureView("drug_atc")
    featurizer = view.build()
    row = store.get([SIMVASTATIN], view).row(0, named=True)
    assert row["error"] is None
    on = {featurizer.vocabulary[i] for i in np.flatnonzero(row["atc"])}
    assert on == set(annotation(SIMVASTATIN)["atc_codes"])
    assert {"C", "C10", "C10A", "C10AA", "A10BH"} <= on
    level1 = FeatureView("drug_atc", {"levels": [1]}).build()
    assert level1.vocabulary == sorted(set(ds.load_dataset("atc_index").filter(pl.col("level") == 1)["code"]))


def test_drug_classes_and_text_views(store: FeatureStore) -> None:
    classes = FeatureView("drug_classes").build()
    row = store.get([ATORVASTATIN], FeatureView("drug_classes")).row(0, named=True)
    assert {classes.vocabulary[i] for i in np.flatnonzero(row["classes"])} == {
        "EPC: HMG-CoA Reductase Inhibitor", "MoA: Hydroxymethylglutaryl-CoA Reductase Inhibitors"}
    text = store.get([ASPIRIN, "DB00000"], FeatureView("drug_text"))
    lines = text["text"][0].split("\n")
    assert lines[0] == "Acetylsalicylic acid"
    assert lines[1].startswith("Synonyms: ") and "aspirin" in lines[1]
    assert lines[2].startswith("Definition: Benzoic acid carrying an acetoxy group")
    assert lines[3].startswith("Roles: ") and "non-steroidal anti-inflammatory drug" in lines[3]
    assert len(lines) == 4  # no MeSH actions line: the list is empty
    assert text["text"][1] is None and text["error"][1] == "drug_id 'DB00000' is not in drug_annotations"


def test_stale_data_parameter_is_refused() -> None:
    with pytest.raises(ValueError, match="view built from data '000000000000'"):
        FeatureView("drug_text", {"data": "000000000000"}).build()
    with pytest.raises(ValueError, match="kinds must be a non-empty subset"):
        FeatureView("drug_classes", {"kinds": ["PE"]}).build()


def test_drug_ecfp_through_inchikey_equals_molecule_ecfp(store: FeatureStore) -> None:
    table = drug_feature_table(store, ECFP4, [ASPIRIN, "DB00000"])
    assert table["drug_id"].to_list() == [ASPIRIN, "DB00000"]
    catalog = ds.load_dataset("drugs").filter(pl.col("drug_id") == ASPIRIN)
    assert table["inchikey"][0] == catalog["inchikey"][0] == "BSYNRYMUTXBXSQ-UHFFFAOYSA-N"
    expected = ECFPFeaturizer(radius=2, n_bits=2048)("CC(=O)Oc1ccccc1C(=O)O")
    assert np.array_equal(table["fp"][0].to_numpy(), expected)
    assert table["error"][1] == "drug_id 'DB00000' is not in the drug catalog" and table["fp"][1] is None


def test_build_drug_views_twice_computes_nothing_the_second_time(store: FeatureStore) -> None:
    ids = [ASPIRIN, ATORVASTATIN, SIMVASTATIN]
    first = build_drug_views(store, drug_ids=ids)
    assert first["name"].to_list() == ["drug_atc", "drug_classes", "drug_text", "drug_ecfp"]
    assert first["computed"].to_list() == [3, 3, 3, 3] and first["errors"].sum() == 0
    second = build_drug_views(store, drug_ids=ids)
    assert second["computed"].sum() == 0 and second["reused"].to_list() == [3, 3, 3, 3]


def test_main_job_builds_drug_views(store: FeatureStore, tmp_path: Path) -> None:
    path = tmp_path / "drugs.csv"
    pl.DataFrame({"drug_id": [ASPIRIN, "DB00000", ASPIRIN]}).write_csv(path)
    summary, errors, _ = build_feature_store(
        store, {"mine": {"path": str(path), "drugs": {"key": "drug_id", "views": ["drug_text"]}}},
        {"drug_text": FeatureView("drug_text")},
    )
    assert summary.select("entity", "inputs", "keys", "computed", "errors").row(0) == ("drug", 2, 2, 2, 1)
    assert errors.select("key", "error").row(0) == ("DB00000", "drug_id 'DB00000' is not in drug_annotations")


@pytest.mark.slow
def test_rebuild_is_byte_identical(tmp_path: Path) -> None:
    from featurestore.datasets.build import build_datasets

    for path in build_datasets(["atc_index", "drug_annotations"], data_dir=tmp_path):
        assert path.read_bytes() == ds.dataset_path(path.stem).read_bytes(), path.name
