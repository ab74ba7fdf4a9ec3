"""Drug-drug interaction screen of recommendation tables.

An interaction table holds pairs of catalog drugs (``drug_a``, ``drug_b``, either order)
with a ``severity`` (most severe first: contraindicated, not_advised, precaution,
take_into_account) and a ``mechanism`` text. The default is the shipped ANSM thesaurus
(dataset ``ddi_ansm``; its mechanism text is French); a user table in the same shape
(CSV/TSV/parquet) is checked row by row and refused, naming each bad row.

A recommended drug conflicts when it pairs, at ``min_severity`` or worse, with a drug the
patient takes at the prediction time (``against``: ``current`` drugs still taken, or the
whole ``history``). ``action=flag`` keeps every row and adds ``interaction_severity``
(the worst), ``interacts_with`` (the patient's drug_ids, worst first) and
``interaction_mechanism`` (aligned with them); ``action=remove`` drops the conflicting
rows, re-ranks, and refills the top-K from the deeper candidates the table holds
(``backfill`` extra ranks). Either way every conflict is written out and counted by
severity; nothing is removed silently.

Items must be catalog drugs (``catalog.granularity=ingredient``): an ATC class is not a
drug a patient takes, so at ATC granularity the screen is skipped and the report says so.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from featurestore.datasets import dataset_path, load_dataset
from featurestore.datasets.clinical import SEVERITIES, severity_rank
from featurestore.io import read_table, write_parquet_atomic
from recommend.splits import FILTERS, Fold, excluded_items

log = logging.getLogger(__name__)

INTERACTION_COLUMNS = ("drug_a", "drug_b", "severity", "mechanism")
ACTIONS = ("flag", "remove")
SHIPPED = {"ansm": "ddi_ansm"}  # table name -> shipped dataset
FLAG_COLUMNS = ("interaction_severity", "interacts_with", "interaction_mechanism")
BAD_ROWS_SHOWN = 10


@dataclass(frozen=True)
class InteractionSpec:
    """The ``interactions:`` config block (see conf/recommendations/default.yaml)."""

    table: str | None = "ansm"
    action: str = "flag"
    min_severity: str = "precaution"
    against: str = "current"
    backfill: int = 10

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"interactions.action must be one of {ACTIONS}, not {self.action!r}")
        severity_rank(self.min_severity)
        if self.against not in FILTERS or self.against == "none":
            raise ValueError(f"interactions.against must be 'current' or 'history', not {self.against!r}")
        if self.backfill < 0:
            raise ValueError(f"interactions.backfill must be >= 0, not {self.backfill}")

    @classmethod
    def from_config(cls, block: Mapping[str, Any] | None) -> InteractionSpec:
        """From the config block; a missing block or ``table: null`` turns the screen off."""
        return cls(**dict(block)) if block else cls(table=None)

    def depth(self, top_k: int) -> int:
        """Candidates to rank per patient: ``top_k``, plus ``backfill`` when conflicts are removed."""
        return top_k + self.backfill if self.table and self.action == "remove" else top_k

    def files(self) -> list[Path]:
        """The table's file, for the run record's data fingerprints (none when the screen is off)."""
        if not self.table:
            return []
        return [dataset_path(SHIPPED[self.table]) if self.table in SHIPPED else Path(self.table)]


def validate_interactions(
    table: pl.DataFrame, source: str, known_drugs: Collection[str] | None = None
) -> pl.DataFrame:
    """The four columns as strings; ``ValueError`` naming every bad row (numbered from 1, after the header).

    A row is bad when drug_a, drug_b or severity is empty, the severity is not one of
    :data:`SEVERITIES`, both drugs are the same, or (with ``known_drugs``) a drug is not
    in the catalog. The mechanism may be empty.
    """
    missing = [c for c in INTERACTION_COLUMNS if c not in table.columns]
    if missing:
        raise KeyError(f"{source}: missing column(s) {missing}; an interaction table needs {list(INTERACTION_COLUMNS)}")
    table = table.select(pl.col(c).cast(pl.String).str.strip_chars() for c in INTERACTION_COLUMNS)
    known = set(known_drugs) if known_drugs is not None else None
    problems = []
    for row, (a, b, severity, _) in enumerate(table.iter_rows(), start=1):
        reasons = [f"{name} is empty" for name, value in (("drug_a", a), ("drug_b", b), ("severity", severity))
                   if not value]
        if severity and severity not in SEVERITIES:
            reasons.append(f"unknown severity {severity!r} (use one of {', '.join(SEVERITIES)})")
        if a and a == b:
            reasons.append(f"drug_a and drug_b are the same drug {a!r}")
        if known is not None:
            reasons += [f"{name} {value!r} is not a catalog drug_id" for name, value in (("drug_a", a), ("drug_b", b))
                        if value and value not in known]
        if reasons:
            problems.append(f"row {row}: {'; '.join(reasons)}")
    if problems:
        shown = "\n  ".join(problems[:BAD_ROWS_SHOWN])
        more = f"\n  ... and {len(problems) - BAD_ROWS_SHOWN} more" if len(problems) > BAD_ROWS_SHOWN else ""
        raise ValueError(f"{source}: {len(problems)} bad interaction row(s):\n  {shown}{more}")
    return table


def load_interactions(table: str, known_drugs: Collection[str] | None = None) -> tuple[pl.DataFrame, Path]:
    """The pairs of a shipped table (``ansm``) or of a user file, checked; and the file they came from."""
    if table in SHIPPED:
        return load_dataset(SHIPPED[table]).select(INTERACTION_COLUMNS), dataset_path(SHIPPED[table])
    path = Path(table)
    return validate_interactions(read_table(path), str(path), known_drugs), path


def interaction_hits(
    recommendations: pl.DataFrame, current: pl.DataFrame, pairs: pl.DataFrame, min_severity: str
) -> pl.DataFrame:
    """Conflicting recommendations: person_id, drug_id and the :data:`FLAG_COLUMNS`.

    ``current`` holds (person_id, drug_id) of the drugs each patient takes. A pair listed
    twice keeps its worst severity; a patient's drugs are ordered worst first, then by id.
    """
    ranked = pairs.with_columns(
        level=pl.col("severity").replace_strict(SEVERITIES, list(range(len(SEVERITIES))), return_dtype=pl.Int8)
    ).filter(pl.col("level") <= severity_rank(min_severity))
    both_ways = pl.concat([ranked, ranked.rename({"drug_a": "drug_b", "drug_b": "drug_a"})], how="diagonal_relaxed")
    return (
        recommendations.select("person_id", "drug_id").unique()
        .join(current.select("person_id", pl.col("drug_id").alias("drug_b")), on="person_id")
        .join(both_ways.rename({"drug_a": "drug_id"}), on=["drug_id", "drug_b"])
        .sort("person_id", "drug_id", "level", "drug_b")
        .unique(["person_id", "drug_id", "drug_b"], keep="first", maintain_order=True)
        .group_by("person_id", "drug_id", maintain_order=True)
        .agg(
            interaction_severity=pl.col("severity").first(),
            interacts_with=pl.col("drug_b"),
            interaction_mechanism=pl.col("mechanism"),
        )
    )


def screen_recommendations(
    recommendations: pl.DataFrame, current: pl.DataFrame, spec: InteractionSpec, top_k: int,
    known_drugs: Collection[str] | None = None, conflicts_path: Path | None = None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Flag or remove interacting recommendations; return the top-``top_k`` table and a report.

    ``recommendations`` has person_id, rank, drug_id (ranks may go deeper than ``top_k``:
    backfill candidates); ``current`` has person_id, drug_id. Every conflicting candidate
    row (with its original rank and whether it was shown) is written to ``conflicts_path``.
    """
    top = pl.col("rank") <= top_k
    if spec.table is None:
        return recommendations.filter(top), {"table": None}
    pairs, source = load_interactions(spec.table, known_drugs)
    hits = interaction_hits(recommendations, current, pairs, spec.min_severity)
    marked = recommendations.join(hits, on=["person_id", "drug_id"], how="left")
    conflict = pl.col("interaction_severity").is_not_null()
    conflicts = marked.filter(conflict).select("person_id", "rank", "drug_id", *FLAG_COLUMNS)
    if spec.action == "flag":
        table = marked.filter(top)
    else:
        # Drop conflicts among all candidates, then renumber: backfill ranks move up into the top-K.
        kept = marked.filter(~conflict).drop(FLAG_COLUMNS)
        table = kept.with_columns(rank=pl.col("rank").rank("ordinal").over("person_id").cast(pl.Int32)).filter(top)
    shown = conflicts.filter(top)
    per_patient = shown.group_by("person_id").len()
    before = recommendations.filter(top).group_by("person_id").len()
    patients = before.height
    # Patients left with fewer rows than the model gave them (backfill ran out of safe candidates).
    after = table.group_by("person_id").len().rename({"len": "after"})
    short = before.join(after, on="person_id", how="left").filter(pl.col("after").fill_null(0) < pl.col("len")).height
    report = {
        "table": spec.table, "source": str(source), "pairs": pairs.height, "action": spec.action,
        "min_severity": spec.min_severity, "against": spec.against,
        # Conflicts in the top-K as the model ranked it: flagged there, or removed from it.
        "flagged" if spec.action == "flag" else "removed": {
            s: int((shown["interaction_severity"] == s).sum())
            for s in SEVERITIES[: severity_rank(spec.min_severity) + 1]
        },
        "patients_with_conflicts": per_patient.height, "patients": patients,
        "max_conflicts_per_patient": int(per_patient["len"].max() or 0),
    }
    if spec.action == "remove":
        report |= {"backfill": spec.backfill, "conflicting_backfill_candidates": conflicts.height - shown.height,
                   "patients_short_of_top_k": short}
    if conflicts_path is not None:
        write_parquet_atomic(conflicts.with_columns(shown=top), conflicts_path)
    log.info("interactions (%s, %s >= %s): %s", spec.table, spec.action, spec.min_severity, report)
    return table, report


def screen_fold(
    recommendations: pl.DataFrame, fold: Fold, spec: InteractionSpec, top_k: int, granularity: str,
    known_drugs: Collection[str], out_dir: Path,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """:func:`screen_recommendations` against the patients' drugs at the fold's prediction time.

    Writes ``interactions.parquet`` (every conflict) into ``out_dir``. Skipped, and said so in
    the report and the log, when items are ATC classes rather than drugs.
    """
    if spec.table is not None and granularity != "ingredient":
        reason = (f"skipped: items are ATC classes (catalog.granularity={granularity}); the interaction screen "
                  "needs catalog drugs (catalog.granularity=ingredient)")
        log.warning("interactions %s", reason)
        return recommendations.filter(pl.col("rank") <= top_k), {"table": spec.table, "status": reason}
    current = excluded_items(fold, spec.against).rename({"item": "drug_id"})
    return screen_recommendations(recommendations, current, spec, top_k, known_drugs, out_dir / "interactions.parquet")
