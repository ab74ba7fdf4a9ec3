"""Medicinal-chemistry context of a molecule: QED, SA score, rule-of-five / Veber violations, structural alerts.

Alerts come from RDKit's FilterCatalog: PAINS (Baell & Holloway 2010, families A–C) and
Brenk (Brenk et al. 2008, unwanted groups); each gives a count and the matched alert names.
Descriptors are the oracles' (:func:`discovery.oracles.chem.descriptor`), so a QED here
equals the QED oracle's. :class:`MedChemFeaturizer` makes them a feature-store view
(``FeatureView("medchem")``): computed once per molecule, in the store's worker processes.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import polars as pl
from rdkit import Chem
from rdkit.Chem.FilterCatalog import FilterCatalog, FilterCatalogParams

from featurestore import Featurizer, FeatureView, register_featurizer
from featurestore.featurizers.molecule import mol_from_smiles

from discovery.oracles.chem import descriptor, sa_score

ALERT_CATALOGS = {
    "pains": FilterCatalogParams.FilterCatalogs.PAINS,
    "brenk": FilterCatalogParams.FilterCatalogs.BRENK,
}
# (descriptor, limit): a violation is a value above the limit.
LIPINSKI = (("MolWt", 500.0), ("MolLogP", 5.0), ("NumHDonors", 5.0), ("NumHAcceptors", 10.0))
VEBER = (("NumRotatableBonds", 10.0), ("TPSA", 140.0))

MEDCHEM_SCHEMA: dict[str, pl.DataType] = {
    "qed": pl.Float64, "sa_score": pl.Float64, "lipinski_violations": pl.Int64, "veber_violations": pl.Int64,
    **{f"{name}_{part}": dtype for name in ALERT_CATALOGS for part, dtype in (("alerts", pl.Int64), ("names", pl.String))},
}


@cache
def _catalog(name: str) -> FilterCatalog:
    params = FilterCatalogParams()
    params.AddCatalog(ALERT_CATALOGS[name])
    return FilterCatalog(params)


def alerts(mol: Chem.Mol, catalog: str) -> list[str]:
    """Names of the ``catalog`` (``pains`` or ``brenk``) alerts ``mol`` matches, in catalog order."""
    return [entry.GetDescription() for entry in _catalog(catalog).GetMatches(mol)]


def violations(mol: Chem.Mol, rules: tuple[tuple[str, float], ...]) -> int:
    """How many ``(descriptor, limit)`` rules ``mol`` exceeds."""
    return sum(descriptor(name)(mol) > limit for name, limit in rules)


def medchem_properties(smiles: str) -> dict[str, Any]:
    """The :data:`MEDCHEM_SCHEMA` columns for one (standardized, valid) SMILES; alert names joined by ``"; "``."""
    mol = mol_from_smiles(smiles)
    row: dict[str, Any] = {
        "qed": descriptor("qed")(mol), "sa_score": sa_score(mol),
        "lipinski_violations": violations(mol, LIPINSKI), "veber_violations": violations(mol, VEBER),
    }
    for catalog in ALERT_CATALOGS:
        matched = alerts(mol, catalog)
        row[f"{catalog}_alerts"] = len(matched)
        row[f"{catalog}_names"] = "; ".join(matched)
    return row


@register_featurizer
class MedChemFeaturizer(Featurizer[str, dict]):
    """:func:`medchem_properties` as a stored molecule view."""

    name = "medchem"

    def schema(self) -> dict[str, pl.DataType]:
        return dict(MEDCHEM_SCHEMA)

    def __call__(self, item: str) -> dict:
        return medchem_properties(item)


MEDCHEM = FeatureView(MedChemFeaturizer.name)
