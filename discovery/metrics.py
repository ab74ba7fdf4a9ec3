"""Evaluation of a predictions table: RMSE/MSE/MAE/R²/concordance index (+ RMSE on activity-cliff molecules)
or ROC-AUC/PR-AUC.

Metrics are computed per task and fold; with several tasks each fold also gets the mean
over tasks (tasks where a metric is undefined, e.g. one class only, are left out of the mean).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import kendalltau
from sklearn.metrics import average_precision_score, r2_score, roc_auc_score

from discovery.splits import FOLDS

OBJECTIVES = {"regression": ("rmse", "minimize"), "classification": ("roc_auc", "maximize")}


def _tied_pairs(values: np.ndarray) -> int:
    """Number of unordered pairs with equal values."""
    counts = np.unique(values, return_counts=True)[1].astype(np.int64)
    return int((counts * (counts - 1) // 2).sum())


def concordance_index(target: np.ndarray, prediction: np.ndarray) -> float | None:
    """Concordance index (Harrell's C, as DeepDTA/GraphDTA report it), in O(n log n).

    Over all pairs with different targets, the share ordered the same way by the prediction;
    a tied prediction counts one half. None when every target is equal (no such pair).

    With ``S`` = concordant minus discordant pairs (pairs tied in either variable left out)
    and ``Z`` the pairs with different targets, pairs tied in the prediction only contribute
    1/2 each, so CI = ``(Z + S) / (2 Z)``. ``S`` comes from Kendall's tau-b (O(n log n) in
    scipy): ``tau_b = S / sqrt((n0 - ties_target) (n0 - ties_prediction))``.
    """
    target, prediction = np.asarray(target, dtype=np.float64), np.asarray(prediction, dtype=np.float64)
    n0 = len(target) * (len(target) - 1) // 2
    z = n0 - _tied_pairs(target)
    if z == 0:
        return None
    untied_predictions = n0 - _tied_pairs(prediction)
    if untied_predictions == 0:  # a constant prediction orders nothing: every pair is a tie
        return 0.5
    s = kendalltau(target, prediction).statistic * np.sqrt(float(z) * float(untied_predictions))
    return float((z + s) / (2 * z))


def regression_metrics(target: np.ndarray, prediction: np.ndarray) -> dict[str, float | None]:
    """RMSE, MSE, MAE, R² and concordance index (None where undefined: no rows, or R²/CI with fewer than two)."""
    if len(target) == 0:
        return {"rmse": None, "mse": None, "mae": None, "r2": None, "ci": None, "n": 0}
    error = prediction - target
    return {
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mse": float(np.mean(error**2)),
        "mae": float(np.mean(np.abs(error))),
        "r2": float(r2_score(target, prediction)) if len(target) > 1 else None,
        "ci": concordance_index(target, prediction),
        "n": int(len(target)),
    }


def classification_metrics(target: np.ndarray, probability: np.ndarray) -> dict[str, float | None]:
    """ROC-AUC and PR-AUC (average precision); None when the labels hold a single class."""
    both_classes = len(np.unique(target)) == 2
    return {
        "roc_auc": float(roc_auc_score(target, probability)) if both_classes else None,
        "pr_auc": float(average_precision_score(target, probability)) if both_classes else None,
        "n": int(len(target)),
    }


def _task_fold_metrics(rows: pl.DataFrame, task_type: str) -> dict[str, Any]:
    target, prediction = rows.get_column("target").to_numpy(), rows.get_column("prediction").to_numpy()
    if task_type == "classification":
        return classification_metrics(target, prediction)
    metrics = regression_metrics(target, prediction)
    if "cliff_mol" in rows.columns:
        cliffs = rows.filter(pl.col("cliff_mol") == 1)
        cliff = regression_metrics(cliffs.get_column("target").to_numpy(), cliffs.get_column("prediction").to_numpy())
        metrics["rmse_cliff"], metrics["n_cliff"] = cliff["rmse"], cliff["n"]
    return metrics


def _mean_over_tasks(per_task: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in per_task[0]:
        values = [m[name] for m in per_task if m[name] is not None and not (isinstance(m[name], float) and math.isnan(m[name]))]
        if name.startswith("n"):
            out[name] = int(sum(values))
        else:
            out[name] = float(np.mean(values)) if values else None
    return out


def evaluate(predictions: pl.DataFrame, tasks: list[str], task_type: str) -> dict[str, Any]:
    """Metrics of a ``task, split, target, prediction[, cliff_mol]`` table.

    Returns ``{fold: metrics}`` for train/val/test (the single task's, or the mean over
    tasks) plus ``per_task: {task: {fold: metrics}}`` when there are several tasks.
    """
    per_task = {
        task: {
            fold: _task_fold_metrics(predictions.filter((pl.col("task") == task) & (pl.col("split") == fold)), task_type)
            for fold in FOLDS
        }
        for task in tasks
    }
    out: dict[str, Any] = {"task_type": task_type, "tasks": tasks}
    for fold in FOLDS:
        out[fold] = _mean_over_tasks([per_task[task][fold] for task in tasks])
    if len(tasks) > 1:
        out["per_task"] = per_task
    return out


def objective(metrics: dict[str, Any]) -> dict[str, Any]:
    """The validation metric a sweep optimizes: RMSE (minimize) or ROC-AUC (maximize)."""
    name, direction = OBJECTIVES[metrics["task_type"]]
    return {"name": f"val/{name}", "direction": direction, "value": metrics["val"][name]}
