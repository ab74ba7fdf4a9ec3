"""Recommend drugs to patients with a trained model: ``python -m recommend.predict`` (Hydra app).

``model_run`` is a ``python -m recommend.run`` output folder: its ``model.npz`` + ``model.json`` (loaded without
unpickling), ``items.parquet`` (the model's columns) and ``run.json`` (the catalog granularity, aliases and
interaction weighting it was trained with). The app reads usage records (``usage=``: the same readers, bad-row
reports and catalog mapping as ``recommend.run``), cuts them at the prediction time ``at`` (default: the day after
the last event, i.e. every patient's whole record) and ranks the whole catalog for every patient with a history
then: patients the model never saw (new records), or the same ones later. ALS re-solves each patient's factors from
their history; BPR cannot score new patients and says so.

Writes into the Hydra run folder: ``recommendations.parquet`` (top-K per patient, explained, screened for
interactions; ``interactions.parquet``), ``histories.parquet``, ``report.json`` (ingest, mapping, prediction
time, the model run), the ingest's bad rows, and ``run.json``.

Examples::

    python -m recommend.predict model_run=outputs/recommend/eunomia/ease/<time> usage=csv usage.path=new.csv
    python -m recommend.predict model_run=<run> at=2019-06-01 output.top_k=20 output.exclude=history
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import polars as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from featurestore.datasets import dataset_path, load_dataset
from featurestore.io import write_json_atomic
from featurestore.provenance import write_run_record
from recommend.interactions import Weighting, build_interactions
from recommend.mapping import DrugCatalog
from recommend.models import FitContext, Recommender, load_model
from recommend.patients import uses_covariates
from recommend.run import read_usage, write_recommendations
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
    usage_spec = OmegaConf.to_container(cfg.usage, resolve=True)
    events, usage, report = read_usage(usage_spec, uses_covariates(trained.model.params()), catalog,
                                       trained.granularity, out_dir)
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
    print(f"outputs: {out_dir}")


if __name__ == "__main__":
    main()
