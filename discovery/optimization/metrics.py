"""PMO metrics over a call log: AUC top-k, top-k means, diversity, novelty.

``auc_top_k`` reproduces mol_opt's ``top_auc`` (``main/optimizer.py``): the running mean
of the top-k scores is evaluated after every ``freq`` calls (100, 200, ... strictly
below the number of calls made), the trapezoid rule integrates it from (0, 0) through
those points to the final value at the last call (which handles a final partial block),
a run that stopped before the budget carries its final value flat to the budget, and
the area is divided by the budget. With fewer than k molecules, the mean is over those
scored. The one difference: mol_opt's buffer may overshoot the budget by one call,
ours never does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator

TOP_KS = (1, 10, 100)


def top_k_mean(scores: Sequence[float] | np.ndarray, k: int) -> float:
    """Mean of the ``k`` largest scores (of all of them if fewer); 0 for no scores."""
    values = np.asarray(scores, dtype=float)
    if values.size == 0:
        return 0.0
    return float(np.sort(values)[::-1][:k].mean())


def running_top_k(scores: Sequence[float] | np.ndarray, k: int, points: Iterable[int]) -> list[float]:
    """Top-k mean of the first ``n`` scores for each ``n`` in ``points``."""
    values = np.asarray(scores, dtype=float)
    return [top_k_mean(values[:n], k) for n in points]


def running_curve(scores: Sequence[float] | np.ndarray, freq: int = 100) -> dict[int, dict[str, float]]:
    """Running top-1/10/100 means every ``freq`` calls and at the last call: ``{calls: {"top1": ..., ...}}``."""
    values = np.asarray(scores, dtype=float)
    points = sorted({*range(freq, values.size, freq), values.size})
    return {n: {f"top{k}": top_k_mean(values[:n], k) for k in TOP_KS} for n in points}


def auc_top_k(scores: Sequence[float] | np.ndarray, k: int, budget: int, freq: int = 100) -> float:
    """Area under the running top-k mean vs calls, divided by ``budget`` (mol_opt's ``top_auc``).

    ``scores`` are in call order; calls beyond ``budget`` are ignored.
    """
    values = np.asarray(scores, dtype=float)[:budget]
    n = values.size
    if n == 0:
        return 0.0
    checkpoints = list(range(freq, n, freq))
    area, previous, last = 0.0, 0.0, 0
    for n_calls, value in zip(checkpoints, running_top_k(values, k, checkpoints)):
        area += (n_calls - last) * (value + previous) / 2
        previous, last = value, n_calls
    final = top_k_mean(values, k)
    area += (n - last) * (final + previous) / 2
    area += (budget - n) * final  # early stop: carry the last value to the full budget
    return area / budget


def _ecfp4_bits(smiles: Sequence[str]) -> list:
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    mols = [Chem.MolFromSmiles(s) for s in smiles]
    bad = [s for s, m in zip(smiles, mols) if m is None]
    if bad:
        raise ValueError(f"cannot compute fingerprints of unparseable SMILES {bad[:5]}")
    return [generator.GetFingerprint(m) for m in mols]


def diversity(smiles: Sequence[str]) -> float:
    """Mean pairwise Tanimoto distance (1 - similarity) on ECFP4 bits (2048) of the unique
    molecules, as TDC's ``Diversity`` evaluator used by PMO; 0 for fewer than two."""
    fps = _ecfp4_bits(list(dict.fromkeys(smiles)))
    if len(fps) < 2:
        return 0.0
    distances = [1.0 - s for i, fp in enumerate(fps[:-1]) for s in DataStructs.BulkTanimotoSimilarity(fp, fps[i + 1:])]
    return float(np.mean(distances))


def novelty(keys: Sequence[str | None], reference_keys: set[str]) -> float:
    """Fraction of ``keys`` (InChIKeys) not in ``reference_keys``; a null key counts as novel."""
    if not keys:
        return 0.0
    return sum(1 for key in keys if key not in reference_keys) / len(keys)
