"""Tanimoto similarity of 0/1 fingerprint matrices, shared by ranking (discovery) and content models (recommend)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def tanimoto_blocks(query: np.ndarray, reference: np.ndarray, block_size: int = 1024) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield ``(query rows, similarities)`` blocks of the ``query x reference`` Tanimoto matrix (0/1 bit inputs)."""
    ref = reference.astype(np.float32)
    ref_counts = ref.sum(axis=1)
    for start in range(0, len(query), block_size):
        rows = slice(start, min(start + block_size, len(query)))
        block = query[rows].astype(np.float32)
        common = block @ ref.T
        union = block.sum(axis=1)[:, None] + ref_counts[None, :] - common
        # Two empty fingerprints share nothing: similarity 0, not 0/0.
        yield rows, np.divide(common, union, out=np.zeros_like(common), where=union > 0)


def tanimoto_matrix(query: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """The whole ``query x reference`` Tanimoto matrix (``reference`` defaults to ``query``), float32."""
    reference = query if reference is None else reference
    out = np.zeros((len(query), len(reference)), dtype=np.float32)
    for rows, sims in tanimoto_blocks(query, reference):
        out[rows] = sims
    return out


def max_tanimoto(query: np.ndarray, reference: np.ndarray, block_size: int = 1024) -> np.ndarray:
    """Each query's highest Tanimoto similarity to any reference (NaN when there are no references)."""
    out = np.full(len(query), np.nan)
    if len(reference):
        for rows, sims in tanimoto_blocks(query, reference, block_size):
            out[rows] = sims.max(axis=1)
    return out
