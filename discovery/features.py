"""Molecule featurizers the discovery apps add to the feature store (RDKit runs here, never in training)."""

from __future__ import annotations

import polars as pl
from rdkit.Chem.Scaffolds import MurckoScaffold

from featurestore import Featurizer, register_featurizer
from featurestore.featurizers.molecule import mol_from_smiles


@register_featurizer
class MurckoScaffoldFeaturizer(Featurizer[str, dict]):
    """Bemis–Murcko scaffold SMILES (empty string for acyclic molecules)."""

    name = "murcko_scaffold"

    def __init__(self, chirality: bool = False) -> None:
        super().__init__(chirality=chirality)
        self.chirality = chirality

    def schema(self) -> dict[str, pl.DataType]:
        return {"scaffold": pl.String}

    def __call__(self, item: str) -> dict:
        return {"scaffold": MurckoScaffold.MurckoScaffoldSmiles(mol=mol_from_smiles(item), includeChirality=self.chirality)}
