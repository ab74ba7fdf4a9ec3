"""Tanimoto similarity on fingerprint bit matrices and the training molecules of a train run.

Bits come from the feature store's ECFP view as ``(molecules, bits)`` 0/1 matrices; one
block of ``query x reference`` similarities is a float32 matrix product, so memory stays
at ``block_size x references`` however many queries there are.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl

from featurestore import FeatureStore, FeatureView, Standardizer, fingerprint_matrix
from featurestore.io import read_table, require_columns

ECFP4 = FeatureView("ecfp", {"radius": 2, "n_bits": 2048, "counts": False, "chirality": False, "features": False})


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


def max_tanimoto(query: np.ndarray, reference: np.ndarray, block_size: int = 1024) -> np.ndarray:
    """Each query's highest Tanimoto similarity to any reference (NaN when there are no references)."""
    out = np.full(len(query), np.nan)
    if len(reference):
        for rows, sims in tanimoto_blocks(query, reference, block_size):
            out[rows] = sims.max(axis=1)
    return out


def run_dir_of(checkpoint: str | Path) -> Path:
    """The train run folder of a checkpoint given as the run folder or its ``checkpoint/`` subfolder."""
    path = Path(checkpoint)
    return path.parent if path.name == "checkpoint" and not (path / "checkpoint").is_dir() else path


def fold_labels(run_dir: Path, fold: str) -> pl.DataFrame:
    """``row, task`` of every label in ``fold`` of a train run (``data.parquet`` + ``splits.json``)."""
    data = read_table(run_dir / "data.parquet")
    require_columns(data, ["row", "inchikey", "smiles"], str(run_dir / "data.parquet"))
    splits = json.loads((run_dir / "splits.json").read_text())
    tasks = [c for c in data.columns if c not in ("row", "inchikey", "smiles")]
    frames = []
    for task in tasks:
        rows = splits["per_task"][task][fold] if "per_task" in splits else splits["folds"][fold]
        labelled = data[rows].filter(pl.col(task).is_not_null())
        frames.append(labelled.select("row", pl.lit(task).alias("task"), pl.col(task).cast(pl.Float64).alias("target")))
    return pl.concat(frames)


def training_fingerprints(
    run_dir: Path, store: FeatureStore, view: FeatureView = ECFP4, standardizer: Standardizer = Standardizer(),
) -> tuple[pl.DataFrame, np.ndarray]:
    """The training-fold molecules of a train run (``row, inchikey, smiles``) and their fingerprint bits."""
    data = read_table(run_dir / "data.parquet")
    rows = fold_labels(run_dir, "train").get_column("row").unique().sort()
    molecules = data.select("row", "inchikey", "smiles").filter(pl.col("row").is_in(rows.implode()))
    features = store.get(molecules.get_column("inchikey").to_list(), view)
    missing = features.get_column("error").is_not_null()
    if missing.any():  # a store other than the training run's: key the stored SMILES again
        rekeyed = store.featurize_smiles(molecules.filter(missing).get_column("smiles").to_list(), view, standardizer)
        features = pl.concat([features.filter(~missing), rekeyed.select(features.columns)], how="vertical_relaxed")
        molecules = pl.concat([molecules.filter(~missing), molecules.filter(missing)])
    usable = features.get_column("error").is_null()
    return molecules.filter(usable), fingerprint_matrix(features.filter(usable))
