"""featurestore: standardize molecules, key them by InChIKey, featurize once, store versioned parquet.

Shared by ``discovery`` and ``recommend`` (which never import each other)::

    from featurestore import FeatureStore, FeatureView
    store = FeatureStore(".featurestore")
    keyed = store.standardize(["CC(=O)Oc1ccccc1C(=O)O", "not a smiles"])
    keyed.errors                              # row, input_smiles, error
    ecfp = store.get(keyed.keys, FeatureView("ecfp", {"radius": 2, "n_bits": 2048}))
"""

from featurestore.featurizers import (
    ATOM_DIM,
    BOND_DIM,
    DESCRIPTOR_NAMES,
    DRUG_VIEWS,
    ENTITY_KEYS,
    FEATURIZERS,
    FeatureView,
    FeaturizationError,
    Featurizer,
    build_drug_views,
    drug_feature_table,
    featurizer_class,
    fingerprint_matrix,
    graphs_from_frame,
    register_entity,
    register_featurizer,
)
from featurestore.standardize import RDKIT_VERSION, StandardizedMolecule, Standardizer, standardize_smiles
from featurestore.store import FeatureStore, KeyedMolecules, MaterializeStats

__all__ = [
    "ATOM_DIM", "BOND_DIM", "DESCRIPTOR_NAMES", "ENTITY_KEYS", "FEATURIZERS", "FeatureStore", "FeatureView",
    "FeaturizationError", "Featurizer", "KeyedMolecules", "MaterializeStats", "RDKIT_VERSION",
    "StandardizedMolecule", "Standardizer", "featurizer_class", "fingerprint_matrix", "graphs_from_frame",
    "register_entity", "register_featurizer", "standardize_smiles",
    "DRUG_VIEWS", "build_drug_views", "drug_feature_table",
]
