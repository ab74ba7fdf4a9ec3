"""A featurizer that counts the items it computes (for materialize-on-miss tests)."""

from __future__ import annotations

import polars as pl

from featurestore import Featurizer, register_featurizer


@register_featurizer
class UppercaseCount(Featurizer[str, dict]):
    """Number of uppercase letters in the SMILES: cheap, deterministic, and it counts its calls."""

    name = "test_uppercase_count"
    calls = 0

    def schema(self) -> dict[str, pl.DataType]:
        return {"n_upper": pl.Int64}

    def __call__(self, item: str) -> dict:
        type(self).calls += 1
        return {"n_upper": sum(c.isupper() for c in item)}
