"""String registry of models: a config's ``model.name`` -> class; every model records its hyperparameters.

A model's ``hparams`` are the keyword arguments it was built with, so ``build_model(name,
hparams)`` rebuilds it from a checkpoint's plain JSON before its weights are loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

ModelClass = TypeVar("ModelClass", bound=type)

MODELS: dict[str, type] = {}
# What a model reads (discovery.inputs.model_inputs); the last two are drug–target pairs.
INPUT_KINDS = ("graph", "fingerprint", "smiles_tokens", "graph_protein_tokens", "fingerprint_protein_kmer")


def register_model(name: str) -> Callable[[ModelClass], ModelClass]:
    """Class decorator: make the model buildable as ``model=<name>``."""

    def register(cls: ModelClass) -> ModelClass:
        if MODELS.get(name, cls) is not cls:
            raise ValueError(f"model name {name!r} is already registered by {MODELS[name].__qualname__}")
        if getattr(cls, "input_kind", None) not in INPUT_KINDS:
            raise TypeError(f"{cls.__qualname__}.input_kind must be one of {INPUT_KINDS}")
        cls.name = name
        MODELS[name] = cls
        return cls

    return register


def model_class(name: str) -> type:
    """The registered class for ``name``."""
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered: {sorted(MODELS)}") from None


def build_model(name: str, hparams: Mapping[str, Any]) -> Any:
    """Instantiate model ``name`` with ``hparams`` (as recorded in its checkpoint)."""
    return model_class(name)(**dict(hparams))


def hyperparameters(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """A constructor's arguments (pass ``locals()`` first thing in ``__init__``) without ``self``."""
    return {key: value for key, value in arguments.items() if key not in ("self", "__class__")}
