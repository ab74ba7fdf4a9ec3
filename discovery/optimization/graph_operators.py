"""Graph crossover and mutation of Graph GA (Jensen, Chem. Sci. 2019, 10, 3567).

Crossover cuts each parent into two fragments and joins a fragment of one to a fragment
of the other: either at an acyclic single bond (non-ring crossover) or across a ring,
cutting two ring bonds and re-closing with single or double bonds (ring crossover).
Mutation applies one of seven reaction-SMARTS edits (insert/append/delete/change an atom,
change a bond order, delete a ring bond, close a ring), drawn with Jensen's probabilities.
A child is kept only if it sanitizes, has more than 5 atoms and fewer than a size drawn
from N(average_size, size_stdev) (GuacaMol's ChEMBL-based 39.15 / 3.50), and has no
macrocycle, ring allene or double bond in a 3- or 4-ring.

All randomness comes from the ``numpy.random.Generator`` passed in, so a seed fixes the
run. Operators work on kekulized copies and never modify their inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

import numpy as np
from rdkit import Chem, RDLogger
from rdkit.Chem import AllChem

# Most candidate edits break valences by design and are filtered out; RDKit would log each one.
RDLogger.DisableLog("rdApp.*")

_ACYCLIC_SINGLE = Chem.MolFromSmarts("[*]-;!@[*]")
_RING_CHAIN = Chem.MolFromSmarts("[R]@[R]@[R]@[R]")
_RING_BRANCH = Chem.MolFromSmarts("[R]@[R;!D2]@[R]")
_ANY_RING_ATOM = Chem.MolFromSmarts("[R]")
_RING_ALLENE = Chem.MolFromSmarts("[R]=[R]=[R]")
_SMALL_RING_DOUBLE = Chem.MolFromSmarts("[r3,r4]=[r3,r4]")
_DUMMY_LABEL = 1
_ATTEMPTS = 10
_BONDS = (Chem.BondType.SINGLE, Chem.BondType.DOUBLE)


@dataclass(frozen=True)
class SizeLimits:
    """Children need more than ``min_atoms`` heavy atoms and fewer than N(average, stdev)."""

    average_size: float = 39.15
    size_stdev: float = 3.50
    min_atoms: int = 5


def _kekulized(mol: Chem.Mol) -> Chem.Mol:
    copy = Chem.Mol(mol)
    try:
        Chem.Kekulize(copy, clearAromaticFlags=True)
    except Chem.KekulizeException:
        pass  # keep aromatic flags; products that cannot sanitize are filtered later
    return copy


def mol_ok(mol: Chem.Mol, rng: np.random.Generator, limits: SizeLimits) -> bool:
    """Sanitizes in place and lies within the (randomly drawn) size window."""
    try:
        Chem.SanitizeMol(mol)
    except (ValueError, RuntimeError):  # RDKit's sanitization errors derive from these
        return False
    target_size = limits.size_stdev * rng.standard_normal() + limits.average_size
    return limits.min_atoms < mol.GetNumAtoms() < target_size


def ring_ok(mol: Chem.Mol) -> bool:
    """No ring allene, no ring larger than 6, no double bond inside a 3- or 4-membered ring."""
    if not mol.HasSubstructMatch(_ANY_RING_ATOM):
        return True
    largest = max(len(ring) for ring in mol.GetRingInfo().AtomRings())
    return largest <= 6 and not mol.HasSubstructMatch(_RING_ALLENE) and not mol.HasSubstructMatch(_SMALL_RING_DOUBLE)


class Fragment(NamedTuple):
    """A piece of a cut molecule and its attachment points: ``(dummy index, neighbour index)`` per dummy atom."""

    mol: Chem.Mol
    sites: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, mol: Chem.Mol) -> Fragment:
        """``mol`` with its attachment points found once (a ring crossover joins each fragment eight times)."""
        return cls(mol, tuple(
            (atom.GetIdx(), atom.GetNeighbors()[0].GetIdx())
            for atom in mol.GetAtoms()
            if atom.GetAtomicNum() == 0 and atom.GetIsotope() == _DUMMY_LABEL and atom.GetDegree() == 1
        ))


def _fragments(mol: Chem.Mol, bonds: Sequence[int]) -> tuple[Fragment, ...] | None:
    pieces = Chem.FragmentOnBonds(mol, bonds, addDummies=True, dummyLabels=[(_DUMMY_LABEL, _DUMMY_LABEL)] * len(bonds))
    try:
        return tuple(Fragment.of(piece) for piece in Chem.GetMolFrags(pieces, asMols=True, sanitizeFrags=True))
    except (ValueError, RuntimeError):
        return None


class Parent:
    """A molecule prepared for crossover: its SMILES and kekulized copy made once, its substructure matches
    and cuts memoized. A Graph GA generation breeds each population member about a dozen times (a hundred
    in the surrogate GA), and would otherwise redo all of this for each child."""

    def __init__(self, mol: Chem.Mol) -> None:
        self.smiles = Chem.MolToSmiles(mol)
        self.mol = _kekulized(mol)
        self.has_ring = self.mol.HasSubstructMatch(_ANY_RING_ATOM)
        self._matches: dict[int, tuple[tuple[int, ...], ...]] = {}  # by id() of a module-level pattern
        self._cuts: dict[tuple[int, ...], tuple[Fragment, ...] | None] = {}

    def matches(self, pattern: Chem.Mol) -> tuple[tuple[int, ...], ...]:
        if id(pattern) not in self._matches:
            self._matches[id(pattern)] = self.mol.GetSubstructMatches(pattern)
        return self._matches[id(pattern)]

    def cut(self, atom_pairs: Sequence[tuple[int, int]]) -> tuple[Fragment, ...] | None:
        """The fragments left by cutting the bonds between each pair of atoms (``None``: they do not sanitize)."""
        bonds = tuple(self.mol.GetBondBetweenAtoms(x, y).GetIdx() for x, y in atom_pairs)
        if bonds not in self._cuts:
            self._cuts[bonds] = _fragments(self.mol, bonds)
        return self._cuts[bonds]


def cut_acyclic(parent: Parent, rng: np.random.Generator) -> tuple[Fragment, ...] | None:
    """Cut a random acyclic single bond: two fragments with one dummy atom each."""
    matches = parent.matches(_ACYCLIC_SINGLE)
    if not matches:
        return None
    return parent.cut([matches[rng.integers(len(matches))]])


def cut_ring(parent: Parent, rng: np.random.Generator) -> tuple[Fragment, ...] | None:
    """Cut two ring bonds (a ring path a-b-c-d at a-b and c-d, or both ring bonds of a
    branching ring atom) so the molecule falls into two fragments with two dummies each."""
    for _ in range(_ATTEMPTS):
        if rng.random() < 0.5:
            matches = parent.matches(_RING_CHAIN)
            if not matches:
                return None
            a, b, c, d = matches[rng.integers(len(matches))]
            pairs = ((a, b), (c, d))
        else:
            matches = parent.matches(_RING_BRANCH)
            if not matches:
                return None
            a, b, c = matches[rng.integers(len(matches))]
            pairs = ((a, b), (b, c))
        fragments = parent.cut(pairs)
        if fragments is not None and len(fragments) == 2:
            return fragments
    return None


def join(a: Fragment, b: Fragment, pairing: Sequence[int], bond_types: Sequence[Chem.BondType]) -> Chem.Mol | None:
    """Join fragments ``a`` and ``b`` at their dummy atoms: the i-th attachment of ``a``
    bonds to attachment ``pairing[i]`` of ``b`` with ``bond_types[i]``; dummies removed.
    Returns the unsanitized product, or ``None`` if the attachment counts do not fit."""
    if len(a.sites) != len(pairing) or len(b.sites) != len(pairing):
        return None
    combined = Chem.RWMol(Chem.CombineMols(a.mol, b.mol))
    offset = a.mol.GetNumAtoms()
    for (_, atom_a), j, bond in zip(a.sites, pairing, bond_types):
        atom_b = b.sites[j][1] + offset
        if combined.GetBondBetweenAtoms(atom_a, atom_b) is not None:
            return None
        combined.AddBond(atom_a, atom_b, bond)
    dummies = [i for i, _ in a.sites] + [i + offset for i, _ in b.sites]
    for index in sorted(dummies, reverse=True):
        combined.RemoveAtom(index)
    return combined.GetMol()


def _pick(candidates: list[Chem.Mol], rng: np.random.Generator) -> Chem.Mol | None:
    return candidates[rng.integers(len(candidates))] if candidates else None


def _first_valid(
    joins: list[tuple[Fragment, Fragment, Sequence[int], Sequence[Chem.BondType]]], rng: np.random.Generator,
    limits: SizeLimits, check_rings: bool,
) -> Chem.Mol | None:
    """A uniformly drawn valid product among ``joins``: the first valid one in a random order. Same distribution
    as building every product and drawing among the valid ones (Jensen's way), at a fraction of the joins."""
    for index in rng.permutation(len(joins)):
        child = join(*joins[index])
        if child is not None and mol_ok(child, rng, limits) and (not check_rings or ring_ok(child)):
            return child
    return None


def crossover_acyclic(a: Parent, b: Parent, rng: np.random.Generator, limits: SizeLimits) -> Chem.Mol | None:
    """Non-ring crossover: a fragment of ``a`` and one of ``b`` joined by a single bond."""
    for _ in range(_ATTEMPTS):
        fragments_a, fragments_b = cut_acyclic(a, rng), cut_acyclic(b, rng)
        if fragments_a is None or fragments_b is None:
            return None
        joins = [(fa, fb, (0,), (Chem.BondType.SINGLE,)) for fa in fragments_a for fb in fragments_b]
        chosen = _first_valid(joins, rng, limits, check_rings=False)
        if chosen is not None:
            return chosen
    return None


def crossover_ring(a: Parent, b: Parent, rng: np.random.Generator, limits: SizeLimits) -> Chem.Mol | None:
    """Ring crossover: two-attachment fragments of ``a`` and ``b`` joined by two new bonds,
    each single or double, in both orientations."""
    if not (a.has_ring or b.has_ring):
        return None
    for _ in range(_ATTEMPTS):
        fragments_a, fragments_b = cut_ring(a, rng), cut_ring(b, rng)
        if fragments_a is None or fragments_b is None:
            return None
        joins = [
            (fa, fb, pairing, (first, second))
            for fa in fragments_a for fb in fragments_b
            for pairing in ((0, 1), (1, 0)) for first in _BONDS for second in _BONDS
        ]
        chosen = _first_valid(joins, rng, limits, check_rings=True)
        if chosen is not None:
            return chosen
    return None


def crossover(
    a: Chem.Mol | Parent, b: Chem.Mol | Parent, rng: np.random.Generator, limits: SizeLimits = SizeLimits(),
) -> Chem.Mol | None:
    """A child of ``a`` and ``b`` that differs from both, or ``None`` after 10 tries. Pass :class:`Parent`
    objects to breed the same molecules many times."""
    a, b = (p if isinstance(p, Parent) else Parent(p) for p in (a, b))
    parents = {a.smiles, b.smiles}
    for _ in range(_ATTEMPTS):
        operator = crossover_acyclic if rng.random() <= 0.5 else crossover_ring
        child = operator(a, b, rng, limits)
        if child is not None and Chem.MolToSmiles(child) not in parents:
            return child
    return None


# Mutation edits as reaction SMARTS, Jensen's operators and probabilities. Each operator is
# a list of variants (probability, template, elements drawn uniformly for {X}); change_atom
# depends on the molecule and is built by _change_atom.
_Variants = tuple[tuple[float, str, tuple[str, ...]], ...]
_EDITS: dict[str, tuple[float, _Variants]] = {
    "insert_atom": (0.15, (
        (0.60, "[*:1]~[*:2]>>[*:1]{X}[*:2]", ("C", "N", "O", "S")),
        (0.35, "[*;!H0:1]~[*:2]>>[*:1]={X}-[*:2]", ("C", "N")),
        (0.05, "[*;!R;!H1;!H0:1]~[*:2]>>[*:1]#{X}-[*:2]", ("C",)),
    )),
    "change_bond_order": (0.14, (
        (0.45, "[*:1]!-[*:2]>>[*:1]-[*:2]", ()),
        (0.45, "[*;!H0:1]-[*;!H0:2]>>[*:1]=[*:2]", ()),
        (0.05, "[*:1]#[*:2]>>[*:1]=[*:2]", ()),
        (0.05, "[*;!R;!H1;!H0:1]~[*:2]>>[*:1]#[*:2]", ()),
    )),
    "delete_cyclic_bond": (0.14, ((1.0, "[*:1]@[*:2]>>([*:1].[*:2])", ()),)),
    "add_ring": (0.14, (
        (0.05, "[*;!r;!H0:1]~[*;!r:2]~[*;!r;!H0:3]>>[*:1]1~[*:2]~[*:3]1", ()),
        (0.05, "[*;!r;!H0:1]~[*!r:2]~[*!r:3]~[*;!r;!H0:4]>>[*:1]1~[*:2]~[*:3]~[*:4]1", ()),
        (0.45, "[*;!r;!H0:1]~[*!r:2]~[*:3]~[*:4]~[*;!r;!H0:5]>>[*:1]1~[*:2]~[*:3]~[*:4]~[*:5]1", ()),
        (0.45, "[*;!r;!H0:1]~[*!r:2]~[*:3]~[*:4]~[*!r:5]~[*;!r;!H0:6]>>[*:1]1~[*:2]~[*:3]~[*:4]~[*:5]~[*:6]1", ()),
    )),
    "delete_atom": (0.14, (
        (0.25, "[*:1]~[D1:2]>>[*:1]", ()),
        (0.25, "[*:1]~[D2:2]~[*:3]>>[*:1]-[*:3]", ()),
        (0.25, "[*:1]~[D3:2](~[*;!H0:3])~[*:4]>>[*:1]-[*:3]-[*:4]", ()),
        (0.1875, "[*:1]~[D4:2](~[*;!H0:3])(~[*;!H0:4])~[*:5]>>[*:1]-[*:3]-[*:4]-[*:5]", ()),
        (0.0625, "[*:1]~[D4:2](~[*;!H0;!H1:3])(~[*:4])~[*:5]>>[*:1]-[*:3](-[*:4])-[*:5]", ()),
    )),
    "change_atom": (0.14, ()),
    "append_atom": (0.15, (
        (0.60, "[*;!H0:1]>>[*:1]-{X}", ("C", "N", "O", "F", "S", "Cl", "Br")),
        (0.35, "[*;!H0;!H1:1]>>[*:1]={X}", ("C", "N", "O")),
        (0.05, "[*;H3:1]>>[*:1]#{X}", ("C", "N")),
    )),
}
_EDIT_NAMES = tuple(_EDITS)
_EDIT_P = tuple(p for p, _ in _EDITS.values())
_ELEMENTS = ("#6", "#7", "#8", "#9", "#16", "#17", "#35")
_ELEMENT_P = np.array([0.15, 0.15, 0.14, 0.14, 0.14, 0.14, 0.14])


def _edit_smarts(name: str, mol: Chem.Mol, rng: np.random.Generator) -> str | None:
    """A reaction SMARTS for edit ``name``, its variant and element drawn at random."""
    if name == "change_atom":
        return _change_atom(mol, rng)
    variants = _EDITS[name][1]
    _, template, elements = variants[rng.choice(len(variants), p=[v[0] for v in variants])]
    return template.format(X=elements[rng.integers(len(elements))]) if elements else template


def _change_atom(mol: Chem.Mol, rng: np.random.Generator) -> str | None:
    """Turn one element present in ``mol`` into another (both drawn with Jensen's weights)."""
    present = np.array([mol.HasSubstructMatch(_element_query(e)) for e in _ELEMENTS])
    if not present.any():
        return None
    source = rng.choice(len(_ELEMENTS), p=_ELEMENT_P * present / (_ELEMENT_P * present).sum())
    others = np.arange(len(_ELEMENTS)) != source
    target = rng.choice(len(_ELEMENTS), p=_ELEMENT_P * others / (_ELEMENT_P * others).sum())
    return f"[{_ELEMENTS[source]}:1]>>[{_ELEMENTS[target]}:1]"


@cache
def _element_query(element: str) -> Chem.Mol:
    return Chem.MolFromSmarts(f"[{element}]")


@cache
def _reaction(smarts: str) -> AllChem.ChemicalReaction:
    return AllChem.ReactionFromSmarts(smarts)


def mutate(mol: Chem.Mol, rng: np.random.Generator, rate: float, limits: SizeLimits = SizeLimits()) -> Chem.Mol | None:
    """With probability ``rate`` apply one random edit (10 tries); otherwise ``mol`` itself.

    Returns ``None`` when the mutation was due but no edit gave an acceptable molecule
    (the child is then dropped, as in Jensen's GA).
    """
    if rng.random() > rate:
        return mol
    mol = _kekulized(mol)
    for _ in range(_ATTEMPTS):
        smarts = _edit_smarts(_EDIT_NAMES[rng.choice(len(_EDIT_NAMES), p=_EDIT_P)], mol, rng)
        if smarts is None:
            continue
        products = _reaction(smarts).RunReactants((mol,))
        children = [p[0] for p in products if mol_ok(p[0], rng, limits) and ring_ok(p[0])]
        chosen = _pick(children, rng)
        if chosen is not None:
            return chosen
    return None
