"""Molecular graphs for PyTorch Geometric, featurized once and stored without RDKit objects.

Stored per molecule (raw RDKit values, not one-hot, so vocabularies can change without
re-featurizing):

- ``atom_features``: flattened ``(num_atoms, 8)`` Int16, columns :data:`ATOM_FEATURES`
- ``atom_mass``: ``(num_atoms,)`` Float32, atomic mass / 100
- ``edge_index``: flattened ``(2, 2 * num_bonds)`` Int32; bond ``k`` gives directed edges
  ``2k`` (i->j) and ``2k+1`` (j->i), PyG's convention for undirected graphs
- ``bond_features``: flattened ``(2 * num_bonds, 4)`` Int8, columns :data:`BOND_FEATURES`

:func:`graphs_from_frame` rebuilds ``torch_geometric.data.Data`` objects from these
columns with numpy slicing only; :func:`atom_one_hot` / :func:`bond_one_hot` give
chemprop-style one-hot matrices.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pyarrow as pa

from featurestore.featurizers.base import FeaturizationError, Featurizer, register_featurizer
from featurestore.featurizers.molecule import mol_from_smiles

if TYPE_CHECKING:
    from torch_geometric.data import Data

ATOM_FEATURES = (
    "atomic_num", "degree", "formal_charge", "chiral_tag", "total_hs", "hybridization", "aromatic", "in_ring",
)
BOND_FEATURES = ("bond_type", "conjugated", "in_ring", "stereo")

# One-hot vocabularies (raw RDKit values); a value outside the list maps to an extra "other" slot.
ATOM_VOCAB: dict[str, list[int]] = {
    "atomic_num": list(range(1, 101)),
    "degree": [0, 1, 2, 3, 4, 5],
    "formal_charge": [-2, -1, 0, 1, 2],
    "chiral_tag": [0, 1, 2, 3],
    "total_hs": [0, 1, 2, 3, 4],
    "hybridization": [1, 2, 3, 4, 5, 6],  # S, SP, SP2, SP3, SP3D, SP3D2
}
BOND_VOCAB: dict[str, list[int]] = {
    "bond_type": [1, 2, 3, 12],  # single, double, triple, aromatic
    "stereo": [0, 1, 2, 3, 4, 5],
}


@register_featurizer
class GraphFeaturizer(Featurizer[str, tuple]):
    """SMILES -> (atom features, masses, edge index, bond features) arrays."""

    name = "graph"

    def schema(self) -> dict[str, pl.DataType]:
        return {
            "num_atoms": pl.Int32,
            "num_bonds": pl.Int32,
            "atom_features": pl.List(pl.Int16),
            "atom_mass": pl.List(pl.Float32),
            "edge_index": pl.List(pl.Int32),
            "bond_features": pl.List(pl.Int8),
        }

    def __call__(self, item: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        mol = mol_from_smiles(item)
        if mol.GetNumAtoms() == 0:
            raise FeaturizationError("molecule has no atoms")
        atoms = [
            (
                a.GetAtomicNum(), a.GetTotalDegree(), a.GetFormalCharge(), int(a.GetChiralTag()),
                a.GetTotalNumHs(), int(a.GetHybridization()), a.GetIsAromatic(), a.IsInRing(),
            )
            for a in mol.GetAtoms()
        ]
        masses = [a.GetMass() * 0.01 for a in mol.GetAtoms()]
        src, dst, bonds = [], [], []
        for b in mol.GetBonds():
            i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
            src += (i, j)
            dst += (j, i)
            feats = (int(b.GetBondType()), b.GetIsConjugated(), b.IsInRing(), int(b.GetStereo()))
            bonds += (feats, feats)
        return (
            np.asarray(atoms, dtype=np.int16),
            np.asarray(masses, dtype=np.float32),
            np.asarray([src, dst], dtype=np.int32).reshape(2, -1),
            np.asarray(bonds, dtype=np.int8).reshape(-1, len(BOND_FEATURES)),
        )

    def to_columns(self, values: list[tuple | None]) -> dict[str, pl.Series]:
        ok = [v for v in values if v is not None]
        num_atoms = [None if v is None else len(v[1]) for v in values]
        num_edges = [0 if v is None else v[2].shape[1] for v in values]
        atom_counts = [n or 0 for n in num_atoms]

        def flat(index: int, per_row: list[int], width: int, dtype: type) -> pl.Series:
            offsets = np.zeros(len(values) + 1, dtype=np.int32)
            np.cumsum(np.asarray(per_row, dtype=np.int64) * width, out=offsets[1:])
            parts = [v[index].reshape(-1) for v in ok]
            flat_values = np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)
            return pl.from_arrow(pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat_values)))

        # edge_index is stored (2, E) row-major, so its flat length per row is 2 * E.
        return {
            "num_atoms": pl.Series("num_atoms", num_atoms, dtype=pl.Int32),
            "num_bonds": pl.Series("num_bonds", [None if v is None else e // 2 for v, e in zip(values, num_edges)], dtype=pl.Int32),
            "atom_features": flat(0, atom_counts, len(ATOM_FEATURES), np.int16).alias("atom_features"),
            "atom_mass": flat(1, atom_counts, 1, np.float32).alias("atom_mass"),
            "edge_index": flat(2, num_edges, 2, np.int32).alias("edge_index"),
            "bond_features": flat(3, num_edges, len(BOND_FEATURES), np.int8).alias("bond_features"),
        }


def _one_hot(values: np.ndarray, vocab: list[int]) -> np.ndarray:
    """One-hot with a trailing 'other' slot for values outside ``vocab``."""
    lookup = {v: i for i, v in enumerate(vocab)}
    index = np.fromiter((lookup.get(int(v), len(vocab)) for v in values), dtype=np.int64, count=len(values))
    out = np.zeros((len(values), len(vocab) + 1), dtype=np.float32)
    out[np.arange(len(values)), index] = 1.0
    return out


def atom_one_hot(atom_features: np.ndarray, atom_mass: np.ndarray) -> np.ndarray:
    """``(n, 8)`` raw atom features + masses -> ``(n, ATOM_DIM)`` float32 one-hot matrix."""
    blocks = [_one_hot(atom_features[:, ATOM_FEATURES.index(name)], vocab) for name, vocab in ATOM_VOCAB.items()]
    flags = atom_features[:, [ATOM_FEATURES.index("aromatic"), ATOM_FEATURES.index("in_ring")]].astype(np.float32)
    return np.concatenate([*blocks, flags, atom_mass.reshape(-1, 1)], axis=1)


def bond_one_hot(bond_features: np.ndarray) -> np.ndarray:
    """``(E, 4)`` raw bond features -> ``(E, BOND_DIM)`` float32 one-hot matrix."""
    blocks = [_one_hot(bond_features[:, BOND_FEATURES.index(name)], vocab) for name, vocab in BOND_VOCAB.items()]
    flags = bond_features[:, [BOND_FEATURES.index("conjugated"), BOND_FEATURES.index("in_ring")]].astype(np.float32)
    return np.concatenate([*blocks, flags], axis=1)


ATOM_DIM = sum(len(v) + 1 for v in ATOM_VOCAB.values()) + 3
BOND_DIM = sum(len(v) + 1 for v in BOND_VOCAB.values()) + 2


def _split(column: pl.Series, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Flattened values and row offsets of a list column."""
    arrow = column.to_arrow()
    if isinstance(arrow, pa.ChunkedArray):
        arrow = arrow.combine_chunks()
    offsets = arrow.offsets.to_numpy().astype(np.int64)
    values = arrow.flatten().to_numpy(zero_copy_only=False).astype(dtype, copy=False)
    # flatten() drops the leading slice of a sliced array; re-base offsets on it.
    return values, offsets - offsets[0]


def graphs_from_frame(df: pl.DataFrame, one_hot: bool = True, extra: Sequence[str] = ()) -> list["Data"]:
    """Rebuild ``torch_geometric.data.Data`` graphs from a stored graph view (no RDKit).

    ``one_hot=True`` gives float ``x``/``edge_attr`` (:func:`atom_one_hot`); ``False``
    gives the raw Int64 categorical columns (for embedding layers) and ``mass``.
    Columns named in ``extra`` are attached per graph as 1-element tensors (e.g. targets).
    Rows with an error must be filtered out first.
    """
    import torch
    from torch_geometric.data import Data

    if df.get_column("num_atoms").null_count():
        raise ValueError("graph rows with errors (num_atoms is null) cannot be turned into graphs; filter them first")
    atoms, atom_off = _split(df.get_column("atom_features"), np.int16)
    masses, mass_off = _split(df.get_column("atom_mass"), np.float32)
    edges, edge_off = _split(df.get_column("edge_index"), np.int32)
    bonds, bond_off = _split(df.get_column("bond_features"), np.int8)
    atoms = atoms.reshape(-1, len(ATOM_FEATURES))
    bonds = bonds.reshape(-1, len(BOND_FEATURES))
    if one_hot:
        x_all = torch.from_numpy(atom_one_hot(atoms, masses))
        e_all = torch.from_numpy(bond_one_hot(bonds))
    else:
        x_all = torch.from_numpy(atoms.astype(np.int64))
        e_all = torch.from_numpy(bonds.astype(np.int64))
    mass_all = torch.from_numpy(masses.copy())
    extras = {name: df.get_column(name).to_numpy() for name in extra}
    graphs = []
    for i in range(df.height):
        a0, a1 = atom_off[i] // len(ATOM_FEATURES), atom_off[i + 1] // len(ATOM_FEATURES)
        e = edges[edge_off[i] : edge_off[i + 1]].reshape(2, -1)
        b0, b1 = bond_off[i] // len(BOND_FEATURES), bond_off[i + 1] // len(BOND_FEATURES)
        data = Data(x=x_all[a0:a1], edge_index=torch.from_numpy(e.astype(np.int64)), edge_attr=e_all[b0:b1], num_nodes=a1 - a0)
        if not one_hot:
            data.mass = mass_all[mass_off[i] : mass_off[i + 1]]
        for name, values in extras.items():
            data[name] = torch.tensor([values[i]])
        graphs.append(data)
    return graphs
