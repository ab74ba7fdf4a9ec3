"""Molecule featurizers: standardization (SMILES -> key), ECFP/FCFP, MACCS, RDKit 2D descriptors.

Molecule views read the canonical SMILES stored with each InChIKey, so every view of a
molecule is computed from the same standardized structure.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import polars as pl
from rdkit import Chem
from rdkit.Chem import Descriptors, MACCSkeys, rdFingerprintGenerator

from featurestore.featurizers.base import FeaturizationError, Featurizer, register_featurizer
from featurestore.standardize import RDKIT_VERSION, Standardizer, parse_smiles


def mol_from_smiles(smiles: str) -> Chem.Mol:
    """Parse a SMILES or raise :class:`FeaturizationError` with RDKit's reason."""
    mol, reason = parse_smiles(smiles)
    if mol is None:
        raise FeaturizationError(reason)
    return mol


def array_column(name: str, rows: list[np.ndarray | None], width: int, dtype: Any) -> pl.Series:
    """Stack equal-width vectors into a fixed-size ``Array`` column; ``None`` rows become null."""
    matrix = np.zeros((len(rows), width), dtype=dtype)
    valid = np.zeros(len(rows), dtype=bool)
    for i, row in enumerate(rows):
        if row is not None:
            matrix[i] = row
            valid[i] = True
    series = pl.Series(name, matrix)
    if valid.all():
        return series
    return pl.select(pl.when(pl.lit(pl.Series(valid))).then(series).otherwise(None).alias(name)).to_series()


@register_featurizer
class StandardizeFeaturizer(Featurizer[str, dict]):
    """Input SMILES -> InChIKey + canonical SMILES of the standardized molecule (the key cache)."""

    name = "standardize"
    entity = "smiles"
    input_column = None

    def __init__(self, **params: Any) -> None:
        self.standardizer = Standardizer(**params)
        super().__init__(**asdict(self.standardizer))

    def schema(self) -> dict[str, pl.DataType]:
        return {"inchikey": pl.String, "smiles": pl.String, "rdkit_version": pl.String}

    def __call__(self, item: str) -> dict:
        result = self.standardizer(item)
        if result.error:
            raise FeaturizationError(result.error)
        return {"inchikey": result.inchikey, "smiles": result.smiles, "rdkit_version": RDKIT_VERSION}


class FingerprintFeaturizer(Featurizer[str, np.ndarray]):
    """Base for fixed-width fingerprints stored as one ``Array(UInt8, n)`` column ``fp``."""

    width: int

    def schema(self) -> dict[str, pl.DataType]:
        return {"fp": pl.Array(pl.UInt8, self.width)}

    def to_columns(self, values: list[np.ndarray | None]) -> dict[str, pl.Series]:
        return {"fp": array_column("fp", values, self.width, np.uint8)}


@register_featurizer
class ECFPFeaturizer(FingerprintFeaturizer):
    """Morgan/ECFP fingerprint: bits or counts (clipped at 255); FCFP with ``features=True``.

    ``radius=2`` is ECFP4. Parameters: radius, n_bits, counts, chirality, features.
    """

    name = "ecfp"

    def __init__(
        self, radius: int = 2, n_bits: int = 2048, counts: bool = False, chirality: bool = False, features: bool = False
    ) -> None:
        super().__init__(radius=radius, n_bits=n_bits, counts=counts, chirality=chirality, features=features)
        self.width = n_bits
        self.counts = counts
        invariants = rdFingerprintGenerator.GetMorganFeatureAtomInvGen() if features else None
        self.generator = rdFingerprintGenerator.GetMorganGenerator(
            radius=radius, fpSize=n_bits, includeChirality=chirality, atomInvariantsGenerator=invariants
        )

    def __call__(self, item: str) -> np.ndarray:
        return self.from_mol(mol_from_smiles(item))

    def from_mol(self, mol: Chem.Mol) -> np.ndarray:
        """The fingerprint of a parsed molecule (``(n_bits,)`` uint8)."""
        if self.counts:
            return np.minimum(self.generator.GetCountFingerprintAsNumPy(mol), 255).astype(np.uint8)
        return self.generator.GetFingerprintAsNumPy(mol).astype(np.uint8)


@register_featurizer
class MACCSFeaturizer(FingerprintFeaturizer):
    """The 166 MACCS structural keys (RDKit's 167-bit vector; bit 0 is always 0)."""

    name = "maccs"
    width = 167

    def __call__(self, item: str) -> np.ndarray:
        bits = MACCSkeys.GenMACCSKeys(mol_from_smiles(item))
        out = np.zeros(self.width, dtype=np.uint8)
        out[list(bits.GetOnBits())] = 1
        return out


DESCRIPTOR_NAMES: list[str] = [name for name, _ in Descriptors._descList]


@register_featurizer
class RDKit2DFeaturizer(Featurizer[str, dict]):
    """Every RDKit 2D descriptor (``Descriptors._descList``), one Float64 column each.

    Non-finite values (NaN, ±inf, or a descriptor that raised) are stored as null and
    their names listed in the ``nonfinite`` column, so nothing is silently imputed.
    """

    name = "rdkit2d"

    def schema(self) -> dict[str, pl.DataType]:
        return {**{name: pl.Float64 for name in DESCRIPTOR_NAMES}, "nonfinite": pl.List(pl.String)}

    def __call__(self, item: str) -> dict:
        values = descriptor_values(mol_from_smiles(item))
        finite = np.isfinite(values)
        row: dict[str, Any] = {name: float(v) if ok else None for name, v, ok in zip(DESCRIPTOR_NAMES, values, finite)}
        row["nonfinite"] = [name for name, ok in zip(DESCRIPTOR_NAMES, finite) if not ok]
        return row


DESCRIPTOR_LIMIT = 1e30  # |values| beyond it (Ipc of large molecules reaches 1e60) are clipped to fit float32


def descriptor_values(mol: Chem.Mol) -> np.ndarray:
    """Every RDKit 2D descriptor of ``mol`` in :data:`DESCRIPTOR_NAMES` order (float64; NaN where one raised)."""
    values = Descriptors.CalcMolDescriptors(mol, missingVal=float("nan"), silent=True)
    return np.array([values.get(name, float("nan")) for name in DESCRIPTOR_NAMES], dtype=np.float64)


def descriptor_vector(mol: Chem.Mol) -> np.ndarray:
    """Every RDKit 2D descriptor of ``mol`` (:data:`DESCRIPTOR_NAMES` order) as float32, for use as model
    input: a value that is not finite (or a descriptor that raised) becomes 0, as chemprop's descriptor
    features do, and magnitudes are clipped at :data:`DESCRIPTOR_LIMIT`. :class:`RDKit2DFeaturizer` keeps
    such values as null instead, for inspection."""
    vector = np.clip(np.nan_to_num(descriptor_values(mol), nan=0.0, posinf=0.0, neginf=0.0), -DESCRIPTOR_LIMIT, DESCRIPTOR_LIMIT)
    return vector.astype(np.float32)


def fingerprint_matrix(df: pl.DataFrame, column: str = "fp") -> np.ndarray:
    """Dense ``(rows, width)`` numpy matrix from a fingerprint view's ``Array`` column."""
    return df.get_column(column).to_numpy()
