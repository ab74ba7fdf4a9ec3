"""Drug recommendation from usage records: ``python -m recommend.run`` (Hydra app).

Reads usage records (``usage=``: eunomia by default, omop, mimic, csv), maps them to
catalog items, splits them in time (``usage_split=``), fits the model
(``recommender=``) on each fold's history and evaluates it on the whole catalog
(``evaluate=``). Writes into the Hydra run directory: ``metrics.json`` (per fold, task
and K), ``recommendations.parquet`` (top-K per patient at the test prediction time, or with
``final_fit=true`` after the last record, with explanations; content and hybrid models add each drug's summary and
keywords),
``histories.parquet`` (each patient's past drugs at that time), ``report.json`` (ingest, mapping and split report),
``ingest_errors.parquet`` (every dropped row and why; ``ingest_condition_errors.parquet`` and
``ingest_person_errors.parquet`` for CONDITION_OCCURRENCE and PERSON when given), ``model.npz`` + ``model.json``
(the test fold's model; ``final_fit=true``: refitted on every record after the evaluation, for ``recommend.predict``),
``users.parquet`` / ``items.parquet`` (the matrix id maps), ``run.json``, the logger's per-fold
metrics and params (``logger=csv``: ``metrics_log.csv``; ``logger=mlflow``: ``mlflow.db``), and for content and
hybrid models ``neighbourhood.png`` (structures of the most used drug's nearest drugs).
Returns the objective (validation NDCG@10 on new drugs by default) for sweeps.

Examples::

    python -m recommend.run
    python -m recommend.run recommender=als weighting.transform=bm25 usage_split=leave_last
    python -m recommend.run -m recommender=popularity,itemknn,als,ease   # + comparison.png
    python -m recommend.run final_fit=true   # then: python -m recommend.predict model_run=<this run> usage=...
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import polars as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from featurestore.datasets import dataset_path, load_dataset
from featurestore.io import write_json_atomic, write_parquet_atomic
from featurestore.provenance import seed_everything, write_run_record
from featurestore.runs import flatten
from featurestore.tracking import numbers, start_logger
from recommend.evaluate import evaluate_fold
from recommend.ingest import Usage, load_usage, release_events
from recommend.interactions import Interactions, Weighting, build_interactions, pair_matrix
from recommend.mapping import DrugCatalog, map_events
from recommend.models import FitContext, Recommender, build_model
from recommend.patients import Patients, uses_covariates
from recommend.plots import content_of, write_neighbourhood
from recommend.safety import InteractionSpec, screen_fold
from recommend.splits import Fold, excluded_items, make_split, prediction_fold


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
    names = items["name"].to_list()
    label = (patients or Patients()).label
    with_covariates = bool(model.params().get("covariates"))
    records = []
    for position, (row, person) in enumerate(zip(rows, persons.to_list())):
        valid = ids[position] >= 0
        recommended = ids[position][valid]
        because = (model.explain_many(int(row), train.matrix, recommended, N=n_explain) if n_explain > 0
                   else [[] for _ in recommended])
        for rank, (item, score, past) in enumerate(zip(recommended, scores[position][valid], because)):
            patient = ([label(f) for f, _ in model.explain_patient(int(row), int(item), n_explain)]
                       if with_covariates else None)
            records.append((person, rank + 1, int(item), float(score), [names[j] for j, _ in past],
                            [round(c, 6) for _, c in past], patient))
    # built by rows: columns built from lists of lists took 2 GiB more at 100k patients
    table = pl.DataFrame(
        records, orient="row",
        schema={"person_id": persons.dtype, "rank": pl.Int32, "column": pl.Int64, "score": pl.Float64,
                "explanation": pl.List(pl.String), "contribution": pl.List(pl.Float64),
                "patient_explanation": pl.List(pl.String)},
    )
    catalog = items.with_row_index("column").with_columns(pl.col("column").cast(pl.Int64))
    return table.join(catalog, on="column", how="left").select(
        "person_id", "rank", pl.col("item").alias("drug_id"), pl.col("name").alias("drug_name"),
        pl.col("atc").alias("atc_code"), "score", "explanation", "contribution",
        *(["patient_explanation"] if with_covariates else []),
    ).sort("person_id", "rank")


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


def split_events(events: pl.DataFrame, spec: dict[str, Any], report_path: Path) -> dict[str, Fold]:
    """:func:`make_split`, failing with what was left to split and where the ingest report is."""
    where = f"{events.height} mapped events of {events['person_id'].n_unique()} patients; see {report_path}"
    if events.is_empty():
        raise ValueError(f"no usage event left to split after ingest and catalog mapping ({where})")
    try:
        return make_split(events, spec)
    except ValueError as error:
        raise ValueError(f"usage split {spec['name']!r} failed on {where}: {error}") from error


def fit_fold(
    recommender: Mapping[str, Any], fold: Fold, items: pl.DataFrame, users: pl.Series, weighting: Weighting,
    progress: bool = False, split: Mapping[str, Any] | None = None, patients: Patients | None = None,
) -> tuple[Recommender, Interactions, float]:
    """Build the fold's history matrix and fit a model on it: ``(model, train, fit seconds)``.

    ``split`` (the run's ``usage_split`` spec) lets self-tuning models (hybrid, newstart) mirror it inside the
    history; ``patients`` (PERSON, diagnoses) reach the model cut to the fold's prediction times.
    """
    train = build_interactions(fold.history, users, items["item"], weighting, progress=progress)
    context = FitContext(items, users, fold.history, split, weighting,
                         patients.before(fold.history) if patients is not None else None)
    model = build_model(recommender).with_context(context)
    start = time.perf_counter()
    model.fit(train.matrix)
    return model, train, time.perf_counter() - start


def run_recommend(cfg: DictConfig, out_dir: Path, label: str | None = None) -> dict[str, Any]:
    """The whole job; returns ``{"metrics", "objective", ...}`` (see the module docstring)."""
    seed_everything(cfg.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    usage_spec = OmegaConf.to_container(cfg.usage, resolve=True)
    recommender = OmegaConf.to_container(cfg.recommender, resolve=True)
    catalog = DrugCatalog(load_dataset("drugs"), aliases=cfg.catalog.aliases)
    granularity = cfg.catalog.granularity
    events, usage, report = read_usage(usage_spec, uses_covariates(recommender), catalog, granularity, out_dir)
    folds = split_events(events, OmegaConf.to_container(cfg.usage_split, resolve=True), out_dir / "report.json")
    items = catalog.items(granularity)
    users = events["person_id"].unique().sort()
    weighting = Weighting(**OmegaConf.to_container(cfg.weighting, resolve=True))
    tasks = OmegaConf.to_container(cfg.evaluate.tasks, resolve=True)
    split = OmegaConf.to_container(cfg.usage_split, resolve=True)
    metrics: dict[str, Any] = {"label": label or recommender["name"], "recommender": recommender}
    config = OmegaConf.to_container(cfg, resolve=True)
    logger = start_logger(cfg.logger, out_dir, "recommend.run", config)  # params: the model's and the trial's
    for step, (name, fold) in enumerate(folds.items()):
        model, train, fit_seconds = fit_fold(recommender, fold, items, users, weighting, cfg.progress, split,
                                             usage.patients)
        results = evaluate_fold(model, train, fold, tasks, list(cfg.evaluate.ks), cfg.evaluate.mrr_depth,
                                cfg.evaluate.max_patients, cfg.seed)
        metrics[name] = {"fit_seconds": round(fit_seconds, 4), "split": fold.info, "tasks": results}
        logger.log_metrics(step, {"fit_seconds": fit_seconds, **numbers(flatten(results))}, name)
    if cfg.final_fit:  # a model of every record to recommend with (recommend.predict); the metrics stay the folds'
        fold = prediction_fold(events)
        model, train, fit_seconds = fit_fold(recommender, fold, items, users, weighting, cfg.progress, split,
                                             usage.patients)
        metrics["final_fit"] = {"fit_seconds": round(fit_seconds, 4), "split": fold.info}
    # The last fold (the test fold, or the final fit) serves the saved outputs: its model and matrix.
    model.save(out_dir / "model")
    if content_of(model) is not None:
        write_neighbourhood(model, train.matrix, out_dir / "neighbourhood.png")
    write_parquet_atomic(pl.DataFrame({"row": np.arange(users.len()), "person_id": users}), out_dir / "users.parquet")
    write_parquet_atomic(items.with_row_index("column"), out_dir / "items.parquet")
    screen = InteractionSpec.from_config(cfg.get("interactions"))
    report["interactions"] = write_recommendations(model, train, fold, items, cfg.output, screen, granularity,
                                                   catalog, usage, out_dir)
    objective = cfg.objective
    value = metrics[objective.fold]["tasks"][objective.task].get(objective.metric)
    metrics["objective"] = {**OmegaConf.to_container(objective), "value": value}
    write_json_atomic(out_dir / "metrics.json", metrics)
    logger.log_summary(numbers({"objective": value}))
    logger.close()
    report |= {"matrix": {"patients": users.len(), "items": items.height, "weighting": weighting.__dict__},
               "split": {name: fold.info for name, fold in folds.items()}}
    write_json_atomic(out_dir / "report.json", report)
    write_run_record(out_dir, config, cfg.seed, [*usage.files, dataset_path("drugs"), *screen.files()])
    return {"metrics": metrics, "objective": value, "report": report}


def _summary(metrics: Mapping[str, Any], ks: list[int]) -> str:
    lines = [f"{metrics['label']}:"]
    for fold in ("validation", "test"):
        for task, values in metrics[fold]["tasks"].items():
            shown = ", ".join(f"{m}@{k} {values[f'{m}@{k}']:.4f}" for k in ks[-2:] for m in ("ndcg", "recall")
                              if f"{m}@{k}" in values)
            lines.append(f"  {fold:10s} {task:5s} patients {values.get('patients', 0):5d}  {shown}")
        lines.append(f"  {fold:10s} fit {metrics[fold]['fit_seconds']:.3f} s")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="../conf", config_name="recommend")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    result = run_recommend(cfg, out_dir, label=hydra_cfg.runtime.choices.get("recommender"))
    print(_summary(result["metrics"], list(cfg.evaluate.ks)))
    print(f"objective {cfg.objective.fold}/{cfg.objective.task}/{cfg.objective.metric} = {result['objective']}")
    print(f"outputs: {out_dir}")
    return result["objective"]


if __name__ == "__main__":
    main()
