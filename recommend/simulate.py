"""SYNTHETIC drug-usage records in OMOP CDM shape: ``python -m recommend.simulate`` (Hydra app).

No real patient is behind any row. The generator draws patients (age, sex), chronic
conditions with age/sex-dependent prevalence and comorbidity (a shared latent risk),
and acute episodes (respiratory infections with winter seasonality, urinary tract
infections, pain). Drugs come from the real catalog through a condition → ATC level-4
mapping kept as data (``recommend/data/condition_atc.csv``: first_line, add_on or
alternative, the class's most prescribed drugs, one rationale per line); within a
class drugs are drawn with Zipf-like popularity (``practices``: each practice with its own shares around them,
off by default). Chronic treatment: start after diagnosis, refills every ``days_supply``
with gaps, discontinuation hazard per refill, switching within the class, add-on
escalation. Acute episodes get one short course; their counts are overdispersed by a per-patient
frailty (``population.acute_frailty_shape``) and tied to comorbidity (an acute condition's
``loading``), with rates, shape and loadings calibrated on UK primary-care antibiotic use
(``benchmarks/simulator_calibration.py``; ``acute_frailty_shape=null`` and loadings 0 turn both off).

Refill rule (tested): within a course, next start ≥ previous start + days_supply −
``early_max_days``. Every drug exposure starts on or after its indication's diagnosis.

Writes ``person_synthetic.parquet``, ``condition_occurrence_synthetic.parquet``,
``drug_exposure_synthetic.parquet`` (each with ``synthetic`` = true) and the sidecar
``synthetic_generator.json`` (generator, seed, parameters, row counts, provenance).
``drug_source_value`` holds the catalog ``drug_id`` (``drug_concept_id`` = 0: no OMOP
concept); two extra columns beyond OMOP, ``course_id`` and
``indication_condition_occurrence_id``, make the invariants checkable.

Chunked generation, bounded memory: patients are simulated in chunks of ``chunk_size``
(default 100,000; null = one chunk), each chunk independently with its own RNG,
``SeedSequence(seed).spawn(1 + n_chunks)`` (child 0 orders the catalog drugs within
their classes, child ``1 + i`` draws chunk ``i``). Each chunk is appended to the three
files as row groups (``pyarrow.parquet.ParquetWriter`` on temp files renamed into place
only when every chunk is written: a failed run leaves no partial file), so peak memory
follows the chunk, not the cohort (1M patients: about 1 GB instead of about 8 GB).
person_id, condition_occurrence_id, drug_exposure_id and course_id are numbered across
chunks (globally unique, in the same order as one whole-cohort sort). The output is
deterministic for a given (seed, chunk_size, parameters); changing ``chunk_size``
changes the draw (other patients, same distributions), as does changing ``seed``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import polars as pl
import pyarrow.parquet as pq
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from featurestore.datasets import dataset_path, load_dataset
from featurestore.io import atomic_path, write_json_atomic
from featurestore.provenance import run_record

CONDITION_ATC = Path(__file__).resolve().parent / "data" / "condition_atc.csv"
ROLES = ("first_line", "add_on", "alternative")
GENDER = {"M": 8507, "F": 8532}  # OMOP gender concepts
DRUG_TYPE_PRESCRIPTION = 38000177  # OMOP type concept "Prescription written"
CONDITION_TYPE_EHR = 32817  # OMOP type concept "EHR"
FILES = {
    "person": "person_synthetic.parquet",
    "condition_occurrence": "condition_occurrence_synthetic.parquet",
    "drug_exposure": "drug_exposure_synthetic.parquet",
}
SIDECAR = "synthetic_generator.json"
OPTIONAL_FEATURES = ("practices",)  # top-level settings whose null means "not simulated"
ACUTE_DAYS = 7  # an acute episode's condition_end_date, days after its start
EPOCH = date(1970, 1, 1)
YEAR = 365.25
DEFAULT_CHUNK_SIZE = 100_000  # patients per chunk when the parameters name none


def load_condition_atc(path: str | Path | None = None) -> pl.DataFrame:
    """The condition → ATC level-4 mapping (condition, atc4, role, preferred, rationale).

    ``preferred``: the class's most prescribed drugs, ``;``-separated catalog names, most first.
    """
    return pl.read_csv(path or CONDITION_ATC, schema_overrides={"atc4": pl.String})


def validate_condition_atc(mapping: pl.DataFrame, drugs: pl.DataFrame, conditions: list[str]) -> dict[str, Any]:
    """Check the mapping against the catalog; return catalog drugs per condition.

    Raises on an unknown role, an ATC code not in the catalog, a configured condition
    without a first_line row, or a row without its one-line rationale. Conditions whose
    classes hold no catalog drug are listed under ``conditions_without_drugs``.
    """
    bad_roles = set(mapping["role"]) - set(ROLES)
    if bad_roles:
        raise ValueError(f"unknown role(s) {sorted(bad_roles)}; use {ROLES}")
    if mapping["rationale"].fill_null("").str.strip_chars().eq("").any():
        raise ValueError("every condition_atc row needs a rationale")
    catalog = drugs.select("drug_id", atc4="atc_codes").explode("atc4").drop_nulls("atc4")
    unknown = sorted(set(mapping["atc4"]) - set(catalog["atc4"]))
    if unknown:
        raise ValueError(f"ATC code(s) not in the drug catalog: {unknown}")
    unmapped = sorted(set(conditions) - set(mapping.filter(pl.col("role") == "first_line")["condition"]))
    if unmapped:
        raise ValueError(f"condition(s) without a first_line condition_atc row: {unmapped}")
    per_condition = mapping.join(catalog, on="atc4").group_by("condition").agg(pl.col("drug_id").n_unique())
    counts = dict(per_condition.iter_rows())
    return {
        "drugs_per_condition": {c: counts.get(c, 0) for c in sorted(set(mapping["condition"]))},
        "conditions_without_drugs": sorted(c for c in set(mapping["condition"]) if not counts.get(c)),
    }


@dataclass
class SyntheticOMOP:
    """The three synthetic OMOP tables (a whole cohort or one chunk of it) plus the mapping validation report."""

    person: pl.DataFrame
    condition_occurrence: pl.DataFrame
    drug_exposure: pl.DataFrame
    mapping_report: dict[str, Any]

    def tables(self) -> dict[str, pl.DataFrame]:
        """Table name → frame, in FILES order."""
        return {name: getattr(self, name) for name in FILES}


class _ClassSampler:
    """Draws drugs within ATC classes with Zipf weights over a popularity order.

    The order: the mapping's ``preferred`` drug names (most prescribed first), then the
    class's other catalog drugs in a seeded order (the catalog holds no prescribing volumes).
    """

    def __init__(self, rng: np.random.Generator, drugs: pl.DataFrame, mapping: pl.DataFrame, exponent: float) -> None:
        catalog = drugs.select("drug_id", "name", atc4="atc_codes").explode("atc4")
        preferred = mapping.group_by("atc4", maintain_order=True).agg(pl.col("preferred").first()).sort("atc4")
        self.classes: list[str] = preferred["atc4"].to_list()
        self.members: list[np.ndarray] = []
        for code, names in preferred.iter_rows():
            members = catalog.filter(pl.col("atc4") == code).unique("drug_id").sort("drug_id")
            top = names.split(";") if names else []
            unknown = [n for n in top if n not in set(members["name"])]
            if unknown:
                raise ValueError(f"preferred drug(s) {unknown} are not catalog drugs of {code}")
            named = dict(zip(members["name"], members["drug_id"]))
            rest = members.filter(~pl.col("name").is_in(top))["drug_id"].to_numpy()
            self.members.append(np.concatenate([[named[n] for n in top], rest[rng.permutation(len(rest))]]))
        self.exponent = exponent
        self.practice_weights: list[np.ndarray] | None = None  # per class: practices x members

    def _weights(self, n: int) -> np.ndarray:
        w = 1.0 / np.arange(1, n + 1) ** self.exponent
        return w / w.sum()

    def with_practices(self, rng: np.random.Generator, n_practices: int, concentration: float) -> _ClassSampler:
        """Give each practice its own shares within every class: Dirichlet(concentration x the national shares)."""
        self.practice_weights = [rng.dirichlet(concentration * self._weights(len(m)), size=n_practices)
                                 for m in self.members]
        return self

    def first(self, rng: np.random.Generator, class_idx: np.ndarray, practice: np.ndarray | None = None) -> np.ndarray:
        """A popularity rank within each row's class (the row's practice's shares when practices are set)."""
        ranks = np.zeros(len(class_idx), dtype=np.int64)
        for c in np.unique(class_idx):
            rows = class_idx == c
            n = len(self.members[c])
            if self.practice_weights is None:
                ranks[rows] = rng.choice(n, size=rows.sum(), p=self._weights(n))
            else:
                ranks[rows] = _draw(rng, self.practice_weights[c][practice[rows]])
        return ranks

    def other(self, rng: np.random.Generator, class_idx: np.ndarray, current: np.ndarray,
              practice: np.ndarray | None = None) -> np.ndarray:
        """Another drug of the same class (Zipf over the rest, or the practice's shares); -1 where the class has
        one drug."""
        ranks = np.full(len(class_idx), -1, dtype=np.int64)
        for c in np.unique(class_idx):
            rows = class_idx == c
            n = len(self.members[c])
            if n > 1 and self.practice_weights is None:
                j = rng.choice(n - 1, size=rows.sum(), p=self._weights(n - 1))
                ranks[rows] = j + (j >= current[rows])  # skip the current drug's rank
            elif n > 1:
                weights = self.practice_weights[c][practice[rows]]
                weights[np.arange(len(weights)), current[rows]] = 0.0
                # a practice whose whole share sat on the current drug: the national shares of the rest
                empty = weights.sum(axis=1) <= 0
                weights[empty] = self._weights(n)
                weights[np.flatnonzero(empty), current[rows][empty]] = 0.0
                ranks[rows] = _draw(rng, weights)
        return ranks

    def drug_ids(self, class_idx: np.ndarray, ranks: np.ndarray) -> pl.Series:
        """Catalog drug_id of each (class, rank), gathered from one flat table (no per-row objects)."""
        offsets = np.cumsum([0] + [len(m) for m in self.members[:-1]])
        return pl.Series(np.concatenate(self.members).astype(str)).gather(offsets[class_idx] + ranks)


def _draw(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One column per row of ``weights`` (rows: unnormalized non-negative weights), by inverse CDF."""
    cdf = np.cumsum(weights, axis=1)
    u = rng.random(len(weights)) * cdf[:, -1]
    return np.minimum((cdf <= u[:, None]).sum(axis=1), weights.shape[1] - 1)


def practice_count(practices: Mapping[str, Any] | None, n_patients: int) -> int:
    """How many practices a cohort has: ceil(n_patients / practices.size); 0 without practices (null)."""
    if practices is None:
        return 0
    size, concentration = practices.get("size"), practices.get("concentration")
    if not (isinstance(size, int) and size >= 1) or not (isinstance(concentration, (int, float)) and concentration > 0):
        raise ValueError(f"practices needs size (patients per practice, an integer >= 1) and concentration (> 0), "
                         f"got {dict(practices)}; or practices=null (no practices)")
    return -(-int(n_patients) // size)


def _day(text: str) -> int:
    return (date.fromisoformat(str(text)) - EPOCH).days


def _people(
    rng: np.random.Generator, n: int, start: int, population: Mapping[str, Any], first_id: int = 1,
) -> dict[str, np.ndarray]:
    ages = np.arange(population["age_max"] + 1)
    # Flat to 55, then the elderly thin out (roughly a European age pyramid).
    weights = np.where(ages < 55, 1.0, np.exp(-(ages - 55) / 15.0))
    age = rng.choice(ages, size=n, p=weights / weights.sum())
    birth = start - (age * YEAR).astype(np.int64) - rng.integers(0, 365, size=n)
    female = rng.random(n) < population["female_share"]
    latent = rng.normal(0.0, population["comorbidity_sd"], size=n)
    return {"person_id": np.arange(first_id, first_id + n), "birth": birth, "female": female, "latent": latent}


def _chronic_diagnoses(
    rng: np.random.Generator, people: dict[str, np.ndarray], chronic: Mapping[str, Mapping[str, Any]],
    treatment: Mapping[str, Any], start: int, end: int,
) -> dict[str, np.ndarray]:
    """(person index, condition index, diagnosis day) for every chronic diagnosis."""
    age_end = (end - people["birth"]) / YEAR
    persons, conds, days = [], [], []
    for k, spec in enumerate(chronic.values()):
        base = spec["prevalence"] / (1.0 + np.exp(-(age_end - spec["age_mid"]) / spec["age_scale"]))
        base = np.clip(base, 1e-6, 1 - 1e-6)
        logit = np.log(base / (1 - base)) + np.where(people["female"], np.log(spec["female_or"]), 0.0)
        logit += spec["loading"] * people["latent"]  # shared latent risk -> comorbidity
        has = rng.random(len(age_end)) < 1.0 / (1.0 + np.exp(-logit))
        prevalent_years = spec.get("prevalent_years", treatment["prevalent_years"])
        low = np.maximum(people["birth"] + int(spec["min_age"] * YEAR), start - int(prevalent_years * YEAR))
        has &= low <= end
        idx = np.flatnonzero(has)
        persons.append(idx)
        conds.append(np.full(len(idx), k))
        days.append(rng.integers(low[idx], end + 1))
    return {"person": np.concatenate(persons), "condition": np.concatenate(conds), "day": np.concatenate(days)}


def _acute_episodes(
    rng: np.random.Generator, people: dict[str, np.ndarray], acute: Mapping[str, Mapping[str, Any]],
    population: Mapping[str, Any], start: int, end: int, offset: int,
) -> dict[str, np.ndarray]:
    """(person index, condition index, episode day) for every acute episode; condition index from ``offset``.

    A patient's rate of condition k is ``rate`` x sex x ``exp(loading * latent - (loading * sd)^2 / 2)`` (the
    comorbidity latent, mean-preserving) x a frailty shared by all acute conditions, Gamma(``shape``, 1 / ``shape``)
    with ``acute_frailty_shape`` (mean 1; null = none: equal rates, Poisson counts). Frailty makes counts
    overdispersed, as care use is: the patients who had courses before are the ones who have the next ones.
    """
    n = len(people["birth"])
    shape = population.get("acute_frailty_shape")  # checked once by simulate_chunks
    frailty = np.ones(n) if shape is None else rng.gamma(shape, 1.0 / shape, size=n)
    sd = population["comorbidity_sd"]
    days = np.arange(start, end + 1)
    calendar = days.astype("datetime64[D]")
    day_of_year = (calendar - calendar.astype("datetime64[Y]")).astype(np.int64) + 1
    persons, conds, when = [], [], []
    for k, spec in enumerate(acute.values()):
        loading = spec.get("loading", 0.0)
        rate = (spec["rate"] * np.where(people["female"], spec["female_rr"], 1.0) * (end - start + 1) / YEAR
                * frailty * np.exp(loading * people["latent"] - (loading * sd) ** 2 / 2))
        counts = rng.poisson(rate, size=n)
        intensity = 1.0 + spec["amplitude"] * np.cos(2 * np.pi * (day_of_year - spec["peak_day"]) / YEAR)
        persons.append(np.repeat(np.arange(n), counts))
        conds.append(np.full(counts.sum(), offset + k))
        when.append(rng.choice(days, size=counts.sum(), p=intensity / intensity.sum()))
    return {"person": np.concatenate(persons), "condition": np.concatenate(conds), "day": np.concatenate(when)}


def _role_classes(mapping: pl.DataFrame, conditions: list[str], classes: list[str]) -> dict[str, list[np.ndarray]]:
    """role -> per condition index, the class indices of that role (may be empty)."""
    position = {c: i for i, c in enumerate(classes)}
    rows = mapping.group_by("condition", "role").agg("atc4")
    found = {(cond, role): codes for cond, role, codes in rows.iter_rows()}
    return {
        role: [np.array([position[a] for a in found.get((cond, role), [])], dtype=np.int64) for cond in conditions]
        for role in ROLES
    }

def _pick_class(rng: np.random.Generator, condition: np.ndarray, options: list[np.ndarray]) -> np.ndarray:
    """A uniformly drawn class of ``options[condition]`` per row; -1 where there is none."""
    out = np.full(len(condition), -1, dtype=np.int64)
    for k in np.unique(condition):
        rows = condition == k
        if len(options[k]):
            out[rows] = options[k][rng.integers(0, len(options[k]), size=rows.sum())]
    return out


def _param(conditions: Mapping[str, Mapping[str, Any]], defaults: Mapping[str, Any], key: str) -> np.ndarray:
    """Per-condition value of a treatment parameter (condition override, else default)."""
    return np.array([spec.get(key, defaults.get(key)) for spec in conditions.values()])


def _refills(
    rng: np.random.Generator, lines: dict[str, np.ndarray], supply_days: np.ndarray, supply_p: np.ndarray,
    gap_mean: np.ndarray, early_max: np.ndarray, end: int,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Expand courses into dispensings inside the window; also each course's last supplied day.

    ``lines`` carries per course: condition, start, n (dispensings before discontinuation).
    """
    n_lines = len(lines["start"])
    supply = rng.choice(supply_days, size=n_lines, p=supply_p)  # one pack size per course
    line = np.repeat(np.arange(n_lines), lines["n"])
    cond = lines["condition"][line]
    gap = np.rint(rng.exponential(gap_mean[cond])).astype(np.int64) - rng.integers(0, early_max[cond] + 1)
    step = supply[line] + gap
    before = np.cumsum(step) - step  # exclusive running sum over all dispensings
    first = np.cumsum(lines["n"]) - lines["n"]
    start = lines["start"][line] + before - before[first[line]]
    kept = start <= end
    last_end = np.full(n_lines, np.iinfo(np.int64).min)
    np.maximum.at(last_end, line[kept], start[kept] + supply[line[kept]])
    return {"line": line[kept], "start": start[kept], "supply": supply[line[kept]]}, last_end


def chunk_sizes(n_patients: int, chunk_size: int | None = DEFAULT_CHUNK_SIZE) -> list[int]:
    """Patients per chunk: full chunks of ``chunk_size``, then the rest (``chunk_size`` None = one chunk)."""
    if int(n_patients) < 1:
        raise ValueError(f"n_patients must be >= 1, not {n_patients}")
    if chunk_size is not None and int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1 or null (one chunk), not {chunk_size}")
    n, size = int(n_patients), int(chunk_size or n_patients)
    return [min(size, n - first) for first in range(0, n, size)]


@dataclass
class _Setup:
    """What every chunk shares: parameters, the validated mapping, the class sampler, the window."""

    chronic: Mapping[str, Any]
    acute: Mapping[str, Any]
    treatment: Mapping[str, Any]
    population: Mapping[str, Any]
    conditions: list[str]
    sampler: _ClassSampler
    role: dict[str, list[np.ndarray]]
    start: int
    end: int
    report: dict[str, Any]
    n_practices: int = 0  # 0: no practices (every patient prescribed by the national shares)


def simulate_chunks(
    params: Mapping[str, Any], drugs: pl.DataFrame, mapping: pl.DataFrame | None = None,
) -> Iterator[SyntheticOMOP]:
    """Yield the cohort chunk by chunk (``params['chunk_size']`` patients each; ids numbered across chunks).

    Deterministic given (seed, chunk_size, parameters): chunk ``i`` draws from
    ``SeedSequence(seed).spawn(1 + n_chunks)[1 + i]``, so a chunk does not depend on the
    chunks before it except through the id offsets. Only one chunk is alive at a time
    as long as the caller drops each before asking for the next. ``mapping``: the condition → ATC
    table (default: the file ``params['mapping']`` names, or the shipped one).
    """
    sizes = chunk_sizes(params["n_patients"], params.get("chunk_size", DEFAULT_CHUNK_SIZE))
    catalog_seed, *chunk_seeds, practice_seed = np.random.SeedSequence(params["seed"]).spawn(2 + len(sizes))
    mapping = load_condition_atc(params.get("mapping")) if mapping is None else mapping
    chronic, acute, treatment = params["chronic"], params["acute"], params["treatment"]
    conditions = [*chronic, *acute]
    report = validate_condition_atc(mapping, drugs, conditions)
    shape = params["population"].get("acute_frailty_shape")
    if shape is not None and not shape > 0:  # before any chunk is drawn
        raise ValueError(f"population.acute_frailty_shape must be > 0 (or null: no frailty), got {shape!r}")
    sampler = _ClassSampler(np.random.default_rng(catalog_seed), drugs, mapping, params["zipf_exponent"])
    n_practices = practice_count(params.get("practices"), params["n_patients"])
    if n_practices:
        sampler.with_practices(np.random.default_rng(practice_seed), n_practices, params["practices"]["concentration"])
    setup = _Setup(chronic, acute, treatment, params["population"], conditions, sampler,
                   _role_classes(mapping, conditions, sampler.classes),
                   _day(params["start_date"]), _day(params["end_date"]), report, n_practices)
    first = {"person": 1, "occurrence": 1, "course": 1, "exposure": 1}  # the next chunk's first ids
    for size, seed in zip(sizes, chunk_seeds):
        # practices are drawn from a child of the chunk's seed: the chunk's own draws stay as they were without them
        chunk, courses = _simulate_chunk(np.random.default_rng(seed), size, first, setup,
                                         np.random.default_rng(seed.spawn(1)[0]))
        first = {"person": first["person"] + size,
                 "occurrence": first["occurrence"] + chunk.condition_occurrence.height,
                 "course": first["course"] + courses, "exposure": first["exposure"] + chunk.drug_exposure.height}
        yield chunk
        del chunk  # not alive while the next chunk is drawn


def simulate(params: Mapping[str, Any], drugs: pl.DataFrame, mapping: pl.DataFrame | None = None) -> SyntheticOMOP:
    """The whole cohort in memory: the chunks of ``simulate_chunks`` concatenated (same rows as the files).

    For large cohorts write ``simulate_chunks(...)`` with ``write_synthetic`` instead (bounded memory).
    """
    chunks = list(simulate_chunks(params, drugs, mapping))
    if len(chunks) == 1:
        return chunks[0]
    tables = {name: pl.concat([c.tables()[name] for c in chunks], rechunk=True) for name in FILES}
    return SyntheticOMOP(**tables, mapping_report=chunks[0].mapping_report)


def _simulate_chunk(
    rng: np.random.Generator, n: int, first: Mapping[str, int], setup: _Setup, practice_rng: np.random.Generator,
) -> tuple[SyntheticOMOP, int]:
    """One chunk of ``n`` patients with ids from ``first``; also the number of courses it used."""
    chronic, acute, treatment, role, sampler = setup.chronic, setup.acute, setup.treatment, setup.role, setup.sampler
    start, end = setup.start, setup.end
    people = _people(rng, n, start, setup.population, first["person"])
    if setup.n_practices:
        people["practice"] = practice_rng.integers(setup.n_practices, size=n)

    chronic_dx = _chronic_diagnoses(rng, people, chronic, treatment, start, end)
    acute_dx = _acute_episodes(rng, people, acute, setup.population, start, end, offset=len(chronic))
    dx = {k: np.concatenate([chronic_dx[k], acute_dx[k]]) for k in chronic_dx}
    del chronic_dx, acute_dx
    order = np.lexsort((dx["condition"], dx["day"], dx["person"]))
    dx = {k: v[order] for k, v in dx.items()}
    # Two episodes of one condition on the same day are one episode.
    repeat = np.zeros(len(order), dtype=bool)
    repeat[1:] = np.all([(v[1:] == v[:-1]) for v in (dx["person"], dx["day"], dx["condition"])], axis=0)
    dx = {k: v[~repeat] for k, v in dx.items()}
    dx["occurrence_id"] = np.arange(first["occurrence"], first["occurrence"] + len(dx["day"]))
    dx["person_id"] = people["person_id"][dx["person"]]
    if "practice" in people:
        dx["practice"] = people["practice"][dx["person"]]
    is_chronic = dx["condition"] < len(chronic)

    chronic_ex = _chronic_courses(rng, dx, np.flatnonzero(is_chronic), chronic, treatment, role, sampler, start, end)
    first_acute = int(chronic_ex["course"].max(initial=-1)) + 1
    acute_ex = _acute_courses(rng, dx, np.flatnonzero(~is_chronic), acute, treatment, role, sampler, end,
                              offset=len(chronic), first_course=first_acute)
    courses = first_acute + len(acute_ex["course"])
    ex = {key: np.concatenate([chronic_ex[key], acute_ex[key]]) for key in chronic_ex}
    del chronic_ex, acute_ex
    ex["course"] += first["course"]
    person = _person_table(people)
    del people
    conditions = _condition_table(
        dx, np.array([spec["concept_id"] for spec in [*chronic.values(), *acute.values()]]),
        np.array(setup.conditions), np.array([0] * len(chronic) + [ACUTE_DAYS] * len(acute)))
    return SyntheticOMOP(person, conditions, _drug_table(ex, dx, sampler, first["exposure"]), setup.report), courses


def _chronic_courses(
    rng: np.random.Generator, dx: dict[str, np.ndarray], diagnoses: np.ndarray, chronic: Mapping[str, Any],
    treatment: Mapping[str, Any], role: dict[str, list[np.ndarray]], sampler: _ClassSampler, start: int, end: int,
) -> dict[str, np.ndarray]:
    """Dispensings of chronic treatment: first line (or an alternative), add-on escalation, switches.

    Courses are numbered from 0 in ``course`` (within the chunk); ``occurrence`` indexes ``dx``.
    """
    pick = partial(_param, chronic, treatment)
    treated = diagnoses[rng.random(len(diagnoses)) < pick("treated")[dx["condition"][diagnoses]]]
    cond = dx["condition"][treated]
    delay = np.rint(rng.exponential(pick("start_delay_days")[cond])).astype(np.int64)
    # Prevalent cases (diagnosed before the window) start within its first quarter.
    first_start = np.where(dx["day"][treated] + delay >= start, dx["day"][treated] + delay,
                           start + rng.integers(0, 91, size=len(treated)))
    klass = _pick_first_class(rng, cond, pick("alternative")[cond], role)
    addon_class = _pick_class(rng, cond, role["add_on"])
    addon = (addon_class >= 0) & (rng.random(len(treated)) < pick("addon")[cond])
    addon_start = first_start + np.rint(rng.exponential(pick("addon_delay_days")[cond])).astype(np.int64)
    lines = {
        "occurrence": np.concatenate([treated, treated[addon]]),
        "condition": np.concatenate([cond, cond[addon]]),
        "klass": np.concatenate([klass, addon_class[addon]]),
        "start": np.concatenate([first_start, addon_start[addon]]),
    }
    lines["rank"] = sampler.first(rng, lines["klass"], _practice(dx, lines["occurrence"]))
    lines = {k: v[lines["start"] <= end] for k, v in lines.items()}

    supply_days = np.asarray(treatment["supply_days"])
    supply_p = np.asarray(treatment["supply_p"], dtype=float)
    # Dispensings beyond the window are dropped anyway: cap the geometric draw there.
    cap = (end - start) // supply_days.min() + 2
    exposures, course = [], 0
    for _ in range(int(treatment["max_switches"]) + 1):
        lines["n"] = np.minimum(rng.geometric(pick("hazard")[lines["condition"]]), cap)
        refills, last_end = _refills(rng, lines, supply_days, supply_p, pick("gap_mean_days"),
                                     pick("early_max_days"), end)
        line = refills["line"]
        exposures.append({
            "occurrence": lines["occurrence"][line], "klass": lines["klass"][line], "rank": lines["rank"][line],
            "start": refills["start"], "supply": refills["supply"], "course": course + line,
            "doses": pick("doses_per_day")[lines["condition"][line]],
        })
        course += len(lines["start"])
        # Discontinued before the window ends: some switch to another drug of the same class.
        stopped = last_end + np.rint(rng.exponential(pick("gap_mean_days")[lines["condition"]])).astype(np.int64)
        switch = (stopped <= end) & (rng.random(len(stopped)) < pick("switch")[lines["condition"]])
        lines = {k: v[switch] for k, v in lines.items() if k != "n"}
        lines["start"] = stopped[switch]
        lines["rank"] = sampler.other(rng, lines["klass"], lines["rank"], _practice(dx, lines["occurrence"]))
        lines = {k: v[lines["rank"] >= 0] for k, v in lines.items()}
    return {key: np.concatenate([e[key] for e in exposures]) for key in exposures[0]}


def _acute_courses(
    rng: np.random.Generator, dx: dict[str, np.ndarray], episodes: np.ndarray, acute: Mapping[str, Any],
    treatment: Mapping[str, Any], role: dict[str, list[np.ndarray]], sampler: _ClassSampler, end: int,
    offset: int, first_course: int,
) -> dict[str, np.ndarray]:
    """One dispensing per treated acute episode (acute condition k has index ``offset + k`` in ``dx``)."""
    pick = partial(_param, acute, treatment)
    treated = episodes[rng.random(len(episodes)) < pick("treated")[dx["condition"][episodes] - offset]]
    cond = dx["condition"][treated]
    k = cond - offset
    klass = _pick_first_class(rng, cond, pick("alternative")[k], role)
    low, high = np.array([spec["supply_days"] for spec in acute.values()]).T
    return {
        "occurrence": treated, "klass": klass, "rank": sampler.first(rng, klass, _practice(dx, treated)),
        "start": np.minimum(dx["day"][treated] + rng.integers(0, 2, size=len(treated)), end),
        "supply": rng.integers(low[k], high[k] + 1), "course": first_course + np.arange(len(treated)),
        "doses": pick("doses_per_day")[k],
    }


def _practice(dx: dict[str, np.ndarray], occurrence: np.ndarray) -> np.ndarray | None:
    """The practice of each diagnosis's patient (None: the cohort has no practices)."""
    return dx["practice"][occurrence] if "practice" in dx else None


def _pick_first_class(
    rng: np.random.Generator, condition: np.ndarray, p_alternative: np.ndarray, role: dict[str, list[np.ndarray]],
) -> np.ndarray:
    """The starting class: an alternative with probability ``p_alternative`` (if there is one), else first line."""
    klass = np.where(rng.random(len(condition)) < p_alternative, _pick_class(rng, condition, role["alternative"]), -1)
    return np.where(klass < 0, _pick_class(rng, condition, role["first_line"]), klass)


def _dates(days: np.ndarray) -> pl.Series:
    return pl.Series(days.astype("datetime64[D]"))


def _person_table(people: dict[str, np.ndarray]) -> pl.DataFrame:
    birth = _dates(people["birth"])
    return pl.DataFrame({
        "person_id": people["person_id"],
        "gender_concept_id": np.where(people["female"], GENDER["F"], GENDER["M"]),
        "year_of_birth": birth.dt.year().cast(pl.Int64), "month_of_birth": birth.dt.month().cast(pl.Int64),
        "day_of_birth": birth.dt.day().cast(pl.Int64), "birth_datetime": birth.cast(pl.Datetime("us")),
        "race_concept_id": 0, "ethnicity_concept_id": 0,
        "care_site_id": pl.Series(people["practice"] + 1 if "practice" in people else [None] * len(birth),
                                  dtype=pl.Int64),
        "gender_source_value": np.where(people["female"], "F", "M"), "synthetic": True,
    })


def _condition_table(dx: dict[str, np.ndarray], concept_ids: np.ndarray, names: np.ndarray,
                     acute_days: np.ndarray) -> pl.DataFrame:
    """CONDITION_OCCURRENCE; chronic conditions have no end date, acute episodes end after ``acute_days``."""
    k = dx["condition"]
    return pl.DataFrame({
        "condition_occurrence_id": dx["occurrence_id"], "person_id": dx["person_id"],
        "condition_concept_id": concept_ids[k], "condition_start_date": _dates(dx["day"]),
        "condition_end_date": _dates(dx["day"] + acute_days[k]), "condition_type_concept_id": CONDITION_TYPE_EHR,
        "visit_occurrence_id": pl.Series([None] * len(k), dtype=pl.Int64),
        "condition_source_value": names[k], "synthetic": True,
    }).with_columns(pl.when(pl.lit(acute_days[k] > 0)).then(pl.col("condition_end_date")).alias("condition_end_date"))


def _drug_table(
    ex: dict[str, np.ndarray], dx: dict[str, np.ndarray], sampler: _ClassSampler, first_id: int = 1,
) -> pl.DataFrame:
    """DRUG_EXPOSURE sorted by person, start and drug; ids numbered from ``first_id`` in that order."""
    occurrence = ex["occurrence"]
    table = pl.DataFrame({
        "person_id": dx["person_id"][occurrence], "drug_concept_id": 0,
        "drug_source_value": sampler.drug_ids(ex["klass"], ex["rank"]),
        "drug_exposure_start_date": _dates(ex["start"]),
        "drug_exposure_end_date": _dates(ex["start"] + ex["supply"] - 1),
        "days_supply": ex["supply"], "quantity": (ex["supply"] * ex["doses"]).astype(np.float64),
        "drug_type_concept_id": DRUG_TYPE_PRESCRIPTION,
        "visit_occurrence_id": pl.Series([None] * len(occurrence), dtype=pl.Int64),
        "course_id": ex["course"], "indication_condition_occurrence_id": dx["occurrence_id"][occurrence],
        "synthetic": True,
    }).sort("person_id", "drug_exposure_start_date", "drug_source_value", "course_id")
    ids = pl.int_range(first_id, pl.len() + first_id, dtype=pl.Int64)
    return table.select(ids.alias("drug_exposure_id"), pl.all())


class _ParquetAppender:
    """Appends frames to one parquet file as row groups (zstd level 3, as ``write_parquet_atomic``)."""

    def __init__(self, path: Path) -> None:
        self.path, self.writer = path, None

    def append(self, frame: pl.DataFrame) -> None:
        table = frame.to_arrow()
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema, compression="zstd", compression_level=3)
        else:
            table = table.cast(self.writer.schema)  # e.g. a chunk without any row of a string column
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@contextlib.contextmanager
def _appenders(out_dir: Path) -> Iterator[dict[str, _ParquetAppender]]:
    """One appender per table on a temp file; all renamed into place on success, all deleted on error."""
    with contextlib.ExitStack() as stack:
        writers = {name: _ParquetAppender(stack.enter_context(atomic_path(out_dir / file)))
                   for name, file in FILES.items()}
        try:
            yield writers
        finally:
            for writer in writers.values():
                writer.close()
        if any(writer.writer is None for writer in writers.values()):
            raise ValueError("no chunk to write")


def write_synthetic(
    data: SyntheticOMOP | Iterable[SyntheticOMOP], out_dir: str | Path, params: Mapping[str, Any],
) -> list[Path]:
    """Write the three tables and the JSON sidecar atomically; return the paths.

    ``data``: a whole cohort, or its chunks (``simulate_chunks``), streamed one at a time
    into one file per table, so memory stays bounded by a chunk. The sidecar comes last.
    """
    out_dir = Path(out_dir)
    chunks = [data] if isinstance(data, SyntheticOMOP) else data
    rows = dict.fromkeys(FILES, 0)
    distinct: set[str] = set()
    n_chunks, report = 0, {}
    with _appenders(out_dir) as writers:
        for chunk in chunks:
            for name, table in chunk.tables().items():
                writers[name].append(table)
                rows[name] += table.height
            distinct.update(chunk.drug_exposure["drug_source_value"].unique().to_list())
            n_chunks, report = n_chunks + 1, chunk.mapping_report
            del chunk, table  # let the generator drop its chunk before drawing the next
    mapping = Path(params.get("mapping") or CONDITION_ATC)
    sidecar = {
        "synthetic": True,
        "description": "SYNTHETIC drug-usage records in OMOP CDM shape; no real patient is behind any row.",
        "generator": "recommend.simulate", "seed": params["seed"], "parameters": dict(params),
        "chunk_size": params.get("chunk_size", DEFAULT_CHUNK_SIZE), "chunks": n_chunks,
        "tables": {name: {"file": FILES[name], "rows": rows[name]} for name in FILES},
        "distinct_drugs": len(distinct),
        "mapping": report,
        "provenance": run_record(params, params["seed"], [mapping, dataset_path("drugs")]),
    }
    paths = [out_dir / file for file in FILES.values()]
    paths.append(write_json_atomic(out_dir / SIDECAR, sidecar))
    return paths


def cohort_settings(params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters that define a cohort: ``params`` without where it is written (``out_dir``, ``hydra``); an
    optional feature left at null (``practices``) equals its absence, so cohorts made before it existed still match."""
    return {k: v for k, v in params.items()
            if k not in ("out_dir", "hydra") and not (k in OPTIONAL_FEATURES and v is None)}


def cached_cohort(out_dir: str | Path, params: Mapping[str, Any], drugs: pl.DataFrame | None = None) -> Path:
    """The folder ``out_dir`` holding the cohort of ``params`` (``usage.cohort``), simulated there unless it already
    holds exactly that cohort (its sidecar's parameters, ``out_dir`` aside): a folder made with other settings or
    older defaults is simulated anew, never reused. ``drugs``: the catalog (default: the shipped one)."""
    out_dir = Path(out_dir)
    sidecar = out_dir / SIDECAR
    stored = json.loads(sidecar.read_text())["parameters"] if sidecar.is_file() else None
    if stored is None or cohort_settings(stored) != cohort_settings(params):
        write_synthetic(simulate_chunks(params, load_dataset("drugs") if drugs is None else drugs), out_dir, params)
    return out_dir


@hydra.main(version_base="1.3", config_path="../conf", config_name="simulate")
def main(cfg: DictConfig) -> None:
    params = OmegaConf.to_container(cfg, resolve=True)
    out_dir = Path(cfg.out_dir or HydraConfig.get().runtime.output_dir)
    began = time.perf_counter()
    write_synthetic(simulate_chunks(params, load_dataset("drugs")), out_dir, params)
    sidecar = json.loads((out_dir / SIDECAR).read_text())
    rows = ", ".join(f"{name} {sidecar['tables'][name]['rows']:,}" for name in FILES)
    print(f"SYNTHETIC OMOP tables in {out_dir} ({time.perf_counter() - began:.1f} s, "
          f"{sidecar['chunks']} chunk(s)): {rows}")
    if sidecar["mapping"]["conditions_without_drugs"]:
        print(f"conditions without catalog drugs: {sidecar['mapping']['conditions_without_drugs']}")


if __name__ == "__main__":
    main()
