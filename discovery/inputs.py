"""Model inputs from stored feature views: PyG graphs, fingerprint rows or token ids, built without RDKit.

Drug–target pair kinds (``graph_protein_tokens``, ``fingerprint_protein_kmer``) read a frame
with one row per pair holding the drug view's and the protein view's columns side by side.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl
import torch
from torch_geometric.data import Data

from featurestore import ATOM_DIM, BOND_DIM, FeatureView, fingerprint_matrix, graphs_from_frame


def _token_ids(features: pl.DataFrame, column: str, needs: str) -> list[torch.Tensor]:
    """Each row's ``column`` token ids as a 1-D int64 tensor."""
    if column not in features.columns:
        raise ValueError(f"{needs} needs the {column} view (column {column!r})")
    series = features.get_column(column)
    flat = torch.from_numpy(series.explode().to_numpy().astype(np.int64))
    return list(torch.split(flat, series.list.len().to_list()))


def _with_tokens(example: Data, name: str, ids: torch.Tensor) -> Data:
    """Attach ids as ``name`` ``(L,)`` and ``name_length`` ``(1,)``: PyG concatenates both per batch."""
    example[name] = ids
    example[f"{name}_length"] = torch.tensor([len(ids)])
    return example


def model_inputs(kind: str, features: pl.DataFrame) -> list[Data]:
    """One ``Data`` per feature row, by input kind.

    ``graph``: a one-hot graph; ``fingerprint``: ``fp`` ``(1, bits)``; ``smiles_tokens``: SMILES
    token ids; ``graph_protein_tokens``: a drug graph + protein token ids; ``fingerprint_protein_kmer``:
    ``fp`` = drug fingerprint bits followed by the protein k-mer composition.
    """
    if kind == "smiles_tokens":
        return [_with_tokens(Data(num_nodes=0), "smiles_tokens", ids)
                for ids in _token_ids(features, "smiles_tokens", "a SMILES token model")]
    if kind == "graph_protein_tokens":
        proteins = _token_ids(features, "protein_tokens", "a graph + protein sequence model")
        return [_with_tokens(graph, "protein_tokens", ids) for graph, ids in zip(model_inputs("graph", features), proteins)]
    if kind == "fingerprint_protein_kmer":
        if "kmer" not in features.columns:
            raise ValueError("a fingerprint + protein k-mer model needs the protein_kmer view (column 'kmer')")
        drugs = model_inputs("fingerprint", features)
        kmers = torch.from_numpy(fingerprint_matrix(features, "kmer").astype(np.float32))
        return [Data(fp=torch.cat([drug.fp.float(), kmers[i : i + 1]], dim=1), num_nodes=0) for i, drug in enumerate(drugs)]
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


def input_dims(kind: str, examples: list[Data], views: Mapping[str, FeatureView] | None = None) -> dict[str, int]:
    """The input widths a model of ``kind`` is built with (recorded in its hyperparameters).

    Token kinds size their embeddings from the vocabulary of their view in ``views``
    (entity -> view: ``molecule``, ``protein``), not from the ids that happen to occur.
    """
    if kind in ("smiles_tokens", "graph_protein_tokens") and views is None:
        raise ValueError(f"input kind {kind!r} needs its feature views to size the token embeddings")
    if kind == "smiles_tokens":
        return {"vocab_size": views["molecule"].build().n_ids}
    if kind == "graph_protein_tokens":
        return {"atom_dim": ATOM_DIM, "bond_dim": BOND_DIM, "protein_vocab_size": views["protein"].build().n_ids}
    if kind == "graph":
        extra = {"extra_dim": int(examples[0].mol_features.shape[1])} if "mol_features" in examples[0] else {}
        return {"atom_dim": ATOM_DIM, "bond_dim": BOND_DIM, **extra}
    return {"in_dim": int(examples[0].fp.shape[1])}


def fingerprint_array(examples: list[Data]) -> np.ndarray:
    """``(molecules, bits)`` matrix of fingerprint examples (for the scikit-learn baselines)."""
    return torch.cat([example.fp for example in examples]).numpy()
