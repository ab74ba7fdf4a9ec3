"""The one recommender interface, and its save/load format (.npz arrays + JSON config, no pickle).

A model is fitted on a patients × items CSR (``fit``). ``score`` gives dense scores
for a batch of patients (their rows of the user-items matrix); ``recommend`` ranks
the whole catalog from those scores, batched, removing the patient's own items
(``filter_already_liked_items``) and any extra per-patient exclusions, and returns
``(ids, scores)`` of shape (patients, N) (int32 / float32) with ``-1`` / ``-inf`` in empty slots.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl
import scipy.sparse as sp

from featurestore.io import atomic_path, write_json_atomic
from recommend.interactions import Weighting
from recommend.patients import Patients

FORMAT_VERSION = 1
MODELS: dict[str, type[Recommender]] = {}


def register_model(name: str):
    """Class decorator: make a recommender buildable by ``name`` from a config."""

    def wrap(cls: type[Recommender]) -> type[Recommender]:
        cls.name = name
        MODELS[name] = cls
        return cls

    return wrap


def _csr_arrays(prefix: str, matrix: sp.csr_matrix) -> dict[str, np.ndarray]:
    return {f"{prefix}_data": matrix.data, f"{prefix}_indices": matrix.indices, f"{prefix}_indptr": matrix.indptr,
            f"{prefix}_shape": np.asarray(matrix.shape)}


def _csr_from(prefix: str, arrays: dict[str, np.ndarray]) -> sp.csr_matrix:
    return sp.csr_matrix((arrays[f"{prefix}_data"], arrays[f"{prefix}_indices"], arrays[f"{prefix}_indptr"]),
                         shape=tuple(arrays[f"{prefix}_shape"]))


@dataclass(frozen=True)
class FitContext:
    """What a run knows beyond the matrix, for models that use more than the CSR.

    ``items``: one row per matrix column (item, name, atc, ...); ``users``: person_id per
    matrix row; ``events``: the time-ordered usage events behind the matrix (person_id,
    item, start, ...; the fold's history only, so nothing from the future); ``split``: the
    run's ``usage_split`` spec and ``weighting``: how the matrix was weighted (models that
    tune themselves split ``events`` the same way into an inner validation fold; None: unknown);
    ``patients``: their PERSON rows and diagnoses, cut like ``events`` (None: the usage has neither table).
    """

    items: pl.DataFrame
    users: pl.Series
    events: pl.DataFrame
    split: Mapping[str, Any] | None = None
    weighting: Weighting | None = None
    patients: Patients | None = None


class Recommender(ABC):
    """Base class: subclasses set their params in ``__init__`` and implement fit/score/state."""

    name: ClassVar[str]
    n_items: int | None = None

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """Constructor arguments (JSON-able): ``type(self)(**self.params())`` is an unfitted twin."""

    def with_context(self, context: FitContext) -> Recommender:
        """Give the model the run's catalog and event history before ``fit``; returns self.

        Matrix-only models ignore it; content and sequential models override it.
        """
        return self

    def with_patients(self, context: FitContext) -> Recommender:
        """Set the fitted model to score the patients of ``context`` (matrix rows in ``context.users`` order):
        patients it was not fitted on, or the same ones at a later time; returns self.

        Models that score from a patient's matrix row (popularity, item-kNN, EASE, newstart, content) or from the
        context (the GRU's event sequences, covariates) only need the context; ALS re-solves each patient's
        factors from their row; BPR cannot and raises.
        """
        return self.with_context(context)

    @abstractmethod
    def fit(self, user_items: sp.csr_matrix) -> Recommender:
        """Learn from a patients × items matrix; returns self."""

    @abstractmethod
    def score(self, user_ids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        """Dense float scores, one row per patient (``user_items`` holds their rows)."""

    @abstractmethod
    def _state(self) -> dict[str, np.ndarray]:
        """Fitted arrays to save."""

    @abstractmethod
    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore fitted arrays."""

    def similar_items(self, item_ids: np.ndarray, N: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Most similar items to each given item (itself excluded): ``(ids, scores)``."""
        similarity = self.item_similarity(np.asarray(item_ids))
        similarity[np.arange(len(item_ids)), item_ids] = -np.inf
        ids, scores = _empty_ranking(len(item_ids), N)
        _top_n(similarity.astype(np.float32), ids, scores)
        return ids, scores

    def item_similarity(self, item_ids: np.ndarray) -> np.ndarray:
        """Similarity rows (len(item_ids) × items); models without item relations raise."""
        raise NotImplementedError(f"{self.name} has no item-item similarity")

    def explain(self, user_id: int, user_items: sp.csr_matrix, item_id: int, N: int = 5) -> list[tuple[int, float]]:
        """The patient's past items that contribute most to ``item_id``'s score: ``[(item, contribution)]``.

        ``user_items`` is the full patients × items matrix (row ``user_id`` is used).
        Models whose scores do not decompose over past items return ``[]``.
        """
        return []

    def explain_patient(self, user_id: int, item_id: int, N: int = 5) -> list[tuple[str, float]]:
        """The patient's covariate features (``sex=…``, ``age=…``, ``condition=…``, ``care_site=…``) that raise
        ``item_id``'s score most: ``[(feature, contribution)]``; models without covariates return ``[]``."""
        return []

    def explain_many(
        self, user_id: int, user_items: sp.csr_matrix, item_ids: np.ndarray, N: int = 5
    ) -> list[list[tuple[int, float]]]:
        """:meth:`explain` for several items of one patient."""
        return [self.explain(user_id, user_items, int(item), N) for item in item_ids]

    def recommend(
        self, user_ids: np.ndarray, user_items: sp.csr_matrix, N: int = 10, filter_already_liked_items: bool = True,
        exclude: sp.csr_matrix | None = None, batch_size: int = 4096,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-N items per patient over the whole catalog (rows of ``user_items`` align with ``user_ids``)."""
        user_ids = np.asarray(user_ids)
        if user_items.shape[0] != len(user_ids):
            raise ValueError("user_items must contain 1 row for every user in user_ids")
        if exclude is not None and exclude.shape != user_items.shape:
            raise ValueError(f"exclude has shape {exclude.shape}, expected {user_items.shape}")
        ids, scores = _empty_ranking(len(user_ids), N)
        for lo in range(0, len(user_ids), batch_size):
            hi = min(lo + batch_size, len(user_ids))
            batch = self.score(user_ids[lo:hi], user_items[lo:hi]).astype(np.float32)
            for mask in ([user_items[lo:hi]] if filter_already_liked_items else []) + (
                [exclude[lo:hi]] if exclude is not None else []
            ):
                coo = mask.tocoo()
                batch[coo.row, coo.col] = -np.inf
            _top_n(batch, ids[lo:hi], scores[lo:hi])
        return ids, scores

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``<path>.npz`` (arrays) and ``<path>.json`` (name, params); return both paths."""
        path = Path(path)
        arrays = path.with_suffix(".npz")
        with atomic_path(arrays) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **self._state())
        config = write_json_atomic(path.with_suffix(".json"), {
            "model": self.name, "params": self.params(), "n_items": self.n_items, "format_version": FORMAT_VERSION})
        return arrays, config


def _top_n(scores: np.ndarray, ids_out: np.ndarray, values_out: np.ndarray) -> None:
    """Write each row's best columns into ``ids_out`` / ``values_out`` (ties: lower index first).

    Slots beyond the catalog or holding -inf scores (filtered items) get -1 / -inf.
    """
    n_cols = scores.shape[1]
    take = min(ids_out.shape[1], n_cols)
    if take < n_cols // 4:  # partial selection first on large catalogs
        # argpartition alone keeps an arbitrary subset of the items tied at the cut (which one depends on numpy's
        # build and CPU); keep everything above the cut and the lowest-index items at it.
        cut = -np.partition(-scores, take - 1, axis=1)[:, take - 1:take]
        above, at_cut = scores > cut, scores == cut
        room = take - np.count_nonzero(above, axis=1)
        crowded = np.flatnonzero(np.count_nonzero(at_cut, axis=1) > room)  # more tied items than slots left
        if len(crowded):  # a running count on those rows only: over a whole batch it was most of the cost
            at_cut[crowded] &= np.cumsum(at_cut[crowded], axis=1, dtype=np.int32) <= room[crowded, None]
        kept = above | at_cut
        candidates = np.nonzero(kept)[1].reshape(len(scores), take)  # index order, so the stable sort below breaks ties by index
        within = np.argsort(-np.take_along_axis(scores, candidates, axis=1), axis=1, kind="stable")
        order = np.take_along_axis(candidates, within, axis=1)
    else:
        order = np.argsort(-scores, axis=1, kind="stable")[:, :take]
    top = np.take_along_axis(scores, order, axis=1)
    valid = np.isfinite(top)
    ids_out[:, :take] = np.where(valid, order, -1)
    values_out[:, :take] = np.where(valid, top, -np.inf)
    ids_out[:, take:] = -1
    values_out[:, take:] = -np.inf


def sorted_positions(sorted_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(positions, found)``: where each of ``ids`` sits in the sorted array ``sorted_ids``, and whether it is there
    (positions of absent ids are meaningless)."""
    positions = np.searchsorted(sorted_ids, ids)
    found = positions < len(sorted_ids)
    found[found] = sorted_ids[positions[found]] == np.asarray(ids)[found]
    return positions, found


class BatchExplanations:
    """For models that explain several items of one patient at once (their ``explain_many``): ``explain`` is its
    one-item case."""

    def explain(self, user_id: int, user_items: sp.csr_matrix, item_id: int, N: int = 5) -> list[tuple[int, float]]:
        return self.explain_many(user_id, user_items, np.array([item_id]), N)[0]


def _empty_ranking(n_rows: int, N: int) -> tuple[np.ndarray, np.ndarray]:
    return np.empty((n_rows, N), dtype=np.int32), np.empty((n_rows, N), dtype=np.float32)


def load_model(path: str | Path) -> Recommender:
    """Rebuild a saved model from ``<path>.json`` and ``<path>.npz`` (``allow_pickle=False``)."""
    path = Path(path)
    config = json.loads(path.with_suffix(".json").read_text())
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported model format {config.get('format_version')}")
    if config["model"] not in MODELS:
        raise KeyError(f"{path}: unknown model {config['model']!r}; known: {sorted(MODELS)}")
    model = MODELS[config["model"]](**config["params"])
    with np.load(path.with_suffix(".npz"), allow_pickle=False) as data:
        model._set_state({key: data[key] for key in data.files})
    model.n_items = config["n_items"]
    return model
