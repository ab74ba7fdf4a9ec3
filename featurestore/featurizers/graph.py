"""Molecular graphs for PyTorch Geometric, featurized once and stored without RDKit objects.

Stored per molecule (raw RDKit values, not one-hot, so vocabularies can change without
re-featurizing), each array as one Binary cell of little-endian bytes — parquet decodes a
byte string per row far faster than a nested list per element (warm reads ~5x faster):

- ``atom_features``: flattened ``(num_atoms, 8)`` int16, columns :data:`ATOM_FEATURES`
- ``atom_mass``: ``(num_atoms,)`` float32, atomic mass / 100
- ``edge_index``: flattened ``(2, 2 * num_bonds)`` int32; bond ``k`` gives directed edges
  ``2k`` (i->j) and ``2k+1`` (j->i), PyG's convention for undirected graphs
- ``bond_features``: flattened ``(2 * num_bonds, 4)`` int8, columns :data:`BOND_FEATURES`

:data:`GRAPH_ARRAYS` gives each column's dtype and row width; :func:`graph_arrays` decodes
a column back to flat values and per-row offsets.

:func:`graphs_from_frame` rebuilds ``torch_geometric.data.Data`` objects from these
columns with numpy slicing only; :func:`atom_one_hot` / :func:`bond_one_hot` give
chemprop-style one-hot matrices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pyarrow as pa
from rdkit import Chem

from featurestore.featurizers.base import FeaturizationError, Featurizer, register_featurizer
from featurestore.featurizers.molecule import (
    DESCRIPTOR_NAMES, ECFPFeaturizer, array_column, descriptor_vector, fingerprint_matrix, mol_from_smiles,
)
from featurestore.standardize import RDKIT_VERSION

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

    A chiral tag comes only from ``@`` (or a CXSMILES ``|...|`` extension), bond stereo
    only from ``/`` ``\\`` bond directions (or CXSMILES ``|c:..|``, ``|t:..|``; ``@`` is
    included for atropisomers): stereo perception in the parse can clear these but never
    invent them. Without those characters every getter would return 0, so it is skipped.
    """
    if not isinstance(smiles, str):
        return True, True
    cx = "|" in smiles
    at = "@" in smiles
    return cx or at, cx or at or "/" in smiles or "\\" in smiles


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


GRAPH_ARRAYS: dict[str, tuple[type, int]] = {
    "atom_features": (np.int16, len(ATOM_FEATURES)),
    "atom_mass": (np.float32, 1),
    "edge_index": (np.int32, 2),
    "bond_features": (np.int8, len(BOND_FEATURES)),
}
"""Stored array column -> (numpy dtype, values per atom or per directed edge)."""


def _blob_column(name: str, per_row: np.ndarray, flat_values: np.ndarray) -> pl.Series:
    """Binary column: row ``i`` holds the bytes of the next ``per_row[i] * width`` values."""
    dtype, width = GRAPH_ARRAYS[name]
    data = np.ascontiguousarray(flat_values, dtype=np.dtype(dtype).newbyteorder("<"))
    offsets = np.zeros(len(per_row) + 1, dtype=np.int64)
    np.cumsum(np.asarray(per_row, dtype=np.int64) * width * data.itemsize, out=offsets[1:])
    array = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(per_row), [None, pa.py_buffer(offsets), pa.py_buffer(data.tobytes())]
    )
    return pl.from_arrow(array).alias(name)


def graph_arrays(column: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Decode a stored graph array column: flat values and per-row offsets (in values)."""
    dtype, _ = GRAPH_ARRAYS[column.name]
    arrow = column.to_arrow()
    if isinstance(arrow, pa.ChunkedArray):
        arrow = arrow.combine_chunks()
    arrow = arrow.cast(pa.large_binary())
    _, offsets_buffer, data_buffer = arrow.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[arrow.offset : arrow.offset + len(arrow) + 1]
    item = np.dtype(dtype).newbyteorder("<")
    data = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0] : offsets[-1]] if data_buffer else np.zeros(0, np.uint8)
    return data.view(item).astype(dtype, copy=False), (offsets - offsets[0]) // item.itemsize


@register_featurizer
class GraphFeaturizer(Featurizer[str, tuple]):
    """SMILES -> (atom features, masses, edge index, bond features) arrays.

    ``fingerprint`` (ECFP parameters, e.g. ``{radius: 2, n_bits: 2048, counts: true}``) and/or
    ``descriptors=True`` (every RDKit 2D descriptor, :func:`~featurestore.featurizers.molecule.descriptor_vector`)
    also store ``mol_features``: molecule-level inputs that graph models concatenate to their
    readout (chemprop's extra features: ``morgan_count``, ``rdkit_2d``). Fingerprint alone: UInt8
    counts; with descriptors: Float32, fingerprint first. Descriptors depend on the RDKit release,
    so its version is part of the view's parameters (and id). Unset, the view is the plain graph.

    ``batch`` (what the store runs) collects every molecule's raw values into flat lists
    and builds the stored columns once per chunk; decoded, they are the same arrays as
    :meth:`__call__` gives molecule by molecule (followed by the fingerprint when set).
    """

    name = "graph"
    version = "2"  # 2: arrays stored as Binary cells instead of nested lists

    def __init__(self, fingerprint: Mapping[str, Any] | None = None, descriptors: bool = False,
                 rdkit: str | None = None) -> None:
        if descriptors and rdkit not in (None, RDKIT_VERSION):
            raise ValueError(f"this graph view's descriptors were computed with RDKit {rdkit}; "
                             f"RDKit {RDKIT_VERSION} is installed (descriptor values differ between releases)")
        params: dict[str, Any] = {"fingerprint": dict(fingerprint)} if fingerprint else {}
        if descriptors:
            params |= {"descriptors": True, "rdkit": RDKIT_VERSION}
        super().__init__(**params)
        self.fingerprint = ECFPFeaturizer(**fingerprint) if fingerprint else None
        self.descriptors = bool(descriptors)

    @property
    def mol_width(self) -> int:
        """Width of ``mol_features`` (0: none stored)."""
        return (self.fingerprint.width if self.fingerprint else 0) + (len(DESCRIPTOR_NAMES) if self.descriptors else 0)

    def schema(self) -> dict[str, pl.DataType]:
        dtype = pl.Float32 if self.descriptors else pl.UInt8
        return {
            "num_atoms": pl.Int32,
            "num_bonds": pl.Int32,
            **{name: pl.Binary for name in GRAPH_ARRAYS},
            **({"mol_features": pl.Array(dtype, self.mol_width)} if self.mol_width else {}),
        }

    def _mol_features(self, mol: Chem.Mol) -> np.ndarray | None:
        parts = [self.fingerprint.from_mol(mol)] if self.fingerprint else []
        if self.descriptors:
            parts.append(descriptor_vector(mol))
        if not parts:
            return None
        return np.concatenate(parts).astype(np.float32) if self.descriptors else parts[0]

    def __call__(self, item: str) -> tuple[np.ndarray, ...]:
        atom_feats: list = []
        masses: list = []
        bond_ends: list = []
        bond_feats: list = []
        mol = mol_from_smiles(item)
        num_atoms, num_bonds = _append_graph(mol, atom_feats, masses, bond_ends, bond_feats, *_stereo_flags(item))
        atoms, mass, edges, bonds = _graph_arrays(
            atom_feats, masses, bond_ends, bond_feats, np.array([num_bonds], dtype=np.int64)
        )
        graph = (atoms.reshape(num_atoms, len(ATOM_FEATURES)), mass, edges.reshape(2, -1),
                 bonds.reshape(-1, len(BOND_FEATURES)))
        return graph + ((self._mol_features(mol),) if self.mol_width else ())

    def batch(self, items: Sequence[str]) -> pl.DataFrame:
        atom_feats: list = []
        masses: list = []
        bond_ends: list = []
        bond_feats: list = []
        num_atoms: list[int | None] = []
        num_bonds: list[int | None] = []
        errors: list[str | None] = []
        fingerprints: list[np.ndarray | None] = []
        for item in items:
            try:
                mol = mol_from_smiles(item)
                n_atoms, n_bonds = _append_graph(
                    mol, atom_feats, masses, bond_ends, bond_feats, *_stereo_flags(item)
                )
            except FeaturizationError as exc:
                # _append_graph raises before appending anything, so nothing to roll back.
                num_atoms.append(None)
                num_bonds.append(None)
                errors.append(str(exc))
                fingerprints.append(None)
                continue
            num_atoms.append(n_atoms)
            num_bonds.append(n_bonds)
            errors.append(None)
            fingerprints.append(self._mol_features(mol))
        atom_counts = np.array([n or 0 for n in num_atoms], dtype=np.int64)
        bond_counts = np.array([n or 0 for n in num_bonds], dtype=np.int64)
        atoms, mass, edges, bonds = _graph_arrays(atom_feats, masses, bond_ends, bond_feats, bond_counts)
        return pl.DataFrame(
            {
                "num_atoms": pl.Series("num_atoms", num_atoms, dtype=pl.Int32),
                "num_bonds": pl.Series("num_bonds", num_bonds, dtype=pl.Int32),
                "atom_features": _blob_column("atom_features", atom_counts, atoms),
                "atom_mass": _blob_column("atom_mass", atom_counts, mass),
                "edge_index": _blob_column("edge_index", 2 * bond_counts, edges),
                "bond_features": _blob_column("bond_features", 2 * bond_counts, bonds),
                **({"mol_features": array_column("mol_features", fingerprints, self.mol_width,
                                                 np.float32 if self.descriptors else np.uint8)}
                   if self.mol_width else {}),
                "error": pl.Series("error", errors, dtype=pl.String),
            }
        )


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


def graphs_from_frame(df: pl.DataFrame, one_hot: bool = True, extra: Sequence[str] = ()) -> list["Data"]:
    """Rebuild ``torch_geometric.data.Data`` graphs from a stored graph view (no RDKit).

    ``one_hot=True`` gives float ``x``/``edge_attr`` (:func:`atom_one_hot`); ``False``
    gives the raw Int64 categorical columns (for embedding layers) and ``mass``.
    Columns named in ``extra`` are attached per graph as 1-element tensors (e.g. targets).
    A view with molecule-level features (``mol_features``) attaches them as a float
    ``mol_features`` ``(1, width)`` row per graph. Rows with an error must be filtered out first.
    """
    import torch
    from torch_geometric.data import Data

    if df.get_column("num_atoms").null_count():
        raise ValueError("graph rows with errors (num_atoms is null) cannot be turned into graphs; filter them first")
    atoms, atom_off = graph_arrays(df.get_column("atom_features"))
    masses, mass_off = graph_arrays(df.get_column("atom_mass"))
    edges, edge_off = graph_arrays(df.get_column("edge_index"))
    bonds, bond_off = graph_arrays(df.get_column("bond_features"))
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
    molecule_level = (torch.from_numpy(fingerprint_matrix(df, "mol_features").astype(np.float32))
                      if "mol_features" in df.columns else None)
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
        if molecule_level is not None:
            data.mol_features = molecule_level[i : i + 1]
        graphs.append(data)
    return graphs
