"""The synthetic OMOP usage simulator: determinism, invariants, realism signals, ingestion, chunked writing.

The invariant tests run twice: on one chunk and on chunks smaller than the cohort (``CHUNK``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from featurestore.datasets import load_dataset
from recommend.ingest import load_usage, read_omop_conditions, read_omop_person
from recommend.interactions import Weighting, build_interactions
from recommend.mapping import DrugCatalog, map_events
from recommend.simulate import (
    FILES, SIDECAR, SyntheticOMOP, _ClassSampler, cached_cohort, chunk_sizes, cohort_settings, load_condition_atc,
    simulate, simulate_chunks, validate_condition_atc, write_synthetic,
)

ROOT = Path(__file__).resolve().parents[1]
N = 3_000
CHUNK = 700  # N = 4 full chunks + one of 200


def _compose(name: str, overrides: list[str]) -> dict:
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(name, overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)


def _params(**overrides) -> dict:
    return _compose("simulate", [f"{k}={v}" for k, v in {"n_patients": N, **overrides}.items()])


@pytest.fixture(scope="module")
def drugs() -> pl.DataFrame:
    return load_dataset("drugs")


@pytest.fixture(scope="module", params=[None, CHUNK], ids=["one_chunk", "chunked"])
def params(request) -> dict:
    """The default chunk_size (>= N: one chunk), or CHUNK (several chunks, the last one short)."""
    return _params() if request.param is None else _params(chunk_size=request.param)


@pytest.fixture(scope="module")
def data(params, drugs) -> SyntheticOMOP:
    return simulate(params, drugs)


@pytest.fixture(scope="module")
def written(params, drugs, tmp_path_factory) -> Path:
    """The files as the app writes them: the chunks streamed by ``write_synthetic``."""
    out = tmp_path_factory.mktemp("synthetic")
    write_synthetic(simulate_chunks(params, drugs), out, params)
    return out


def test_same_seed_same_tables_other_seed_other_tables(params, data, drugs):
    again = simulate(params, drugs)
    other = simulate({**params, "seed": 1}, drugs)
    for name, table in data.tables().items():
        assert table.equals(again.tables()[name]), name
        assert not table.equals(other.tables()[name]), name


def test_exposures_respect_birth_diagnosis_window_and_dates(params, data):
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


def test_refills_of_a_course_follow_days_supply(params, data):
    early = params["treatment"]["early_max_days"]
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


def test_everything_is_labelled_synthetic(data, written):  # and no temp file is left
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
        "usage=simulated", f"usage.cohort={written}"])["usage"]
    usage = load_usage(spec)
    assert usage.item_kind == "drug_id" and usage.report.rows_read == data.drug_exposure.height
    assert usage.patients.persons.height == N and usage.patients.conditions.height == data.condition_occurrence.height
    # no CONCEPT table: conditions are named by the source value the simulator writes
    assert usage.patients.label("condition=320128") == "diagnosis: hypertension"
    catalog = DrugCatalog(drugs)
    events, report = map_events(usage.events, usage.item_kind, catalog)
    assert report.events_mapped == report.events and report.items_used > 100
    matrix = build_interactions(events, events["person_id"].unique().sort(), catalog.items("ingredient")["item"],
                                Weighting(scheme="days"))
    assert matrix.matrix.nnz > 0 and matrix.shape[1] == drugs.height
    person, _ = read_omop_person(written / FILES["person"])
    assert person.height == N and person.columns[-1] == "care_site_id"  # OMOP PERSON column, null without practices
    conditions, cond_report = read_omop_conditions(written / FILES["condition_occurrence"])
    assert conditions.height == data.condition_occurrence.height and cond_report.dropped == {}


def test_hydra_app_writes_the_tables(tmp_path):
    out = tmp_path / "app"
    result = subprocess.run(
        [sys.executable, "-m", "recommend.simulate", "n_patients=200", "chunk_size=64", "seed=3", f"out_dir={out}",
         f"hydra.run.dir={tmp_path / 'hydra'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "SYNTHETIC" in result.stdout and "4 chunk(s)" in result.stdout
    assert pl.read_parquet(out / FILES["person"])["person_id"].to_list() == list(range(1, 201))
    assert sorted(p.name for p in out.iterdir()) == sorted([*FILES.values(), SIDECAR])  # no temp file left


# ---------------------------------------------------------------------------------- chunked generation
def test_chunk_sizes():
    assert chunk_sizes(N, CHUNK) == [700, 700, 700, 700, 200]
    assert chunk_sizes(N, N) == chunk_sizes(N, 10 * N) == chunk_sizes(N, None) == [N]
    assert chunk_sizes(1, CHUNK) == [1]
    for n, size in ((0, CHUNK), (N, 0), (N, -5)):
        with pytest.raises(ValueError, match=">= 1"):
            chunk_sizes(n, size)


def test_chunks_are_bounded_and_ids_continue_across_chunks(drugs):
    chunks = list(simulate_chunks(_params(chunk_size=CHUNK), drugs))
    assert [c.person.height for c in chunks] == chunk_sizes(N, CHUNK)
    for column, table in (("person_id", "person"), ("condition_occurrence_id", "condition_occurrence"),
                          ("drug_exposure_id", "drug_exposure"), ("course_id", "drug_exposure")):
        ranges = [(getattr(c, table)[column].min(), getattr(c, table)[column].max()) for c in chunks]
        assert ranges[0][0] == 1 and all(low == high + 1 for (_, high), (low, _) in zip(ranges, ranges[1:])), column


def test_ids_are_unique_and_dense_across_the_cohort(data):
    for table, column in (("person", "person_id"), ("condition_occurrence", "condition_occurrence_id"),
                          ("drug_exposure", "drug_exposure_id")):
        ids = getattr(data, table)[column]
        assert ids.to_list() == list(range(1, ids.len() + 1)), column  # unique, dense, in file order
    ex = data.drug_exposure
    courses = ex.group_by("course_id").agg(pl.col("person_id").n_unique(), pl.col("indication_condition_occurrence_id")
                                           .n_unique().alias("indications"))
    assert (courses["person_id"] == 1).all() and (courses["indications"] == 1).all()  # no course id reused
    assert ex["course_id"].min() == 1 and ex["course_id"].max() == courses.height  # every course has a dispensing
    assert ex.select(pl.col("person_id").is_sorted()).item()  # the whole-cohort sort order, chunks in person order
    assert data.condition_occurrence.select(pl.col("person_id").is_sorted()).item()


def test_files_hold_the_cohort_and_the_sidecar_counts_its_rows(params, data, written):
    sidecar = json.loads((written / SIDECAR).read_text())
    assert sidecar["chunks"] == len(chunk_sizes(N, params["chunk_size"]))
    assert sidecar["parameters"]["chunk_size"] == params["chunk_size"]
    assert sidecar["distinct_drugs"] == data.drug_exposure["drug_source_value"].n_unique()
    for name, file in FILES.items():
        meta = pq.ParquetFile(written / file).metadata
        assert sidecar["tables"][name] == {"file": file, "rows": meta.num_rows}
        assert meta.num_row_groups >= sidecar["chunks"]  # appended chunk by chunk
        assert pl.read_parquet(written / file).equals(data.tables()[name]), name  # streamed == in memory


def test_same_seed_and_chunk_size_same_files_other_chunk_size_other_draw(tmp_path, drugs):
    def files(chunk_size: int, name: str) -> dict[str, bytes]:
        params = _params(chunk_size=chunk_size)
        write_synthetic(simulate_chunks(params, drugs), tmp_path / name, params)
        return {file: (tmp_path / name / file).read_bytes() for file in FILES.values()}

    first = files(CHUNK, "a")
    assert files(CHUNK, "b") == first  # byte for byte
    other = files(1_000, "c")
    assert all(other[file] != first[file] for file in FILES.values())  # chunk_size is part of the draw
    # A chunk depends on (seed, chunk_size, its index) only: a smaller cohort is a prefix of a larger one.
    small = simulate(_params(n_patients=2 * CHUNK, chunk_size=CHUNK), drugs)
    whole = pl.read_parquet(tmp_path / "a" / FILES["person"])
    assert small.person.equals(whole.head(2 * CHUNK))


def test_a_failed_run_leaves_no_partial_or_temp_file(tmp_path, drugs, written):
    params = _params(chunk_size=CHUNK)
    out = tmp_path / "out"
    out.mkdir()
    (out / FILES["person"]).write_bytes(b"earlier run")

    def failing():
        chunks = simulate_chunks(params, drugs)
        yield next(chunks)
        raise RuntimeError("killed mid-run")

    with pytest.raises(RuntimeError, match="killed mid-run"):
        write_synthetic(failing(), out, params)
    assert [p.name for p in out.iterdir()] == [FILES["person"]]  # no temp file, no other table, no sidecar
    assert (out / FILES["person"]).read_bytes() == b"earlier run"  # the earlier file is untouched
    with pytest.raises(ValueError, match="no chunk"):
        write_synthetic(iter([]), out, params)
    assert [p.name for p in out.iterdir()] == [FILES["person"]]


def _acute_counts(data: SyntheticOMOP) -> pl.DataFrame:
    """Per patient (every one, zeros included): acute episodes, and chronic conditions diagnosed."""
    chronic = set(_params()["chronic"])
    per = data.condition_occurrence.group_by("person_id").agg(
        acute=(~pl.col("condition_source_value").is_in(chronic)).sum(),
        chronic=pl.col("condition_source_value").is_in(chronic).sum())
    return data.person.select("person_id").join(per, on="person_id", how="left").fill_null(0)


ACUTE = ("respiratory_infection", "urinary_tract_infection", "pain")
NO_FRAILTY = {"population.acute_frailty_shape": "null", **{f"acute.{name}.loading": 0 for name in ACUTE}}


def test_acute_frailty_overdisperses_episodes_and_loading_ties_them_to_comorbidity(drugs):
    """Without frailty and loadings: Poisson counts (variance about the mean; the sex rate ratios add a little) and
    no link to chronic conditions. The default (Gamma frailty, shape 0.45, loadings 0.6) makes the variance several
    times the mean at about the same mean, and multimorbid patients have more episodes."""
    plain = _acute_counts(simulate(_params(**NO_FRAILTY), drugs))
    frail = _acute_counts(simulate(_params(), drugs))

    def dispersion(counts: pl.DataFrame) -> float:
        return counts["acute"].var() / counts["acute"].mean()

    def multimorbid_excess(counts: pl.DataFrame) -> float:
        return (counts.filter(pl.col("chronic") >= 3)["acute"].mean()
                / counts.filter(pl.col("chronic") == 0)["acute"].mean())

    assert dispersion(plain) < 1.6
    assert dispersion(frail) > 5.0
    assert frail["acute"].mean() == pytest.approx(plain["acute"].mean(), rel=0.2)
    assert multimorbid_excess(plain) == pytest.approx(1.0, abs=0.15)
    assert multimorbid_excess(frail) > 1.5
    with pytest.raises(ValueError, match=r"acute_frailty_shape must be > 0 .* got 0"):
        simulate(_params(**{"population.acute_frailty_shape": 0}), drugs)


def test_default_antibiotic_use_matches_uk_primary_care(drugs, tmp_path):
    """The calibrated defaults reproduce Shallcross et al. 2017 (benchmarks/simulator_calibration.py) within the
    noise of 3,000 patients; the uncalibrated acute model (no frailty, no loadings, a third of the rates) did not."""
    from benchmarks.simulator_calibration import antibiotic_statistics

    params = _params()
    write_synthetic(simulate_chunks(params, drugs), tmp_path, params)
    stats = antibiotic_statistics(tmp_path)
    assert stats["courses_per_patient_year"] == pytest.approx(0.67, abs=0.08)
    assert stats["share_with_any_in_a_year"] == pytest.approx(0.301, abs=0.04)
    assert stats["share_of_courses_to_top_9pct"] == pytest.approx(0.53, abs=0.06)
    assert stats["rate_ratio_any_chronic"] > 1.2 and stats["rate_ratio_women"] > 1.3


def test_a_cached_cohort_is_reused_only_for_the_same_settings(drugs, tmp_path):
    params = _compose("simulate", ["n_patients=200"])
    path = cached_cohort(tmp_path, params, drugs) / FILES["drug_exposure"]
    made = (tmp_path / SIDECAR).stat().st_mtime_ns
    assert cached_cohort(tmp_path, {**params, "out_dir": "elsewhere"}, drugs) == tmp_path  # where it was asked for
    assert (tmp_path / SIDECAR).stat().st_mtime_ns == made
    other = {**params, "population": {**params["population"], "acute_frailty_shape": None}}  # e.g. older defaults
    cached_cohort(tmp_path, other, drugs)
    assert json.loads((tmp_path / SIDECAR).read_text())["parameters"]["population"]["acute_frailty_shape"] is None
    assert pl.read_parquet(path).height > 0


def _top_drug_share_by_practice(data: SyntheticOMOP, atc4: str, drugs: pl.DataFrame) -> pl.DataFrame:
    """Per practice: the share of the class's national top drug among its first dispensings of the class."""
    members = drugs.select("drug_id", atc4="atc_codes").explode("atc4").filter(pl.col("atc4") == atc4)["drug_id"]
    firsts = (data.drug_exposure.filter(pl.col("drug_source_value").is_in(members.to_list()))
              .group_by("course_id").agg(pl.col("person_id").first(), pl.col("drug_source_value").first())
              .join(data.person.select("person_id", "care_site_id"), on="person_id"))
    top = firsts["drug_source_value"].value_counts(sort=True)["drug_source_value"][0]
    return firsts.group_by("care_site_id").agg(share=(pl.col("drug_source_value") == top).mean(), n=pl.len())


def test_practices_give_each_practice_its_own_shares_and_null_changes_nothing(drugs):
    base = simulate(_params(n_patients=2_000), drugs)
    off = _params(n_patients=2_000)
    assert off["practices"] is None and base.person["care_site_id"].null_count() == 2_000
    without_key = {k: v for k, v in off.items() if k != "practices"}
    assert cohort_settings(without_key) == cohort_settings(off)  # cohorts made before practices still match
    assert simulate(without_key, drugs).drug_exposure.equals(base.drug_exposure)
    spread = {}
    for concentration in (0.5, 1e6):
        data = simulate(_params(n_patients=2_000, practices=f"{{size:500,concentration:{concentration}}}"), drugs)
        assert sorted(data.person["care_site_id"].unique()) == [1, 2, 3, 4]
        shares = _top_drug_share_by_practice(data, "J01CA", drugs)  # penicillins: respiratory infections
        assert shares["n"].min() > 300
        spread[concentration] = shares["share"].std()
        # Only which drug of a class changes: the same courses and classes as without practices.
        assert data.drug_exposure.height == base.drug_exposure.height
    assert spread[1e6] < 0.05 < 0.15 < spread[0.5]  # binomial noise only vs Dirichlet(0.5 x shares) between practices


def test_practice_shares_vary_as_calibrated_and_switches_leave_the_current_drug(drugs):
    sampler = _ClassSampler(np.random.default_rng(0), drugs, load_condition_atc(None), 1.5)
    sampler.with_practices(np.random.default_rng(1), 4_000, 37.0)
    c = sampler.classes.index("J01CA")
    p = sampler._weights(len(sampler.members[c]))[0]
    expected = np.sqrt(p * (1 - p) / 38.0)  # sd of a Dirichlet share: 7.9 points at p = 0.38
    assert sampler.practice_weights[c][:, 0].std() == pytest.approx(expected, rel=0.05)
    sampler.practice_weights[c][:] = 0.0
    sampler.practice_weights[c][:, 0] = 1.0  # every practice prescribes only the top drug
    current = np.zeros(500, dtype=np.int64)
    switched = sampler.other(np.random.default_rng(2), np.full(500, c), current, np.zeros(500, dtype=np.int64))
    assert switched.min() >= 1  # never the current drug: the national shares of the rest instead
    with pytest.raises(ValueError, match=r"practices needs size .* and concentration \(> 0\)"):
        simulate(_params(n_patients=10, practices="{size:0,concentration:37}"), drugs)
