"""Patients × items interaction matrices with their id maps, built by polars group-bys.

Weighting of one (patient, item) cell, summed over that pair's events:

- ``binary``: 1.
- ``count``: number of exposures.
- ``days``: days of supply (``days_supply`` when > 0, else end - start + 1 days, else 1).
- ``recency``: 0.5 ** (age / half_life_days), age = days from the event start to the
  prediction time (the event's ``reference`` column, set by the split: never a time
  after the training window, so no future information leaks into the weights).

``transform`` then reweights the matrix: ``bm25`` / ``tfidf`` (implicit's
``bm25_weight`` / ``tfidf_weight`` applied, as in implicit's own examples, to the
items × patients matrix) or ``none``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp
from tqdm.auto import tqdm

WEIGHTINGS = ("binary", "count", "days", "recency")
TRANSFORMS = ("none", "bm25", "tfidf")
CHUNK_EVENTS = 2_000_000  # events per group-by chunk (memory bound, progress bar step)


@dataclass(frozen=True)
class Weighting:
    """How an interaction cell is weighted (see the module docstring)."""

    scheme: str = "count"
    half_life_days: float = 365.0
    transform: str = "none"
    bm25_k1: float = 100.0
    bm25_b: float = 0.8

    def __post_init__(self) -> None:
        if self.scheme not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {self.scheme!r}; use one of {WEIGHTINGS}")
        if self.transform not in TRANSFORMS:
            raise ValueError(f"unknown transform {self.transform!r}; use one of {TRANSFORMS}")
        if self.half_life_days <= 0:
            raise ValueError("half_life_days must be > 0")

    def event_weight(self) -> pl.Expr:
        """Weight of one event (summed per cell; ``binary`` takes the max)."""
        if self.scheme in ("binary", "count"):
            return pl.lit(1.0)
        if self.scheme == "days":
            span = (pl.col("end") - pl.col("start")).dt.total_days() + 1
            return (
                pl.when(pl.col("days_supply") > 0).then(pl.col("days_supply"))
                .when(span.is_not_null()).then(span.cast(pl.Float64))
                .otherwise(1.0)
            )
        age_days = (pl.col("reference") - pl.col("start")).dt.total_seconds() / 86_400.0
        return pl.lit(0.5).pow(age_days.clip(lower_bound=0.0) / self.half_life_days)


@dataclass(frozen=True)
class Interactions:
    """A patients × items CSR matrix and its id maps (row → person_id, column → item)."""

    matrix: sp.csr_matrix
    user_ids: pl.Series
    item_ids: pl.Series

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape

    def rows(self, person_ids: Sequence | pl.Series) -> np.ndarray:
        """Row indices of the given person ids (KeyError naming unknown ones)."""
        return _positions(self.user_ids, person_ids, "person_id")

    def columns(self, item_ids: Sequence | pl.Series) -> np.ndarray:
        """Column indices of the given item ids."""
        return _positions(self.item_ids, item_ids, "item")


def _positions(vocabulary: pl.Series, ids: Sequence | pl.Series, what: str) -> np.ndarray:
    lookup = pl.DataFrame({"id": vocabulary}).with_row_index("position")
    query = pl.DataFrame({"id": pl.Series(ids, dtype=vocabulary.dtype)})
    found = query.join(lookup, on="id", how="left", maintain_order="left")
    missing = found.filter(pl.col("position").is_null())["id"]
    if missing.len():
        raise KeyError(f"unknown {what}(s): {missing.head(5).to_list()}")
    return found["position"].to_numpy().astype(np.int64)


def build_interactions(
    events: pl.DataFrame, user_ids: pl.Series, item_ids: pl.Series, weighting: Weighting = Weighting(),
    progress: bool | None = None,
) -> Interactions:
    """Aggregate events into a float32 CSR over the given vocabularies (rows/columns fixed).

    Events whose person or item is not in the vocabularies raise ``KeyError``: a split
    must not lose events on the way. Large inputs are grouped in chunks of whole
    patients (bounded memory) with a progress bar.
    """
    if weighting.scheme == "recency" and "reference" not in events.columns:
        raise KeyError("recency weighting needs a 'reference' column (the prediction time) on the events")
    users = pl.DataFrame({"person_id": user_ids}).with_row_index("row")
    items = pl.DataFrame({"item": item_ids}).with_row_index("col")
    indexed = (
        events.join(users, on="person_id", how="left")
        .join(items, on="item", how="left")
        .with_columns(weight=weighting.event_weight())
    )
    unknown = indexed.filter(pl.col("row").is_null() | pl.col("col").is_null())
    if unknown.height:
        raise KeyError(f"{unknown.height} events with a person or item outside the vocabularies, e.g. "
                       f"{unknown.select('person_id', 'item').head(3).rows()}")
    indexed = indexed.select("row", "col", "weight").sort("row")
    aggregate = pl.col("weight").max() if weighting.scheme == "binary" else pl.col("weight").sum()
    bounds = _chunk_bounds(indexed["row"].to_numpy(), CHUNK_EVENTS)
    show = progress if progress is not None else len(bounds) > 2
    parts = []
    for lo, hi in tqdm(list(zip(bounds[:-1], bounds[1:])), desc="interactions", disable=not show):
        parts.append(indexed.slice(lo, hi - lo).group_by("row", "col").agg(aggregate))
    cells = pl.concat(parts) if parts else pl.DataFrame(schema={"row": pl.UInt32, "col": pl.UInt32, "weight": pl.Float64})
    matrix = sp.csr_matrix(
        (cells["weight"].to_numpy().astype(np.float32), (cells["row"].to_numpy(), cells["col"].to_numpy())),
        shape=(users.height, items.height),
    )
    matrix.sort_indices()
    return Interactions(_transform(matrix, weighting), user_ids, item_ids)


def _chunk_bounds(sorted_rows: np.ndarray, chunk: int) -> list[int]:
    """Slice bounds into ``sorted_rows`` of about ``chunk`` events, never splitting a patient."""
    bounds = [0]
    while bounds[-1] < len(sorted_rows):
        target = bounds[-1] + chunk
        if target >= len(sorted_rows):
            bounds.append(len(sorted_rows))
        else:
            bounds.append(int(np.searchsorted(sorted_rows, sorted_rows[target], side="right")))
    return bounds


def _transform(matrix: sp.csr_matrix, weighting: Weighting) -> sp.csr_matrix:
    if weighting.transform == "none":
        return matrix
    from implicit.nearest_neighbours import bm25_weight, tfidf_weight

    item_users = matrix.T.tocsr()
    if weighting.transform == "bm25":
        weighted = bm25_weight(item_users, K1=weighting.bm25_k1, B=weighting.bm25_b)
    else:
        weighted = tfidf_weight(item_users)
    out = sp.csr_matrix(weighted.T, dtype=np.float32)
    out.sort_indices()
    return out


def pair_matrix(pairs: pl.DataFrame, persons: pl.Series, space: Interactions) -> sp.csr_matrix:
    """Binary CSR (len(persons) × items) of (person_id, item) pairs; persons give the row order."""
    rows = pl.DataFrame({"person_id": persons}).with_row_index("r")
    indexed = pairs.join(rows, on="person_id", how="inner")
    cols = space.columns(indexed["item"]) if indexed.height else np.zeros(0, dtype=np.int64)
    matrix = sp.csr_matrix(
        (np.ones(indexed.height, dtype=np.float32), (indexed["r"].to_numpy(), cols)),
        shape=(len(persons), space.shape[1]),
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix
