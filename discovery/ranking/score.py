"""One ranking score from several columns: weighted desirabilities, aggregated geometrically or arithmetically.

Each term maps a column through a desirability transform (:mod:`discovery.oracles.transforms`,
e.g. ``{kind: clipped, upper: 0, lower: 1}`` for "no alerts") onto [0, 1]; the score is
``prod(d_i ** w_i) ** (1 / sum w)`` (geometric: any zero desirability vetoes) or
``sum(w_i d_i) / sum w`` (arithmetic). A row with a missing term value has no score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from discovery.oracles.transforms import Transform, make_transform

AGGREGATES = ("geometric", "arithmetic")


@dataclass(frozen=True)
class ScoreTerm:
    """``column`` through ``transform`` (a transform spec; ``None`` = identity), weighted by ``weight``."""

    column: str
    transform: Mapping[str, Any] | None = None
    weight: float = 1.0
    _fn: Transform = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.weight <= 0:
            raise ValueError(f"score term {self.column!r}: weight must be > 0, got {self.weight}")
        object.__setattr__(self, "_fn", make_transform(self.transform))

    def desirability(self, values: pl.Series) -> np.ndarray:
        """Transformed values as float64, NaN where the value is missing."""
        raw = values.cast(pl.Float64).fill_nan(None).to_list()
        return np.array([np.nan if v is None else self._fn(v) for v in raw], dtype=np.float64)


@dataclass(frozen=True)
class RankingScore:
    """Weighted desirability terms and how to aggregate them."""

    terms: Sequence[ScoreTerm]
    aggregate: str = "geometric"

    def __post_init__(self) -> None:
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"score aggregate must be one of {AGGREGATES}, got {self.aggregate!r}")
        if not self.terms:
            raise ValueError("a ranking score needs at least one term")

    @classmethod
    def from_config(cls, spec: Mapping[str, Any]) -> RankingScore:
        """From ``{terms: [{column, transform?, weight?}, ...], aggregate?}``."""
        terms = [ScoreTerm(**dict(term)) for term in spec["terms"]]
        return cls(terms, spec.get("aggregate", "geometric"))

    @property
    def columns(self) -> list[str]:
        return [term.column for term in self.terms]

    def __call__(self, table: pl.DataFrame) -> pl.DataFrame:
        """``table`` with one ``d_<column>`` desirability per term and the aggregated ``score`` (null if any is missing)."""
        missing = [c for c in self.columns if c not in table.columns]
        if missing:
            raise KeyError(f"score terms name column(s) {missing} not in the table; available: {table.columns}")
        desirabilities = np.column_stack([term.desirability(table.get_column(term.column)) for term in self.terms])
        weights = np.array([term.weight for term in self.terms])
        if self.aggregate == "geometric":
            with np.errstate(divide="ignore"):  # log(0) = -inf gives exp(-inf) = 0: a zero term vetoes
                score = np.exp(np.log(desirabilities) @ weights / weights.sum())
        else:
            score = desirabilities @ weights / weights.sum()
        columns = [pl.Series(f"d_{term.column}", desirabilities[:, i]) for i, term in enumerate(self.terms)]
        return table.with_columns(*columns, pl.Series("score", score)).with_columns(
            pl.col("score", *[c.name for c in columns]).fill_nan(None)
        )
