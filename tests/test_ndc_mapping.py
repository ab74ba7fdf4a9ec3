"""MIMIC-IV prescriptions mapped by NDC first (FDA NDC directory, ``ndc_ingredients``), then by drug name."""

from pathlib import Path

import polars as pl
import pytest

from featurestore.datasets import load_dataset
from featurestore.datasets.clinical import normalize_ndc
from recommend.ingest import load_usage, read_mimic_prescriptions
from recommend.mapping import DrugCatalog, map_events

DATA = Path(__file__).parent / "data" / "recommend"
PRESCRIPTIONS = DATA / "mimic_prescriptions_ndc.csv"


@pytest.fixture(scope="module")
def catalog() -> DrugCatalog:
    return DrugCatalog(load_dataset("drugs"))


@pytest.mark.parametrize(("code", "expected"), [
    ("00904198261", "00904198261"),  # MIMIC's 11-digit form
    ("0904-1982-61", "00904198261"),  # 4-4-2
    ("12345-678-90", "12345067890"),  # 5-3-2
    ("12345-6789-1", "12345678901"),  # 5-4-1
    ("904198261", "00904198261"),  # an 11-digit code read as a number
    ("0", None), ("", None), ("12-34", None), ("123456789012", None), ("A0904198261", None),
])
def test_normalize_ndc(code, expected):
    assert normalize_ndc(code) == expected


def test_directory_holds_real_packages():
    table = load_dataset("ndc_ingredients")
    assert table["ndc"].str.len_chars().unique().to_list() == [11] and table["ndc"].is_unique().all()
    rows = table.filter(pl.col("ndc").is_in(["00904198261", "00056016801", "63323026201"])).rows()
    assert rows == [("00056016801", ["WARFARIN SODIUM"], ["DB00682"]), ("00904198261", ["ACETAMINOPHEN"], ["DB00316"]),
                    ("63323026201", ["HEPARIN SODIUM"], [None])]  # heparin: no small-molecule catalog entry


def test_ndc_first_then_name_and_unmapped_reported(catalog):
    usage = read_mimic_prescriptions(PRESCRIPTIONS, ndc="ndc")
    assert usage.item_kind == "ndc" and usage.report.dropped == {"missing_item": 1}
    assert usage.events["item"][:2].to_list() == ["00904198261|Acetaminophen", "00056016801|5 mg Tab"]
    events, report = map_events(usage.events, usage.item_kind, catalog, vocabulary=usage.vocabulary)
    assert events.select("person_id", "item").rows() == [
        (10001, "DB00316"),  # acetaminophen by NDC
        (10001, "DB00682"),  # warfarin by NDC: the text "5 mg Tab" names no drug
        (10001, "DB01118"),  # amiodarone, dashed 4-4-2 NDC
        (10002, "DB00945"),  # unknown NDC 99999999999: the name "Aspirin" (a synonym)
        (10002, "DB09153"),  # NDC 0 (none): sodium chloride from the text
        (10002, "DB00630"),  # Fosamax NDC: ALENDRONATE SODIUM -> alias alendronate -> alendronic acid
    ]
    assert report.methods == {"name after no NDC: ngram": 1, "name after unknown NDC: synonym": 1, "ndc": 4}
    assert report.unmapped.rows() == [
        ("12345678901|Bag", "Bag", 2,
         "NDC 12345678901 not in the FDA NDC directory; drug text: no catalog name or synonym in the text"),
        ("63323026201|Heparin", "Heparin", 1,
         "NDC 63323026201 substances not in catalog (heparin sodium); drug text: no catalog name or synonym in the text"),
    ]
    assert report.to_dict()["top_unmapped"][0]["code"] == "12345678901|Bag"


def test_hydra_mimic_spec_reads_ndc_and_names_a_missing_column(tmp_path):
    usage = load_usage({"format": "mimic", "path": str(PRESCRIPTIONS), "ndc": "ndc"})
    assert usage.item_kind == "ndc" and usage.files[-1].name == "ndc_ingredients.parquet"
    assert load_usage({"format": "mimic", "path": str(PRESCRIPTIONS), "ndc": None}).item_kind == "name"
    with pytest.raises(KeyError, match=r"missing column\(s\) ndc_code \(for ndc\)"):
        read_mimic_prescriptions(PRESCRIPTIONS, ndc="ndc_code")
