"""Target prediction from a multitask checkpoint: rank targets per molecule, and measure that ranking.

:func:`predict_targets` orders every task of a (MoleculeACE multitask) checkpoint by predicted
p-activity for each molecule. :func:`evaluate_target_ranking` takes the checkpoint's held-out
test labels and, for each (molecule, measured target), the rank of that target among all
targets by the model and by a nearest-neighbour baseline: a target's score is the highest
ECFP4 Tanimoto of the molecule to that target's training molecules.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from featurestore import FeatureStore, fingerprint_matrix
from featurestore.similarity import tanimoto_blocks

from discovery.checkpoint import Predictor, checkpoint_paths
from discovery.ranking.similarity import ECFP4, fold_labels, run_data, training_fingerprints


RANK_BY = ("activity", "relative")


def relative_activity(predictor: Predictor, predictions: np.ndarray) -> np.ndarray:
    """``(molecules, tasks)`` predictions as z-scores of each task's training labels (the checkpoint's target
    scaling): how active a molecule is *for that target*, so that targets whose ligands are all potent do not
    come first for every molecule."""
    return predictor.scaler.transform(predictions)


def predict_targets(predictor: Predictor, smiles: Sequence[str], store: FeatureStore,
                    rank_by: str = "activity") -> pl.DataFrame:
    """One row per input x task, best target first per molecule:
    ``input_row, input, inchikey, smiles, rank, task, prediction, relative[, std], error`` (failed inputs: null
    rank). ``rank_by``: ``activity`` (the predicted value) or ``relative`` (:func:`relative_activity`)."""
    if rank_by not in RANK_BY:
        raise ValueError(f"rank_by must be one of {RANK_BY}, got {rank_by!r}")
    table = predictor.predict(list(smiles), store).with_columns(
        pl.int_range(pl.len()).floordiv(len(predictor.tasks)).alias("input_row")
    )
    predictions = table.get_column("prediction").fill_null(np.nan).to_numpy().reshape(-1, len(predictor.tasks))
    relative = relative_activity(predictor, predictions).ravel()
    score = "prediction" if rank_by == "activity" else "relative"
    ranked = table.with_columns(pl.Series("relative", relative).fill_nan(None)).with_columns(
        pl.col(score).rank("ordinal", descending=True).over("input_row").cast(pl.Int64).alias("rank")
    ).sort(["input_row", "rank"], nulls_last=True)
    return ranked.select("input_row", "input", "inchikey", "smiles", "rank", "task", "prediction", "relative",
                         pl.exclude("input_row", "input", "inchikey", "smiles", "rank", "task", "prediction", "relative"))


def target_ranks(scores: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Rank (1 = best) of ``scores[i, columns[i]]`` within row ``i``; ties count against it (pessimistic)."""
    own = scores[np.arange(len(columns)), columns][:, None]
    return (scores >= own).sum(axis=1)


def nearest_neighbour_scores(
    query_bits: np.ndarray, train_bits: np.ndarray, train_tasks: list[np.ndarray], block_size: int = 512,
) -> np.ndarray:
    """``(queries, tasks)``: max Tanimoto of each query to the training molecules of each task
    (``train_tasks[t]``: indices into ``train_bits``; 0 for a task without training molecules)."""
    out = np.zeros((len(query_bits), len(train_tasks)))
    for rows, sims in tanimoto_blocks(query_bits, train_bits, block_size):
        for t, members in enumerate(train_tasks):
            if len(members):
                out[rows, t] = sims[:, members].max(axis=1)
    return out


def evaluate_target_ranking(
    run_dirs: str | Path | Sequence[str | Path], predictor: Predictor, store: FeatureStore, ks: Sequence[int] = (1, 3),
) -> tuple[dict[str, Any], pl.DataFrame]:
    """Top-k accuracy of ranking each test label's target among all targets: model vs nearest neighbour.

    ``run_dirs``: the checkpoint's train run, or the runs of an ensemble (same data; the test labels are those
    of every run's test fold, the baseline's training labels the union of their training folds, and a label
    one run trained on is refused as another's test label).
    Returns a summary (labels, molecules, tasks, ``model`` (ranked by activity) / ``model_relative``
    (:func:`relative_activity`) / ``nearest_neighbour``: ``top<k>`` and ``mean_rank``) and one row per test label:
    ``row, inchikey, task, target, model_rank, model_relative_rank, nn_rank``.
    """
    run_dirs = checkpoint_paths(run_dirs)
    data = run_data(run_dirs)  # read once: the folds and the baseline's fingerprints all index it
    test = fold_labels(run_dirs, "test", data).join(data.select("row", "inchikey"), on="row")
    train = fold_labels(run_dirs, "train", data)
    # By label: a multitask split (MoleculeACE's) may put a molecule in one task's test fold and another's training.
    leaked = test.join(train, on=["row", "task"], how="semi").height
    if leaked:
        raise ValueError(f"{leaked} test labels of {[str(d) for d in run_dirs]} are training labels of one of the "
                         "runs: an ensemble's runs need the same test split (e.g. split=moleculeace or scaffold)")
    unknown = set(test.get_column("task").unique()) - set(predictor.tasks)
    if unknown:
        raise ValueError(f"{run_dirs[0]}: test tasks {sorted(unknown)} are not tasks of the checkpoint")
    molecules = test.select("row", "inchikey").unique("row").sort("row")
    keys = molecules.get_column("inchikey").to_list()  # the training run's keys: no re-standardization

    predicted = predictor.predict(keys, store).get_column("prediction").to_numpy()
    model_scores = predicted.reshape(len(keys), len(predictor.tasks))

    train_molecules, train_bits = training_fingerprints(run_dirs, store, ECFP4, predictor.standardizer, data)
    train_index = {row: i for i, row in enumerate(train_molecules.get_column("row").to_list())}
    train_tasks = [
        np.array([train_index[r] for r in train.filter(pl.col("task") == task).get_column("row") if r in train_index],
                 dtype=np.int64)
        for task in predictor.tasks
    ]
    nn_scores = nearest_neighbour_scores(fingerprint_matrix(store.get(keys, ECFP4)), train_bits, train_tasks)

    position = {row: i for i, row in enumerate(molecules.get_column("row").to_list())}
    molecule = np.array([position[r] for r in test.get_column("row")], dtype=np.int64)
    task = np.array([predictor.tasks.index(t) for t in test.get_column("task")], dtype=np.int64)
    per_label = test.select("row", "inchikey", "task", "target").with_columns(
        pl.Series("model_rank", target_ranks(model_scores[molecule], task)),
        pl.Series("model_relative_rank", target_ranks(relative_activity(predictor, model_scores)[molecule], task)),
        pl.Series("nn_rank", target_ranks(nn_scores[molecule], task)),
    )
    summary: dict[str, Any] = {"labels": per_label.height, "molecules": len(keys), "tasks": len(predictor.tasks)}
    for name, column in (("model", "model_rank"), ("model_relative", "model_relative_rank"),
                         ("nearest_neighbour", "nn_rank")):
        ranks = per_label.get_column(column).to_numpy()
        summary[name] = {**{f"top{k}": float((ranks <= k).mean()) for k in ks}, "mean_rank": float(ranks.mean())}
    return summary, per_label
