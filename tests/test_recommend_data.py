"""recommend ingest and catalog mapping: readers on hand-written files with malformed rows, Eunomia coverage."""

from pathlib import Path

import polars as pl
import pytest
import yaml

import recommend  # noqa: F401  (sets OPENBLAS_NUM_THREADS before numpy-backed imports)
from featurestore.datasets import load_dataset
from recommend.ingest import (
    load_usage, read_generic, read_mimic_prescriptions, read_omop, read_omop_conditions, read_omop_person,
    release_events, resolve_path,
)
from recommend.mapping import DrugCatalog, map_events

DATA = Path(__file__).parent / "data" / "recommend"
REPO = Path(__file__).resolve().parents[1]
EUNOMIA = {"format": "omop", "tables": {"drug_exposure": {"dataset": "eunomia_drug_exposure"},
                                         "concept": {"dataset": "eunomia_concept"},
                                         "concept_ancestor": {"dataset": "eunomia_concept_ancestor"}}}


@pytest.fixture(scope="module")
def catalog() -> DrugCatalog:
    return DrugCatalog(load_dataset("drugs"))


def _omop(**kwargs) -> "recommend.ingest.Usage":
    return read_omop(DATA / "omop_drug_exposure.csv", **kwargs)


def test_omop_reader_counts_each_bad_row_by_reason():
    usage = _omop()
    report = usage.report
    assert (report.rows_read, report.rows_kept) == (15, 7)
    assert report.dropped == {
        "duplicate_row": 1, "end_before_start": 1, "missing_item": 1, "missing_person_id": 1,
        "negative_days_supply": 1, "negative_quantity": 1, "unparseable_end": 1, "unparseable_start": 1,
    }
    assert report.bad_rows.sort("row").rows() == [
        (5, "unparseable_start"), (6, "end_before_start"), (7, "negative_days_supply"), (8, "negative_quantity"),
        (9, "missing_person_id"), (10, "missing_item"), (11, "duplicate_row"), (13, "unparseable_end"),
    ]
    events = usage.events
    assert events.schema["start"] == pl.Datetime("us") and events.schema["person_id"] == pl.Int64
    assert events["record_id"].to_list() == [1, 2, 3, 4, 5, 13, 15]  # the duplicate (id 12) of row 1 is dropped
    assert events.filter(pl.col("record_id") == 4).select("days_supply", "quantity", "visit_id").row(0) == (10.0, 20.0, 13)


def test_mimic_reader_counts_bad_rows_and_keeps_text_items():
    usage = read_mimic_prescriptions(DATA / "mimic_prescriptions.csv")
    assert (usage.report.rows_read, usage.report.rows_kept) == (10, 6)
    assert usage.report.dropped == {"duplicate_row": 1, "end_before_start": 1, "unparseable_person_id": 1,
                                    "unparseable_start": 1}
    assert usage.item_kind == "name"
    assert usage.events["item"].to_list() == ["Acetaminophen", "Heparin", "Sodium Chloride 0.9%  Flush", "Aspirin",
                                              "Bag", "Docusate Sodium"]
    assert usage.events["visit_id"].null_count() == 1  # the row without hadm_id is kept
    assert str(usage.events["start"][0]) == "2180-05-07 08:00:00"


WEIGHT = {"quantity": "weight"}


def test_generic_reader_csv_and_parquet(tmp_path):
    usage = read_generic(DATA / "generic.csv", columns=WEIGHT)
    assert usage.report.dropped == {"duplicate_row": 1, "missing_person_id": 1, "negative_quantity": 1,
                                    "unparseable_quantity": 1, "unparseable_start": 1}
    assert usage.events.select("person_id", "item", "quantity").rows() == [
        ("u1", "DB00945", 1.0), ("u1", "DB00316", 2.0), ("u2", "DB00945", 1.0), ("u2", "DB99999", 1.0)]
    parquet = tmp_path / "usage.parquet"
    pl.DataFrame({"patient": ["a", "a", "b"], "drug": ["DB00945", "DB00945", "DB00316"],
                  "when": ["2020-01-01", "2020-01-01", "2020-01-02"]}).write_parquet(parquet)
    again = read_generic(parquet, columns={"person_id": "patient", "item": "drug", "start": "when", "quantity": None})
    assert again.report.dropped == {"duplicate_row": 1}
    assert again.events["person_id"].to_list() == ["a", "b"]


def test_csv_usage_config_reads_a_table_without_weight_column(tmp_path):
    spec = yaml.safe_load((REPO / "conf" / "usage" / "csv.yaml").read_text())
    assert spec["columns"]["quantity"] is None  # the weight column is optional
    path = tmp_path / "no_weight.csv"
    path.write_text("user,item,timestamp\nu1,DB00945,2020-01-01\nu1,DB00316,2020-02-01\nu2,DB00945,not a date\n")
    usage = load_usage({**spec, "path": str(path)})
    assert usage.report.dropped == {"unparseable_start": 1}
    assert usage.events.select("person_id", "item").rows() == [("u1", "DB00945"), ("u1", "DB00316")]
    assert usage.events["quantity"].null_count() == 2
    # With the file's weight column mapped, it is read (and checked) as quantity.
    weighted = load_usage({**spec, "path": str(DATA / "generic.csv"), "columns": {**spec["columns"], **WEIGHT}})
    assert weighted.events["quantity"].to_list() == [1.0, 2.0, 1.0, 1.0]


def test_duplicates_are_counted_among_good_rows_only(tmp_path):
    # Rows 0 and 1 parse to the same values (quantity null) but row 0 is bad: row 1 is no duplicate of it.
    path = tmp_path / "dups.csv"
    path.write_text("user,item,timestamp,weight\nu1,DB00945,2020-01-01,abc\nu1,DB00945,2020-01-01,\n"
                    "u1,DB00945,2020-01-01,\nu1,DB00945,2020-01-01,abc\n")
    usage = read_generic(path, columns=WEIGHT)
    assert usage.report.bad_rows.sort("row").rows() == [(0, "unparseable_quantity"), (2, "duplicate_row"),
                                                           (3, "unparseable_quantity")]
    assert usage.events.height == 1


def test_missing_column_file_or_empty_file_fails_fast(tmp_path):
    with pytest.raises(KeyError, match=r"generic\.csv.*when \(for start\)"):
        read_generic(DATA / "generic.csv", columns={"start": "when"})
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_generic(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="empty"):
        read_generic(tmp_path / "empty.csv")
    with pytest.raises(ValueError, match="give a file path"):
        load_usage({"format": "mimic", "path": None})


def test_omop_mapping_via_ancestors_reports_unmapped_codes(catalog):
    usage = _omop(concept=DATA / "omop_concept.csv", concept_ancestor=DATA / "omop_concept_ancestor.csv")
    events, report = map_events(usage.events, usage.item_kind, catalog, "ingredient", usage.vocabulary)
    assert events.select("person_id", "item").rows() == [
        (1, "DB00945"), (1, "DB00316"), (2, "DB00945"), (2, "DB00766"), (2, "DB01060"), (4, "DB00316")]
    assert (report.codes, report.codes_mapped, report.events, report.events_mapped) == (5, 3, 7, 5)
    assert report.unmapped.select("code", "reason").sort("code").rows() == [
        ("40213160", "no catalog name or synonym in the text"), ("99999999", "concept not in CONCEPT table")]
    summary = report.to_dict()
    assert summary["events_mapped_pct"] == pytest.approx(71.43) and summary["unmapped_codes"] == 2


def test_omop_mapping_without_ancestors_parses_clinical_drug_names(catalog):
    usage = _omop(concept=DATA / "omop_concept.csv")
    events, report = map_events(usage.events, usage.item_kind, catalog, "ingredient", usage.vocabulary)
    assert set(events.filter(pl.col("person_id") == 2)["item"]) == {"DB00945", "DB01060", "DB00766"}
    assert report.methods == {"ngram": 3}
    _, no_vocabulary = map_events(usage.events, usage.item_kind, catalog)
    assert no_vocabulary.codes_mapped == 0 and set(no_vocabulary.unmapped["reason"]) == {"no CONCEPT table given"}


@pytest.mark.parametrize(("text", "drug_id", "method"), [
    ("Aspirin", "DB00945", "synonym"),
    ("Ethinyl Estradiol", "DB00977", "squashed"),
    ("Norethindrone", "DB00717", "alias"),
    ("medroxyprogesterone", "DB00603", "extension"),
    ("Sodium Chloride 0.9%  Flush", "DB09153", "ngram"),
])
def test_name_matching_steps(catalog, text, drug_id, method):
    match = catalog.match_text(text)
    assert (match.drug_ids, match.method) == ((drug_id,), method)


def test_free_text_mapping_and_unmatched_parts(catalog):
    match = catalog.match_text("Amoxicillin 250 MG / Clavulanate 125 MG / Inert Ingredients 1 MG")
    assert match.drug_ids == ("DB01060", "DB00766") and match.unmatched == ("inert ingredients 1 mg",)
    assert catalog.match_text("Bag").drug_ids == ()
    usage = read_mimic_prescriptions(DATA / "mimic_prescriptions.csv")
    events, report = map_events(usage.events, usage.item_kind, catalog)
    assert events["item"].to_list() == ["DB00316", "DB09153", "DB00945", "DB11089"]
    assert sorted(report.unmapped["code"]) == ["Bag", "Heparin"]


def test_drug_ids_and_atc_granularity(catalog):
    usage = read_generic(DATA / "generic.csv", columns=WEIGHT)
    events, report = map_events(usage.events, "drug_id", catalog, "atc3")
    assert report.unmapped.select("code", "reason").rows() == [("DB99999", "not a catalog drug_id")]
    # Aspirin's eight level-4 codes fall in seven level-3 classes (B01AC, B01AF -> B01A): one event each.
    u2 = events.filter(pl.col("person_id") == "u2")
    assert u2.height == 7 and set(u2["item"]) == {"A01A", "B01A", "C07F", "C10B", "M01B", "N02A", "N02B"}
    assert events.filter(pl.col("person_id") == "u1").height == 7 + 2  # + acetaminophen: N02A, N02B
    items = catalog.items("atc1")
    assert items.height == 14 and items["item"].str.len_chars().max() == 1
    with pytest.raises(ValueError, match="level-4"):
        catalog.items("atc5")


def test_eunomia_mapping_coverage(catalog):
    usage = load_usage(EUNOMIA)
    assert usage.report.rows_read == 67_707 and usage.report.dropped == {"duplicate_row": 29}
    events, report = map_events(usage.events, usage.item_kind, catalog, "ingredient", usage.vocabulary)
    # 101 of the 113 drug concepts map; the 12 others are 10 CVX vaccines, alteplase and heparin.
    assert (report.codes, report.codes_mapped, report.events_mapped) == (113, 101, 41_716)
    assert report.items_used == 83
    assert set(report.unmapped.filter(~pl.col("code").str.starts_with("40213"))["name"]) == {
        "alteplase 100 MG Injection", "heparin"}


def test_omop_person_and_conditions():
    conditions, report = read_omop_conditions(resolve_path(dataset="eunomia_condition_occurrence"))
    assert (report.rows_read, report.dropped) == (65_332, {})
    assert conditions["item"].n_unique() == 80 and conditions["end"].null_count() == 8_652
    person, _ = read_omop_person(resolve_path(dataset="eunomia_person"))
    assert person.height == 2_694 and set(person["gender_concept_id"]) == {8507, 8532}
    with pytest.raises(KeyError, match=r"omop_concept\.csv.*person_id"):
        read_omop_person(DATA / "omop_concept.csv")


def test_load_usage_reads_the_patient_tables_it_is_given():
    given = load_usage({"format": "omop", "tables": {
        **EUNOMIA["tables"], "person": {"dataset": "eunomia_person"},
        "condition_occurrence": {"dataset": "eunomia_condition_occurrence"}}})
    assert given.patients.persons.height == 2_694 and given.patients.conditions.columns == ["person_id", "item", "start"]
    assert given.condition_report.rows_read == 65_332 and len(given.files) == 5
    released = release_events(given)  # once mapped, recommend.run keeps everything but the source events
    assert released.events.height == 0 and released.events.schema == given.events.schema
    assert released.report is given.report and released.patients is given.patients and given.events.height > 0
    left_null = load_usage({"format": "omop", "tables": {**EUNOMIA["tables"], "person": {"path": None}}})
    assert left_null.patients.persons is None and left_null.condition_report is None and len(left_null.files) == 3
    with pytest.raises(ValueError, match="usage.tables.drug_exposure: give the OMOP DRUG_EXPOSURE file"):
        load_usage({"format": "omop", "tables": {"drug_exposure": {"path": None}}})


def test_a_path_given_replaces_a_shipped_eunomia_table(tmp_path):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    mine = tmp_path / "person.csv"
    mine.write_text("person_id,gender_concept_id,year_of_birth\n1,8532,1950\n2,8507,1980\n")
    with initialize_config_dir(str(Path(__file__).parents[1] / "conf"), version_base="1.3"):
        cfg = compose("recommend", overrides=["usage=eunomia", f"usage.tables.person.path={mine}"])
    usage = load_usage(OmegaConf.to_container(cfg.usage, resolve=True))
    assert usage.patients.persons["person_id"].to_list() == [1, 2]
    assert mine in usage.files  # fingerprinted in the run's report


def test_person_rows_that_are_not_integers_are_reported_by_row_and_reason(tmp_path):
    bad = tmp_path / "person.csv"
    bad.write_text("person_id,gender_concept_id,year_of_birth\n1,8532,1950\nabc,8507,1980\n,8507,1970\n"
                   "4,female,1960\n5,,\n")
    persons, report = read_omop_person(bad)
    assert persons["person_id"].to_list() == [1, 5] and persons["year_of_birth"].to_list() == [1950, None]
    assert report.bad_rows.rows() == [(1, "person_id_not_an_integer"), (2, "missing_person_id"),
                                      (3, "gender_concept_id_not_an_integer")]
    assert (report.rows_read, report.rows_kept) == (5, 2) and report.dropped == {
        "gender_concept_id_not_an_integer": 1, "missing_person_id": 1, "person_id_not_an_integer": 1}
