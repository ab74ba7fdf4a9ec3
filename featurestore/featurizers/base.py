"""Featurizers, their registry, and feature views.

A :class:`Featurizer` turns one entity input (a SMILES string, a protein sequence...)
into one row of features; ``batch`` turns many inputs into a polars DataFrame with a
fixed schema plus an ``error`` column (null when the row is fine). Failures never
raise out of ``batch``: a bad item becomes a row with null features and a reason.

A :class:`FeatureView` is the stored identity of a featurizer configuration:
``{featurizer, params, version}`` hashed into a stable id. Changing a parameter or
bumping a featurizer's ``version`` gives a new view; stored rows are never mixed.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Generic, TypeVar

import polars as pl

S = TypeVar("S")
T = TypeVar("T")

ENTITY_KEYS: dict[str, str] = {
    "smiles": "input_smiles",
    "molecule": "inchikey",
    "protein": "protein_id",
    "drug": "drug_id",
    "patient": "person_id",
    "resource": "resource_id",
}
"""Entity name -> key column. Register more with :func:`register_entity`."""


def register_entity(name: str, key_column: str) -> None:
    """Declare a new entity type and its key column (idempotent for the same pair)."""
    if ENTITY_KEYS.get(name, key_column) != key_column:
        raise ValueError(f"entity {name!r} already has key column {ENTITY_KEYS[name]!r}")
    ENTITY_KEYS[name] = key_column


class FeaturizationError(ValueError):
    """Raised by ``Featurizer.__call__`` for one bad item; ``batch`` records it as a row error."""


class Featurizer(ABC, Generic[S, T]):
    """A typed callable ``S -> T`` with a declared output schema.

    Subclasses set ``name`` (registry key), ``version`` (bump when output changes),
    ``entity`` (what it featurizes) and ``input_column`` (the entity attribute it
    reads; ``None`` means the entity key itself is the input).
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    entity: ClassVar[str] = "molecule"
    input_column: ClassVar[str | None] = "smiles"

    def __init__(self, **params: Any) -> None:
        self.params = params

    @abstractmethod
    def schema(self) -> dict[str, pl.DataType]:
        """Output columns (without key and ``error``) and their polars dtypes."""

    @abstractmethod
    def __call__(self, item: S) -> T:
        """Featurize one item; raise :class:`FeaturizationError` with a reason on failure."""

    def to_columns(self, values: list[T | None]) -> dict[str, pl.Series]:
        """Turn per-item outputs (``None`` for failed items) into output columns.

        The default expects ``T`` to be a ``dict`` keyed by schema column.
        """
        return {
            col: pl.Series(col, [None if v is None else v[col] for v in values], dtype=dtype)
            for col, dtype in self.schema().items()
        }

    def batch(self, items: Sequence[S]) -> pl.DataFrame:
        """Featurize many items; one output row per item, in order, with an ``error`` column."""
        values: list[T | None] = []
        errors: list[str | None] = []
        for item in items:
            try:
                values.append(self(item))
                errors.append(None)
            except FeaturizationError as exc:
                values.append(None)
                errors.append(str(exc))
        columns = self.to_columns(values)
        columns["error"] = pl.Series("error", errors, dtype=pl.String)
        return pl.DataFrame(columns)


FEATURIZERS: dict[str, type[Featurizer]] = {}


def register_featurizer(cls: type[Featurizer]) -> type[Featurizer]:
    """Class decorator adding a featurizer to the string registry used by configs."""
    existing = FEATURIZERS.get(cls.name)
    if existing is not None and existing is not cls:
        raise ValueError(f"featurizer name {cls.name!r} is already registered by {existing.__qualname__}")
    FEATURIZERS[cls.name] = cls
    return cls


def featurizer_class(name: str) -> type[Featurizer]:
    """Look up a registered featurizer class by name."""
    try:
        return FEATURIZERS[name]
    except KeyError:
        raise KeyError(f"unknown featurizer {name!r}; registered: {sorted(FEATURIZERS)}") from None


@dataclass(frozen=True, eq=False)
class FeatureView:
    """A featurizer configuration with a stable id: ``{featurizer, params, version}``.

    The id is ``<featurizer>-<12 hex of sha256(canonical JSON)>``; it names the folder
    the view's rows live in.
    """

    featurizer: str
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def cls(self) -> type[Featurizer]:
        return featurizer_class(self.featurizer)

    @property
    def version(self) -> str:
        return self.cls.version

    @property
    def entity(self) -> str:
        return self.cls.entity

    @property
    def key_column(self) -> str:
        return ENTITY_KEYS[self.entity]

    @cached_property
    def resolved_params(self) -> dict[str, Any]:
        """Parameters with the featurizer's defaults filled in, so ``ecfp`` and ``ecfp(radius=2)`` share an id."""
        return dict(self.build().params)

    def spec(self) -> dict[str, Any]:
        """The plain, JSON-serializable spec the id is computed from."""
        return {"featurizer": self.featurizer, "params": self.resolved_params, "version": self.version}

    @property
    def id(self) -> str:
        blob = json.dumps(self.spec(), sort_keys=True, separators=(",", ":")).encode()
        return f"{self.featurizer}-{hashlib.sha256(blob).hexdigest()[:12]}"

    def build(self) -> Featurizer:
        """Instantiate the featurizer (only registered classes: nothing is imported from config)."""
        return self.cls(**_plain(self.params))

    def worker_spec(self) -> tuple[str, str, dict[str, Any]]:
        """What a worker process needs to rebuild this view: module to import, name, params."""
        return self.cls.__module__, self.featurizer, self.resolved_params

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FeatureView) and self.id == other.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"FeatureView({self.id}: {self.featurizer} {dict(self.params)})"


def _plain(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as plain Python containers (Hydra passes OmegaConf nodes)."""
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(params):
            return OmegaConf.to_container(params, resolve=True)
    except ImportError:  # omegaconf is only needed when configs come from Hydra
        pass
    return dict(params)


def featurize_chunk(worker_spec: tuple[str, str, dict[str, Any]], items: Sequence[Any]) -> pl.DataFrame:
    """Worker entry point: rebuild a registered featurizer and run it on a chunk.

    The module is imported so featurizers registered outside ``featurestore`` (by
    ``discovery`` or ``recommend``) exist in spawned workers; only modules whose
    featurizer is then found in the registry are accepted.
    """
    module, name, params = worker_spec
    importlib.import_module(module)
    return featurizer_class(name)(**params).batch(items)
