"""Patient covariates as extra model inputs (EASE, newstart, ALS): sex, age band, diagnoses, practice.

The model keeps a :class:`CovariateInputs`: the kinds asked for (``covariates=[...]`` in its config),
the value a present feature takes (``covariate_weight``: its scale against the drug columns, so in a ridge
model the features' own penalty, l2 / weight^2, and in ALS their confidence), the feature names it was
fitted with (saved with its weights, so the columns rebuild after loading) and the run's context, from
which it builds the patients' covariates at the context's prediction times (:mod:`recommend.patients`).
Scoring needs the context: covariates are not in the matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from recommend.models.base import FitContext
from recommend.models.knn import _top_contributions
from recommend.patients import Patients, check_covariates, covariate_matrix, covariate_rows


class CovariateInputs:
    """Which covariates a model uses, the features it was fitted with, and its context's patients."""

    def __init__(self, owner: str, kinds: Sequence[str], weight: float = 1.0) -> None:
        if not weight > 0:
            raise ValueError(f"{owner}: covariate_weight must be > 0, got {weight}")
        self.owner = owner
        self.kinds = check_covariates(kinds)
        self.weight = float(weight)
        self.features = np.asarray([], dtype=str)
        self.context: FitContext | None = None
        self._rows: sp.csr_matrix | None = None  # the context's patients x features, built once
        self._last_row: tuple[int, sp.csr_matrix] | None = None  # the last patient explained

    def __bool__(self) -> bool:
        return bool(self.kinds)

    def params(self) -> dict[str, Any]:
        """The owner's config entries for its covariates."""
        return {"covariates": list(self.kinds), "covariate_weight": self.weight}

    def state(self) -> dict[str, np.ndarray]:
        """What the owner saves with its weights: the feature names, which rebuild the columns."""
        return {"features": self.features}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.features = arrays.get("features", np.asarray([], dtype=str))  # files saved before covariates

    def set_context(self, context: FitContext) -> None:
        self.context, self._rows, self._last_row = context, None, None

    def _patients(self) -> Patients:
        if self.context is None:
            raise RuntimeError(f"{self.owner} with covariates {list(self.kinds)} reads the patients' PERSON and "
                               "diagnoses: call with_context(FitContext(..., patients=...)) first")
        patients = self.context.patients or Patients()
        missing = patients.missing(self.kinds)
        if missing:
            raise ValueError(f"{self.owner}: covariates {list(self.kinds)} need {' and '.join(missing)}: give "
                             "usage.tables.person / usage.tables.condition_occurrence, or set "
                             "recommender.covariates=[]")
        return patients

    def fit(self, examples: np.ndarray | None = None, history: pl.DataFrame | None = None) -> sp.csr_matrix:
        """Covariates of the context's patients (rows ``examples`` of its matrix; default: all) at the prediction
        times of ``history`` (an inner fold's, its diagnoses cut there; default: the context's own, whose patients
        come cut); the features are those some example has (kept in ``features``)."""
        patients = self._patients()
        if history is not None:
            patients = patients.before(history)
        matrix, features = covariate_matrix(patients, self.context.events if history is None else history,
                                            self.context.users, self.kinds)
        matrix = matrix * np.float32(self.weight)
        chosen = matrix if examples is None else matrix[examples]
        used = np.flatnonzero(chosen.getnnz(axis=0) > 0)
        self.features = features[used]
        if history is None:  # the context's own times: what rows() would build for scoring
            self._rows = matrix[:, used]
        return chosen[:, used].astype(np.float64)

    def fit_at(self, queries: pl.DataFrame) -> sp.csr_matrix:
        """Covariates of the context's patients at other times (``queries``: query = 0 .. n-1, person_id,
        reference), e.g. at each drug start of a sequence model; the features are those some query has (kept
        in ``features``, which :meth:`rows` then builds at the prediction times)."""
        matrix, self.features = covariate_rows(self._patients(), queries, self.kinds)
        self._rows = None
        return matrix * np.float32(self.weight)

    def explain(self, user_id: int, weights: np.ndarray, N: int) -> list[tuple[str, float]]:
        """The patient's features with the largest positive ``value * weights[feature]``, best first."""
        if not len(self.features):
            return []
        if self._last_row is None or self._last_row[0] != user_id:  # a patient's drugs are explained one by one
            self._last_row = (user_id, self.rows(np.array([user_id])))
        row = self._last_row[1]
        return [(str(self.features[j]), c)
                for j, c in _top_contributions(row.indices, row.data * weights[row.indices], N)]

    def rows(self, user_ids: np.ndarray) -> sp.csr_matrix:
        """Covariates of the context's patients (matrix rows ``user_ids``) at its prediction times, in ``features``
        order."""
        if self._rows is None:
            matrix, _ = covariate_matrix(self._patients(), self.context.events, self.context.users, self.kinds,
                                         self.features)
            self._rows = matrix * np.float32(self.weight)
        return self._rows[np.asarray(user_ids)]
