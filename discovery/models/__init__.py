"""Models for property and target prediction, registered by config name (``model=gin`` ...)."""

from discovery.models import classical, cnn, dmpnn, dta, gnn  # noqa: F401  (importing registers the models)
from discovery.models.classical import ClassicalModel
from discovery.models.registry import MODELS, build_model, model_class, register_model

__all__ = ["MODELS", "ClassicalModel", "build_model", "model_class", "register_model"]
