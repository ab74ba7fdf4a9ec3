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
from rdkit import Chem

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


# Unbound RDKit getters: calling these directly skips a bound-method lookup per atom/bond.
_ATOM_GETTERS = (
    Chem.Atom.GetAtomicNum, Chem.Atom.GetTotalDegree, Chem.Atom.GetFormalCharge, Chem.Atom.GetChiralTag,
    Chem.Atom.GetTotalNumHs, Chem.Atom.GetHybridization, Chem.Atom.GetIsAromatic, Chem.Atom.IsInRing,
)
_BOND_GETTERS = (
    Chem.Bond.GetBeginAtomIdx, Chem.Bond.GetEndAtomIdx,
    Chem.Bond.GetBondType, Chem.Bond.GetIsConjugated, Chem.Bond.IsInRing, Chem.Bond.GetStereo,
)


def _stereo_flags(smiles: str) -> tuple[bool, bool]:
    """Whether atom chiral tags / bond stereo can be non-zero for this SMILES.

    With the parse used here (``sanitize=False`` + ``SanitizeMol``, no stereo perception) a
    chiral tag comes only from ``@`` and bond stereo only from a CXSMILES extension
    (``|c:..|``, ``|t:..|``) or, in other RDKit versions, ``/`` ``\\`` bond directions: without
    those characters the getters would return 0 for every atom/bond, so they are skipped.
    """
    if not isinstance(smiles, str):
        return True, True
    cx = "|" in smiles
    return cx or "@" in smiles, cx or "/" in smiles or "\\" in smiles


def _parse(smiles: str) -> Chem.Mol:
    """Same molecule (or the same error) as :func:`mol_from_smiles`, faster when it parses.

    ``parse_smiles`` runs ``DetectChemistryProblems`` (a sanitization pass on a copy) before
    ``SanitizeMol`` only to name what is wrong; it finds problems exactly when the first
    ``SanitizeMol`` steps raise. So sanitize directly, and only on failure re-run the
    reference path to get its error message.
    """
    if isinstance(smiles, str):
        text = smiles.strip()
        if text:
            mol = Chem.MolFromSmiles(text, sanitize=False)
            if mol is not None:
                try:
                    Chem.SanitizeMol(mol)
                    return mol
                except Exception:  # RDKit raises several sanitization exception types
                    pass
    return mol_from_smiles(smiles)


def _zero(_: object) -> int:
    return 0


def _append_graph(
    mol: Chem.Mol, atom_feats: list, masses: list, bond_ends: list, bond_feats: list,
    chiral: bool = True, bond_stereo: bool = True,
) -> tuple[int, int]:
    """Append one molecule's raw values (flat) to the lists; returns ``(num_atoms, num_bonds)``.

    ``atom_feats`` gets ``ATOM_FEATURES`` per atom, ``masses`` the atomic mass, ``bond_ends``
    ``(begin, end)`` per bond and ``bond_feats`` ``BOND_FEATURES`` per bond (undirected).
    ``chiral`` / ``bond_stereo`` False (see :func:`_stereo_flags`) store 0 without calling the getter.
    Raises before appending anything, so a failed molecule leaves the lists unchanged.
    """
    num_atoms, num_bonds = mol.GetNumAtoms(), mol.GetNumBonds()
    if num_atoms == 0:
        raise FeaturizationError("molecule has no atoms")
    anum, tdeg, fchg, chir, nhs, hyb, arom, aring = _ATOM_GETTERS
    if not chiral:
        chir = _zero
    mass = Chem.Atom.GetMass
    atom_at = mol.GetAtomWithIdx
    for i in range(num_atoms):
        a = atom_at(i)
        atom_feats += (anum(a), tdeg(a), fchg(a), chir(a), nhs(a), hyb(a), arom(a), aring(a))
        masses.append(mass(a))
    begin, end, btype, conj, bring, stereo = _BOND_GETTERS
    if not bond_stereo:
        stereo = _zero
    bond_at = mol.GetBondWithIdx
    for k in range(num_bonds):
        b = bond_at(k)
        bond_ends += (begin(b), end(b))
        bond_feats += (btype(b), conj(b), bring(b), stereo(b))
    return num_atoms, num_bonds


def _graph_arrays(
    atom_feats: list, masses: list, bond_ends: list, bond_feats: list, bonds_per_mol: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flat lists of many molecules -> flat stored arrays (atom features, masses, edge index, bond features).

    Per molecule with ``B`` bonds the edge index block is ``(2, 2B)`` row-major: sources
    ``i0 j0 i1 j1 ...`` then targets ``j0 i0 j1 i1 ...``; bond features repeat once per
    direction. Masses are scaled by 0.01 in float64, then cast, as ``a.GetMass() * 0.01`` was.
    """
    atoms = np.array(atom_feats, dtype=np.int16)
    mass = (np.array(masses, dtype=np.float64) * 0.01).astype(np.float32)
    ends = np.array(bond_ends, dtype=np.int32).reshape(-1, 2)
    bonds = np.repeat(np.array(bond_feats, dtype=np.int8).reshape(-1, len(BOND_FEATURES)), 2, axis=0)
    # Global bond k of molecule m (first bond index o_m, B_m bonds, local index l = k - o_m):
    # sources at 4*o_m + 2l (+1), targets at 4*o_m + 2*B_m + 2l (+1).
    first = np.zeros(len(bonds_per_mol), dtype=np.int64)
    np.cumsum(bonds_per_mol[:-1], out=first[1:])
    owner_first = np.repeat(first, bonds_per_mol)
    owner_count = np.repeat(bonds_per_mol.astype(np.int64), bonds_per_mol)
    local = np.arange(len(ends), dtype=np.int64) - owner_first
    src_pos = 4 * owner_first + 2 * local
    dst_pos = src_pos + 2 * owner_count
    edges = np.empty(4 * len(ends), dtype=np.int32)
    edges[src_pos], edges[src_pos + 1] = ends[:, 0], ends[:, 1]
    edges[dst_pos], edges[dst_pos + 1] = ends[:, 1], ends[:, 0]
    return atoms, mass, edges, bonds.reshape(-1)


def _list_column(name: str, per_row: np.ndarray, width: int, flat_values: np.ndarray) -> pl.Series:
    """List column from flat values and per-row lengths (in units of ``width`` values)."""
    offsets = np.zeros(len(per_row) + 1, dtype=np.int32)
    np.cumsum(np.asarray(per_row, dtype=np.int64) * width, out=offsets[1:])
    return pl.from_arrow(pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat_values))).alias(name)


@register_featurizer
class GraphFeaturizer(Featurizer[str, tuple]):
    """SMILES -> (atom features, masses, edge index, bond features) arrays.

    ``batch`` (what the store runs) collects every molecule's raw values into flat lists
    and builds the stored columns once per chunk; it gives the same frame as the generic
    ``Featurizer.batch`` over :meth:`__call__` + :meth:`to_columns`.
    """

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
        atom_feats: list = []
        masses: list = []
        bond_ends: list = []
        bond_feats: list = []
        num_atoms, num_bonds = _append_graph(
            _parse(item), atom_feats, masses, bond_ends, bond_feats, *_stereo_flags(item)
        )
        atoms, mass, edges, bonds = _graph_arrays(
            atom_feats, masses, bond_ends, bond_feats, np.array([num_bonds], dtype=np.int64)
        )
        return (
            atoms.reshape(num_atoms, len(ATOM_FEATURES)),
            mass,
            edges.reshape(2, -1),
            bonds.reshape(-1, len(BOND_FEATURES)),
        )

    def batch(self, items: Sequence[str]) -> pl.DataFrame:
        atom_feats: list = []
        masses: list = []
        bond_ends: list = []
        bond_feats: list = []
        num_atoms: list[int | None] = []
        num_bonds: list[int | None] = []
        errors: list[str | None] = []
        for item in items:
            try:
                mol = _parse(item)
                n_atoms, n_bonds = _append_graph(
                    mol, atom_feats, masses, bond_ends, bond_feats, *_stereo_flags(item)
                )
            except FeaturizationError as exc:
                # _append_graph raises before appending anything, so nothing to roll back.
                num_atoms.append(None)
                num_bonds.append(None)
                errors.append(str(exc))
                continue
            num_atoms.append(n_atoms)
            num_bonds.append(n_bonds)
            errors.append(None)
        atom_counts = np.array([n or 0 for n in num_atoms], dtype=np.int64)
        bond_counts = np.array([n or 0 for n in num_bonds], dtype=np.int64)
        atoms, mass, edges, bonds = _graph_arrays(atom_feats, masses, bond_ends, bond_feats, bond_counts)
        return pl.DataFrame(
            {
                "num_atoms": pl.Series("num_atoms", num_atoms, dtype=pl.Int32),
                "num_bonds": pl.Series("num_bonds", num_bonds, dtype=pl.Int32),
                "atom_features": _list_column("atom_features", atom_counts, len(ATOM_FEATURES), atoms),
                "atom_mass": _list_column("atom_mass", atom_counts, 1, mass),
                "edge_index": _list_column("edge_index", 2 * bond_counts, 2, edges),
                "bond_features": _list_column("bond_features", 2 * bond_counts, len(BOND_FEATURES), bonds),
                "error": pl.Series("error", errors, dtype=pl.String),
            }
        )

    def to_columns(self, values: list[tuple | None]) -> dict[str, pl.Series]:
        ok = [v for v in values if v is not None]
        num_atoms = [None if v is None else len(v[1]) for v in values]
        num_edges = [0 if v is None else v[2].shape[1] for v in values]
        atom_counts = [n or 0 for n in num_atoms]

        def flat(index: int, per_row: list[int], width: int, dtype: type) -> pl.Series:
            parts = [v[index].reshape(-1) for v in ok]
            flat_values = np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)
            return _list_column("", np.asarray(per_row, dtype=np.int64), width, flat_values)

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
    """One-hot with a trailing 'other' slot for values outside ``vocab`` (vectorized lookup)."""
    lookup = {v: i for i, v in enumerate(vocab)}
    keys = np.fromiter(lookup.keys(), dtype=np.int64, count=len(lookup))
    slots = np.fromiter(lookup.values(), dtype=np.int64, count=len(lookup))
    order = np.argsort(keys)
    keys, slots = keys[order], slots[order]
    values = np.asarray(values).astype(np.int64).reshape(-1)
    index = np.full(len(values), len(vocab), dtype=np.int64)
    if len(keys):
        pos = np.minimum(np.searchsorted(keys, values), len(keys) - 1)
        hit = keys[pos] == values
        index[hit] = slots[pos[hit]]
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
