"""Usage-record readers: OMOP CDM, MIMIC-IV prescriptions and generic tables → drug events.

Every reader scans its file lazily (polars; only the configured columns are read),
renames the columns to the canonical event schema, parses dates and numbers, and
classifies each row: a row that fails a check is dropped and counted under its first
failing reason (never silently), the rest continue. A missing file, an empty file or
a missing column fails at once, naming the file and the column.

Canonical event columns: ``person_id``, ``item`` (the source drug code or name, as
String), ``start`` and ``end`` (Datetime), ``days_supply`` and ``quantity``
(Float64), ``visit_id`` (Int64), ``record_id`` (Int64, not used for duplicates).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from featurestore.datasets import dataset_path, load_dataset
from featurestore.io import require_columns
from recommend.mapping import NDC_SEPARATOR
from recommend.patients import Patients

DATE_FIELDS = ("start", "end")
NUMBER_FIELDS = ("days_supply", "quantity")
ID_FIELDS = ("person_id", "visit_id")
EVENT_COLUMNS = ("person_id", "item", "start", "end", "days_supply", "quantity", "visit_id", "record_id")
REQUIRED = ("person_id", "item", "start")
# Canonical field -> source column, per input format (override any entry from the config).
OMOP_DRUG_EXPOSURE = {
    "person_id": "person_id", "item": "drug_concept_id", "start": "drug_exposure_start_date",
    "end": "drug_exposure_end_date", "days_supply": "days_supply", "quantity": "quantity",
    "visit_id": "visit_occurrence_id", "record_id": "drug_exposure_id",
}
MIMIC_PRESCRIPTIONS = {
    "person_id": "subject_id", "item": "drug", "start": "starttime", "end": "stoptime",
    "visit_id": "hadm_id",
}
# The weight column is optional (absent from many exports): map it with columns={"quantity": "weight"}.
GENERIC = {"person_id": "user", "item": "item", "start": "timestamp"}
BAD_ROW_EXAMPLES = 20
_NDC_ITEM = "_ndc_item"  # the "NDC|drug" item column built for NDC-first mapping


@dataclass
class IngestReport:
    """What a reader kept and dropped: counts per reason, the bad rows' indices."""

    source: str
    rows_read: int
    rows_kept: int
    dropped: dict[str, int]
    bad_rows: pl.DataFrame = field(repr=False)  # row (0-based data row in the file), reason

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary with the first bad rows as examples."""
        return {
            "source": self.source, "rows_read": self.rows_read, "rows_kept": self.rows_kept,
            "dropped": self.dropped, "bad_row_examples": self.bad_rows.head(BAD_ROW_EXAMPLES).to_dicts(),
        }


@dataclass
class Usage:
    """Clean drug events plus what is needed to map their codes to the catalog."""

    events: pl.DataFrame
    item_kind: str  # omop_concept | name | drug_id
    report: IngestReport
    vocabulary: dict[str, pl.DataFrame] = field(default_factory=dict)  # concept, concept_ancestor
    files: list[Path] = field(default_factory=list)
    patients: Patients = field(default_factory=Patients)  # OMOP PERSON and CONDITION_OCCURRENCE, when given
    condition_report: IngestReport | None = None
    person_report: IngestReport | None = None


def release_events(usage: Usage) -> Usage:
    """``usage`` without its source events (an empty frame of their schema), once they are mapped: on 10 M synthetic
    exposures they were 0.3 GiB of the run's 3.7 GiB peak."""
    return replace(usage, events=usage.events.clear())


def scan_table(path: str | Path) -> pl.LazyFrame:
    """Lazy scan of a parquet, CSV or TSV file; fail fast if it is missing or empty.

    CSV/TSV columns are all read as text: parsing them (and counting failures) is ours.
    """
    path = Path(path)
    size = path.stat().st_size if path.is_file() else None
    if not size:
        raise (FileNotFoundError if size is None else ValueError)(
            f"usage file {'not found' if size is None else 'is empty'}: {path}"
        )
    suffixes = set(path.suffixes)
    if ".parquet" in suffixes:
        return pl.scan_parquet(path)
    return pl.scan_csv(path, separator="\t" if suffixes & {".tsv", ".txt"} else ",", infer_schema=False)


def resolve_path(spec: str | Path | None = None, dataset: str | None = None) -> Path:
    """A file path given directly, or the path of a shipped dataset (e.g. ``eunomia_concept``)."""
    if spec:
        return Path(spec)
    if dataset:
        return dataset_path(dataset)
    raise ValueError("give a file path or a shipped dataset name")


def _select(lf: pl.LazyFrame, columns: Mapping[str, str | None], source: str) -> pl.LazyFrame:
    """Rename the configured source columns to canonical names; fail naming a missing one."""
    available = lf.collect_schema().names()
    wanted = {canonical: column for canonical, column in columns.items() if column}
    missing = [f"{column} (for {canonical})" for canonical, column in wanted.items() if column not in available]
    if missing:
        raise KeyError(f"{source}: missing column(s) {', '.join(missing)}; available: {available}")
    for canonical in REQUIRED:
        if canonical not in wanted:
            raise KeyError(f"{source}: no source column configured for required field {canonical!r}")
    return lf.with_row_index("row").select("row", *(pl.col(c).alias(k) for k, c in wanted.items()))


def _parsed_date(name: str, dtype: pl.DataType, date_format: str | None) -> pl.Expr:
    column = pl.col(name)
    if dtype == pl.String:
        return column.str.strip_chars().str.to_datetime(date_format, strict=False, time_unit="us")
    return column.cast(pl.Datetime("us"), strict=False)


def _parsed_int(name: str, dtype: pl.DataType) -> pl.Expr:
    column = pl.col(name).str.strip_chars() if dtype == pl.String else pl.col(name)
    return column.cast(pl.Int64, strict=False)


def validate_events(
    lf: pl.LazyFrame, columns: Mapping[str, str | None], source: str, date_format: str | None = None,
    integer_ids: bool = False,
) -> tuple[pl.DataFrame, IngestReport]:
    """Canonical, checked events from a lazy table; bad rows counted by reason.

    Reasons, first match wins: ``missing_<field>`` (person_id, item, start null),
    ``unparseable_<field>`` (a date or number that does not parse), ``end_before_start``,
    ``negative_<field>`` (days_supply, quantity), ``duplicate_row`` (same values as an
    earlier row on every canonical column but ``record_id``; the first is kept).
    ``integer_ids`` parses person_id and visit_id as integers (OMOP, MIMIC).
    """
    lf = _select(lf, columns, source)
    schema = lf.collect_schema()
    present = set(schema.names())
    ids = ID_FIELDS if integer_ids else ()
    parsed = {name: _parsed_date(name, schema[name], date_format) for name in DATE_FIELDS if name in present}
    parsed |= {name: pl.col(name).cast(pl.Float64, strict=False) for name in NUMBER_FIELDS if name in present}
    parsed |= {name: _parsed_int(name, schema[name]) for name in ids if name in present}
    # Checks read the raw column (name) and its parsed value (_name) side by side.
    checks: list[tuple[str, pl.Expr]] = [(f"missing_{name}", pl.col(name).is_null()) for name in REQUIRED]
    checks += [(f"unparseable_{n}", pl.col(n).is_not_null() & pl.col(f"_{n}").is_null()) for n in parsed]
    if {"start", "end"} <= present:
        checks.append(("end_before_start", pl.col("_end") < pl.col("_start")))
    checks += [(f"negative_{name}", pl.col(f"_{name}") < 0) for name in NUMBER_FIELDS if name in present]
    reason = pl.lit(None, dtype=pl.String)
    for label, failed in reversed(checks):
        reason = pl.when(failed.fill_null(False)).then(pl.lit(label)).otherwise(reason)
    lf = (
        lf.with_columns(pl.col("item").cast(pl.String).str.strip_chars().replace("", None))
        .with_columns(*(expr.alias(f"_{name}") for name, expr in parsed.items()))
        .with_columns(reason=reason)
        .drop(list(parsed))
        .rename({f"_{name}": name for name in parsed})
    )
    key = [c for c in lf.collect_schema().names() if c not in ("row", "record_id", "reason")]
    # The reason joins the key: rows are compared within their reason (good rows among good rows).
    duplicate = pl.col("reason").is_null() & ~pl.struct(*key, "reason").is_first_distinct()
    df = lf.with_columns(
        reason=pl.when(duplicate).then(pl.lit("duplicate_row")).otherwise(pl.col("reason"))
    ).collect(engine="streaming")
    bad = df.filter(pl.col("reason").is_not_null()).select("row", "reason")
    good = df.filter(pl.col("reason").is_null()).drop("row", "reason")
    counts = dict(sorted(bad.group_by("reason").len().iter_rows(), key=lambda kv: (-kv[1], kv[0])))
    report = IngestReport(source, df.height, good.height, counts, bad)
    return _canonical(good), report


def _canonical(df: pl.DataFrame) -> pl.DataFrame:
    """All canonical columns in order, absent ones as typed nulls."""
    types = {"start": pl.Datetime("us"), "end": pl.Datetime("us"), "days_supply": pl.Float64,
             "quantity": pl.Float64, "visit_id": pl.Int64, "record_id": pl.Int64, "item": pl.String}
    exprs = []
    for name in EVENT_COLUMNS:
        dtype = types.get(name)
        if name in df.columns:
            exprs.append(pl.col(name).cast(dtype, strict=False) if dtype else pl.col(name))
        else:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
    return df.select(exprs)


def read_omop(
    drug_exposure: str | Path,
    concept: str | Path | None = None,
    concept_ancestor: str | Path | None = None,
    columns: Mapping[str, str | None] | None = None,
    date_format: str | None = None,
    item_kind: str = "omop_concept",
) -> Usage:
    """OMOP CDM DRUG_EXPOSURE (items: drug_concept_id) with optional CONCEPT / CONCEPT_ANCESTOR.

    ``item_kind="drug_id"`` with ``columns={"item": "drug_source_value"}`` reads exports whose
    source values are catalog drug ids (e.g. the synthetic cohort of ``recommend.simulate``).
    """
    path = Path(drug_exposure)
    events, report = validate_events(
        scan_table(path), {**OMOP_DRUG_EXPOSURE, **(columns or {})}, str(path), date_format, integer_ids=True
    )
    vocabulary, files = {}, [path]
    for name, table, needed in (
        ("concept", concept, ("concept_id", "concept_name", "concept_class_id")),
        ("concept_ancestor", concept_ancestor, ("ancestor_concept_id", "descendant_concept_id")),
    ):
        if table:
            vocabulary[name] = read_columns(table, needed)
            files.append(Path(table))
    return Usage(events, item_kind, report, vocabulary, files)


def read_columns(path: str | Path, needed: Sequence[str]) -> pl.DataFrame:
    """The ``needed`` columns of a table (vocabularies, PERSON); fail naming the file and missing columns."""
    frame = scan_table(path)
    require_columns(frame.head(0).collect(), needed, str(path))
    return frame.select(needed).collect()


def read_omop_person(path: str | Path) -> tuple[pl.DataFrame, IngestReport]:
    """OMOP PERSON: person_id, gender_concept_id, year_of_birth and, when the file has it, care_site_id (all
    persons, incl. those without drugs), and what was dropped: a row without a person_id
    (``missing_person_id``) or with a value that is not an integer (``<column>_not_an_integer``, the first such
    column). A missing sex or year of birth keeps the person (``Patients.summary`` counts them)."""
    needed = ["person_id", "gender_concept_id", "year_of_birth"]
    columns = needed + [c for c in ("care_site_id",) if c in scan_table(path).collect_schema().names()]
    raw = read_columns(path, columns).with_row_index("row")
    parsed = raw.select("row", *(pl.col(c).cast(pl.Int64, strict=False) for c in columns))
    reason = pl.when(raw["person_id"].is_null()).then(pl.lit("missing_person_id"))
    for c in columns:
        reason = reason.when(raw[c].is_not_null() & parsed[c].is_null()).then(pl.lit(f"{c}_not_an_integer"))
    parsed = parsed.with_columns(reason=reason.otherwise(None))
    bad = parsed.filter(pl.col("reason").is_not_null()).select("row", "reason")
    good = parsed.filter(pl.col("reason").is_null()).drop("row", "reason")
    counts = dict(sorted(bad.group_by("reason").len().iter_rows(), key=lambda kv: (-kv[1], kv[0])))
    return good, IngestReport(str(path), raw.height, good.height, counts, bad)


def read_omop_conditions(path: str | Path, date_format: str | None = None) -> tuple[pl.DataFrame, IngestReport]:
    """OMOP CONDITION_OCCURRENCE as events (``item`` = condition_concept_id), checked like drugs."""
    columns = {"person_id": "person_id", "item": "condition_concept_id", "start": "condition_start_date",
               "end": "condition_end_date", "visit_id": "visit_occurrence_id", "record_id": "condition_occurrence_id"}
    return validate_events(scan_table(path), columns, str(path), date_format, integer_ids=True)


def condition_names(concept: pl.DataFrame | None, condition_occurrence: Path) -> dict[str, str]:
    """Condition concept id -> a name: its CONCEPT name when the vocabulary is given, else the commonest
    ``condition_source_value`` written with it (e.g. the synthetic cohort's ``hypertension``)."""
    if concept is not None:
        return dict(zip(concept["concept_id"].cast(pl.String), concept["concept_name"]))
    lf = scan_table(condition_occurrence)
    if "condition_source_value" not in lf.collect_schema().names():
        return {}
    pairs = (lf.select(code=pl.col("condition_concept_id").cast(pl.String), name=pl.col("condition_source_value"))
             .drop_nulls().group_by("code").agg(pl.col("name").mode().sort().first()).collect())
    return dict(zip(pairs["code"], pairs["name"]))


def with_patients(usage: Usage, person: Path | None, condition_occurrence: Path | None,
                  date_format: str | None = None) -> Usage:
    """``usage`` with the PERSON and CONDITION_OCCURRENCE tables read in (each optional) as its ``patients``."""
    persons, person_report = read_omop_person(person) if person else (None, None)
    conditions, report = read_omop_conditions(condition_occurrence, date_format) if condition_occurrence else (None, None)
    files = [*usage.files, *(Path(p) for p in (person, condition_occurrence) if p)]
    names = condition_names(usage.vocabulary.get("concept"), condition_occurrence) if conditions is not None else None
    return replace(usage, patients=Patients(persons, None if conditions is None else
                                            conditions.select("person_id", "item", "start"), names),
                   condition_report=report, person_report=person_report, files=files)


def read_mimic_prescriptions(
    path: str | Path, columns: Mapping[str, str | None] | None = None, date_format: str | None = None,
    ndc: str | None = None,
) -> Usage:
    """MIMIC-IV ``hosp/prescriptions`` (items: the free-text ``drug`` name by default).

    ``ndc`` names the NDC column: items become ``NDC|drug`` (item kind ``ndc``), mapped through
    the FDA NDC directory (dataset ``ndc_ingredients``, put in the vocabulary) first and by the
    drug text when the NDC is missing (MIMIC writes 0), unknown or has no catalog substance. A
    row lacks its item only when both are empty. ``dose_val_rx`` is a per-dose amount written as
    text ("1-2", "0.5"), not a dispensed quantity, so it is not read unless mapped to ``quantity``.
    """
    path = Path(path)
    spec, lf = {**MIMIC_PRESCRIPTIONS, **(columns or {})}, scan_table(path)
    if ndc:
        available = lf.collect_schema().names()
        missing = [f"{c} (for {field})" for field, c in (("ndc", ndc), ("item", spec["item"])) if c not in available]
        if missing:
            raise KeyError(f"{path}: missing column(s) {', '.join(missing)}; available: {available}")
        parts = [pl.col(c).cast(pl.String).str.strip_chars().fill_null("") for c in (ndc, spec["item"])]
        item = pl.when((parts[0] == "") & (parts[1] == "")).then(None).otherwise(
            pl.concat_str([parts[0], pl.lit(NDC_SEPARATOR), parts[1]]))
        lf, spec = lf.with_columns(item.alias(_NDC_ITEM)), {**spec, "item": _NDC_ITEM}
    events, report = validate_events(lf, spec, str(path), date_format, integer_ids=True)
    if not ndc:
        return Usage(events, "name", report, files=[path])
    return Usage(events, "ndc", report, {"ndc": load_dataset("ndc_ingredients")},
                 [path, dataset_path("ndc_ingredients")])


def read_generic(
    path: str | Path, columns: Mapping[str, str | None] | None = None, item_kind: str = "drug_id",
    date_format: str | None = None,
) -> Usage:
    """A CSV/parquet table of (user, item, timestamp[, weight]); items are catalog drug ids or names.

    Only user, item and timestamp are read by default; a weight column is read as
    ``quantity`` when mapped (``columns={"quantity": "weight"}``).
    """
    if item_kind not in ("drug_id", "name"):
        raise ValueError(f"item_kind must be 'drug_id' or 'name', not {item_kind!r}")
    path = Path(path)
    events, report = validate_events(scan_table(path), {**GENERIC, **(columns or {})}, str(path), date_format)
    return Usage(events, item_kind, report, files=[path])


def load_usage(spec: Mapping[str, Any], patients: bool = True) -> Usage:
    """Read usage records as a ``usage/`` config describes them (``format``: omop, mimic, table).

    ``patients=False`` skips the OMOP PERSON and CONDITION_OCCURRENCE tables the spec names: only
    models with covariates read them, and diagnoses cost memory (the synthetic cohort has 4 of them for
    every 10 exposures).
    """
    fmt = spec["format"]
    columns = spec.get("columns") or None
    date_format = spec.get("date_format")
    if fmt == "omop":
        tables = {name: resolve_path(t.get("path"), t.get("dataset")) for name, t in spec["tables"].items()
                  if t and (t.get("path") or t.get("dataset"))}  # a table left at null is not given
        if "drug_exposure" not in tables:
            raise ValueError("usage.tables.drug_exposure: give the OMOP DRUG_EXPOSURE file (path=...)")
        usage = read_omop(tables["drug_exposure"], tables.get("concept"), tables.get("concept_ancestor"), columns,
                          date_format, spec.get("item_kind", "omop_concept"))
        if not patients:
            return usage
        return with_patients(usage, tables.get("person"), tables.get("condition_occurrence"), date_format)
    file = resolve_path(spec.get("path"), spec.get("dataset"))
    if fmt == "mimic":
        return read_mimic_prescriptions(file, columns, date_format, spec.get("ndc"))
    if fmt == "table":
        return read_generic(file, columns, spec.get("item_kind", "drug_id"), date_format)
    raise ValueError(f"unknown usage format {fmt!r}: use omop, mimic or table")
