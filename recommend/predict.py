"""Recommend drugs to patients with a trained model: ``python -m recommend.predict`` (Hydra app).

``model_run`` is a ``python -m recommend.run`` output folder: its ``model.npz`` + ``model.json`` (loaded without
unpickling), ``items.parquet`` (the model's columns) and ``run.json`` (the catalog granularity, aliases and
interaction weighting it was trained with). The app reads usage records (``usage=``: the same readers, bad-row
reports and catalog mapping as ``recommend.run``; or ``drugs=[...]``: one patient's drug names), cuts them at the
prediction time ``at`` (default: the day after the last event, i.e. every patient's whole record) and ranks the
whole catalog for every patient with a history then: patients the model never saw (new records), or the same ones
later. ALS re-solves each patient's factors from their history; BPR cannot score new patients and says so.

Writes into the Hydra run folder: ``recommendations.parquet`` (top-K per patient, explained, screened for
interactions; ``interactions.parquet``), ``histories.parquet``, ``report.json`` (ingest, mapping, prediction
time, the model run), the ingest's bad rows, and ``run.json``.

Examples::

    python -m recommend.predict model_run=outputs/recommend/eunomia/ease/<time> usage=csv usage.path=new.csv
    python -m recommend.predict model_run=<run> at=2019-06-01 output.top_k=20 output.exclude=history
    python -m recommend.predict model_run=<run> 'drugs=[metformin,lisinopril]'   # one patient, printed
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import hydra
import polars as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from featurestore.datasets import dataset_path, load_dataset
from featurestore.io import write_json_atomic, write_text_atomic
from featurestore.provenance import write_run_record
from recommend.interactions import Weighting, build_interactions
from recommend.mapping import DrugCatalog
from recommend.models import FitContext, Recommender, load_model
from recommend.outputs import read_usage, write_recommendations
from recommend.patients import uses_covariates
from recommend.safety import InteractionSpec
from recommend.splits import prediction_fold


@dataclass(frozen=True)
class TrainedRun:
    """What a ``recommend.run`` folder holds to recommend with: the model and how its matrix was built."""

    path: Path
    model: Recommender
    items: pl.DataFrame  # the model's matrix columns, in order: item, name, atc
    granularity: str
    aliases: dict[str, str] | None
    weighting: Weighting


def load_trained(run_dir: str | Path) -> TrainedRun:
    """Load a ``recommend.run`` output folder; fails naming the missing file, or a model and item table that
    disagree."""
    run_dir = Path(run_dir)
    for name in ("run.json", "items.parquet", "model.json", "model.npz"):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir} is not a recommend.run output folder: {name} is missing")
    config = json.loads((run_dir / "run.json").read_text())["config"]
    items = pl.read_parquet(run_dir / "items.parquet").drop("column")
    model = load_model(run_dir / "model")
    if model.n_items != items.height:
        raise ValueError(f"{run_dir}: the model scores {model.n_items} items but items.parquet lists {items.height}")
    return TrainedRun(run_dir, model, items, config["catalog"]["granularity"], config["catalog"].get("aliases"),
                      Weighting(**config["weighting"]))


def drug_list_usage(drugs: Sequence[str], out_dir: Path) -> dict[str, Any]:
    """A ``usage/`` spec for one patient, ``patient``, taking ``drugs`` (free-text names, in the order started, a
    day apart) until the prediction time, so that they count as current drugs (excluded from the ranking and
    screened for interactions); the table is kept as ``out_dir/patient_drugs.csv``."""
    first = date(2000, 1, 1)
    table = pl.DataFrame({
        "user": "patient", "item": [str(drug) for drug in drugs],
        "start": [str(first + timedelta(days=day)) for day in range(len(drugs))],
        "end": str(first + timedelta(days=len(drugs))),  # the default prediction time: the day after the last start
    })
    path = write_text_atomic(out_dir / "patient_drugs.csv", table.write_csv())
    return {"name": "drugs", "format": "table", "path": str(path), "item_kind": "name",
            "columns": {"person_id": "user", "item": "item", "start": "start", "end": "end"}}


def predict_recommend(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """The whole job (see the module docstring); returns the report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    trained = load_trained(cfg.model_run)
    catalog = DrugCatalog(load_dataset("drugs"), aliases=trained.aliases)
    current = catalog.items(trained.granularity)
    if not current["item"].equals(trained.items["item"]):
        raise ValueError(f"{trained.path}: the model was trained on {trained.items.height} catalog items "
                         f"(granularity {trained.granularity}); this catalog has {current.height} or orders them "
                         "differently: retrain it with python -m recommend.run")
    covariates = uses_covariates(trained.model.params())
    if cfg.get("drugs") and covariates:
        raise ValueError(f"{trained.path}: this {trained.model.name} model reads the patients' sex, age and diagnoses, "
                         "which a drug list does not give: use usage=omop with usage.tables.person and "
                         "usage.tables.condition_occurrence")
    usage_spec = (drug_list_usage(list(cfg.drugs), out_dir) if cfg.get("drugs")
                  else OmegaConf.to_container(cfg.usage, resolve=True))
    events, usage, report = read_usage(usage_spec, covariates, catalog, trained.granularity, out_dir)
    if events.is_empty():
        raise ValueError(f"no usage event left to recommend from after ingest and catalog mapping; see "
                         f"{out_dir / 'report.json'}")
    fold = prediction_fold(events, cfg.at)
    users = fold.history["person_id"].unique().sort()
    if users.is_empty():
        raise ValueError(f"no patient has a usage event before the prediction time {fold.info['reference']} "
                         f"({events.height} mapped events; see {out_dir / 'report.json'})")
    train = build_interactions(fold.history, users, trained.items["item"], trained.weighting, progress=cfg.progress)
    patients = usage.patients.before(fold.history)
    trained.model.with_patients(FitContext(trained.items, users, fold.history, None, trained.weighting, patients))
    screen = InteractionSpec.from_config(cfg.get("interactions"))
    report["interactions"] = write_recommendations(trained.model, train, fold, trained.items, cfg.output, screen,
                                                   trained.granularity, catalog, usage, out_dir)
    report |= {"model_run": str(trained.path), "model": trained.model.name, "recommended_patients": users.len(),
               "prediction": fold.info}
    write_json_atomic(out_dir / "report.json", report)
    write_run_record(out_dir, OmegaConf.to_container(cfg, resolve=True), cfg.seed,
                     [*usage.files, dataset_path("drugs"), *screen.files(), trained.path / "model.npz",
                      trained.path / "model.json", trained.path / "items.parquet"])
    return report


@hydra.main(version_base="1.3", config_path="../conf", config_name="recommend_predict")
def main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    report = predict_recommend(cfg, out_dir)
    print(f"{report['model']} from {report['model_run']}: top {cfg.output.top_k} for "
          f"{report['recommended_patients']} patients at {report['prediction']['reference']}")
    if cfg.get("drugs"):
        with pl.Config(fmt_str_lengths=60, tbl_width_chars=160, tbl_rows=-1):
            print(pl.read_parquet(out_dir / "recommendations.parquet").select(
                "rank", "drug_name", "atc_code", "score", "explanation",
                *(["interaction_severity"] if cfg.interactions.table else [])))
    print(f"outputs: {out_dir}")


if __name__ == "__main__":
    main()
