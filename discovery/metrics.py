"""Evaluation of a predictions table: RMSE/MSE/MAE/R²/concordance index (+ RMSE on activity-cliff molecules),
ROC-AUC/PR-AUC (binary), or accuracy, balanced accuracy, macro F1, macro one-vs-rest ROC-AUC and log loss
(multiclass).

Metrics are computed per task and fold; with several tasks each fold also gets the mean
over tasks (tasks where a metric is undefined, e.g. one class only, are left out of the mean).
Sweeps optimize the validation metric in :data:`OBJECTIVES`: RMSE, ROC-AUC, and for
multiclass the macro one-vs-rest ROC-AUC (threshold-free and not dominated by the large
classes, like the binary objective).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import kendalltau
from sklearn.metrics import average_precision_score, balanced_accuracy_score, f1_score, r2_score, roc_auc_score

from discovery.splits import FOLDS

OBJECTIVES = {"regression": ("rmse", "minimize"), "classification": ("roc_auc", "maximize"),
              "multiclass": ("roc_auc_macro", "maximize")}
LOG_LOSS_FLOOR = 1e-15  # probabilities are clipped here before the log (a confident miss costs ~34.5, not inf)


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


def multiclass_metrics(target: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Metrics of class indices ``target`` ``(n,)`` against ``(n, classes)`` probabilities.

    The predicted class is the most probable (the first on a tie). ``accuracy``;
    ``balanced_accuracy``: mean recall over the classes present in ``target``; ``f1_macro``:
    mean F1 over the classes present in ``target`` or predicted (0 where undefined);
    ``roc_auc_per_class``: one-vs-rest ROC-AUC of each class's probability, None for a class
    absent from the fold (or the only one in it); ``roc_auc_macro``: their mean over the
    classes that have one (None if none does); ``log_loss``: mean ``-log p(true class)``
    (p clipped at :data:`LOG_LOSS_FLOOR`). All None without rows.
    """
    n = len(target)
    names = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc_macro", "log_loss")
    if n == 0:
        return {**dict.fromkeys(names), "roc_auc_per_class": dict.fromkeys(classes), "n": 0}
    target = np.asarray(target, dtype=np.int64)
    predicted = np.argmax(probabilities, axis=1)
    per_class: dict[str, float | None] = {}
    for k, name in enumerate(classes):
        positive = target == k
        per_class[name] = float(roc_auc_score(positive, probabilities[:, k])) if 0 < positive.sum() < n else None
    aucs = [value for value in per_class.values() if value is not None]
    true_probability = np.clip(probabilities[np.arange(n), target], LOG_LOSS_FLOOR, 1.0)
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true": expected on small folds
        warnings.simplefilter("ignore", UserWarning)
        balanced = float(balanced_accuracy_score(target, predicted))
    return {
        "accuracy": float(np.mean(predicted == target)),
        "balanced_accuracy": balanced,
        "f1_macro": float(f1_score(target, predicted, average="macro", zero_division=0)),
        "roc_auc_macro": float(np.mean(aucs)) if aucs else None,
        "log_loss": float(-np.mean(np.log(true_probability))),
        "roc_auc_per_class": per_class,
        "n": int(n),
    }


def majority_accuracy(train_target: np.ndarray, target: np.ndarray) -> float | None:
    """Accuracy of always predicting the most frequent training class (the first on a tie); None without rows."""
    if len(target) == 0 or len(train_target) == 0:
        return None
    values, counts = np.unique(np.asarray(train_target), return_counts=True)
    return float(np.mean(np.asarray(target) == values[np.argmax(counts)]))


def _class_indices(rows: pl.DataFrame, classes: list[str]) -> np.ndarray:
    index = {name: k for k, name in enumerate(classes)}
    return np.array([index[name] for name in rows.get_column("target").to_list()], dtype=np.int64)


def _multiclass_fold_metrics(rows: pl.DataFrame, classes: list[str], train_target: np.ndarray) -> dict[str, Any]:
    target = _class_indices(rows, classes)
    probabilities = rows.select([f"p_{name}" for name in classes]).to_numpy().astype(np.float64).reshape(len(target), -1)
    metrics = multiclass_metrics(target, probabilities, classes)
    metrics["majority_accuracy"] = majority_accuracy(train_target, target)
    return metrics


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


def evaluate(predictions: pl.DataFrame, tasks: list[str], task_type: str,
             classes: list[str] | None = None) -> dict[str, Any]:
    """Metrics of a ``task, split, target, prediction[, cliff_mol]`` table.

    Returns ``{fold: metrics}`` for train/val/test (the single task's, or the mean over
    tasks) plus ``per_task: {task: {fold: metrics}}`` when there are several tasks.
    Multiclass (one task): ``target`` holds class names and ``p_<class>`` the probabilities of
    ``classes``; each fold also gets ``majority_accuracy``, the accuracy of always predicting
    the training fold's most frequent class (the baseline to beat).
    """
    if task_type == "multiclass":
        if classes is None or len(tasks) != 1:
            raise ValueError(f"multiclass evaluation needs the class names and one task (got {tasks})")
        rows = predictions.filter(pl.col("task") == tasks[0])
        train_target = _class_indices(rows.filter(pl.col("split") == "train"), classes)
        out = {"task_type": task_type, "tasks": tasks, "classes": classes}
        for fold in FOLDS:
            out[fold] = _multiclass_fold_metrics(rows.filter(pl.col("split") == fold), classes, train_target)
        return out
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
    """The validation metric a sweep optimizes: RMSE (minimize), ROC-AUC or multiclass macro ROC-AUC (maximize)."""
    name, direction = OBJECTIVES[metrics["task_type"]]
    return {"name": f"val/{name}", "direction": direction, "value": metrics["val"][name]}
