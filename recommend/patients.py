"""Who the patients are beyond their drugs: OMOP PERSON and CONDITION_OCCURRENCE, as model covariates.

A run that is given the PERSON and CONDITION_OCCURRENCE tables (``usage.tables.person``,
``usage.tables.condition_occurrence``) carries them as :class:`Patients`. Before a model sees
them, :meth:`Patients.before` keeps each patient's diagnoses strictly before their prediction time
(the ``reference`` of a fold's history; without one, just after the history's last event), like the
drug history, so nothing from the future leaks.

:func:`covariate_matrix` turns them into binary features per patient (:func:`covariate_rows`: per
patient and time), named so that a saved model can rebuild the same columns:
``sex=<gender_concept_id>``, ``age=<band start>`` (age at the prediction time, in
:data:`AGE_BAND_YEARS`-year bands), ``condition=<concept id>`` (ever diagnosed before the prediction
time) and ``care_site=<care_site_id>`` (the patient's practice in PERSON, where prescribing habits live).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

COVARIATES = ("sex", "age", "conditions", "care_site")
AGE_BAND_YEARS = 10
OLDEST_BAND = 90  # ages 90 and over share a band
SEXES = {"8507": "male", "8532": "female"}  # OMOP gender concepts


@dataclass(frozen=True)
class Patients:
    """PERSON (person_id, gender_concept_id, year_of_birth[, care_site_id]) and diagnoses (person_id, item, start);
    either may be None."""

    persons: pl.DataFrame | None = None
    conditions: pl.DataFrame | None = None
    condition_names: Mapping[str, str] | None = None  # concept id -> name (from CONCEPT, when given)

    def before(self, history: pl.DataFrame) -> Patients:
        """Diagnoses strictly before each patient's prediction time (``history``'s ``reference``).

        Patients without a history event have no prediction time here and keep no diagnosis.
        """
        if self.conditions is None:
            return self
        references = _references(history)
        kept = (self.conditions.join(references, on="person_id", how="inner")
                .filter(pl.col("start") < pl.col("reference")).drop("reference"))
        return Patients(self.persons, kept, self.condition_names)

    def label(self, feature: str) -> str:
        """A feature in words: ``condition=320128`` -> ``diagnosis: Essential hypertension`` (its CONCEPT name when
        known), ``age=60`` -> ``age 60-69``, ``sex=8532`` -> ``sex: female``, ``care_site=3`` -> ``practice 3``."""
        kind, _, value = feature.partition("=")
        if kind == "condition":
            return f"diagnosis: {(self.condition_names or {}).get(value, value)}"
        if kind == "age":
            return f"age {value}+" if int(value) >= OLDEST_BAND else f"age {value}-{int(value) + AGE_BAND_YEARS - 1}"
        if kind == "sex":
            return f"sex: {SEXES.get(value, value)}"
        return f"practice {value}" if kind == "care_site" else feature

    def summary(self) -> dict[str, int]:
        """What the tables hold, for the run's report: rows, and the PERSON rows a covariate cannot use."""
        out = {}
        if self.persons is not None:
            out |= {"persons": self.persons.height,
                    "person_rows_repeating_an_id": self.persons.height - self.persons["person_id"].n_unique(),
                    "persons_without_sex": self.persons["gender_concept_id"].null_count(),
                    "persons_without_year_of_birth": self.persons["year_of_birth"].null_count()}
        if self.conditions is not None:
            out |= {"diagnoses": self.conditions.height, "condition_codes": self.conditions["item"].n_unique()}
        return out

    def missing(self, covariates: Sequence[str]) -> list[str]:
        """What the given covariates need and these patients lack (tables, a column), in words."""
        has_sites = self.persons is not None and "care_site_id" in self.persons.columns
        person = ("the OMOP PERSON table", self.persons is not None)
        needs = {"sex": person, "age": person,
                 "conditions": ("the OMOP CONDITION_OCCURRENCE table", self.conditions is not None),
                 "care_site": ("a care_site_id column in PERSON", has_sites)}
        return sorted({needs[c][0] for c in covariates if not needs[c][1]})


def uses_covariates(config: Any) -> bool:
    """Whether a recommender config (or any config nested in it, e.g. a hybrid's parts) asks for covariates."""
    if isinstance(config, Mapping):
        return bool(config.get("covariates")) or any(uses_covariates(v) for v in config.values())
    if isinstance(config, (list, tuple)):
        return any(uses_covariates(v) for v in config)
    return False


def check_covariates(covariates: Sequence[str]) -> tuple[str, ...]:
    """The covariate kinds as a tuple; unknown kinds fail, naming the known ones."""
    unknown = [c for c in covariates if c not in COVARIATES]
    if unknown:
        raise ValueError(f"unknown covariate(s) {unknown}; known: {list(COVARIATES)}")
    return tuple(covariates)


def _references(history: pl.DataFrame) -> pl.DataFrame:
    """Each patient's prediction time: the history's ``reference`` (a fold's), else just after its last event."""
    if "reference" in history.columns:
        return history.group_by("person_id").agg(pl.col("reference").first())
    now = history["start"].max() + timedelta(microseconds=1)
    return history.select(pl.col("person_id").unique(), reference=pl.lit(now, dtype=history.schema["start"]))


def covariates_at(patients: Patients, queries: pl.DataFrame, covariates: Sequence[str]) -> pl.DataFrame:
    """(query, feature) pairs: the features of each query's patient at its time.

    ``queries`` has ``query`` (an integer id), ``person_id`` and ``reference`` (the time): sex and
    practice from PERSON, the age band at ``reference`` and every diagnosis strictly before it. A
    patient may be asked at several times (a sequence model asks at each of their drug starts). A query
    without a time (a patient with no history to predict from) has no feature.
    """
    queries = queries.filter(pl.col("reference").is_not_null())
    parts = []
    if {"sex", "age", "care_site"} & set(covariates):
        persons = queries.join(patients.persons, on="person_id", how="inner")
        if "sex" in covariates:
            parts.append(persons.filter(pl.col("gender_concept_id").is_not_null()).select(
                "query", feature=pl.format("sex={}", "gender_concept_id")))
        if "age" in covariates:
            age = pl.col("reference").dt.year() - pl.col("year_of_birth")
            band = (age.clip(0, OLDEST_BAND) // AGE_BAND_YEARS) * AGE_BAND_YEARS
            parts.append(persons.filter(age.is_not_null()).select("query", feature=pl.format("age={}", band)))
        if "care_site" in covariates:
            parts.append(persons.filter(pl.col("care_site_id").is_not_null()).select(
                "query", feature=pl.format("care_site={}", "care_site_id")))
    if "conditions" in covariates:  # a diagnosis is known from its first date on: repeats would only multiply the join
        first = patients.conditions.group_by("person_id", "item").agg(pl.col("start").min())
        parts.append(first.join(queries, on="person_id", how="inner")
                     .filter(pl.col("start") < pl.col("reference"))
                     .select("query", feature=pl.format("condition={}", "item")))
    schema = {"query": pl.Int64, "feature": pl.String}
    # unique: a person_id repeated in PERSON (reported by ``summary``) counts once
    return pl.concat([p.cast(schema) for p in parts]).unique() if parts else pl.DataFrame(schema=schema)


QUERIES_PER_CHUNK = 1_000_000


def covariate_rows(patients: Patients, queries: pl.DataFrame, covariates: Sequence[str],
                   features: np.ndarray | None = None) -> tuple[sp.csr_matrix, np.ndarray]:
    """:func:`covariates_at` as a binary queries × features CSR (``query`` must be 0 .. n-1) and the feature
    names (``features``: as in :func:`feature_matrix`).

    Built :data:`QUERIES_PER_CHUNK` queries at a time: a sequence model asks at every drug start, and one join of
    every diagnosis with every time ran 1 M patients (13.6 M starts) out of 24 GB.
    """
    chunks = []
    for lo in range(0, max(queries.height, 1), QUERIES_PER_CHUNK):
        chunk = queries.slice(lo, QUERIES_PER_CHUNK).with_columns(pl.col("query") - lo)
        chunks.append(feature_matrix(covariates_at(patients, chunk, covariates), chunk.height, features))
    if features is None:  # each chunk has its own columns: put them in the order of their union
        features = np.unique(np.concatenate([names for _, names in chunks]))
        chunks = [(sp.csr_matrix((m.data, np.searchsorted(features, names)[m.indices], m.indptr),
                                 shape=(m.shape[0], len(features))), names) for m, names in chunks]
    return sp.vstack([m for m, _ in chunks], format="csr"), features


def feature_matrix(table: pl.DataFrame, n_queries: int, features: np.ndarray | None = None,
                   ) -> tuple[sp.csr_matrix, np.ndarray]:
    """Binary queries × features CSR from :func:`covariates_at`'s pairs (row = ``query``), and the feature names.

    ``features`` fixes the columns (a fitted model's); features outside it are left out. Without
    it, the columns are every feature some query has, sorted.
    """
    if features is None:
        features = np.asarray(table["feature"].unique().sort().to_list(), dtype=str)
    columns = pl.DataFrame({"feature": features.tolist()}, schema={"feature": pl.String}).with_row_index("col")
    pairs = table.join(columns, on="feature", how="inner")
    matrix = sp.csr_matrix(
        (np.ones(pairs.height, dtype=np.float32), (pairs["query"].to_numpy(), pairs["col"].to_numpy())),
        shape=(n_queries, len(features)),
    )
    return matrix, features


def covariate_matrix(
    patients: Patients, history: pl.DataFrame, users: pl.Series, covariates: Sequence[str],
    features: np.ndarray | None = None,
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Binary patients × features CSR (rows: ``users``, the matrix's person ids) at each patient's prediction time
    (``history``'s ``reference``; :func:`feature_matrix` for ``features``), and the feature names."""
    rows = pl.DataFrame({"person_id": users}).with_row_index("query").cast({"query": pl.Int64})
    queries = rows.join(_references(history), on="person_id", how="left")  # no history: no reference, no feature
    return covariate_rows(patients, queries, covariates, features)
