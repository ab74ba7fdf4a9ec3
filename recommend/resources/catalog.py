"""Resource catalogs: the shipped PubMed corpus or a user's own CSV/JSONL/parquet file.

Every catalog is normalized to one schema (:data:`CATALOG_SCHEMA`): ``doc_id``,
``title``, ``text``, ``keywords`` (MeSH headings or any controlled terms; for PubMed
the MeSH headings then the chemicals, de-duplicated) and ``url``. A user's file is
read row by row: a row that fails a check is dropped and reported with its reason
(first failing check wins), the rest are kept; a missing or empty file or a missing
configured column fails at once, naming the file and the column.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from featurestore.datasets import dataset_path, load_dataset
from recommend.ingest import IngestReport

CATALOG_SCHEMA = {
    "doc_id": pl.String, "title": pl.String, "text": pl.String, "keywords": pl.List(pl.String), "url": pl.String,
}
# Canonical field -> column in the user's file (override any entry from the config).
DEFAULT_COLUMNS = {"id": "id", "title": "title", "text": "text", "keywords": "keywords", "url": "url"}
REQUIRED_FIELDS = ("id", "title", "text")


def load_pubmed_catalog(data_dir: Path | str | None = None) -> pl.DataFrame:
    """The shipped ``pubmed_resources`` dataset in the catalog schema (``doc_id`` = PMID)."""
    df = load_dataset("pubmed_resources", data_dir)
    return df.select(
        doc_id=pl.col("pmid").cast(pl.String),
        title="title",
        text="abstract",
        keywords=pl.concat_list("mesh_terms", "chemicals").list.unique(maintain_order=True),
        url="url",
    )


def _read_rows(path: Path) -> tuple[list[dict[str, Any] | None], list[str], str]:
    """Raw rows (``None`` where a line does not parse), the column names seen, the format."""
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        rows: list[dict[str, Any] | None] = []
        columns: dict[str, None] = {}
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if not isinstance(record, dict):
                rows.append(None)
                continue
            columns.update(dict.fromkeys(record))
            rows.append(record)
        return rows, list(columns), "jsonl"
    if path.suffix.lower() == ".parquet":
        df = pl.read_parquet(path)
        return df.to_dicts(), df.columns, "parquet"
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t" if path.suffix.lower() in (".tsv", ".txt") else ",")
        # csv puts surplus fields under the key None and fills missing ones with None:
        # a ragged line is a malformed row, marked here as None.
        rows = [None if None in row or None in row.values() else row for row in reader]
        return rows, list(reader.fieldnames or []), "csv"


def _keywords(value: Any, separator: str) -> list[str] | None:
    """Keywords from a list or a separated string; ``None`` when the value has another type."""
    if value is None:
        return []
    if isinstance(value, str):
        return [k.strip() for k in value.split(separator) if k.strip()]
    if isinstance(value, list) and all(isinstance(k, str) for k in value):
        return [k.strip() for k in value if k.strip()]
    return None


def _text_field(value: Any) -> str | None:
    """Stripped text; ``None`` when missing, blank or not a scalar."""
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    text = " ".join(str(value).split())
    return text or None


def read_user_catalog(
    path: str | Path, columns: Mapping[str, str | None] | None = None, keyword_separator: str = ";"
) -> tuple[pl.DataFrame, IngestReport]:
    """A user's catalog (CSV/TSV, JSONL or parquet) in the catalog schema, plus the bad rows.

    Reasons: ``malformed_row`` (a CSV line with the wrong number of fields, a JSONL line
    that is not a JSON object), ``missing_id``, ``missing_title``, ``missing_text``,
    ``bad_keywords`` (neither a string nor a list of strings), ``bad_url`` (not http(s)),
    ``duplicate_id`` (the first row with an id is kept). ``row`` is the 0-based data row.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"catalog file not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"catalog file is empty: {path}")
    mapping = {**DEFAULT_COLUMNS, **(columns or {})}
    raw, seen, fmt = _read_rows(path)
    if not raw:
        raise ValueError(f"catalog file has no rows: {path}")
    missing = [f"{mapping[f]} (for {f})" for f in REQUIRED_FIELDS if mapping.get(f) not in seen]
    # JSONL rows may omit optional keys; a CSV header must name every configured column.
    if fmt != "jsonl":
        missing += [f"{mapping[f]} (for {f})" for f in ("keywords", "url") if mapping.get(f) and mapping[f] not in seen]
    if missing:
        raise KeyError(f"{path}: missing column(s) {', '.join(missing)}; available: {seen}")
    good, bad, ids = [], [], set()
    for row_number, row in enumerate(raw):
        reason, record = _check_row(row, mapping, keyword_separator, ids)
        if reason:
            bad.append((row_number, reason))
        else:
            ids.add(record["doc_id"])
            good.append(record)
    bad_rows = pl.DataFrame(bad, schema={"row": pl.Int64, "reason": pl.String}, orient="row")
    counts = dict(sorted(bad_rows.group_by("reason").len().iter_rows(), key=lambda kv: (-kv[1], kv[0])))
    report = IngestReport(str(path), len(raw), len(good), counts, bad_rows)
    return pl.DataFrame(good, schema=CATALOG_SCHEMA, orient="row"), report


def _check_row(
    row: Mapping[str, Any] | None, mapping: Mapping[str, str | None], separator: str, ids: set[str]
) -> tuple[str | None, dict[str, Any]]:
    """(first failing reason or None, the record in the catalog schema)."""
    if row is None:
        return "malformed_row", {}
    get = {field: row.get(column) if column else None for field, column in mapping.items()}
    record = {"doc_id": _text_field(get["id"]), "title": _text_field(get["title"]), "text": _text_field(get["text"])}
    for field, key in (("id", "doc_id"), ("title", "title"), ("text", "text")):
        if record[key] is None:
            return f"missing_{field}", record
    keywords = _keywords(get.get("keywords"), separator)
    if keywords is None:
        return "bad_keywords", record
    url = _text_field(get.get("url"))
    if url is not None and not url.startswith(("http://", "https://")):
        return "bad_url", record
    if record["doc_id"] in ids:
        return "duplicate_id", record
    return None, {**record, "keywords": list(dict.fromkeys(keywords)), "url": url}


def load_catalog(spec: Mapping[str, Any]) -> tuple[pl.DataFrame, IngestReport | None, list[Path]]:
    """The catalog a ``catalog`` config names: the shipped PubMed corpus (``path: null``) or a file.

    Returns the catalog, the ingest report (``None`` for the shipped corpus) and the files read.
    """
    if not spec.get("path"):
        return load_pubmed_catalog(), None, [dataset_path("pubmed_resources")]
    path = Path(spec["path"])
    catalog, report = read_user_catalog(path, spec.get("columns"), spec.get("keyword_separator", ";"))
    if catalog.is_empty():
        raise ValueError(f"{path}: no valid row ({report.dropped})")
    return catalog, report, [path]
