"""New-start regression: a ridge regression from a patient's history to the drugs they start next.

EASE and item-kNN learn which drugs go together in a history and score a patient's new drugs
with that; this model is trained on the task itself (task b, new drugs). The fold's history is
split once more inside (:func:`~recommend.models.inner.inner_folds`: the run's split mirrored, a
time split at the history's 80 % quantile when the run gives none), and for every patient with
an inner history

    x = their row of the inner history (weighted like the run's matrix),
    y = 1 for each drug they start in the inner window that they had not taken before.

Patients who start nothing are examples too. ``covariates`` (any of sex, age, conditions, care_site; see
:mod:`recommend.patients`) add the patient's sex, age band, past diagnoses at the inner
prediction time and practice to ``x``; the run must give the PERSON / CONDITION_OCCURRENCE tables. With the
columns centred, the closed form is

    W = (Xc^T Xc + l2 I)^-1 Xc^T Yc,   b = mean(y) - mean(x) W,   score = x W + b,

so ``b`` is the popularity of new starts and ``W`` how each past drug moves it. Scores use the
patient's whole history. Inputs are the drugs in some inner history, outputs the drugs someone
started in the inner window; the other drugs score below every output drug.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from recommend.models.base import FitContext, Recommender, register_model, sorted_positions
from recommend.models.covariates import CovariateInputs
from recommend.models.ease import LinearExplanations
from recommend.models.inner import inner_folds

# the inner fold is time_split's test fold; its validation fold goes unused, so its cutoff only has to come earlier
DEFAULT_SPLIT = {"name": "time", "quantile": 0.8, "validation_quantile": 0.4}
REMEDY = "give the run a usage_split whose inner fold has new starts, or use ease"


@register_model("newstart")
class NewStartRecommender(LinearExplanations, Recommender):
    """Ridge regression from history rows to inner-window new starts (see the module docstring)."""

    def __init__(self, l2: float = 1000.0, covariates: Sequence[str] = (),
                 covariate_weight: float = 1.0) -> None:
        if l2 <= 0:
            raise ValueError("l2 must be > 0")
        self.l2 = l2
        # inputs after the items, by feature name
        self.covariates = CovariateInputs("newstart", covariates, covariate_weight)
        self.context: FitContext | None = None
        self.inputs: np.ndarray | None = None   # input position -> item column
        self.outputs: np.ndarray | None = None  # output position -> item column
        self.W: np.ndarray | None = None        # (items in inputs + covariate features) x outputs
        self.bias: np.ndarray | None = None

    def params(self) -> dict[str, Any]:
        return {"l2": self.l2, **self.covariates.params()}

    def with_context(self, context: FitContext) -> NewStartRecommender:
        """The run's events (to fit) and patients (to fit and score with covariates); a loaded model that uses
        covariates needs it before ``score``."""
        self.context = context if context.split is not None else replace(context, split=DEFAULT_SPLIT)
        self.covariates.set_context(self.context)
        return self

    def fit(self, user_items: sp.csr_matrix) -> NewStartRecommender:
        if self.context is None:
            raise RuntimeError("newstart learns from the patients' event histories: call "
                               "with_context(FitContext(...)) before fit")
        fold = inner_folds(self.context, user_items, share=0.2, seed=0, repeats=1, owner="newstart", remedy=REMEDY)[0]
        if fold.truth.nnz == 0:
            raise ValueError(f"newstart: nobody starts a new drug in the inner fold of the training history; {REMEDY}")
        examples = np.flatnonzero(fold.matrix.getnnz(axis=1) > 0)
        truth = fold.truth.tocoo()
        starts = sp.csr_matrix((np.ones(truth.nnz), (fold.rows[truth.row], truth.col)), shape=fold.matrix.shape)
        X, Y = fold.matrix[examples].astype(np.float64), starts[examples]
        self.inputs = np.flatnonzero(X.getnnz(axis=0) > 0)
        self.outputs = np.flatnonzero(Y.getnnz(axis=0) > 0)
        X, Y = X[:, self.inputs], Y[:, self.outputs]
        if self.covariates:  # at the inner fold's prediction times, from diagnoses before them
            X = sp.hstack([X, self.covariates.fit(examples, fold.history)], format="csr")
        n = X.shape[0]
        mean_x, mean_y = np.asarray(X.mean(axis=0)).ravel(), np.asarray(Y.mean(axis=0)).ravel()
        gram = (X.T @ X).toarray() - n * np.outer(mean_x, mean_x)
        gram[np.diag_indices_from(gram)] += self.l2
        W = np.linalg.solve(gram, (X.T @ Y).toarray() - n * np.outer(mean_x, mean_y))
        self.W, self.bias = W.astype(np.float32), (mean_y - mean_x @ W).astype(np.float32)
        self.n_items = user_items.shape[1]
        return self

    def score(self, user_ids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        n_inputs = len(self.inputs)
        predicted = user_items[:, self.inputs] @ self.W[:n_inputs] + self.bias
        if len(self.covariates.features):
            predicted += self.covariates.rows(user_ids) @ self.W[n_inputs:]
        floor = predicted.min(axis=1, keepdims=True) - 1.0 if predicted.size else 0.0
        out = np.broadcast_to(floor, (user_items.shape[0], self.n_items)).astype(np.float32)
        out[:, self.outputs] = predicted
        return out

    def item_similarity(self, item_ids: np.ndarray) -> np.ndarray:
        """Row i: how taking item i moves each item's new-start score (its row of W; 0 for non-inputs)."""
        rows = np.zeros((len(item_ids), self.n_items), dtype=np.float32)
        local, found = sorted_positions(self.inputs, item_ids)
        rows[np.ix_(np.flatnonzero(found), self.outputs)] = self.W[local[found]]
        return rows

    def _item_weights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.inputs, self.outputs, self.W[:len(self.inputs)]

    def explain_patient(self, user_id: int, item_id: int, N: int = 5) -> list[tuple[str, float]]:
        (position,), (is_output,) = sorted_positions(self.outputs, np.array([item_id]))
        return self.covariates.explain(user_id, self.W[len(self.inputs):, position], N) if is_output else []

    def _state(self) -> dict[str, np.ndarray]:
        return {"inputs": self.inputs, **self.covariates.state(), "outputs": self.outputs, "W": self.W,
                "bias": self.bias}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.inputs, self.outputs, self.W, self.bias = arrays["inputs"], arrays["outputs"], arrays["W"], arrays["bias"]
        self.covariates.load_state(arrays)
