"""Recommenders behind one interface (:class:`recommend.models.base.Recommender`) and a name registry.

``build_model({"name": "als", "factors": 64})`` builds from a ``recommender/`` config;
``load_model(path)`` restores a saved one (.npz + .json).
"""

from collections.abc import Mapping
from typing import Any

from recommend.models.base import MODELS, FitContext, Recommender, load_model, register_model
from recommend.models.content import ContentRecommender
from recommend.models.ease import EASERecommender
from recommend.models.factorization import ALSRecommender, BPRRecommender
from recommend.models.hybrid import HybridRecommender
from recommend.models.knn import ItemKNNRecommender
from recommend.models.newstart import NewStartRecommender
from recommend.models.popularity import PopularityRecommender, RandomRecommender
from recommend.models.sequential import GRURecommender


def build_model(spec: Mapping[str, Any]) -> Recommender:
    """A model from ``{"name": registered name, **constructor params}``."""
    params = dict(spec)
    name = params.pop("name")
    if name not in MODELS:
        raise KeyError(f"unknown recommender {name!r}; known: {sorted(MODELS)}")
    return MODELS[name](**params)


__all__ = [
    "ALSRecommender", "BPRRecommender", "ContentRecommender", "EASERecommender", "GRURecommender",
    "FitContext", "HybridRecommender", "ItemKNNRecommender", "MODELS", "NewStartRecommender", "PopularityRecommender",
    "RandomRecommender", "Recommender",
    "build_model", "load_model", "register_model",
]
