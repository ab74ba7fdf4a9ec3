"""Hybrid recommender: a behavior model (EASE, ALS, ...) blended with drug content similarity.

Per patient, behavior scores ``b`` are scaled by their largest absolute value over warm
items (items with training interactions) and content scores ``c`` (similarity to the
patient's drugs, :class:`~recommend.models.content.ContentRecommender`) by their
largest value. A warm item scores ``(1 - alpha) b + alpha c``; a cold item (no training
interaction, so no behavior score) scores ``cold_weight * c``: its content similarity to
the patient's drugs.

``alpha`` is configured, or (``alpha=None``) tuned on a validation split inside the
training matrix: for every patient with at least 2 items, a random ``validation_share``
of them (at least 1) is held out; the behavior model is refitted on the rest and the
alpha of ``alphas`` with the best NDCG@10 on the held-out items (of at most 5,000 random
patients) is kept.

``cold_weight`` is configured (tune it on the run's validation fold, e.g. ``-m
recommender.cold_weight=0.1,0.2,0.5``): the training matrix cannot say how often future
targets are cold drugs, and every catalog drug nobody took yet is cold too, so a larger
weight finds more new drugs and pushes more warm ones out of the top K.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from recommend.metrics import ranking_metrics
from recommend.models.base import FitContext, Recommender, _empty_ranking, _top_n, register_model
from recommend.models.content import ContentRecommender

ALPHAS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)
TUNE_K = 10
TUNE_BATCH = 4096
TUNE_USERS = 5000  # held-out patients scored per alpha, at most


def _scale_rows(scores: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Divide each row by its largest absolute value over ``columns`` (rows that are all 0 stay 0)."""
    scale = np.abs(scores[:, columns]).max(axis=1, keepdims=True) if columns.any() else np.zeros((len(scores), 1))
    return scores / np.where(scale > 0, scale, 1.0)


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


@register_model("hybrid")
class HybridRecommender(Recommender):
    """Behavior + content blend with content-based scores for cold drugs (see the module docstring)."""

    def __init__(self, behavior: Mapping[str, Any] | None = None, content: Mapping[str, Any] | None = None,
                 alpha: float | None = None, cold_weight: float = 0.2, alphas: Sequence[float] = ALPHAS,
                 validation_share: float = 0.2, seed: int = 0) -> None:
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1] or None (tuned), got {alpha}")
        if cold_weight < 0:
            raise ValueError("cold_weight must be >= 0")
        self.behavior_spec = dict(behavior or {"name": "ease", "l2": 500.0})
        if self.behavior_spec.get("name") in ("hybrid", "content"):
            raise ValueError(f"the behavior model must learn from interactions, not {self.behavior_spec['name']!r}")
        self.content_params = dict(content or {})
        self.alpha, self.cold_weight, self.alphas = alpha, cold_weight, [float(a) for a in alphas]
        self.validation_share, self.seed = validation_share, seed
        self.context: FitContext | None = None
        self.behavior: Recommender | None = None
        self.content = ContentRecommender(**self.content_params)
        self.fitted_alpha: float | None = None
        self.warm: np.ndarray | None = None

    def params(self) -> dict[str, Any]:
        return {"behavior": self.behavior_spec, "content": self.content_params, "alpha": self.alpha,
                "cold_weight": self.cold_weight, "alphas": self.alphas, "validation_share": self.validation_share,
                "seed": self.seed}

    def with_context(self, context: FitContext) -> HybridRecommender:
        """Keep the context for both parts (content needs the catalog items)."""
        self.context = context
        self.content.with_context(context)
        return self

    def _behavior(self) -> Recommender:
        from recommend.models import build_model  # the registry module imports this one

        model = build_model(self.behavior_spec)
        return model.with_context(self.context) if self.context is not None else model

    def fit(self, user_items: sp.csr_matrix) -> HybridRecommender:
        self.content.fit(user_items)
        self.warm = user_items.getnnz(axis=0) > 0
        if self.alpha is None:
            kept, held = holdout(user_items, self.validation_share, self.seed)
            inner = self._behavior().fit(kept)
            self.fitted_alpha = self._tune(inner, kept, held)
        else:
            self.fitted_alpha = self.alpha
        self.behavior = self._behavior().fit(user_items)
        self.n_items = user_items.shape[1]
        return self

    def _tune(self, inner: Recommender, kept: sp.csr_matrix, held: sp.csr_matrix) -> float:
        """The alpha with the best NDCG@10 on the held-out items (ties: the first listed)."""
        users = np.flatnonzero(held.getnnz(axis=1) > 0)
        if len(users) > TUNE_USERS:  # a sample ranks the few alphas as well and bounds the cost
            users = np.sort(np.random.default_rng(self.seed).choice(users, TUNE_USERS, replace=False))
        warm = kept.getnnz(axis=0) > 0
        rankings = [_empty_ranking(len(users), TUNE_K) for _ in self.alphas]
        for lo in range(0, len(users), TUNE_BATCH):  # dense users × items blocks: bounded memory
            batch = users[lo : lo + TUNE_BATCH]
            rows = kept[batch]
            behavior, content = inner.score(batch, rows), self.content.score(batch, rows)
            for alpha, (ids, values) in zip(self.alphas, rankings):
                scores = self._blend(behavior, content, alpha, warm).astype(np.float32)
                scores[rows.nonzero()] = -np.inf
                _top_n(scores, ids[lo : lo + TUNE_BATCH], values[lo : lo + TUNE_BATCH])
        quality = [ranking_metrics(ids, held[users], [TUNE_K])[f"ndcg@{TUNE_K}"] for ids, _ in rankings]
        return self.alphas[int(np.argmax(quality))]

    def _blend(self, behavior: np.ndarray, content: np.ndarray, alpha: float, warm: np.ndarray) -> np.ndarray:
        b = _scale_rows(np.asarray(behavior, dtype=np.float32), warm)
        c = _scale_rows(np.asarray(content, dtype=np.float32), np.ones(len(warm), dtype=bool))
        out = (1.0 - alpha) * b + alpha * c
        out[:, ~warm] = self.cold_weight * c[:, ~warm]
        return out

    def score(self, user_ids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        behavior = self.behavior.score(user_ids, user_items)
        content = self.content.score(user_ids, user_items)
        return self._blend(behavior, content, self.fitted_alpha, self.warm)

    def item_similarity(self, item_ids: np.ndarray) -> np.ndarray:
        """Content similarity (defined for cold drugs too)."""
        return self.content.item_similarity(item_ids)

    def explain(self, user_id: int, user_items: sp.csr_matrix, item_id: int, N: int = 5) -> list[tuple[int, float]]:
        """The patient's past drugs most content-similar to the item."""
        return self.content.explain(user_id, user_items, item_id, N)

    def _state(self) -> dict[str, np.ndarray]:
        parts = {f"behavior__{k}": v for k, v in self.behavior._state().items()}
        parts |= {f"content__{k}": v for k, v in self.content._state().items()}
        return parts | {"fitted_alpha": np.asarray([self.fitted_alpha]), "warm": self.warm}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.fitted_alpha, self.warm = float(arrays["fitted_alpha"][0]), arrays["warm"]
        self.behavior = self._behavior()
        for prefix, model in (("behavior__", self.behavior), ("content__", self.content)):
            model._set_state({k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)})
            model.n_items = len(self.warm)
