"""The outputs a recommend app writes for a fold, and the usage reading both apps share (``recommend.run``,
``recommend.predict``): usage records read and mapped to catalog items with their report, and the top-K table per
patient with explanations, the interaction screen, histories and the ingest's bad rows."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from featurestore.io import write_json_atomic, write_parquet_atomic
from recommend.ingest import Usage, load_usage, release_events
from recommend.interactions import Interactions, pair_matrix
from recommend.mapping import DrugCatalog, map_events
from recommend.models import Recommender
from recommend.patients import Patients
from recommend.plots import content_of
from recommend.safety import InteractionSpec, screen_fold
from recommend.splits import Fold, excluded_items


def recommendation_table(
    model: Recommender, train: Interactions, fold: Fold, items: pl.DataFrame, top_k: int, exclude: str,
    n_explain: int, patients: Patients | None = None,
) -> pl.DataFrame:
    """Top-K per patient with a history at the fold's prediction time, with explanations.

    ``explanation`` lists the names of the patient's past items that contribute most
    to the score (models whose scores do not decompose over past items give none).
    Models with covariates add ``patient_explanation``: the patient's features (diagnoses, age
    band, sex, practice; labelled by ``patients``) that raise the drug's score most.
    """
    persons = fold.history["person_id"].unique().sort()
    rows = train.rows(persons)
    user_items = train.matrix[rows]
    mask = pair_matrix(excluded_items(fold, exclude), persons, train)
    ids, scores = model.recommend(rows, user_items, N=top_k, filter_already_liked_items=False, exclude=mask)
    valid = ids >= 0  # a prefix of each row: -1 pads rankings shorter than top_k
    names = items["name"].to_list()
    label = (patients or Patients()).label
    with_covariates = bool(model.params().get("covariates"))
    explained, contributions, explained_lengths, features, feature_lengths = [], [], [], [], []
    for position, row in enumerate(rows):  # explanations are per patient; the rest is vectorized
        recommended = ids[position][valid[position]]
        for past in (model.explain_many(int(row), train.matrix, recommended, N=n_explain) if n_explain > 0
                     else [[] for _ in recommended]):
            explained += [names[j] for j, _ in past]
            contributions += [round(c, 6) for _, c in past]
            explained_lengths.append(len(past))
        for item in recommended if with_covariates else ():
            labels = [label(f) for f, _ in model.explain_patient(int(row), int(item), n_explain)]
            features += labels
            feature_lengths.append(len(labels))
    table = pl.DataFrame({
        "person_id": persons.gather(np.repeat(np.arange(persons.len()), valid.sum(axis=1))),
        "rank": (np.nonzero(valid)[1] + 1).astype(np.int32),
        "column": ids[valid].astype(np.int64),
        "score": scores[valid].astype(np.float64),
        "explanation": _list_column(explained, explained_lengths, pa.string()),
        "contribution": _list_column(contributions, explained_lengths, pa.float64()),
        **({"patient_explanation": _list_column(features, feature_lengths, pa.string())} if with_covariates else {}),
    })
    catalog = items.with_row_index("column").with_columns(pl.col("column").cast(pl.Int64))
    return table.join(catalog, on="column", how="left").select(
        "person_id", "rank", pl.col("item").alias("drug_id"), pl.col("name").alias("drug_name"),
        pl.col("atc").alias("atc_code"), "score", "explanation", "contribution",
        *(["patient_explanation"] if with_covariates else []),
    ).sort("person_id", "rank")


def _list_column(values: list, lengths: list[int], kind: pa.DataType) -> pl.Series:
    """A list column from its flat values and each row's length (Python lists of lists cost polars 2 GiB more for the
    recommendations of 100k patients, and most of the table's time)."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return pl.Series(pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values, type=kind)))


def with_descriptions(table: pl.DataFrame, model: Recommender) -> pl.DataFrame:
    """Content and hybrid models: each recommended drug's ``summary`` and ``keywords`` (``drug_summary`` view)
    and ``shared_keywords``, those of its keywords that the past drugs in its explanation also have.

    Other models, and content models without keywords (ATC classes, own annotations), get the table back as is.
    """
    content = content_of(model)
    if content is None or "summary_keywords" not in content.features:
        return table
    by_name = {name: set(content.item_keywords(i)) for i, name in enumerate(content.features["names"])}
    described = table.join(content.descriptions(table["drug_id"].unique().sort()), on="drug_id", how="left")
    shared = [[k for k in (keywords or []) if any(k in by_name.get(name, ()) for name in because)]
              for keywords, because in described.select("keywords", "explanation").iter_rows()]
    return described.with_columns(shared_keywords=pl.Series(shared, dtype=pl.List(pl.String)))


def history_table(fold: Fold, items: pl.DataFrame) -> pl.DataFrame:
    """Each patient's past drugs at the fold's prediction time: person_id, drug_id, drug_name, first, last, events."""
    return (
        fold.history.group_by("person_id", "item")
        .agg(first=pl.col("start").min(), last=pl.col("start").max(), events=pl.len())
        .join(items.select("item", "name"), on="item", how="left")
        .select("person_id", pl.col("item").alias("drug_id"), pl.col("name").alias("drug_name"), "first", "last",
                "events")
        .sort("person_id", "first", "drug_id")
    )


def read_usage(
    spec: Mapping[str, Any], covariates: bool, catalog: DrugCatalog, granularity: str, out_dir: Path,
) -> tuple[pl.DataFrame, Usage, dict[str, Any]]:
    """Read usage records (``usage/`` config ``spec``) and map them to catalog items: ``(events, usage without its
    source events, report)``. ``covariates``: also read PERSON and CONDITION_OCCURRENCE when the spec names them.

    The report (ingest, mapping, and the PERSON and diagnosis ingest) is written to ``out_dir/report.json`` at
    once, so that a run failing later still leaves what was read and mapped.
    """
    usage = load_usage(spec, patients=covariates)
    events, mapping = map_events(usage.events, usage.item_kind, catalog, granularity, usage.vocabulary)
    usage = release_events(usage)
    report: dict[str, Any] = {"ingest": usage.report.to_dict(), "mapping": mapping.to_dict()}
    if usage.condition_report is not None:
        report["ingest_conditions"] = usage.condition_report.to_dict()
    if usage.person_report is not None:
        report["ingest_persons"] = usage.person_report.to_dict()
    if patients := usage.patients.summary():
        report["patients"] = patients
    write_json_atomic(out_dir / "report.json", report)
    return events, usage, report


def write_recommendations(
    model: Recommender, train: Interactions, fold: Fold, items: pl.DataFrame, output: Mapping[str, Any],
    screen: InteractionSpec, granularity: str, catalog: DrugCatalog, usage: Usage, out_dir: Path,
) -> dict[str, Any]:
    """Write the fold's ``recommendations.parquet`` (top ``output.top_k`` per patient, explained, screened for
    interactions: ``interactions.parquet``), ``histories.parquet`` and the ingest's bad rows
    (``ingest_errors.parquet``, and ``ingest_condition_errors``/``ingest_person_errors`` when read); returns the
    interaction screen's report."""
    table = recommendation_table(model, train, fold, items, screen.depth(output["top_k"]), output["exclude"],
                                 output["explain"], usage.patients)  # screen.depth: ranks deeper, to backfill
    table, screened = screen_fold(table, fold, screen, output["top_k"], granularity, catalog.ids, out_dir)
    write_parquet_atomic(with_descriptions(table, model), out_dir / "recommendations.parquet")
    write_parquet_atomic(history_table(fold, items), out_dir / "histories.parquet")
    write_parquet_atomic(usage.report.bad_rows, out_dir / "ingest_errors.parquet")
    if usage.condition_report is not None:
        write_parquet_atomic(usage.condition_report.bad_rows, out_dir / "ingest_condition_errors.parquet")
    if usage.person_report is not None:
        write_parquet_atomic(usage.person_report.bad_rows, out_dir / "ingest_person_errors.parquet")
    return screened
