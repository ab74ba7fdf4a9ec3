"""Non-personalized baselines: most popular (the same ranking for everyone) and random."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from recommend.models.base import Recommender, register_model

BY = ("patients", "weight")


@register_model("popularity")
class PopularityRecommender(Recommender):
    """Scores an item by how many training patients took it (``by="patients"``) or its summed weight."""

    def __init__(self, by: str = "patients") -> None:
        if by not in BY:
            raise ValueError(f"by must be one of {BY}, not {by!r}")
        self.by = by
        self.item_scores: np.ndarray | None = None

    def params(self) -> dict[str, Any]:
        return {"by": self.by}

    def fit(self, user_items: sp.csr_matrix) -> PopularityRecommender:
        counts = user_items.getnnz(axis=0) if self.by == "patients" else np.asarray(user_items.sum(axis=0)).ravel()
        self.item_scores = np.asarray(counts, dtype=np.float32)
        self.n_items = user_items.shape[1]
        return self

    def score(self, user_ids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        return np.tile(self.item_scores, (len(user_ids), 1))

    def _state(self) -> dict[str, np.ndarray]:
        return {"item_scores": self.item_scores}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.item_scores = arrays["item_scores"]


@register_model("random")
class RandomRecommender(Recommender):
    """Uniform random scores, reproducible per (seed, patient): the floor every model must beat."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def params(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def fit(self, user_items: sp.csr_matrix) -> RandomRecommender:
        self.n_items = user_items.shape[1]
        return self

    def score(self, user_ids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        return np.stack([np.random.default_rng([self.seed, int(u)]).random(self.n_items) for u in user_ids])

    def _state(self) -> dict[str, np.ndarray]:
        return {}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Nothing fitted: scores depend on the seed alone."""
