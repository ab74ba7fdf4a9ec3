"""EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019), closed form.

``covariates`` (any of sex, age, conditions, care_site; :mod:`recommend.models.covariates`) append the
patient's features as columns of X, as side information enters the closed form in Jeunen et al.
("Closed-form models for collaborative filtering with side-information", RecSys 2020): the Gram
matrix and B then span items and features, and only the item outputs (columns) of B are kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from recommend.models.base import BatchExplanations, FitContext, Recommender, register_model, sorted_positions
from recommend.models.covariates import CovariateInputs
from recommend.models.knn import _top_contributions


class LinearExplanations(BatchExplanations):
    """``explain`` for models scoring ``x W`` over past items (EASE, newstart): the past drugs with the largest
    ``x_j * W[j, item]``; covariate inputs, which are not drugs, are left out."""

    def _item_weights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(input item columns, output item columns, their block of the weights)."""
        raise NotImplementedError

    def explain_many(
        self, user_id: int, user_items: sp.csr_matrix, item_ids: np.ndarray, N: int = 5
    ) -> list[list[tuple[int, float]]]:
        row = user_items[user_id]  # once per patient: slicing the matrix per item cost more than the explanation
        inputs, outputs, weights = self._item_weights()
        local, found = sorted_positions(inputs, row.indices)
        past = row.indices[found]
        positions, is_output = sorted_positions(outputs, np.asarray(item_ids))
        # every (past drug, asked item) contribution at once: one weight block per patient
        block = row.data[found][:, None] * weights[np.ix_(local[found], positions[is_output])]
        columns = np.cumsum(is_output) - 1
        return [_top_contributions(past, block[:, columns[k]], N) if is_output[k] else []
                for k in range(len(is_output))]


@register_model("ease")
class EASERecommender(LinearExplanations, Recommender):
    """B = I - P diag(1/diag(P)), P = (X^T X + l2 I)^-1, diag(B) = 0; score = X B.

    Items without training interactions have zero rows and columns in B (their block of
    X^T X + l2 I is diagonal), so B is computed over the active items only. With covariates, B's rows
    are the active items then the covariate features, its columns the active items.
    """

    def __init__(self, l2: float = 500.0, covariates: Sequence[str] = (),
                 covariate_weight: float = 1.0) -> None:
        if l2 <= 0:
            raise ValueError("l2 must be > 0")
        self.l2 = l2
        self.covariates = CovariateInputs("ease", covariates, covariate_weight)
        self.active: np.ndarray | None = None
        self.B: np.ndarray | None = None

    def params(self) -> dict[str, Any]:
        return {"l2": self.l2, **self.covariates.params()}

    def with_context(self, context: FitContext) -> EASERecommender:
        """Only covariates read the context (the patients, at its prediction times); a loaded model with covariates
        needs it before ``score``."""
        self.covariates.set_context(context)
        return self

    def fit(self, user_items: sp.csr_matrix) -> EASERecommender:
        self.n_items = user_items.shape[1]
        self.active = np.flatnonzero(user_items.getnnz(axis=0)).astype(np.int64)
        X = user_items[:, self.active].astype(np.float64)
        if self.covariates:
            X = sp.hstack([X, self.covariates.fit()], format="csr")
        gram = np.asarray((X.T @ X).todense())
        gram[np.diag_indices_from(gram)] += self.l2
        P = np.linalg.inv(gram)
        B = P / -np.diag(P)  # column j divided by -P_jj
        B[np.diag_indices_from(B)] = 0.0
        self.B = B[:, :len(self.active)].astype(np.float32)
        return self

    def score(self, user_ids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        n_active = len(self.active)
        local = user_items[:, self.active] @ self.B[:n_active]
        if len(self.covariates.features):
            local += self.covariates.rows(user_ids) @ self.B[n_active:]
        return self._full_columns(local)

    def _full_columns(self, local: np.ndarray) -> np.ndarray:
        out = np.zeros((local.shape[0], self.n_items), dtype=np.float32)
        out[:, self.active] = local
        return out

    def item_similarity(self, item_ids: np.ndarray) -> np.ndarray:
        """Row i: the weight of item i in predicting each item (B[i, :])."""
        local, found = sorted_positions(self.active, item_ids)
        rows = np.zeros((len(item_ids), len(self.active)), dtype=np.float32)
        rows[found] = self.B[local[found]]
        return self._full_columns(rows)

    def _item_weights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.active, self.active, self.B[:len(self.active)]

    def explain_patient(self, user_id: int, item_id: int, N: int = 5) -> list[tuple[str, float]]:
        (position,), (active,) = sorted_positions(self.active, np.array([item_id]))
        return self.covariates.explain(user_id, self.B[len(self.active):, position], N) if active else []

    def _state(self) -> dict[str, np.ndarray]:
        return {"active": self.active, **self.covariates.state(), "B": self.B}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.active, self.B = arrays["active"], arrays["B"]
        self.covariates.load_state(arrays)
