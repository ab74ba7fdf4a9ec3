"""Drug-drug interaction screen: the shipped ANSM table, flag / remove on hand-made recommendations,
user tables and their errors, and the recommend app's run path."""

import json
from pathlib import Path

import polars as pl
import pytest

from featurestore.datasets import load_dataset
from featurestore.datasets.clinical import fold_accents, map_ansm_substances
from recommend.run import run_recommend
from recommend.safety import InteractionSpec, interaction_hits, screen_fold, screen_recommendations, validate_interactions
from tests.test_recommend_run import tiny_omop_config

AMIODARONE, WARFARIN, SOTALOL, SIMVASTATIN = "DB01118", "DB00682", "DB00489", "DB00641"
METFORMIN, ACETAMINOPHEN, AMOXICILLIN, ASPIRIN = "DB00331", "DB00316", "DB01060", "DB00945"
CATALOG_IDS = frozenset(load_dataset("drugs")["drug_id"])


def ansm_pair(a: str, b: str) -> dict:
    pairs = load_dataset("ddi_ansm")
    x, y = sorted([a, b])
    return pairs.filter((pl.col("drug_a") == x) & (pl.col("drug_b") == y)).row(0, named=True)


def test_ansm_table_expands_classes_and_keeps_the_french_text():
    # AMIODARONE + ANTIVITAMINES K (a class: warfarin is a member): précaution d'emploi.
    pair = ansm_pair(AMIODARONE, WARFARIN)
    assert (pair["severity"], pair["ansm_a"], pair["ansm_b"]) == ("precaution", "ANTIVITAMINES K", "AMIODARONE")
    assert pair["levels"] == ["Précaution d'emploi"]
    assert pair["mechanism"].startswith("Augmentation de l'effet de l'antivitamine K")
    # An entry listing several levels keeps the most severe: ANTIARYTHMIQUES + AUTRES ANTIARYTHMIQUES.
    pair = ansm_pair(AMIODARONE, SOTALOL)
    assert pair["severity"] == "contraindicated" and pair["levels"][0] == "CONTRE-INDICATION"
    table = load_dataset("ddi_ansm")
    assert table.filter(pl.col("drug_a") >= pl.col("drug_b")).height == 0  # unordered, each pair once


def test_french_substance_names_map_to_catalog_drugs():
    catalog = load_dataset("drugs")
    substances = ["amiodarone", "warfarine", "acide valproique", "sodium (chlorure de)", "adrenaline", "lithium",
                  "adalimumab"]
    mapped = map_ansm_substances([fold_accents(s) for s in substances], catalog, {}, {})
    names = dict(catalog.select("drug_id", "name").iter_rows())
    assert {s: ([names[d] for d in ids], route) for s, (ids, route) in mapped.items()} == {
        "amiodarone": (["Amiodarone"], "name"),
        "warfarine": (["Warfarin"], "french rewrite"),
        "acide valproique": (["Valproic acid"], "french rewrite"),
        "sodium (chlorure de)": (["Sodium chloride"], "french rewrite"),
        "adrenaline": (["Epinephrine"], "alias"),
        "lithium": (["Lithium cation", "Lithium hydroxide", "Lithium citrate", "Lithium carbonate"], "salt forms"),
        "adalimumab": ([], "none"),  # an antibody: not in the small-molecule catalog
    }
    assert fold_accents("Œstrogènes conjugués") == "oestrogenes conjugues"


@pytest.fixture
def recommendations():
    """Patient 1 takes amiodarone, patient 2 amoxicillin; both get the same five candidates (top-3 + 2 deeper)."""
    drugs = [SOTALOL, WARFARIN, METFORMIN, ACETAMINOPHEN, SIMVASTATIN]
    recs = pl.DataFrame({"person_id": [1] * 5 + [2] * 5, "rank": list(range(1, 6)) * 2, "drug_id": drugs * 2,
                         "score": [5.0, 4.0, 3.0, 2.0, 1.0] * 2}, schema_overrides={"rank": pl.Int32})
    current = pl.DataFrame({"person_id": [1, 2], "drug_id": [AMIODARONE, AMOXICILLIN]})
    return recs, current


def test_flag_keeps_rows_and_names_the_interacting_drug(recommendations):
    recs, current = recommendations
    table, report = screen_recommendations(recs, current, InteractionSpec(), top_k=3)
    assert table.height == 6 and table.columns[-3:] == ["interaction_severity", "interacts_with",
                                                         "interaction_mechanism"]
    one = table.filter(pl.col("person_id") == 1)
    assert one["interaction_severity"].to_list() == ["contraindicated", "precaution", None]
    assert one["interacts_with"].to_list() == [[AMIODARONE], [AMIODARONE], None]
    assert "antivitamine K" in one["interaction_mechanism"][1][0]
    assert table.filter(pl.col("person_id") == 2)["interaction_severity"].null_count() == 3
    # Simvastatin (rank 5, precaution) is beyond the top 3: not counted as shown.
    assert report["flagged"] == {"contraindicated": 1, "not_advised": 0, "precaution": 1}
    assert (report["patients_with_conflicts"], report["patients"], report["pairs"]) == (1, 2, 32_251)


def test_remove_reranks_and_backfills_from_deeper_candidates(recommendations, tmp_path):
    recs, current = recommendations
    spec = InteractionSpec(action="remove", min_severity="contraindicated", backfill=2)
    assert spec.depth(3) == 5 and InteractionSpec().depth(3) == 3
    table, report = screen_recommendations(recs, current, spec, top_k=3, conflicts_path=tmp_path / "c.parquet")
    assert table.filter(pl.col("person_id") == 1).select("rank", "drug_id").rows() == [
        (1, WARFARIN), (2, METFORMIN), (3, ACETAMINOPHEN)]  # sotalol removed, acetaminophen moves up
    assert table.filter(pl.col("person_id") == 2)["drug_id"].to_list() == [SOTALOL, WARFARIN, METFORMIN]
    assert report["removed"] == {"contraindicated": 1} and report["patients_short_of_top_k"] == 0
    # At precaution, warfarin and simvastatin go too: patient 1 is left with two drugs, and it says so.
    table, report = screen_recommendations(recs, current, InteractionSpec(action="remove", backfill=2), top_k=3,
                                           conflicts_path=tmp_path / "c.parquet")
    assert table.filter(pl.col("person_id") == 1)["drug_id"].to_list() == [METFORMIN, ACETAMINOPHEN]
    assert report["removed"] == {"contraindicated": 1, "not_advised": 0, "precaution": 1}
    assert (report["conflicting_backfill_candidates"], report["patients_short_of_top_k"]) == (1, 1)
    conflicts = pl.read_parquet(tmp_path / "c.parquet")
    assert conflicts.select("person_id", "rank", "drug_id", "shown").rows() == [
        (1, 1, SOTALOL, True), (1, 2, WARFARIN, True), (1, 5, SIMVASTATIN, False)]


def test_user_table_and_its_errors_name_the_row(recommendations, tmp_path):
    recs, current = recommendations
    user = tmp_path / "pairs.csv"
    user.write_text(f"drug_a,drug_b,severity,mechanism\n{METFORMIN},{AMOXICILLIN},not_advised,made up for a test\n")
    table, report = screen_recommendations(recs, current, InteractionSpec(table=str(user)), top_k=3,
                                           known_drugs=CATALOG_IDS)
    flagged = table.filter(pl.col("interaction_severity").is_not_null())
    assert flagged.select("person_id", "drug_id", "interaction_severity").rows() == [(2, METFORMIN, "not_advised")]
    assert flagged["interaction_mechanism"].to_list() == [["made up for a test"]] and report["pairs"] == 1

    bad = pl.DataFrame({"drug_a": [METFORMIN, METFORMIN, "", WARFARIN, "DB99999"],
                        "drug_b": [WARFARIN, WARFARIN, WARFARIN, WARFARIN, WARFARIN],
                        "severity": ["precaution", "high", "precaution", "precaution", "precaution"],
                        "mechanism": ["ok", "x", "x", "x", "x"]})
    message = ("pairs.csv: 4 bad interaction row\\(s\\):\n  row 2: unknown severity 'high' \\(use one of "
               "contraindicated, not_advised, precaution, take_into_account\\)\n  row 3: drug_a is empty\n"
               "  row 4: drug_a and drug_b are the same drug 'DB00682'\n  row 5: drug_a 'DB99999' is not a catalog")
    with pytest.raises(ValueError, match=message):
        validate_interactions(bad, "pairs.csv", CATALOG_IDS)
    with pytest.raises(KeyError, match=r"missing column\(s\) \['severity'\]"):
        validate_interactions(bad.drop("severity"), "pairs.csv")
    with pytest.raises(ValueError, match="unknown severity 'severe'"):
        InteractionSpec(min_severity="severe")
    with pytest.raises(ValueError, match="action must be one of"):
        InteractionSpec(action="warn")


def test_pair_listed_twice_keeps_its_worst_severity():
    pairs = pl.DataFrame({"drug_a": [WARFARIN, AMIODARONE], "drug_b": [AMIODARONE, WARFARIN],
                          "severity": ["take_into_account", "not_advised"], "mechanism": ["mild", "worse"]})
    recs = pl.DataFrame({"person_id": [1], "drug_id": [WARFARIN]})
    hits = interaction_hits(recs, pl.DataFrame({"person_id": [1], "drug_id": [AMIODARONE]}), pairs,
                            "take_into_account")
    assert hits.row(0) == (1, WARFARIN, "not_advised", [AMIODARONE], ["worse"])


def test_off_and_atc_granularity_are_reported_not_silent(recommendations, tmp_path):
    recs, current = recommendations
    table, report = screen_recommendations(recs, current, InteractionSpec.from_config({"table": None}), top_k=3)
    assert table.height == 6 and report == {"table": None}
    table, report = screen_fold(recs, None, InteractionSpec(), 3, "atc3", CATALOG_IDS, tmp_path)
    assert table.height == 6 and "needs catalog drugs (catalog.granularity=ingredient)" in report["status"]


def test_recommend_run_removes_a_user_pair_and_backfills(tmp_path):
    # Tiny OMOP cohort: both patients took aspirin; popularity ties every other drug at score 0. A first
    # run (a user table whose pair never fires) gives the rank-1 drug; a second makes it contraindicated
    # with aspirin.
    def run(pair: str, folder: str) -> tuple[pl.DataFrame, dict]:
        user = tmp_path / f"{folder}.csv"
        user.write_text(f"drug_a,drug_b,severity,mechanism\n{pair},contraindicated,test pair\n")
        cfg = tiny_omop_config("recommender=popularity", "output.exclude=history", f"interactions.table={user}",
                               "interactions.action=remove", "interactions.against=history",
                               "interactions.min_severity=contraindicated")
        result = run_recommend(cfg, tmp_path / folder)
        report = json.loads((tmp_path / folder / "report.json").read_text())["interactions"]
        assert result["report"]["interactions"] == report
        return pl.read_parquet(tmp_path / folder / "recommendations.parquet"), report

    recs, report = run(f"{METFORMIN},{WARFARIN}", "first")
    assert report["removed"] == {"contraindicated": 0}
    first = recs.filter(pl.col("rank") == 1)["drug_id"].unique().to_list()
    assert len(first) == 1 and first[0] != ASPIRIN
    recs, report = run(f"{ASPIRIN},{first[0]}", "second")
    assert report["removed"] == {"contraindicated": 2} and report["patients_short_of_top_k"] == 0
    assert first[0] not in recs["drug_id"].to_list() and recs.group_by("person_id").len()["len"].to_list() == [10, 10]
    assert pl.read_parquet(tmp_path / "second" / "interactions.parquet").height == 2
    data = json.loads((tmp_path / "second" / "run.json").read_text())["data"]  # the user table is fingerprinted
    assert data[str(tmp_path / "second.csv")]["bytes"] == (tmp_path / "second.csv").stat().st_size


def test_recommend_run_flags_with_the_ansm_table_by_default(tmp_path):
    cfg = tiny_omop_config("recommender=popularity")
    run_recommend(cfg, tmp_path)
    report = json.loads((Path(tmp_path) / "report.json").read_text())["interactions"]
    assert (report["table"], report["action"], report["min_severity"], report["pairs"]) == (
        "ansm", "flag", "precaution", 32_251)
    recs = pl.read_parquet(tmp_path / "recommendations.parquet")
    assert {"interaction_severity", "interacts_with", "interaction_mechanism"} <= set(recs.columns)
    data = json.loads((Path(tmp_path) / "run.json").read_text())["data"]
    assert any(path.endswith("ddi_ansm.parquet") for path in data)
