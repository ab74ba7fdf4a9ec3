"""Matrix factorization with implicit (CPU): ALS (Hu, Koren & Volinsky 2008) and BPR (Rendle 2009).

ALS takes patient ``covariates`` (sex, age band, diagnoses, practice; :mod:`recommend.models.covariates`)
as pseudo-items: binary columns appended to the matrix, so each patient's factors are fitted on their
drugs and features together; only the real items are scored.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recommend.models.base import BatchExplanations, FitContext, Recommender, register_model
from recommend.models.covariates import CovariateInputs
from recommend.models.knn import _top_contributions


class FactorModel(Recommender):
    """score(u, i) = user_factors[u] · item_factors[i]; subclasses build the implicit model."""

    def __init__(self, **params: Any) -> None:
        self._params = params
        self.model = self._new_model()

    def params(self) -> dict[str, Any]:
        return dict(self._params)

    @abstractmethod
    def _implicit(self):
        """A fresh implicit model with this instance's parameters."""

    def _new_model(self):
        # implicit parallelizes itself and warns when OpenBLAS also runs threads (numpy may have
        # loaded OpenBLAS before recommend/__init__.py could set OPENBLAS_NUM_THREADS).
        with threadpool_limits(1, "blas"):
            return self._implicit()

    def fit(self, user_items: sp.csr_matrix) -> FactorModel:
        self.model = self._new_model()
        with threadpool_limits(1, "blas"):
            self.model.fit(user_items.astype(np.float32), show_progress=False)
        self.n_items = user_items.shape[1]
        return self

    def score(self, user_ids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        return self._user_factors(user_ids, user_items) @ self.model.item_factors[:self.n_items].T

    def _user_factors(self, user_ids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        return self.model.user_factors[user_ids]

    def item_similarity(self, item_ids: np.ndarray) -> np.ndarray:
        """Cosine similarity of item factors."""
        factors = self.model.item_factors[:self.n_items]
        norms = np.linalg.norm(factors, axis=1)
        norms[norms == 0] = 1.0
        unit = factors / norms[:, None]
        return unit[item_ids] @ unit.T

    def _state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.model.user_factors, "item_factors": self.model.item_factors}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.model = self._new_model()
        self.model.user_factors = arrays["user_factors"]
        self.model.item_factors = arrays["item_factors"]


@register_model("als")
class ALSRecommender(BatchExplanations, FactorModel):
    """Weighted ALS for implicit feedback (confidence 1 + alpha * weight), seeded."""

    def __init__(self, factors: int = 100, regularization: float = 0.01, alpha: float = 1.0, iterations: int = 15,
                 random_state: int = 0, num_threads: int = 1, covariates: Sequence[str] = (),
                 covariate_weight: float = 1.0) -> None:
        self.covariates = CovariateInputs("als", covariates, covariate_weight)  # pseudo-items after the items
        self.fold_in = False  # True (with_patients): score factors re-solved from the given rows
        self._yty: np.ndarray | None = None  # Y^T Y + regularization I of the fitted item factors, for explanations
        super().__init__(factors=factors, regularization=regularization, alpha=alpha, iterations=iterations,
                         random_state=random_state, num_threads=num_threads)

    def params(self) -> dict[str, Any]:
        return {**self._params, **self.covariates.params()}

    def _implicit(self):
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares(**self._params)

    def with_context(self, context: FitContext) -> ALSRecommender:
        """Only covariates read the context (the patients, at its prediction times)."""
        self.covariates.set_context(context)
        return self

    def with_patients(self, context: FitContext) -> ALSRecommender:
        """Score the context's patients from their rows: each one's factors solved exactly against the fitted
        item factors (implicit's ``recalculate_user``), with their covariates as pseudo-items."""
        self.with_context(context).fold_in = True
        return self

    def _user_factors(self, user_ids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        if not self.fold_in:
            return super()._user_factors(user_ids, user_items)
        rows = sp.csr_matrix(user_items, dtype=np.float32)
        if len(self.covariates.features):
            rows = sp.hstack([rows, self.covariates.rows(user_ids)], format="csr", dtype=np.float32)
        with threadpool_limits(1, "blas"):
            return self.model.recalculate_user(np.arange(rows.shape[0]), rows)

    def fit(self, user_items: sp.csr_matrix) -> ALSRecommender:
        n_items, self._yty = user_items.shape[1], None
        if self.covariates:
            user_items = sp.hstack([user_items, self.covariates.fit()], format="csr")
        super().fit(user_items)
        self.n_items = n_items
        return self

    def explain_many(
        self, user_id: int, user_items: sp.csr_matrix, item_ids: np.ndarray, N: int = 5
    ) -> list[list[tuple[int, float]]]:
        """implicit's ALS explanation (Hu, Koren & Volinsky 2008, section 5) for all the items at once: with the
        patient's factors re-solved exactly, W = (Y^T C Y + regularization I)^-1, past item j's share of item i's
        score is c_j (W y_i) . y_j. Past drugs only: a model with covariates puts the features in W and leaves them
        out of the list. implicit's ``explain`` gives the same numbers one item at a time, recomputing Y^T Y for
        every patient (most of the cost of a recommendation table)."""
        row = sp.csr_matrix(user_items[user_id], dtype=np.float32)
        if len(self.covariates.features):
            row = sp.hstack([row, self.covariates.rows(np.array([user_id]))], format="csr", dtype=np.float32)
        factors = self.model.item_factors
        past, confidence = row.indices, self.model.alpha * row.data.astype(np.float64)
        past_factors = factors[past].astype(np.float64)
        if self._yty is None:  # fixed once fitted or loaded
            self._yty = (factors.T.astype(np.float64) @ factors) + self.model.regularization * np.eye(factors.shape[1])
        weights = self._yty + (past_factors.T * (np.abs(confidence) - 1.0)) @ past_factors
        shares = (past_factors @ np.linalg.solve(weights, factors[np.asarray(item_ids)].T.astype(np.float64))
                  * confidence[:, None])  # past x asked
        drugs = (past < self.n_items) & (confidence > 0)
        return [_top_contributions(past[drugs], shares[drugs, k], N) for k in range(len(item_ids))]

    def _state(self) -> dict[str, np.ndarray]:
        return {**super()._state(), **self.covariates.state()}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        super()._set_state(arrays)
        self.covariates.load_state(arrays)
        self._yty = None


@register_model("bpr")
class BPRRecommender(FactorModel):
    """Bayesian personalized ranking, single-threaded: implicit's multi-threaded BPR is not deterministic."""

    def __init__(self, factors: int = 100, learning_rate: float = 0.01, regularization: float = 0.01,
                 iterations: int = 100, random_state: int = 0) -> None:
        super().__init__(factors=factors, learning_rate=learning_rate, regularization=regularization,
                         iterations=iterations, random_state=random_state)

    def with_patients(self, context: FitContext) -> BPRRecommender:
        raise NotImplementedError("bpr cannot score patients it was not fitted on (implicit's BPR has no fold-in): "
                                  "refit it with them, or use als, ease or itemknn")

    def _implicit(self):
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(**self._params, num_threads=1)
