"""Classical baselines on a fingerprint view, stored as plain tensors (no pickle).

scikit-learn fits them; prediction then always runs from the stored parameters in numpy
(the RBF expansion of an SVR, the node arrays of a random forest), both right after
training and after loading a checkpoint, so the two give identical numbers and a
checkpoint is just ``weights.pt`` tensors read with ``torch.load(weights_only=True)``.

Multitask data with missing labels is handled by one estimator per task, fit on the
molecules labelled for that task. Multiclass data (one task, ``n_classes`` classes, labels
are class indices) is supported by the random forest only: its leaves hold class
probabilities and it predicts ``(molecules, n_classes)``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.svm import SVR

from discovery.models.registry import hyperparameters, register_model

log = logging.getLogger(__name__)


class ClassicalModel:
    """Per-task scikit-learn estimators reduced to arrays; subclasses say how to fit and evaluate one task."""

    input_kind = "fingerprint"

    def __init__(self, n_tasks: int, in_dim: int, task_type: str = "regression", n_classes: int | None = None) -> None:
        if task_type == "multiclass" and (n_tasks != 1 or not n_classes or n_classes < 2):
            raise ValueError(f"multiclass needs one task and n_classes >= 2, got n_tasks={n_tasks}, n_classes={n_classes}")
        self.n_tasks, self.in_dim, self.task_type, self.n_classes = n_tasks, in_dim, task_type, n_classes
        self.tasks: list[dict[str, np.ndarray]] = []

    def fit(
        self, x: np.ndarray, y: np.ndarray, mask: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
        val_mask: np.ndarray, seed: int,
    ) -> dict[str, Any]:
        """Fit every task on its labelled rows (``mask``); returns what was chosen on validation, per task."""
        self.tasks, report = [], []
        for t in range(self.n_tasks):
            train, val = mask[:, t], val_mask[:, t]
            params, info = self.fit_task(x[train], y[train, t], x_val[val], y_val[val, t], seed)
            self.tasks.append(params)
            report.append(info)
        return {"tasks": report}

    def fit_task(
        self, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, seed: int
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        raise NotImplementedError

    def predict_task(self, params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, x: np.ndarray) -> np.ndarray:
        """``(molecules, n_tasks)`` float64 predictions (probabilities for classification);
        multiclass: ``(molecules, n_classes)`` class probabilities."""
        if x.shape[1] != self.in_dim:
            raise ValueError(f"{self.name} was trained on {self.in_dim}-wide fingerprints, got {x.shape[1]}")
        x = x.astype(np.float64)
        if self.task_type == "multiclass":
            return self.predict_task(self.tasks[0], x)
        return np.stack([self.predict_task(params, x) for params in self.tasks], axis=1)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"task{t}.{name}": torch.from_numpy(np.ascontiguousarray(value))
                for t, params in enumerate(self.tasks) for name, value in params.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.tasks = [{} for _ in range(self.n_tasks)]
        for key, value in state.items():
            task, name = key.split(".", 1)
            self.tasks[int(task.removeprefix("task"))][name] = value.numpy()


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


@register_model("ecfp_svr")
class FingerprintSVR(ClassicalModel):
    """RBF-kernel SVR; ``C`` picked from ``c_grid`` by validation RMSE (targets are standardized).

    Stored per task: support vectors (as float64, fingerprints are small integers so this is
    exact), dual coefficients, intercept and the kernel width ``gamma``.
    """

    def __init__(
        self, n_tasks: int, in_dim: int, task_type: str = "regression", c_grid: Sequence[float] = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0),
        epsilon: float = 0.1, gamma: str | float = "scale", n_classes: int | None = None,
    ) -> None:
        if task_type != "regression":
            raise ValueError(f"ecfp_svr is regression only (got task_type={task_type!r}); use ecfp_rf or ecfp_mlp "
                             "for classification (binary or multiclass)")
        super().__init__(n_tasks, in_dim, task_type, n_classes)
        self.hparams = hyperparameters(locals())
        self.c_grid, self.epsilon, self.gamma = list(c_grid), epsilon, gamma

    def fit_task(self, x, y, x_val, y_val, seed):
        if not len(y_val) and len(self.c_grid) > 1:
            raise ValueError(f"ecfp_svr chooses C from {self.c_grid} on validation labels and this task has none; "
                             "give one C (model.hparams.c_grid=[3.0]) for a fit on all training data")
        x = x.astype(np.float64)
        # scikit-learn's "scale" rule, computed here so the stored width is the one used.
        gamma = 1.0 / (x.shape[1] * x.var()) if self.gamma == "scale" else float(self.gamma)
        scores = {}
        best = None
        for c in self.c_grid:
            svr = SVR(kernel="rbf", C=c, epsilon=self.epsilon, gamma=gamma).fit(x, y)
            params = {
                "support_vectors": svr.support_vectors_.astype(np.float64),
                "dual_coef": svr.dual_coef_.ravel().astype(np.float64),
                "intercept": np.asarray(svr.intercept_, dtype=np.float64),
                "gamma": np.asarray([gamma], dtype=np.float64),
            }
            scores[c] = _rmse(self.predict_task(params, x_val.astype(np.float64)), y_val) if len(y_val) else float("nan")
            if best is None or scores[c] < scores[best[0]]:
                best = (c, params)
        if len(self.c_grid) > 1 and best[0] in (min(self.c_grid), max(self.c_grid)):
            log.warning("ecfp_svr: the best C (%s) is at the end of the grid %s; consider widening it", best[0], self.c_grid)
        return best[1], {"C": best[0], "val_rmse_by_C": scores, "support_vectors": len(best[1]["dual_coef"])}

    def predict_task(self, params, x):
        sv = params["support_vectors"]
        squared = (x**2).sum(1)[:, None] + (sv**2).sum(1)[None, :] - 2.0 * x @ sv.T
        kernel = np.exp(-params["gamma"][0] * np.maximum(squared, 0.0))
        return kernel @ params["dual_coef"] + params["intercept"][0]


@register_model("ecfp_rf")
class FingerprintRandomForest(ClassicalModel):
    """Random forest; stored per task as the concatenated node arrays of all trees.

    Regression leaves hold the mean target, classification leaves the fraction of positives,
    multiclass leaves a row of ``n_classes`` class probabilities (``value`` is ``(nodes, n_classes)``;
    a class missing from the training labels gets probability 0 everywhere).
    """

    def __init__(
        self, n_tasks: int, in_dim: int, task_type: str = "regression", n_estimators: int = 500,
        max_features: float | str = 0.33, min_samples_leaf: int = 1, n_jobs: int | None = None,
        n_classes: int | None = None,
    ) -> None:
        super().__init__(n_tasks, in_dim, task_type, n_classes)
        self.hparams = hyperparameters(locals())
        self.forest_params = {"n_estimators": n_estimators, "max_features": max_features,
                              "min_samples_leaf": min_samples_leaf, "n_jobs": n_jobs}

    def fit_task(self, x, y, x_val, y_val, seed):
        if self.task_type in ("classification", "multiclass"):
            if len(np.unique(y)) < 2:
                raise ValueError("ecfp_rf: a task's training labels hold a single class")
            forest = RandomForestClassifier(random_state=seed, **self.forest_params).fit(x, y.astype(int))
        else:
            forest = RandomForestRegressor(random_state=seed, **self.forest_params).fit(x, y)
        return self._flatten(forest), {"trees": len(forest.estimators_)}

    def _flatten(self, forest) -> dict[str, np.ndarray]:
        """All trees' nodes in one array set; child ids are global, leaves have ``left == -1``."""
        parts: dict[str, list[np.ndarray]] = {"feature": [], "threshold": [], "left": [], "right": [], "value": [], "root": []}
        offset = 0
        for estimator in forest.estimators_:
            tree = estimator.tree_
            leaf = tree.children_left < 0
            parts["feature"].append(tree.feature.astype(np.int64))
            parts["threshold"].append(tree.threshold.astype(np.float64))
            parts["left"].append(np.where(leaf, -1, tree.children_left + offset).astype(np.int64))
            parts["right"].append(np.where(leaf, -1, tree.children_right + offset).astype(np.int64))
            if self.task_type == "multiclass":
                counts = tree.value[:, 0, :]
                probabilities = np.zeros((tree.node_count, self.n_classes))
                probabilities[:, forest.classes_.astype(np.int64)] = counts / counts.sum(1, keepdims=True)
                parts["value"].append(probabilities)
            elif self.task_type == "classification":
                counts = tree.value[:, 0, :]
                positive = counts[:, list(estimator.classes_).index(1)]
                parts["value"].append((positive / counts.sum(1)).astype(np.float64))
            else:
                parts["value"].append(tree.value[:, 0, 0].astype(np.float64))
            parts["root"].append(np.array([offset], dtype=np.int64))
            offset += tree.node_count
        return {name: np.concatenate(arrays) for name, arrays in parts.items()}

    def predict_task(self, params, x):
        node = np.broadcast_to(params["root"], (len(x), len(params["root"]))).copy()
        rows = np.arange(len(x))[:, None]
        while True:
            inner = params["left"][node] >= 0
            if not inner.any():
                break
            go_left = x[rows, params["feature"][node]] <= params["threshold"][node]
            node = np.where(inner, np.where(go_left, params["left"][node], params["right"][node]), node)
        return params["value"][node].mean(axis=1)
