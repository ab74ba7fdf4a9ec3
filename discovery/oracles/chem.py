"""RDKit building blocks of the oracles: GuacaMol fingerprints, descriptors, SA score, penalized logP.

Fingerprints follow GuacaMol (``guacamol/utils/fingerprints.py``): ECFP4/ECFP6/FCFP4 are
Morgan *count* fingerprints (radius 2/3, FCFP with feature invariants), AP is the
atom-pair count fingerprint with maximum distance 10, PHCO is the Gobbi 2D pharmacophore
bit fingerprint. Tanimoto on count vectors is sum(min)/sum(max). The generators give
the same vectors as RDKit's deprecated ``GetMorganFingerprint`` / ``GetAtomPairFingerprint``.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import networkx as nx
from rdkit import Chem, DataStructs, RDConfig
from rdkit.Chem import Descriptors, rdFingerprintGenerator
from rdkit.Chem.Pharm2D import Generate, Gobbi_Pharm2D

_MORGAN2 = rdFingerprintGenerator.GetMorganGenerator(radius=2)
_MORGAN3 = rdFingerprintGenerator.GetMorganGenerator(radius=3)
_FEATURE_MORGAN2 = rdFingerprintGenerator.GetMorganGenerator(
    radius=2, atomInvariantsGenerator=rdFingerprintGenerator.GetMorganFeatureAtomInvGen()
)
_ATOM_PAIR = rdFingerprintGenerator.GetAtomPairGenerator(maxDistance=10)

FINGERPRINTS: dict[str, Callable[[Chem.Mol], Any]] = {
    "ECFP4": _MORGAN2.GetSparseCountFingerprint,
    "ECFP6": _MORGAN3.GetSparseCountFingerprint,
    "FCFP4": _FEATURE_MORGAN2.GetSparseCountFingerprint,
    "AP": _ATOM_PAIR.GetSparseCountFingerprint,
    "PHCO": lambda mol: Generate.Gen2DFingerprint(mol, Gobbi_Pharm2D.factory),
}


def fingerprint(mol: Chem.Mol, kind: str) -> Any:
    """The GuacaMol fingerprint ``kind`` (one of :data:`FINGERPRINTS`) of ``mol``."""
    try:
        return FINGERPRINTS[kind](mol)
    except KeyError:
        raise ValueError(f"unknown fingerprint {kind!r}; known: {sorted(FINGERPRINTS)}") from None


def tanimoto(a: Any, b: Any) -> float:
    """Tanimoto similarity of two fingerprints of the same kind (counts or bits)."""
    return DataStructs.TanimotoSimilarity(a, b)


def parse_formula(formula: str) -> list[tuple[str, int]]:
    """``"C9H10N2O2PF2Cl"`` -> ``[("C", 9), ("H", 10), ("N", 2), ("O", 2), ("P", 1), ("F", 2), ("Cl", 1)]``."""
    tokens = re.findall(r"([A-Z][a-z]?)(\d*)", formula)
    if not tokens or "".join(e + n for e, n in tokens) != formula:
        raise ValueError(f"not a molecular formula: {formula!r}")
    return [(element, int(count) if count else 1) for element, count in tokens]


def count_atoms(mol: Chem.Mol, element: str) -> int:
    """Number of atoms of ``element``; for H, implicit hydrogens count too (GuacaMol's ``AtomCounter``)."""
    if element == "H":
        mol = Chem.AddHs(mol)
    return sum(1 for atom in mol.GetAtoms() if atom.GetSymbol() == element)


def num_atoms_with_h(mol: Chem.Mol) -> int:
    """Total atom count including every hydrogen (GuacaMol's ``num_atoms``)."""
    return Chem.AddHs(mol).GetNumAtoms()


# PyTDC <= 0.3.6 (the oracles behind the published PMO numbers) "parse the molecular formula" of
# the scored SMILES string itself: a capital letter with any lowercase letters after it, then an
# optional run of digits read as the count.
_TDC036_TOKEN = re.compile(r"([A-Z][a-z]*)(\d*)")


def smiles_token_atom_count(smiles: str) -> int:
    """PyTDC 0.3.6's "total atoms" of a SMILES string (not a chemical atom count).

    Each token ``[A-Z][a-z]*`` followed by digits counts as that number (1 when there are no
    digits). So aromatic (lowercase) atoms count only when glued to a preceding capital
    (``"Cc1ccccc1"``: one token ``Cc`` + ``1`` -> 1), ring-closure digits are read as counts
    (``"C12CCC1CC2"``: 12 + 1 + 1 + 1 + 1 + 2 = 18), bracket hydrogens count
    (``"[nH]"`` -> 1, ``"[NH3+]"`` -> 1 + 3) and implicit hydrogens never do.
    """
    return sum(int(digits) if digits else 1 for _, digits in _TDC036_TOKEN.findall(smiles))


def num_atoms_pmo(mol: Chem.Mol) -> int:
    """PyTDC 0.3.6's total-atom term as PMO computed it: :func:`smiles_token_atom_count` of the
    RDKit canonical SMILES (mol_opt canonicalizes with ``Chem.MolToSmiles`` before calling TDC)."""
    return smiles_token_atom_count(Chem.MolToSmiles(mol))


@cache
def _sascorer() -> ModuleType:
    # The SA score ships as RDKit Contrib code (not an importable package): load it by path.
    path = Path(RDConfig.RDContribDir) / "SA_Score" / "sascorer.py"
    if not path.is_file():
        raise ImportError(f"RDKit Contrib SA_Score not found at {path}; install the rdkit wheel with Contrib")
    spec = importlib.util.spec_from_file_location("rdkit_contrib_sascorer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sa_score(mol: Chem.Mol) -> float:
    """Synthetic accessibility (Ertl & Schuffenhauer 2009): 1 (easy) to 10 (hard); RDKit Contrib."""
    return float(_sascorer().calculateScore(mol))


# JT-VAE (Jin et al. 2018) standardization of penalized logP: means and standard deviations
# of logP, -SA and the ring penalty over ZINC 250k, as used across the generation literature.
_LOGP_MEAN, _LOGP_STD = 2.4570953396190123, 1.434324401111988
_SA_MEAN, _SA_STD = -3.0525811293166134, 0.8335207024513095
_CYCLE_MEAN, _CYCLE_STD = -0.0485696876403053, 0.2860212110245455


def long_ring_penalty(mol: Chem.Mol) -> int:
    """max(0, largest ring size - 6), rings from networkx's cycle basis as in JT-VAE."""
    cycles = nx.cycle_basis(nx.Graph(Chem.GetAdjacencyMatrix(mol)))
    largest = max((len(cycle) for cycle in cycles), default=0)
    return max(0, largest - 6)


def penalized_logp(mol: Chem.Mol) -> float:
    """Standardized logP - SA - long-ring penalty (JT-VAE; unbounded, higher is better)."""
    log_p = (Descriptors.MolLogP(mol) - _LOGP_MEAN) / _LOGP_STD
    sa = (-sa_score(mol) - _SA_MEAN) / _SA_STD
    cycle = (-long_ring_penalty(mol) - _CYCLE_MEAN) / _CYCLE_STD
    return log_p + sa + cycle


_ELEMENTS = frozenset(Chem.GetPeriodicTable().GetElementSymbol(z) for z in range(1, 119))
_RDKIT_DESCRIPTORS: dict[str, Callable[[Chem.Mol], float]] = dict(Descriptors.descList)
EXTRA_DESCRIPTORS: dict[str, Callable[[Chem.Mol], float]] = {
    "num_atoms": num_atoms_with_h,
    "num_atoms_pmo": num_atoms_pmo,
    "sa_score": sa_score,
    "penalized_logp": penalized_logp,
}


def descriptor(name: str) -> Callable[[Chem.Mol], float]:
    """A descriptor by name: any RDKit 2D descriptor (``MolLogP``, ``TPSA``, ``qed``...),
    ``num_atoms`` (H included), ``num_atoms_pmo`` (PyTDC 0.3.6's SMILES token count), ``sa_score``, ``penalized_logp``, or ``count:<element>``."""
    if name.startswith("count:"):
        element = name.removeprefix("count:")
        if element not in _ELEMENTS:
            raise ValueError(f"descriptor {name!r}: {element!r} is not an element symbol")
        return lambda mol: count_atoms(mol, element)
    if name in EXTRA_DESCRIPTORS:
        return EXTRA_DESCRIPTORS[name]
    if name in _RDKIT_DESCRIPTORS:
        return _RDKIT_DESCRIPTORS[name]
    raise ValueError(
        f"unknown descriptor {name!r}: use an RDKit descriptor name (e.g. MolLogP, TPSA, qed), "
        f"one of {sorted(EXTRA_DESCRIPTORS)}, or count:<element>"
    )
