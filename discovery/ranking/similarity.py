"""The training molecules of a train run, for similarity to them (Tanimoto: :mod:`featurestore.similarity`).

Bits come from the feature store's ECFP view as ``(molecules, bits)`` 0/1 matrices; one
block of ``query x reference`` similarities is a float32 matrix product, so memory stays
at ``block_size x references`` however many queries there are.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from featurestore import FeatureStore, FeatureView, Standardizer, fingerprint_matrix
from featurestore.io import read_table, require_columns

from discovery.checkpoint import checkpoint_paths, run_dir_of

ECFP4 = FeatureView("ecfp", {"radius": 2, "n_bits": 2048, "counts": False, "chirality": False, "features": False})


def run_dirs_of(checkpoints: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """The train run folders of one checkpoint or of a list of them (an ensemble of runs, or a saved one)."""
    return [run_dir_of(path) for path in checkpoint_paths(checkpoints)]


def run_data(run_dirs: Path | Sequence[Path]) -> pl.DataFrame:
    """The ``data.parquet`` of a train run, or the one the runs of an ensemble share (else a ValueError)."""
    dirs = checkpoint_paths(run_dirs)
    data = read_table(dirs[0] / "data.parquet")
    require_columns(data, ["row", "inchikey", "smiles"], str(dirs[0] / "data.parquet"))
    for other in dirs[1:]:
        if not read_table(other / "data.parquet").equals(data):
            raise ValueError(f"{other} was trained on other data than {dirs[0]}: an ensemble's runs must share "
                             "their data.parquet")
    return data


def fold_labels(run_dirs: Path | Sequence[Path], fold: str, data: pl.DataFrame | None = None) -> pl.DataFrame:
    """``row, task, target`` of every label in ``fold`` of a train run (``data.parquet`` + ``splits.json``);
    ``target`` is float, or the class name for a multiclass run. Several runs (an ensemble, same data): the
    union of their ``fold`` labels. ``data``: the runs' :func:`run_data`, when the caller has read it already."""
    dirs = checkpoint_paths(run_dirs)
    data = run_data(dirs) if data is None else data
    tasks = [c for c in data.columns if c not in ("row", "inchikey", "smiles")]
    frames = []
    for run_dir in dirs:
        splits = json.loads((run_dir / "splits.json").read_text())
        for task in tasks:
            rows = splits["per_task"][task][fold] if "per_task" in splits else splits["folds"][fold]
            labelled = data[rows].filter(pl.col(task).is_not_null())
            target = pl.col(task) if data.schema[task] == pl.String else pl.col(task).cast(pl.Float64)
            frames.append(labelled.select("row", pl.lit(task).alias("task"), target.alias("target")))
    return pl.concat(frames).unique(["row", "task"], maintain_order=True)


def training_fingerprints(
    run_dirs: Path | Sequence[Path], store: FeatureStore, view: FeatureView = ECFP4, standardizer: Standardizer = Standardizer(),
    data: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, np.ndarray]:
    """The training-fold molecules of a train run (``row, inchikey, smiles``) and their fingerprint bits; several
    runs (an ensemble): every molecule any of them trained on. ``data``: as in :func:`fold_labels`."""
    data = run_data(run_dirs) if data is None else data
    rows = fold_labels(run_dirs, "train", data).get_column("row").unique().sort()
    molecules = data.select("row", "inchikey", "smiles").filter(pl.col("row").is_in(rows.implode()))
    features = store.get(molecules.get_column("inchikey").to_list(), view)
    missing = features.get_column("error").is_not_null()
    if missing.any():  # a store other than the training run's: key the stored SMILES again
        rekeyed = store.featurize_smiles(molecules.filter(missing).get_column("smiles").to_list(), view, standardizer)
        features = pl.concat([features.filter(~missing), rekeyed.select(features.columns)], how="vertical_relaxed")
        molecules = pl.concat([molecules.filter(~missing), molecules.filter(missing)])
    usable = features.get_column("error").is_null()
    return molecules.filter(usable), fingerprint_matrix(features.filter(usable))
