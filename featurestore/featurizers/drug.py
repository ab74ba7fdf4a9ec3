"""Drug-level content views keyed by ``drug_id``, and drug-keyed molecule views.

The featurizers read ``data/drug_annotations.parquet`` (and ``atc_index.parquet``) by
drug_id, so they need no entity registration: the key is the input. A ``data`` parameter,
filled in with a digest of those files, is part of the view id, so rebuilt data files
give new views instead of mixing rows.

- ``drug_atc``: multi-hot over ATC codes at the chosen levels (``vocabulary`` names the columns).
- ``drug_classes``: multi-hot over FDA EPC / MoA classes (``"EPC: name"``, ``"MoA: name"``).
- ``drug_text``: one text document per drug (name, synonyms, definition, roles, MeSH actions)
  for BM25 / TF-IDF fitted downstream.

Structure views come from the molecule store through the drug's SMILES and InChIKey
(:func:`drug_feature_table`), so a recommender uses the same ECFP as the GNNs.
:func:`build_drug_views` builds all of them once and times each.
"""

from __future__ import annotations

import copy
import hashlib
import time
from abc import abstractmethod
from collections.abc import Iterable, Sequence
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import polars as pl

from featurestore.datasets import dataset_path, load_dataset
from featurestore.featurizers.base import FeatureView, FeaturizationError, Featurizer, register_featurizer
from featurestore.featurizers.molecule import array_column
from featurestore.io import sha256_file

if TYPE_CHECKING:
    from featurestore.store import FeatureStore, MaterializeStats

ATC_LEVELS = (1, 2, 3, 4)
CLASS_KINDS = ("EPC", "MoA")
TEXT_FIELDS = ("name", "synonyms", "definition", "chebi_roles", "mesh_actions")
# Labels of the text document's parts (the name stands alone on the first line).
_TEXT_LABELS = {
    "synonyms": "Synonyms", "definition": "Definition", "chebi_roles": "Roles", "mesh_actions": "MeSH actions",
    "epc_classes": "Established pharmacologic classes", "moa_classes": "Mechanisms of action",
    "atc_codes": "ATC codes",
}
DRUG_VIEWS: dict[str, FeatureView] = {
    "drug_atc": FeatureView("drug_atc"),
    "drug_classes": FeatureView("drug_classes"),
    "drug_text": FeatureView("drug_text"),
    "drug_ecfp": FeatureView("ecfp", {"radius": 2, "n_bits": 2048}),
}
"""The drug content views :func:`build_drug_views` builds by default (ECFP4 bits, as the GNN configs use)."""


@lru_cache(maxsize=8)
def _read(path: Path, mtime_ns: int, size: int) -> tuple[pl.DataFrame, str]:
    """A data file and its sha256, cached while the file is unchanged."""
    return pl.read_parquet(path), sha256_file(path)


def _dataset(name: str) -> tuple[pl.DataFrame, str]:
    path = dataset_path(name)
    if not path.is_file():
        load_dataset(name)  # raises FileNotFoundError with the build command
    stat = path.stat()
    return _read(path, stat.st_mtime_ns, stat.st_size)


class DrugAnnotationFeaturizer(Featurizer[str, Any]):
    """Base: features of a drug_id looked up in ``drug_annotations`` (and the ``datasets`` it also reads).

    ``data`` is a digest of those files; it is filled in when not given, and a view whose
    ``data`` no longer matches the files fails rather than mixing old and new rows.
    """

    entity = "drug"
    input_column = None
    datasets: ClassVar[tuple[str, ...]] = ("drug_annotations",)

    def __init__(self, data: str | None = None, **params: Any) -> None:
        frames, digests = zip(*(_dataset(name) for name in self.datasets))
        current = hashlib.sha256("".join(digests).encode()).hexdigest()[:12]
        if data is not None and data != current:
            raise ValueError(
                f"{self.name}: view built from data {data!r}, but {', '.join(self.datasets)} now give "
                f"{current!r}; leave 'data' out to use the current files"
            )
        super().__init__(**params, data=current)
        self.frames = dict(zip(self.datasets, frames))

    @cached_property
    def rows(self) -> dict[str, dict[str, Any]]:
        """Annotation rows by drug_id (built on first lookup: views build featurizers just for ids and schemas)."""
        annotations = self.frames["drug_annotations"]
        return dict(zip(annotations.get_column("drug_id").to_list(), annotations.iter_rows(named=True)))

    def __call__(self, item: str) -> Any:
        row = self.rows.get(item)
        if row is None:
            raise FeaturizationError(f"drug_id {item!r} is not in drug_annotations")
        return self.features(row)

    @abstractmethod
    def features(self, row: dict[str, Any]) -> Any:
        """Features of one annotation row."""


class MultiHotFeaturizer(DrugAnnotationFeaturizer):
    """Base: one ``Array(UInt8, len(vocabulary))`` column ``column``; ``labels(row)`` are the set entries."""

    column: ClassVar[str]
    vocabulary: list[str]

    def schema(self) -> dict[str, pl.DataType]:
        return {self.column: pl.Array(pl.UInt8, len(self.vocabulary))}

    @abstractmethod
    def labels(self, row: dict[str, Any]) -> Iterable[str]:
        """The vocabulary entries this drug has."""

    def features(self, row: dict[str, Any]) -> np.ndarray:
        out = np.zeros(len(self.vocabulary), dtype=np.uint8)
        out[[self.index[label] for label in self.labels(row) if label in self.index]] = 1
        return out

    def to_columns(self, values: list[np.ndarray | None]) -> dict[str, pl.Series]:
        return {self.column: array_column(self.column, values, len(self.vocabulary), np.uint8)}

    def _set_vocabulary(self, vocabulary: Iterable[str]) -> None:
        self.vocabulary = sorted(set(vocabulary))
        self.index = {label: i for i, label in enumerate(self.vocabulary)}


@register_featurizer
class DrugATCFeaturizer(MultiHotFeaturizer):
    """Multi-hot over ATC codes of the chosen ``levels`` (1-4): the atc_index codes plus any catalog code it lacks."""

    name = "drug_atc"
    column = "atc"
    datasets = ("drug_annotations", "atc_index")

    def __init__(self, levels: Sequence[int] = ATC_LEVELS, data: str | None = None) -> None:
        levels = sorted({int(level) for level in levels})
        if not levels or not set(levels) <= set(ATC_LEVELS):
            raise ValueError(f"drug_atc: levels must be a non-empty subset of {list(ATC_LEVELS)}, got {levels}")
        super().__init__(data=data, levels=levels)
        index = self.frames["atc_index"].filter(pl.col("level").is_in(levels)).get_column("code")
        lengths = {len(code) for code in index}
        catalog = self.frames["drug_annotations"].get_column("atc_codes").explode().drop_nulls()
        self._set_vocabulary([*index, *(code for code in catalog if len(code) in lengths)])

    def labels(self, row: dict[str, Any]) -> Iterable[str]:
        return row["atc_codes"]


@register_featurizer
class DrugClassFeaturizer(MultiHotFeaturizer):
    """Multi-hot over the FDA pharmacologic classes of the chosen ``kinds`` (EPC, MoA) found in the catalog."""

    name = "drug_classes"
    column = "classes"

    def __init__(self, kinds: Sequence[str] = CLASS_KINDS, data: str | None = None) -> None:
        if not kinds or not set(kinds) <= set(CLASS_KINDS):
            raise ValueError(f"drug_classes: kinds must be a non-empty subset of {list(CLASS_KINDS)}, got {list(kinds)}")
        kinds = [kind for kind in CLASS_KINDS if kind in kinds]
        super().__init__(data=data, kinds=kinds)
        self.kinds = kinds
        annotations = self.frames["drug_annotations"]
        self._set_vocabulary(
            label for row in annotations.iter_rows(named=True) for label in self.labels(row)
        )

    def labels(self, row: dict[str, Any]) -> Iterable[str]:
        return [f"{kind}: {name}" for kind in self.kinds for name in row[f"{kind.lower()}_classes"]]


@register_featurizer
class DrugTextFeaturizer(DrugAnnotationFeaturizer):
    """The drug's text document: the chosen annotation ``fields``, one labelled line each, empty ones left out."""

    name = "drug_text"

    def __init__(self, fields: Sequence[str] = TEXT_FIELDS, data: str | None = None) -> None:
        fields = list(fields)
        unknown = [f for f in fields if f != "name" and f not in _TEXT_LABELS]
        if not fields or unknown:
            raise ValueError(f"drug_text: unknown field(s) {unknown}; choose from {['name', *_TEXT_LABELS]}")
        super().__init__(data=data, fields=fields)
        self.fields = fields

    def schema(self) -> dict[str, pl.DataType]:
        return {"text": pl.String}

    def features(self, row: dict[str, Any]) -> dict[str, str]:
        lines = []
        for field in self.fields:
            value = row[field]
            if not value:
                continue
            text = "; ".join(value) if isinstance(value, list) else value
            lines.append(text if field == "name" else f"{_TEXT_LABELS[field]}: {text}")
        return {"text": "\n".join(lines)}


def drug_features_with_stats(
    store: FeatureStore, view: FeatureView, drug_ids: Iterable[str]
) -> tuple[pl.DataFrame, MaterializeStats]:
    """Like :func:`drug_feature_table` for the given ``drug_ids``, also returning what the store did."""
    drug_ids = list(drug_ids)
    if view.entity == "drug":
        # Drug views are dictionary lookups: starting worker processes costs more than the work.
        inline = copy.copy(store)
        inline.n_jobs = 1
        return inline.get_with_stats(drug_ids, view)
    if view.entity != "molecule":
        raise ValueError(f"view {view.id}: entity {view.entity!r} cannot be keyed by drug (molecule or drug only)")
    catalog = load_dataset("drugs").select("drug_id", "smiles")
    request = pl.DataFrame({"drug_id": pl.Series(drug_ids, dtype=pl.String)}).with_row_index("_order")
    request = request.join(catalog, on="drug_id", how="left")
    known = request.filter(pl.col("smiles").is_not_null())
    keyed = store.standardize(known.get_column("smiles").to_list()).table
    features, stats = store.get_with_stats(keyed.get_column("inchikey").drop_nulls().unique().to_list(), view)
    rows = (
        pl.concat([known.select("_order", "drug_id"), keyed.select("inchikey", pl.col("error").alias("_key_error"))],
                  how="horizontal")
        .join(features, on="inchikey", how="left")
        .with_columns(pl.coalesce("_key_error", "error").alias("error"))
        .drop("_key_error")
    )
    unknown = request.filter(pl.col("smiles").is_null()).select(
        "_order", "drug_id", pl.format("drug_id '{}' is not in the drug catalog", "drug_id").alias("error")
    )
    table = pl.concat([rows, unknown], how="diagonal_relaxed").sort("_order").drop("_order")
    return table, stats


def drug_feature_table(
    store: FeatureStore, view: FeatureView, drug_ids: Iterable[str] | None = None
) -> pl.DataFrame:
    """A view's features keyed by ``drug_id``, one row per requested drug (default: the whole catalog).

    Drug views are read by drug_id. Molecule views (``ecfp``...) go through the molecule
    store: the drug's catalog SMILES is keyed by the store's standardizer and the view is
    read by that InChIKey, so the rows are the ones the GNNs use; the table then has an
    ``inchikey`` column. A drug_id outside the catalog, or a SMILES that fails, is a row
    with null features and the reason in ``error``.
    """
    ids = load_dataset("drugs").get_column("drug_id").to_list() if drug_ids is None else list(drug_ids)
    return drug_features_with_stats(store, view, ids)[0]


def build_drug_views(
    store: FeatureStore, views: dict[str, FeatureView] | None = None, drug_ids: Iterable[str] | None = None
) -> pl.DataFrame:
    """Build every drug content view once for the catalog; one row per view with what was done and the seconds.

    Columns: name, view (id), entity, keys, reused, computed, errors, seconds. A second
    call computes nothing (every key is stored).
    """
    ids = load_dataset("drugs").get_column("drug_id").to_list() if drug_ids is None else list(drug_ids)
    rows = []
    for name, view in (DRUG_VIEWS if views is None else views).items():
        start = time.perf_counter()
        table, stats = drug_features_with_stats(store, view, ids)
        rows.append(
            {"name": name, "view": view.id, "entity": view.entity, "keys": stats.requested, "reused": stats.reused,
             "computed": stats.computed, "errors": int(table.get_column("error").is_not_null().sum()),
             "seconds": time.perf_counter() - start}
        )
    return pl.DataFrame(rows, schema={"name": pl.String, "view": pl.String, "entity": pl.String, "keys": pl.Int64,
                                      "reused": pl.Int64, "computed": pl.Int64, "errors": pl.Int64,
                                      "seconds": pl.Float64})
