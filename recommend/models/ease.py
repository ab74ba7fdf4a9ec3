"""EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019), closed form."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from recommend.models.base import Recommender, register_model, sorted_positions
from recommend.models.knn import _top_contributions


@register_model("ease")
class EASERecommender(Recommender):
    """B = I - P diag(1/diag(P)), P = (X^T X + l2 I)^-1, diag(B) = 0; score = X B.

    Items without training interactions have zero rows and columns in B (their block of
    X^T X + l2 I is diagonal), so B is computed over the active items only.
    """

    def __init__(self, l2: float = 500.0) -> None:
        if l2 <= 0:
            raise ValueError("l2 must be > 0")
        self.l2 = l2
        self.active: np.ndarray | None = None
        self.B: np.ndarray | None = None

    def params(self) -> dict[str, Any]:
        return {"l2": self.l2}

    def fit(self, user_items: sp.csr_matrix) -> EASERecommender:
        self.n_items = user_items.shape[1]
        self.active = np.flatnonzero(user_items.getnnz(axis=0)).astype(np.int64)
        X = user_items[:, self.active].astype(np.float64)
        gram = np.asarray((X.T @ X).todense())
        gram[np.diag_indices_from(gram)] += self.l2
        P = np.linalg.inv(gram)
        B = P / -np.diag(P)  # column j divided by -P_jj
        B[np.diag_indices_from(B)] = 0.0
        self.B = B.astype(np.float32)
        return self

    def score(self, user_ids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        return self._full_columns(user_items[:, self.active] @ self.B)

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

    def explain(self, user_id: int, user_items: sp.csr_matrix, item_id: int, N: int = 5) -> list[tuple[int, float]]:
        return linear_explanation(user_items[user_id], self.active, self.active, self.B, item_id, N)

    def _state(self) -> dict[str, np.ndarray]:
        return {"active": self.active, "B": self.B}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.active, self.B = arrays["active"], arrays["B"]


def linear_explanation(row: sp.csr_matrix, inputs: np.ndarray, outputs: np.ndarray, weights: np.ndarray, item_id: int,
                       N: int) -> list[tuple[int, float]]:
    """The top contributions ``value * weights[input, output]`` of one patient's past items (``row``) to
    ``item_id``'s score in a linear model (inputs: item columns of the weight rows, outputs: of its columns)."""
    (position,), (is_output,) = sorted_positions(outputs, np.array([item_id]))
    if not is_output:
        return []
    local, found = sorted_positions(inputs, row.indices)
    return _top_contributions(row.indices[found], row.data[found] * weights[local[found], position], N)
