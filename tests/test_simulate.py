"""The synthetic OMOP usage simulator: determinism, invariants, realism signals, ingestion."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from featurestore.datasets import load_dataset
from recommend.ingest import load_usage, read_omop_conditions, read_omop_person
from recommend.interactions import Weighting, build_interactions
from recommend.mapping import DrugCatalog, map_events
from recommend.simulate import (
    FILES, SIDECAR, SyntheticOMOP, load_condition_atc, simulate, validate_condition_atc, write_synthetic,
)

ROOT = Path(__file__).resolve().parents[1]
N = 3_000


def _compose(name: str, overrides: list[str]) -> dict:
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(name, overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)


def _params(**overrides) -> dict:
    return _compose("simulate", [f"{k}={v}" for k, v in {"n_patients": N, **overrides}.items()])


@pytest.fixture(scope="module")
def drugs() -> pl.DataFrame:
    return load_dataset("drugs")


@pytest.fixture(scope="module")
def data(drugs) -> SyntheticOMOP:
    return simulate(_params(), drugs)


@pytest.fixture(scope="module")
def written(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    write_synthetic(data, out, _params())
    return out


def test_same_seed_same_tables_other_seed_other_tables(data, drugs):
    again = simulate(_params(), drugs)
    other = simulate(_params(seed=1), drugs)
    for name, table in data.tables().items():
        assert table.equals(again.tables()[name]), name
        assert not table.equals(other.tables()[name]), name


def test_exposures_respect_birth_diagnosis_window_and_dates(data):
    params = _params()
    ex = data.drug_exposure.join(
        data.person.select("person_id", "birth_datetime"), on="person_id"
    ).join(
        data.condition_occurrence.select(
            indication_condition_occurrence_id="condition_occurrence_id", person="person_id",
            diagnosed="condition_start_date"),
        on="indication_condition_occurrence_id",
    )
    assert ex.height == data.drug_exposure.height  # every exposure has its indication
    assert (ex["person"] == ex["person_id"]).all()
    assert (ex["drug_exposure_start_date"] >= ex["birth_datetime"].dt.date()).all()
    assert (ex["drug_exposure_start_date"] >= ex["diagnosed"]).all()
    assert (ex["drug_exposure_end_date"] >= ex["drug_exposure_start_date"]).all()
    start, end = (pl.lit(params[k]).str.to_date() for k in ("start_date", "end_date"))
    assert ex.select(pl.col("drug_exposure_start_date").is_between(start, end).all()).item()
    assert (ex["days_supply"] > 0).all() and (ex["quantity"] >= ex["days_supply"]).all()


def test_refills_of_a_course_follow_days_supply(data):
    early = _params()["treatment"]["early_max_days"]
    courses = data.drug_exposure.sort("course_id", "drug_exposure_start_date").with_columns(
        earliest=(pl.col("drug_exposure_start_date") + pl.duration(days=pl.col("days_supply") - early))
        .shift().over("course_id"),
        drugs=pl.col("drug_source_value").n_unique().over("course_id"),
    )
    refills = courses.drop_nulls("earliest")
    assert refills.height > data.drug_exposure.height / 2  # chronic courses do refill
    assert (refills["drug_exposure_start_date"] >= refills["earliest"]).all()
    assert (courses["drugs"] == 1).all()  # a switch starts a new course


def test_switches_and_add_ons_exist(data):
    per_indication = data.drug_exposure.group_by("indication_condition_occurrence_id").agg(
        pl.col("drug_source_value").n_unique().alias("drugs"), pl.col("course_id").n_unique().alias("courses"))
    assert (per_indication["drugs"] >= 2).sum() > 50  # switched within the class or escalated
    assert (per_indication["courses"] >= per_indication["drugs"]).all()


def test_every_drug_is_a_catalog_drug_and_mapping_is_valid(data, drugs):
    assert set(data.drug_exposure["drug_source_value"]) <= set(drugs["drug_id"])
    assert data.drug_exposure["drug_source_value"].n_unique() > 100
    assert data.mapping_report["conditions_without_drugs"] == []
    mapping = load_condition_atc()
    assert mapping["rationale"].str.len_chars().min() > 10
    with pytest.raises(ValueError, match="not in the drug catalog.*Z99ZZ"):
        validate_condition_atc(
            pl.concat([mapping, mapping.head(1).with_columns(atc4=pl.lit("Z99ZZ"))]), drugs, ["hypertension"])
    with pytest.raises(ValueError, match="first_line.*scurvy"):
        validate_condition_atc(mapping, drugs, ["scurvy"])
    wrong = mapping.with_columns(preferred=pl.when(pl.col("atc4") == "C10AA").then(pl.lit("Metformin"))
                                 .otherwise("preferred"))
    with pytest.raises(ValueError, match=r"\['Metformin'\] are not catalog drugs of C10AA"):
        simulate(_params(n_patients=10), drugs, wrong)


def test_everything_is_labelled_synthetic(data, written):
    for table in data.tables().values():
        assert table["synthetic"].all()
    files = sorted(p.name for p in written.iterdir())
    assert files == sorted([*FILES.values(), SIDECAR]) and all("synthetic" in f for f in files)
    for name in FILES.values():
        assert pl.read_parquet(written / name)["synthetic"].all()
    sidecar = json.loads((written / SIDECAR).read_text())
    assert sidecar["synthetic"] is True and sidecar["seed"] == 0 and sidecar["parameters"]["n_patients"] == N
    assert sidecar["tables"]["drug_exposure"]["rows"] == data.drug_exposure.height


def test_respiratory_antibiotics_peak_in_winter(data):
    """Respiratory infections are treated with J01 antibiotics only (condition_atc.csv)."""
    starts = data.drug_exposure.join(
        data.condition_occurrence.filter(pl.col("condition_source_value") == "respiratory_infection")
        .select(indication_condition_occurrence_id="condition_occurrence_id"),
        on="indication_condition_occurrence_id",
    )["drug_exposure_start_date"].dt.month()
    winter, summer = starts.is_in([12, 1, 2]).mean(), starts.is_in([6, 7, 8]).mean()
    assert winter > 1.5 * summer


def test_prevalence_rises_with_age_and_conditions_cluster(data):
    age = data.person.select("person_id", age=2024 - pl.col("year_of_birth"))
    has = (
        data.condition_occurrence.group_by("person_id")
        .agg(ht=(pl.col("condition_source_value") == "hypertension").any(),
             dm=(pl.col("condition_source_value") == "type2_diabetes").any())
    )
    people = age.join(has, on="person_id", how="left").fill_null(False)
    assert people.filter(pl.col("age") >= 60)["ht"].mean() > 2 * people.filter(pl.col("age") < 40)["ht"].mean()
    older = people.filter(pl.col("age") >= 50)
    assert older.filter("dm")["ht"].mean() > older.filter(~pl.col("dm"))["ht"].mean()


def test_recommend_ingests_the_output_through_its_omop_path(written, data, drugs):
    spec = _compose("recommend", [
        "usage=simulated", f"usage.tables.drug_exposure.path={written / FILES['drug_exposure']}"])["usage"]
    usage = load_usage(spec)
    assert usage.item_kind == "drug_id" and usage.report.rows_read == data.drug_exposure.height
    catalog = DrugCatalog(drugs)
    events, report = map_events(usage.events, usage.item_kind, catalog)
    assert report.events_mapped == report.events and report.items_used > 100
    matrix = build_interactions(events, events["person_id"].unique().sort(), catalog.items("ingredient")["item"],
                                Weighting(scheme="days"))
    assert matrix.matrix.nnz > 0 and matrix.shape[1] == drugs.height
    assert read_omop_person(written / FILES["person"]).height == N
    conditions, cond_report = read_omop_conditions(written / FILES["condition_occurrence"])
    assert conditions.height == data.condition_occurrence.height and cond_report.dropped == {}


def test_hydra_app_writes_the_tables(tmp_path):
    out = tmp_path / "app"
    result = subprocess.run(
        [sys.executable, "-m", "recommend.simulate", "n_patients=200", "seed=3", f"out_dir={out}",
         f"hydra.run.dir={tmp_path / 'hydra'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "SYNTHETIC" in result.stdout
    assert pl.read_parquet(out / FILES["person"]).height == 200
