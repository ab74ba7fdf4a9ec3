"""Validation folds inside a run's training history, for models that tune or train on them (hybrid, newstart).

The context's ``split`` (:class:`~recommend.models.base.FitContext`, set by ``recommend.run``) is
applied once more to the history's events, explicit time cutoffs replaced by their quantiles
(a date of the outer split lies past the end of the history), and its ``test`` fold is the inner
fold: ``time`` cuts the history at its own quantile, ``leave_last`` holds out each patient's last
basket, ``cold_items`` every event of a share of the drugs (drawn ``repeats`` times). The targets
are each patient's new drugs (task b). Without a split in the context, a per-patient random
holdout of the matrix serves instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

from recommend.interactions import Weighting, build_interactions, pair_matrix
from recommend.models.base import FitContext
from recommend.splits import excluded_items, make_split, task_targets

TIME_CUTOFFS = ("cutoff", "validation_cutoff")  # dates of the outer split: past the end of an inner history


def holdout(user_items: sp.csr_matrix, share: float, seed: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(kept, held out): per patient with >= 2 items, a random ``share`` of them (at least 1) held out."""
    rng = np.random.default_rng(seed)
    coo = user_items.tocoo()
    held = np.zeros(coo.nnz, dtype=bool)
    counts = np.diff(user_items.indptr)
    for user in np.flatnonzero(counts >= 2):
        start = user_items.indptr[user]
        take = max(1, int(share * counts[user]))
        held[start + rng.choice(counts[user], take, replace=False)] = True
    shape = user_items.shape
    kept = sp.csr_matrix((coo.data[~held], (coo.row[~held], coo.col[~held])), shape=shape)
    out = sp.csr_matrix((np.ones(held.sum(), dtype=np.float32), (coo.row[held], coo.col[held])), shape=shape)
    return kept, out


@dataclass(frozen=True)
class InnerFold:
    """A validation fold inside the training data: its matrix, the patients scored, their targets and exclusions,
    and the events behind the matrix (with each patient's inner prediction time; None for a matrix holdout)."""

    matrix: sp.csr_matrix
    rows: np.ndarray
    truth: sp.csr_matrix
    exclude: sp.csr_matrix
    history: pl.DataFrame | None = None


def inner_folds(context: FitContext | None, user_items: sp.csr_matrix, share: float, seed: int,
                repeats: int, owner: str, remedy: str) -> list[InnerFold]:
    """The run's split applied to the context's events (see the module docstring); no split: a matrix holdout.

    ``owner`` and ``remedy`` name the model and what its user can do in the error raised when the split
    cannot be repeated inside the history.

    Random inner splits (cold_items, the holdout) are drawn ``repeats`` times (seeds ``seed``, ``seed + 1``, ...):
    which drugs are held out sways a single fold's verdict. Time and leave-last splits are drawn once.
    """
    if context is None or context.split is None:
        folds = []
        for repeat in range(repeats):
            kept, held = holdout(user_items, share, seed + repeat)
            rows = np.flatnonzero(held.getnnz(axis=1) > 0)
            folds.append(InnerFold(kept, rows, held[rows], kept[rows]))
        return folds
    spec = {k: v for k, v in context.split.items() if k not in TIME_CUTOFFS}
    random = spec["name"] == "cold_items"
    events = context.events.drop("reference", strict=False)  # the outer split's; leave_last would join on it
    folds = []
    for repeat in range(repeats if random else 1):
        try:
            fold = make_split(events, spec | ({"seed": spec.get("seed", 0) + repeat} if random else {}))["test"]
        except ValueError as error:
            raise ValueError(f"{owner}: cannot make an inner {spec['name']!r} fold of the training history "
                             f"({context.events.height} events): {error}; {remedy}") from error
        train = build_interactions(fold.history, context.users, context.items["item"],
                                   context.weighting or Weighting())
        targets = task_targets(fold, "new")
        persons = targets["person_id"].unique().sort()
        folds.append(InnerFold(train.matrix, train.rows(persons), pair_matrix(targets, persons, train),
                               pair_matrix(excluded_items(fold, "history"), persons, train), fold.history))
    return folds
