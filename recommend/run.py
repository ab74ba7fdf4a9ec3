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
from recommend.interactions import Interactions, Weighting, build_interactions
from recommend.mapping import DrugCatalog
from recommend.models import FitContext, Recommender, build_model
from recommend.outputs import read_usage, write_recommendations
from recommend.patients import Patients, uses_covariates
from recommend.plots import content_of, write_neighbourhood
from recommend.safety import InteractionSpec
from recommend.splits import Fold, make_split, prediction_fold


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
