"""Molecule standardization and entity keys.

A molecule's entity key is the InChIKey of its *standardized* form: InChIKeys are
stable across RDKit releases, canonical SMILES are not, so the canonical SMILES and
the RDKit version are kept as attributes only.

Failure behaviour: :func:`standardize_smiles` never raises on bad chemistry; it
returns a :class:`StandardizedMolecule` whose ``error`` names the reason and whose
``inchikey`` is ``None``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from rdkit import Chem, RDLogger, rdBase
from rdkit.Chem.MolStandardize import rdMolStandardize

RDKIT_VERSION: str = rdBase.rdkitVersion

# RDKit prints parse problems to stderr; we report them per row instead.
RDLogger.DisableLog("rdApp.*")


@dataclass(frozen=True)
class Standardizer:
    """Which standardization steps to apply, in this order.

    - ``cleanup``: RDKit's normalization of functional groups (nitro, N-oxides...).
    - ``largest_fragment``: keep the parent fragment (drops counter-ions and solvents).
    - ``neutralize``: add/remove protons to neutralize charges where possible.
    - ``canonical_tautomer``: RDKit's canonical tautomer (slow; off by default).
    - ``remove_stereo``: drop stereochemistry (off by default).
    """

    cleanup: bool = True
    largest_fragment: bool = True
    neutralize: bool = True
    canonical_tautomer: bool = False
    remove_stereo: bool = False

    @property
    def id(self) -> str:
        """Stable id of this configuration (part of every key cache)."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return "std-" + hashlib.sha256(blob).hexdigest()[:12]

    def __call__(self, smiles: str) -> "StandardizedMolecule":
        return standardize_smiles(smiles, self)


@dataclass(frozen=True)
class StandardizedMolecule:
    """Result of standardizing one input SMILES; ``error`` is set iff ``inchikey`` is None."""

    input_smiles: str
    inchikey: str | None
    smiles: str | None
    error: str | None = None


def parse_smiles(smiles: str) -> tuple[Chem.Mol | None, str | None]:
    """Parse and sanitize a SMILES string; return ``(mol, None)`` or ``(None, reason)``.

    The full RDKit parse (with stereo perception) runs first; only a failure is parsed
    again unsanitized to name what is wrong.
    """
    if smiles is None or not str(smiles).strip():
        return None, "empty SMILES"
    smiles = str(smiles).strip()
    mol = Chem.MolFromSmiles(smiles)
    if mol is not None:
        return mol, None
    raw = Chem.MolFromSmiles(smiles, sanitize=False)
    if raw is None:
        return None, f"SMILES syntax error in {smiles!r}"
    problems = Chem.DetectChemistryProblems(raw)
    if problems:
        return None, "; ".join(p.Message() for p in problems)
    return None, f"RDKit could not sanitize {smiles!r}"


def standardize_mol(mol: Chem.Mol, config: Standardizer = Standardizer()) -> Chem.Mol:
    """Apply the configured standardization steps to a sanitized molecule."""
    if config.cleanup:
        mol = rdMolStandardize.Cleanup(mol)
    if config.largest_fragment:
        mol = rdMolStandardize.FragmentParent(mol, skipStandardize=True)
    if config.neutralize:
        mol = _UNCHARGER.uncharge(mol)
    if config.canonical_tautomer:
        mol = rdMolStandardize.TautomerEnumerator().Canonicalize(mol)
    if config.remove_stereo:
        Chem.RemoveStereochemistry(mol)
    return mol


_UNCHARGER = rdMolStandardize.Uncharger(canonicalOrder=True)


def standardize_smiles(smiles: str, config: Standardizer = Standardizer()) -> StandardizedMolecule:
    """Standardize one SMILES and compute its InChIKey; errors are returned, not raised."""
    mol, reason = parse_smiles(smiles)
    if mol is None:
        return StandardizedMolecule(smiles, None, None, reason)
    try:
        mol = standardize_mol(mol, config)
    except Exception as exc:
        return StandardizedMolecule(smiles, None, None, f"standardization failed: {exc}")
    if mol.GetNumAtoms() == 0:
        return StandardizedMolecule(smiles, None, None, "no atoms left after standardization")
    try:
        inchikey = Chem.MolToInchiKey(mol)
        canonical = Chem.MolToSmiles(mol)
    except Exception as exc:  # e.g. KekulizeException for some zwitterions (molsidomine)
        return StandardizedMolecule(smiles, None, None, f"InChI/SMILES generation failed: {exc}")
    if not inchikey:
        return StandardizedMolecule(smiles, None, None, "InChI generation failed")
    return StandardizedMolecule(smiles, inchikey, canonical)
