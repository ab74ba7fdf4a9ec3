"""Featurizer registry: every built-in featurizer is registered on import."""

from featurestore.featurizers.base import (
    ENTITY_KEYS,
    FEATURIZERS,
    FeatureView,
    FeaturizationError,
    Featurizer,
    featurizer_class,
    register_entity,
    register_featurizer,
)
from featurestore.featurizers.drug import (
    DRUG_VIEWS,
    DrugATCFeaturizer,
    DrugClassFeaturizer,
    DrugSummaryFeaturizer,
    DrugTextFeaturizer,
    build_drug_views,
    drug_feature_table,
    drug_features_with_stats,
)
from featurestore.featurizers.graph import ATOM_DIM, BOND_DIM, GraphFeaturizer, graphs_from_frame
from featurestore.featurizers.molecule import (
    DESCRIPTOR_NAMES,
    ECFPFeaturizer,
    MACCSFeaturizer,
    RDKit2DFeaturizer,
    StandardizeFeaturizer,
    fingerprint_matrix,
)
from featurestore.featurizers.protein import ProteinKmerFeaturizer
from featurestore.featurizers.tokens import ProteinTokenFeaturizer, SmilesTokenFeaturizer, tokenize_smiles

__all__ = [
    "ATOM_DIM", "BOND_DIM", "DESCRIPTOR_NAMES", "ENTITY_KEYS", "FEATURIZERS", "ECFPFeaturizer", "FeatureView",
    "FeaturizationError", "Featurizer", "GraphFeaturizer", "MACCSFeaturizer", "ProteinKmerFeaturizer",
    "ProteinTokenFeaturizer", "RDKit2DFeaturizer", "SmilesTokenFeaturizer", "StandardizeFeaturizer", "featurizer_class",
    "fingerprint_matrix", "graphs_from_frame", "register_entity", "register_featurizer", "tokenize_smiles",
    "DRUG_VIEWS", "DrugATCFeaturizer", "DrugClassFeaturizer", "DrugTextFeaturizer", "build_drug_views",
    "drug_feature_table", "drug_features_with_stats", "DrugSummaryFeaturizer",
]
