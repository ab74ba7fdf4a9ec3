"""Protein featurizers: amino-acid k-mer composition from the sequence."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl

from featurestore.featurizers.base import FeaturizationError, Featurizer, register_featurizer
from featurestore.featurizers.molecule import array_column

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"


@register_featurizer
class ProteinKmerFeaturizer(Featurizer[str, np.ndarray]):
    """Normalized k-mer composition for each k in ``ks`` (k=1: 20 dims, k=2: 400, k=3: 8000).

    Each k block sums to 1 over the k-mers made only of the 20 standard residues;
    non-standard residues (X, U, B...) are skipped and do not count.
    """

    name = "protein_kmer"
    entity = "protein"
    input_column = "sequence"

    def __init__(self, ks: tuple[int, ...] | list[int] = (1, 2)) -> None:
        ks = tuple(int(k) for k in ks)
        if not ks or min(ks) < 1 or max(ks) > 3:
            raise ValueError(f"ks must be non-empty values in 1..3, got {ks}")
        super().__init__(ks=list(ks))
        self.ks = ks
        self.index = {k: {"".join(p): i for i, p in enumerate(itertools.product(AMINO_ACIDS, repeat=k))} for k in ks}
        self.width = sum(20**k for k in ks)

    def schema(self) -> dict[str, pl.DataType]:
        return {"kmer": pl.Array(pl.Float32, self.width)}

    def __call__(self, item: str) -> np.ndarray:
        sequence = (item or "").strip().upper()
        if not sequence:
            raise FeaturizationError("empty protein sequence")
        blocks = []
        for k in self.ks:
            counts = np.zeros(20**k, dtype=np.float32)
            for start in range(len(sequence) - k + 1):
                slot = self.index[k].get(sequence[start : start + k])
                if slot is not None:
                    counts[slot] += 1
            total = counts.sum()
            if total == 0:
                raise FeaturizationError(f"no standard {k}-mers in sequence")
            blocks.append(counts / total)
        return np.concatenate(blocks)

    def to_columns(self, values: list[np.ndarray | None]) -> dict[str, pl.Series]:
        return {"kmer": array_column("kmer", values, self.width, np.float32)}
