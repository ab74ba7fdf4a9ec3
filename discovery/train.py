"""Train a property / target prediction model: ``python -m discovery.train`` (Hydra app).

Data from the feature store (``data=``), a split (``split=``), a model (``model=``: gin,
dmpnn, attentivefp, ecfp_mlp, ecfp_svr, ecfp_rf, smiles_cnn; on drug–target pairs such as
``data=kiba_sample``: graphdta, ecfp_kmer_rf), a trainer and a logger. The run folder
gets ``data.parquet`` + ``splits.json`` (the exact rows and fold indices, reusable by other
tools), ``data_report.json``, ``predictions.parquet``, ``metrics.json``, ``checkpoint/``, ``run.json``
and, for the neural models, ``learning_curve.png`` and the per-epoch losses the logger keeps
(``logger=csv``: ``metrics_log.csv``). The app returns the validation metric (for sweeps).

Task types (``data.task_type``): regression, binary classification (0/1 labels) and
multiclass (one label column of class names, e.g. ``data=atc_main_group``: the ATC main
group of approved drugs). A multiclass ``predictions.parquet`` has ``target`` and
``prediction`` as class names, ``probability`` of the predicted class and one ``p_<class>``
probability column per class; ``ecfp_svr`` is regression only.

Examples::

    python -m discovery.train                                        # D-MPNN on ESOL, random split
    python -m discovery.train model=gin data=freesolv split=scaffold
    python -m discovery.train data=moleculeace data.target=CHEMBL2047 split=moleculeace model=ecfp_svr
    python -m discovery.train -m seed=0,1,2 model=gin,dmpnn
    python -m discovery.train ensemble=5
    python -m discovery.train data=freesolv init_from=outputs/train/esol/dmpnn/<run>   # fine-tune its encoder
    python -m discovery.train data=kiba_sample model=graphdta split=cold_target
    python -m discovery.train data=atc_main_group model=ecfp_rf
"""

from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import polars as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from featurestore.io import write_json_atomic, write_parquet_atomic
from featurestore.provenance import seed_everything, write_run_record
from featurestore.runs import flatten
from featurestore.tracking import TrackingLogger, numbers, start_logger

from discovery.checkpoint import Predictor, TargetScaler, pretrained_encoder
from discovery.data import MoleculeDataset, class_names
from discovery.dta import build_training_set
from discovery.inputs import fingerprint_array, input_dims, model_inputs
from discovery.metrics import evaluate, objective
from discovery.models import ClassicalModel, build_model, model_class
from discovery.plots import plot_learning_curves
from discovery.splits import FOLDS, Split
from discovery.trainer import EpochCallback, TrainerConfig, fit, labelled_examples

log = logging.getLogger(__name__)


def fit_member(
    name: str, hparams: dict[str, Any], inputs: list, targets: np.ndarray, masks: dict[str, np.ndarray], split: Split,
    trainer: TrainerConfig, task_type: str, seed: int, on_epoch: EpochCallback, fingerprints: np.ndarray | None = None,
    encoder: dict[str, torch.Tensor] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Build one ensemble member from ``seed`` and fit it on scaled ``targets``.

    ``fingerprints`` (``fingerprint_array(inputs)``, built once per ensemble) feeds a classical
    model; ``encoder`` (:func:`~discovery.checkpoint.pretrained_encoder`) replaces a graph model's
    initial encoder weights. Returns the model and what its training recorded: the epoch history
    and best epoch, or what a classical model chose on validation.
    """
    seed_everything(seed)  # before building: the seed decides the initial weights
    model = build_model(name, hparams)
    if encoder is not None:
        model.encoder.load_state_dict(encoder)
    rows = {fold: split.rows(fold) for fold in ("train", "val")}
    if isinstance(model, ClassicalModel):
        if fingerprints is None:
            fingerprints = fingerprint_array(inputs)
        chosen = model.fit(
            fingerprints[rows["train"]], targets[rows["train"]], masks["train"][rows["train"]],
            fingerprints[rows["val"]], targets[rows["val"]], masks["val"][rows["val"]], seed,
        )
        return model, {"seed": seed, "history": [], **chosen}
    train, val = (labelled_examples(inputs, rows[fold], targets, masks[fold]) for fold in ("train", "val"))
    result = fit(model, train, val, trainer, task_type, seed, on_epoch)
    return model, {"seed": seed, "history": result.history, "best_epoch": result.best_epoch,
                   "best_val_loss": result.best_val_loss}


def _log_epoch(logger: TrackingLogger, group: str, epoch: int, values: dict[str, float]) -> None:
    """One epoch of one ensemble member (``group``: ``member<k>``), the epoch as the step."""
    logger.log_metrics(epoch, {name: value for name, value in values.items() if name != "epoch"}, group)


def fit_ensemble(
    cfg: DictConfig, dataset: MoleculeDataset, split: Split, masks: dict[str, np.ndarray], logger: TrackingLogger
) -> tuple[Predictor, list[dict[str, Any]], list]:
    """Scale the targets on the training labels and fit ``cfg.ensemble`` members (seeds ``seed``, ``seed+1``, ...).

    ``masks`` holds each fold's labels (``split.label_mask``). Also returns the model inputs
    (one per dataset row), so predictions reuse them instead of rebuilding them.
    """
    if not masks["train"].any():
        raise ValueError(f"{dataset.name}: the split leaves no training labels")
    if not masks["val"].any():
        log.info("no validation labels: a final fit on all training data (fixed epochs, last epoch kept)")
    targets = dataset.target_matrix()
    regression = dataset.task_type == "regression"
    scaler = TargetScaler.fit(targets, masks["train"]) if regression else TargetScaler.identity(len(dataset.tasks))
    scaled = scaler.transform(targets)

    cls = model_class(cfg.model.name)
    inputs = model_inputs(cls.input_kind, dataset.features)
    hparams = {**OmegaConf.to_container(cfg.model.hparams, resolve=True), "n_tasks": len(dataset.tasks),
               **input_dims(cls.input_kind, inputs, dataset.views)}
    multiclass = dataset.task_type == "multiclass"
    fingerprints = None
    if issubclass(cls, ClassicalModel):
        hparams["task_type"] = dataset.task_type
        if multiclass:
            hparams["n_classes"] = len(dataset.classes)
        fingerprints = fingerprint_array(inputs)
    elif multiclass:  # a neural model's head has one output per task; here the single task has one per class
        hparams["n_tasks"] = len(dataset.classes)
    trainer: TrainerConfig = instantiate(cfg.trainer)
    if trainer.num_threads:
        torch.set_num_threads(trainer.num_threads)
    encoder = pretrained_encoder(cfg.init_from, cfg.model.name, hparams) if cfg.get("init_from") else None
    members, fitted = [], []
    for k in range(cfg.ensemble):
        model, info = fit_member(cfg.model.name, hparams, inputs, scaled, masks, split, trainer, dataset.task_type,
                                 cfg.seed + k, partial(_log_epoch, logger, f"member{k}"), fingerprints, encoder)
        members.append(model)
        fitted.append(info)
    predictor = Predictor(cfg.model.name, members, dataset.tasks, dataset.task_type, scaler, dataset.view,
                          instantiate(cfg.standardizer), trainer.eval_batch_size, trainer.device,
                          dataset.views.get("protein"), dataset.classes)
    return predictor, fitted, inputs


def fold_predictions(predictor: Predictor, dataset: MoleculeDataset, split: Split, inputs: list) -> pl.DataFrame:
    """Every label with its fold and the predictor's mean (and std) for it (``inputs``: the model inputs per row).

    Columns: ``inchikey, smiles[, protein_id], task, split, target, prediction[, std][, cliff_mol], measurements``.
    Multiclass: ``target`` and ``prediction`` are class names, and ``probability`` (of the predicted class)
    and ``p_<class>`` (one per class) follow ``prediction``; ``std`` is that of the predicted class's probability.
    """
    labels = dataset.labels.drop("split", strict=False).with_columns(
        pl.Series("fold", split.assignment[dataset.label_cells()], dtype=pl.Int8)
    )
    multiclass = dataset.task_type == "multiclass"
    class_columns: list[str] = []
    if multiclass:
        labels = labels.with_columns(class_names("target", dataset.classes))
        class_columns = ["probability", *[f"p_{name}" for name in dataset.classes]]
    frames = []
    for code, fold in enumerate(FOLDS):
        rows = split.rows(fold)
        if not len(rows):  # no validation share: a final fit on all training labels
            continue
        mean, std = predictor.predict_examples([inputs[row] for row in rows])
        if multiclass:
            grid = pl.DataFrame([pl.Series("row", rows, dtype=pl.Int64), pl.Series("task", dataset.tasks * len(rows)),
                                 *predictor.class_columns(mean, std)])
        else:
            grid = pl.DataFrame({
                "row": np.repeat(rows, len(dataset.tasks)),
                "task": dataset.tasks * len(rows),
                "prediction": mean.reshape(-1),
                "std": std.reshape(-1),
            })
        frames.append(labels.filter(pl.col("fold") == code).join(grid, on=["row", "task"], how="left").with_columns(
            pl.lit(fold).alias("split")
        ))
    predictions = pl.concat(frames).join(dataset.molecules, on="row")
    columns = ["inchikey", "smiles", *(["protein_id"] if "protein_id" in predictions.columns else []),
               "task", "split", "target", "prediction", *class_columns[:1],
               *(["std"] if len(predictor.members) > 1 else []), *class_columns[1:],
               *(["cliff_mol"] if "cliff_mol" in predictions.columns else []), "measurements"]
    return predictions.select(columns)


def run_training(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """The whole app without Hydra's entry point: data, split, fit members, predict, evaluate, save; returns the metrics."""
    start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    store = instantiate(cfg.store)
    dataset = build_training_set(instantiate(cfg.data), instantiate(cfg.model.view),
                                 instantiate(cfg.model.get("protein_view")), store, instantiate(cfg.standardizer))
    split = instantiate(cfg.split).assign(dataset, store)
    write_parquet_atomic(dataset.wide_table(), out_dir / "data.parquet")
    write_json_atomic(out_dir / "data_report.json", dataset.report.to_dict())
    write_json_atomic(out_dir / "splits.json", split.to_json(dataset.tasks))

    labelled = ~np.isnan(dataset.target_matrix())
    masks = {fold: split.label_mask(fold, labelled) for fold in FOLDS}
    labels_per_fold = {fold: int(mask.sum()) for fold, mask in masks.items()}
    log.info("labels per fold: %s", labels_per_fold)
    config = OmegaConf.to_container(cfg, resolve=True)
    logger = start_logger(cfg.logger, out_dir, "discovery.train", config)
    predictor, fitted, inputs = fit_ensemble(cfg, dataset, split, masks, logger)
    predictions = fold_predictions(predictor, dataset, split, inputs)
    write_parquet_atomic(predictions, out_dir / "predictions.parquet")
    metrics = evaluate(predictions, dataset.tasks, dataset.task_type, dataset.classes)
    metrics["objective"] = objective(metrics)
    metrics["labels_per_fold"] = labels_per_fold
    metrics["training"] = [{key: value for key, value in info.items() if key != "history"} for info in fitted]
    metrics["ensemble"] = cfg.ensemble
    metrics["wall_seconds"] = round(time.perf_counter() - start, 2)
    histories = [info["history"] for info in fitted if info["history"]]
    if histories:
        plot_learning_curves(histories, out_dir / "learning_curve.png", f"{cfg.model.name} on {dataset.name}")
    predictor.save(out_dir / "checkpoint", {"data": dataset.name, "member_seeds": [info["seed"] for info in fitted]})
    write_json_atomic(out_dir / "metrics.json", metrics)
    logger.log_summary(numbers(flatten(metrics, skip=["training"])))
    logger.close()
    write_run_record(out_dir, config, cfg.seed, [dataset.source_file])
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    metrics = run_training(cfg, out_dir)
    test = {name: value for name, value in metrics["test"].items() if value is not None}
    log.info("%s on %s: test %s; %s = %s (%.1f s) -> %s", cfg.model.name, cfg.data.name, test,
             metrics["objective"]["name"], metrics["objective"]["value"], metrics["wall_seconds"], out_dir)
    return metrics["objective"]["value"]


if __name__ == "__main__":
    main()
