"""Model inputs from stored feature views: PyG graphs or fingerprint rows, built without RDKit."""

from __future__ import annotations

import numpy as np
import polars as pl
import torch
from torch_geometric.data import Data

from featurestore import ATOM_DIM, BOND_DIM, fingerprint_matrix, graphs_from_frame


def model_inputs(kind: str, features: pl.DataFrame) -> list[Data]:
    """One ``Data`` per feature row: a one-hot graph (``kind='graph'``) or ``fp`` ``(1, bits)`` (``'fingerprint'``)."""
    if kind == "graph":
        if "atom_features" not in features.columns:
            raise ValueError("a graph model needs the graph view (model.view.featurizer=graph)")
        return graphs_from_frame(features, one_hot=True)
    if kind == "fingerprint":
        if "fp" not in features.columns:
            raise ValueError("a fingerprint model needs a fingerprint view such as ecfp (column 'fp')")
        matrix = torch.tensor(fingerprint_matrix(features))  # a copy: polars hands out a read-only view
        # num_nodes=0: a fingerprint example has no graph, so PyG batches only its 'fp' rows.
        return [Data(fp=matrix[i : i + 1], num_nodes=0) for i in range(len(matrix))]
    raise ValueError(f"unknown input kind {kind!r}")


def input_dims(kind: str, examples: list[Data]) -> dict[str, int]:
    """The input widths a model of ``kind`` is built with (recorded in its hyperparameters)."""
    if kind == "graph":
        return {"atom_dim": ATOM_DIM, "bond_dim": BOND_DIM}
    return {"in_dim": int(examples[0].fp.shape[1])}


def fingerprint_array(examples: list[Data]) -> np.ndarray:
    """``(molecules, bits)`` matrix of fingerprint examples (for the scikit-learn baselines)."""
    return torch.cat([example.fp for example in examples]).numpy()
