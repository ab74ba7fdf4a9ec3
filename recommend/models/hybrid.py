"""Hybrid recommender: a behavior model (EASE, ALS, ...) blended with drug content similarity.

``behavior`` is one model spec or a list of candidates (say EASE and popularity): with several,
the one whose blend scores best on the inner folds below is used (ties: the first listed). The
best behavior model differs between data sets and splits (on Eunomia's time split recency-weighted
popularity beats EASE on new drugs), and a hybrid should not lose to it for want of choosing.

Per patient, behavior scores ``b`` are scaled by their largest absolute value over warm
items (items with training interactions) and content scores ``c`` (similarity to the
patient's drugs, :class:`~recommend.models.content.ContentRecommender`) by their
largest value. A warm item scores ``(1 - alpha) b + alpha c``. A cold item (no training
interaction, so no behavior score: a new drug, or any catalog drug nobody took yet) scores
``cold_weight * u``, its cold score

    u = scaled((1 - propagation) c + propagation p) * q ** prior

- ``p``: the behavior predictions propagated through content similarity,
  ``p_i = sum_j max(b_j, 0) S_ji`` over warm ``j``: drugs like those the patient is
  predicted to start, not only like those they took;
- ``q``: a usage prior, ``q_i = sum_j n_j S_ji / max``, ``n_j`` the training patients of
  drug ``j``: drugs like widely used drugs are likelier to be in use than ones like drugs
  nobody takes. It uses training interactions only (a held-out drug's own use is unknown
  to it, as it is at prediction time).

Content scores come from which drugs the patient took (``content_history="binary"``), not from
the run's interaction weights (``"weighted"``): a weighting chosen for the behavior model
(recency, say) made the content part worse at finding cold drugs on Eunomia
(``benchmarks/content.py``).

``propagation`` and ``prior`` default to 0 (plain content similarity): tuned on inner folds
they were picked, then lost to it on most held-out drug sets (``benchmarks/content.py``).

Each of ``alpha``, ``cold_weight``, ``propagation``, ``prior`` is configured, or (None)
tuned for NDCG@10 on new drugs (task b, past drugs not ranked) on inner validation folds
that mirror the run's split inside the training history: the context's ``split``
(:class:`~recommend.models.base.FitContext`, set by ``recommend.run``) is applied once more
to the fold's events (explicit time cutoffs replaced by their quantiles) and its test
fold serves: ``cold_items`` holds out every event of 20 % of the training drugs (drawn
``repeats`` times with seeds ``seed``, ``seed + 1``, ...), ``time`` cuts the history at its
80 % quantile. So the blend learns from training data alone how often targets are drugs
without usage; the run's test fold is never seen. Without a split in the context, the
inner folds are per-patient random ``validation_share`` holdouts of the matrix (warm
targets only). The cold-score form (``propagation``, ``prior``) is tuned first on the cold
targets alone (ranking the cold drugs), then ``alpha`` and ``cold_weight`` on the full
ranking, by the mean NDCG@10 over the inner folds; ties go to the first value listed. This is
done per behavior candidate, and the candidate with the best tuned blend wins. At most 5,000
random patients per fold are scored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from recommend.metrics import ranking_metrics
from recommend.models.base import FitContext, Recommender, _empty_ranking, _top_n, register_model
from recommend.models.content import ContentRecommender
from recommend.models.inner import InnerFold, inner_folds

ALPHAS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)
COLD_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 10.0)
PROPAGATIONS = (0.0, 0.5, 1.0)
PRIORS = (0.0, 1.0)
TUNE_K = 10
TUNE_USERS = 5000  # inner-validation patients scored per candidate, at most
CONTENT_HISTORY = ("binary", "weighted")
UNTUNED = "set alpha, cold_weight, propagation and prior and give one behavior model to fit without tuning"


def _scale_rows(scores: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Divide each row by its largest absolute value over ``columns`` (rows that are all 0 stay 0)."""
    scale = np.abs(scores[:, columns]).max(axis=1, keepdims=True) if columns.any() else np.zeros((len(scores), 1))
    return scores / np.where(scale > 0, scale, 1.0)


@dataclass
class _PreparedFold:
    """An inner fold's part of the tuning that no behavior candidate changes (see ``_prepare_fold``)."""

    matrix: sp.csr_matrix
    rows: np.ndarray
    truth: sp.csr_matrix
    excluded: np.ndarray          # (patients, items) bool: never ranked
    history: sp.csr_matrix
    warm: np.ndarray
    usage_prior: np.ndarray
    content: np.ndarray           # scaled content scores
    cold_truth: sp.csr_matrix
    cold_tops: dict[int, tuple[np.ndarray, np.ndarray]]  # cold-form index -> cold ranking, forms without p
    tied_top: tuple[np.ndarray, np.ndarray]             # the cold part at weight 0: all tied


def _top_columns(scores: np.ndarray, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The best ``TUNE_K`` of ``columns`` per row: (catalog ids, -1 in empty slots; scores)."""
    ids, values = _empty_ranking(len(scores), TUNE_K)
    _top_n(np.ascontiguousarray(scores[:, columns]), ids, values)
    return (np.where(ids >= 0, columns[np.maximum(ids, 0)], -1) if len(columns) else ids), values


def _merged_ndcg(warm: tuple[np.ndarray, np.ndarray], cold: tuple[np.ndarray, np.ndarray], weight: float,
                 truth: sp.csr_matrix) -> float:
    """NDCG@10 of the ranking of warm and ``weight`` x cold scores, from each part's top 10 (ties: lower id)."""
    finite = np.isfinite(cold[1])
    cold_values = np.full_like(cold[1], -np.inf)
    cold_values[finite] = weight * cold[1][finite]  # 0 x -inf would be nan
    ids, values = np.concatenate([warm[0], cold[0]], axis=1), np.concatenate([warm[1], cold_values], axis=1)
    order = np.lexsort((np.where(ids >= 0, ids, np.iinfo(np.int32).max), -values), axis=1)[:, :TUNE_K]
    return ranking_metrics(np.take_along_axis(ids, order, axis=1), truth, [TUNE_K])[f"ndcg@{TUNE_K}"]


@register_model("hybrid")
class HybridRecommender(Recommender):
    """Behavior + content blend with content-based scores for cold drugs (see the module docstring)."""

    def __init__(self, behavior: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
                 content: Mapping[str, Any] | None = None,
                 alpha: float | None = None, cold_weight: float | None = None, propagation: float | None = 0.0,
                 prior: float | None = 0.0, alphas: Sequence[float] = ALPHAS,
                 cold_weights: Sequence[float] = COLD_WEIGHTS, propagations: Sequence[float] = PROPAGATIONS,
                 priors: Sequence[float] = PRIORS, validation_share: float = 0.2, repeats: int = 3,
                 seed: int = 0, content_history: str = "binary") -> None:
        for name, value, low, high in (("alpha", alpha, 0, 1), ("propagation", propagation, 0, 1),
                                       ("cold_weight", cold_weight, 0, np.inf), ("prior", prior, 0, np.inf)):
            if value is not None and not low <= value <= high:
                raise ValueError(f"{name} must be in [{low}, {high}] or None (tuned), got {value}")
        candidates = [behavior] if behavior is None or isinstance(behavior, Mapping) else list(behavior)
        self.behavior_specs = [dict(spec or {"name": "ease", "l2": 500.0}) for spec in candidates]
        if not self.behavior_specs:
            raise ValueError("behavior: give a model spec or a non-empty list of candidates")
        for spec in self.behavior_specs:
            if spec.get("name") in ("hybrid", "content"):
                raise ValueError(f"the behavior model must learn from interactions, not {spec['name']!r}")
        if content_history not in CONTENT_HISTORY:
            raise ValueError(f"content_history must be one of {CONTENT_HISTORY}, not {content_history!r}")
        self.content_params, self.content_history = dict(content or {}), content_history
        self.alpha, self.cold_weight, self.propagation, self.prior = alpha, cold_weight, propagation, prior
        self.alphas, self.cold_weights = [float(a) for a in alphas], [float(w) for w in cold_weights]
        self.propagations, self.priors = [float(b) for b in propagations], [float(g) for g in priors]
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        self.validation_share, self.repeats, self.seed = validation_share, repeats, seed
        self.context: FitContext | None = None
        self.behavior: Recommender | None = None
        self.content = ContentRecommender(**self.content_params)
        self.fitted: dict[str, float] = {}
        self.warm: np.ndarray | None = None
        self.usage_prior: np.ndarray | None = None

    def params(self) -> dict[str, Any]:
        behavior = self.behavior_specs[0] if len(self.behavior_specs) == 1 else self.behavior_specs
        return {"behavior": behavior, "content": self.content_params, "alpha": self.alpha,
                "cold_weight": self.cold_weight, "propagation": self.propagation, "prior": self.prior,
                "alphas": self.alphas, "cold_weights": self.cold_weights, "propagations": self.propagations,
                "priors": self.priors, "validation_share": self.validation_share, "repeats": self.repeats,
                "seed": self.seed, "content_history": self.content_history}

    @property
    def fitted_alpha(self) -> float | None:
        """The alpha in use (configured or tuned)."""
        return self.fitted.get("alpha")

    @property
    def behavior_spec(self) -> dict[str, Any]:
        """The behavior model in use (the chosen candidate once fitted; before, the first)."""
        return self.behavior_specs[int(self.fitted.get("behavior", 0))]

    def with_context(self, context: FitContext) -> HybridRecommender:
        """Keep the context for both parts (content needs the catalog items; tuning, the events and split)."""
        self.context = context
        self.content.with_context(context)
        return self

    def with_patients(self, context: FitContext) -> HybridRecommender:
        self.with_context(context)
        self.behavior.with_patients(context)  # ALS re-solves the new rows; BPR raises
        return self

    def _behavior(self, spec: Mapping[str, Any]) -> Recommender:
        from recommend.models import build_model  # the registry module imports this one

        model = build_model(spec)
        return model.with_context(self.context) if self.context is not None else model

    def fit(self, user_items: sp.csr_matrix) -> HybridRecommender:
        self.content.fit(user_items)
        fixed = {"alpha": self.alpha, "cold_weight": self.cold_weight, "propagation": self.propagation,
                 "prior": self.prior}
        self.fitted = {k: v for k, v in fixed.items() if v is not None} | {"behavior": 0}
        if None in fixed.values() or len(self.behavior_specs) > 1:
            self.fitted = self._tune(inner_folds(self.context, user_items, self.validation_share, self.seed,
                                                 self.repeats, owner="hybrid", remedy=UNTUNED))
        self.warm, self.usage_prior = user_items.getnnz(axis=0) > 0, self._usage_prior(user_items)
        self.behavior = self._behavior(self.behavior_spec).fit(user_items)
        self.n_items = user_items.shape[1]
        return self

    def _usage_prior(self, user_items: sp.csr_matrix) -> np.ndarray:
        """q: content similarity to the training drugs weighted by their patients, scaled to max 1."""
        prior = np.asarray(self.content.similarity.T @ user_items.getnnz(axis=0).astype(np.float32)).ravel()
        return (prior / prior.max() if prior.max() > 0 else prior).astype(np.float32)

    def _candidates(self) -> tuple[list[tuple[float, float]], list[float], list[float]]:
        """Cold-score forms (propagation, prior), alphas and cold weights to try (a set value: itself only)."""
        forms = [(beta, gamma) for beta in ([self.propagation] if self.propagation is not None else self.propagations)
                 for gamma in ([self.prior] if self.prior is not None else self.priors)]
        alphas = [self.alpha] if self.alpha is not None else self.alphas
        weights = [self.cold_weight] if self.cold_weight is not None else self.cold_weights
        return forms, alphas, weights

    def _tune(self, folds: list[InnerFold]) -> dict[str, float]:
        """Every unset setting and the behavior candidate, tuned on the inner folds (see the module docstring):
        mean NDCG@10 over the folds."""
        forms, alphas, weights = self._candidates()
        prepared = [self._prepare_fold(fold) for fold in folds]  # shared by every behavior candidate
        best: tuple[float, dict[str, float]] | None = None
        for index, spec in enumerate(self.behavior_specs):
            qualities = [self._fold_quality(fold, spec) for fold in prepared]
            form = int(np.argmax(np.sum([q[0] for q in qualities], axis=0)))  # ties: the first listed
            blend = np.mean([q[1][form] for q in qualities], axis=0)
            a, w = np.unravel_index(int(np.argmax(blend)), blend.shape)
            if best is None or blend[a, w] > best[0]:
                best = float(blend[a, w]), {"alpha": alphas[a], "cold_weight": weights[w], "behavior": index,
                                            "propagation": forms[form][0], "prior": forms[form][1]}
        return best[1]

    def _prepare_fold(self, fold: InnerFold) -> _PreparedFold:
        """What one inner fold's scoring needs whatever the behavior model: the patients scored (a sample bounds
        the cost and ranks the few candidates as well), their content scores, and the cold part's rankings by
        each cold form that reads no behavior score (``propagation`` 0)."""
        rows, truth, exclude = fold.rows, fold.truth, fold.exclude
        if len(rows) > TUNE_USERS:
            keep = np.sort(np.random.default_rng(self.seed).choice(len(rows), TUNE_USERS, replace=False))
            rows, truth, exclude = rows[keep], truth[keep], exclude[keep]
        has_target = truth.getnnz(axis=1) > 0
        if not has_target.any():
            raise ValueError(f"hybrid: the inner validation fold has no target to tune on; {UNTUNED}")
        rows, truth, excluded = rows[has_target], truth[has_target], exclude[has_target].toarray() > 0
        history = fold.matrix[rows]
        warm = fold.matrix.getnnz(axis=0) > 0
        usage_prior = self._usage_prior(fold.matrix)
        self.warm, self.usage_prior = warm, usage_prior  # the scoring helpers read them; fit resets both
        c = self._scaled_content(rows, history)
        cold_truth = truth.multiply(~warm[None, :]).tocsr()
        cold_truth.eliminate_zeros()
        cold = np.flatnonzero(~warm)
        forms = self._candidates()[0]
        cold_tops = {f: _top_columns(np.where(excluded, -np.inf, self._cold_score(c, None, beta, gamma)), cold)
                     for f, (beta, gamma) in enumerate(forms) if beta == 0}
        return _PreparedFold(fold.matrix, rows, truth, excluded, history, warm, usage_prior, c, cold_truth,
                             cold_tops, _top_columns(np.where(excluded, -np.inf, 0.0), cold))

    def _fold_quality(self, fold: _PreparedFold, spec: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """NDCG@10 on one prepared inner fold with the ``spec`` behavior model: of each cold form on the cold
        targets (ranking the cold drugs alone; 0 without cold targets), and of each (form, alpha, cold weight)
        on every target."""
        forms, alphas, weights = self._candidates()
        self.warm, self.usage_prior = fold.warm, fold.usage_prior
        b = self._scaled_behavior(self._behavior(spec).fit(fold.matrix).score(fold.rows, fold.history))
        c, excluded, truth = fold.content, fold.excluded, fold.truth
        p = self._propagated(b) if any(beta > 0 for beta, _ in forms) else None
        warm, cold = np.flatnonzero(fold.warm), np.flatnonzero(~fold.warm)
        with_cold = fold.cold_truth.getnnz(axis=1) > 0
        # Warm drugs' scores depend on alpha only, cold ones' on the form and weight: each part is ranked once
        # per setting of its own, and the parts' top 10s are merged per combination.
        warm_top = [_top_columns(np.where(excluded, -np.inf, (1.0 - alpha) * b + alpha * c), warm)
                    for alpha in alphas]
        form_quality, blend_quality = np.zeros(len(forms)), np.zeros((len(forms), len(alphas), len(weights)))
        for f, (beta, gamma) in enumerate(forms):
            cold_top = fold.cold_tops[f] if f in fold.cold_tops else _top_columns(
                np.where(excluded, -np.inf, self._cold_score(c, p, beta, gamma)), cold)
            if with_cold.any():
                form_quality[f] = ranking_metrics(cold_top[0][with_cold], fold.cold_truth[with_cold],
                                                  [TUNE_K])[f"ndcg@{TUNE_K}"]
            for a, w in np.ndindex(len(alphas), len(weights)):
                blend_quality[f, a, w] = _merged_ndcg(warm_top[a], cold_top if weights[w] > 0 else fold.tied_top,
                                                      weights[w], truth)
        return form_quality, blend_quality

    def _scaled_content(self, user_ids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        """c: content scores of the patients' drugs (taken or not, or the run's weights), scaled per row."""
        if self.content_history == "binary":
            user_items = user_items.copy()
            user_items.data = (user_items.data != 0).astype(np.float32)
        content = self.content.score(user_ids, user_items)
        return _scale_rows(np.asarray(content, dtype=np.float32), np.ones(len(self.warm), dtype=bool))

    def _scaled_behavior(self, behavior: np.ndarray) -> np.ndarray:
        """b: behavior scores scaled per row by their largest absolute value over warm drugs."""
        return _scale_rows(np.asarray(behavior, dtype=np.float32), self.warm)

    def _propagated(self, b: np.ndarray) -> np.ndarray:
        """p: positive warm behavior scores spread over content neighbours, scaled per row."""
        warm = np.flatnonzero(self.warm)
        spread = (self.content.similarity[warm].T @ np.clip(b[:, warm], 0.0, None).T).T
        return _scale_rows(np.asarray(spread, dtype=np.float32), np.ones(len(self.warm), dtype=bool))

    def _cold_score(self, c: np.ndarray, p: np.ndarray | None, propagation: float, prior: float) -> np.ndarray:
        """u = scaled((1 - propagation) c + propagation p) * q ** prior (``p`` unused when propagation is 0)."""
        mixed = (1.0 - propagation) * c + propagation * p if propagation > 0 else c.copy()
        if prior > 0:
            mixed *= self.usage_prior[None, :] ** prior
        return _scale_rows(mixed, np.ones(len(self.warm), dtype=bool))

    def _blend(self, b: np.ndarray, c: np.ndarray, cold: np.ndarray, alpha: float, weight: float) -> np.ndarray:
        out = (1.0 - alpha) * b + alpha * c
        out[:, ~self.warm] = weight * cold[:, ~self.warm]
        return out

    def score(self, user_ids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        b = self._scaled_behavior(self.behavior.score(user_ids, user_items))
        c = self._scaled_content(user_ids, user_items)
        p = self._propagated(b) if self.fitted["propagation"] > 0 else None
        cold = self._cold_score(c, p, self.fitted["propagation"], self.fitted["prior"])
        return self._blend(b, c, cold, self.fitted["alpha"], self.fitted["cold_weight"])

    def item_similarity(self, item_ids: np.ndarray) -> np.ndarray:
        """Content similarity (defined for cold drugs too)."""
        return self.content.item_similarity(item_ids)

    def explain(self, user_id: int, user_items: sp.csr_matrix, item_id: int, N: int = 5) -> list[tuple[int, float]]:
        """The patient's past drugs most content-similar to the item."""
        return self.content.explain(user_id, user_items, item_id, N)

    def _state(self) -> dict[str, np.ndarray]:
        parts = {f"behavior__{k}": v for k, v in self.behavior._state().items()}
        parts |= {f"content__{k}": v for k, v in self.content._state().items()}
        return parts | {f"fitted_{k}": np.asarray([v]) for k, v in self.fitted.items()} | {
            "warm": self.warm, "usage_prior": self.usage_prior}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.fitted = {k.removeprefix("fitted_"): float(v[0]) for k, v in arrays.items() if k.startswith("fitted_")}
        self.warm, self.usage_prior = arrays["warm"], arrays["usage_prior"]
        self.behavior = self._behavior(self.behavior_spec)
        for prefix, model in (("behavior__", self.behavior), ("content__", self.content)):
            model._set_state({k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)})
            model.n_items = len(self.warm)
