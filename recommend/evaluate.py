"""Evaluate a fitted model on a fold: full-catalog rankings per task, metrics per K.

For each task (``all``, ``new``, ``visit``; see :mod:`recommend.splits`) the patients
with targets and a history are ranked over every catalog item, after removing the
items the task's filter excludes (``none``, ``current``, ``history``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from recommend.interactions import Interactions, pair_matrix
from recommend.metrics import beyond_accuracy, ranking_metrics, set_metrics
from recommend.models.base import Recommender
from recommend.splits import Fold, cold_patients, excluded_items, task_targets


def evaluate_fold(
    model: Recommender, train: Interactions, fold: Fold, tasks: Mapping[str, Mapping[str, Any]], ks: Sequence[int],
    mrr_depth: int | None = None, max_patients: int | None = None, seed: int = 0,
) -> dict[str, dict[str, float]]:
    """``{task: {metric: value, "patients": n, ...}}`` for a model fitted on ``train``.

    ``max_patients``: rank at most this many of each task's patients, a uniform sample drawn
    with ``seed`` (the same patients for every model given the same fold), for cohorts where
    ranking every patient costs more than the estimate needs; ``patients_total`` says how many had targets.
    """
    if max_patients is not None and max_patients < 1:
        raise ValueError(f"evaluate.max_patients must be a number of patients >= 1 or null (all), not {max_patients}")
    n_items = train.shape[1]
    depth = n_items if mrr_depth is None else min(n_items, max(max(ks), mrr_depth))
    item_patients = train.matrix.getnnz(axis=0)
    n_train_patients = int((train.matrix.getnnz(axis=1) > 0).sum())
    results = {}
    for task, spec in tasks.items():
        targets = task_targets(fold, task)
        persons = targets["person_id"].unique().sort()
        if persons.len() == 0:
            results[task] = {"patients": 0}
            continue
        total = persons.len()
        if max_patients is not None and total > max_patients:
            persons = persons.sample(max_patients, seed=seed).sort()
            targets = targets.filter(pl.col("person_id").is_in(persons.implode()))
        rows = train.rows(persons)
        user_items = train.matrix[rows]
        truth = pair_matrix(targets, persons, train)
        exclude = pair_matrix(excluded_items(fold, spec.get("filter", "none")), persons, train)
        ids, _ = model.recommend(rows, user_items, N=depth, filter_already_liked_items=False, exclude=exclude)
        metrics = ranking_metrics(ids, truth, ks)
        metrics |= beyond_accuracy(ids, n_items, item_patients, n_train_patients, ks)
        if task == "visit":
            scores = model.score(rows, user_items)
            scores[exclude.nonzero()] = -np.inf
            metrics |= set_metrics(ids[:, : spec.get("set_size", 5)], scores, truth)
        metrics |= {"patients": int(persons.len()), "patients_total": total,
                    "targets_per_patient": float(targets.height / persons.len()),
                    "cold_patients": cold_patients(fold)}
        results[task] = metrics
    return results
