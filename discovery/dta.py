"""Drug–target affinity training sets: (ligand SMILES, protein) pairs with a measured affinity.

A pair table (KIBA: ``smiles, prot_id, aa_sequence, affinity, split``) becomes a
:class:`PairDataset`: the rows are pairs, ``molecules`` carries each pair's ``inchikey``,
``smiles`` and ``protein_id``, and ``features`` holds the drug view's columns (keyed by
InChIKey) next to the protein view's columns (keyed by protein id) for every pair. So the
training app, its splits, trainer, metrics and checkpoints treat a pair like a molecule
row. Proteins are registered in the store as ``protein`` entities (id -> sequence), so
protein features are computed once and reused like molecule features.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import polars as pl

from featurestore import FeatureStore, FeatureView, Standardizer
from featurestore.build import load_source
from featurestore.io import require_columns

from discovery.data import (
    DataReport,
    DataSpec,
    MoleculeDataset,
    _average_duplicates,
    _fetch_features,
    _key_labels,
    _report_examples,
    build_dataset,
    check_source,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PairSpec:
    """Where (drug, protein, affinity) pairs come from: a ``conf/data`` option for pair models.

    ``source`` names a shipped dataset, ``path`` a file instead. ``split_column`` carries a
    given split (train/val/test); ``max_rows`` keeps the first rows (quick runs and tests).
    """

    name: str
    label_column: str
    source: str | None = None
    path: str | None = None
    smiles_column: str = "smiles"
    protein_id_column: str = "protein_id"
    sequence_column: str = "sequence"
    split_column: str | None = None
    task_type: str = "regression"
    max_rows: int | None = None

    def __post_init__(self) -> None:
        check_source(self)
        if self.task_type == "multiclass":
            raise ValueError(f"data {self.name!r}: multiclass is supported for molecule data, not drug–target pairs")


@dataclass
class PairReport(DataReport):
    """:class:`DataReport` plus the rows without a usable protein and the pairs lost to failed features."""

    missing_proteins: int = 0
    missing_proteins_examples: list[dict] = field(default_factory=list)
    pairs_without_features: int = 0
    pairs: int = 0
    proteins: int = 0


@dataclass
class PairDataset(MoleculeDataset):
    """A :class:`MoleculeDataset` whose rows are drug–target pairs (``molecules`` has ``protein_id``)."""

    protein_view: FeatureView | None = None

    @property
    def views(self) -> dict[str, FeatureView]:
        return {"molecule": self.view, "protein": self.protein_view}


def _register_proteins(table: pl.DataFrame, spec: PairSpec, store: FeatureStore, report: PairReport) -> pl.DataFrame:
    """Register ``protein_id -> sequence`` in the store; returns the usable ``input_row``s' proteins.

    Rows without an id or sequence are reported and left out. One id with two sequences
    (in the file, or against what the store already holds) is an error: features would be
    computed from the wrong sequence.
    """
    rows = table.with_row_index("input_row").select(
        "input_row", pl.col(spec.protein_id_column).cast(pl.String).alias("protein_id"),
        pl.col(spec.sequence_column).cast(pl.String).str.strip_chars().alias("sequence"),
    )
    missing = rows.filter(pl.col("protein_id").is_null() | pl.col("sequence").is_null() | (pl.col("sequence") == ""))
    report.missing_proteins = missing.height
    report.missing_proteins_examples = _report_examples(missing, ["input_row", "protein_id", "sequence"])
    if missing.height:
        log.warning("%s: %d rows have no protein id or sequence and are excluded; first: %s",
                    spec.name, missing.height, report.missing_proteins_examples)
    rows = rows.join(missing.select("input_row"), on="input_row", how="anti")
    proteins = rows.select("protein_id", "sequence").unique(maintain_order=True)
    clashes = proteins.filter(pl.col("protein_id").is_duplicated())
    if clashes.height:
        raise ValueError(f"data {spec.name!r}: protein ids with several sequences: "
                         f"{sorted(set(clashes.get_column('protein_id').to_list()))[:5]}")
    store.register_entities("protein", proteins)
    stored = store.read_entities("protein").join(proteins, on="protein_id", suffix="_given")
    changed = stored.filter(pl.col("sequence") != pl.col("sequence_given"))
    if changed.height:
        raise ValueError(f"data {spec.name!r}: the store at {store.root} holds other sequences for proteins "
                         f"{changed.get_column('protein_id').to_list()[:5]}; use another store root or fix the ids")
    return rows.select("input_row", "protein_id")


def pair_features(pairs: pl.DataFrame, view: FeatureView, protein_view: FeatureView, store: FeatureStore) -> pl.DataFrame:
    """One row per ``pairs`` row (``inchikey``, ``protein_id``): both keys, the drug view's and the protein view's
    columns, and ``error`` (the drug's reason, else the protein's; null when both are fine).

    Feed the rows without error to ``Predictor.predict_features`` of a pair model.
    """
    drugs = store.get(pairs.get_column("inchikey").to_list(), view)
    proteins = store.get(pairs.get_column("protein_id").to_list(), protein_view)
    error = pl.coalesce(drugs.get_column("error"), proteins.get_column("error")).alias("error")
    return pl.concat([drugs.drop("error"), proteins.drop("error"), pl.select(error)], how="horizontal")


def build_pair_dataset(
    spec: PairSpec, view: FeatureView, protein_view: FeatureView, store: FeatureStore,
    standardizer: Standardizer = Standardizer(),
) -> PairDataset:
    """Read the pairs, key the SMILES, register the proteins, average repeated pairs, fetch both views."""
    if view.entity != "molecule" or protein_view.entity != "protein":
        raise ValueError(f"a pair model needs a molecule view and a protein view, got {view.id} and {protein_view.id}")
    table, source_file = load_source(spec.source or spec.name, {"path": spec.path})
    required = [spec.smiles_column, spec.protein_id_column, spec.sequence_column, spec.label_column, spec.split_column]
    require_columns(table, [c for c in required if c], str(source_file))
    if spec.max_rows is not None:
        table = table.head(spec.max_rows)
    report = PairReport(input_rows=table.height)
    proteins = _register_proteins(table, spec, store, report)
    extras = [pl.col(spec.split_column).cast(pl.String).alias("split")] if spec.split_column else []
    labels = table.with_row_index("input_row").select(
        "input_row", pl.col(spec.smiles_column).cast(pl.String).alias("input_smiles"), pl.lit(spec.label_column).alias("task"),
        pl.col(spec.label_column).cast(pl.Float64).alias("target"), *extras,
    ).join(proteins, on="input_row")
    present = pl.col("target").is_not_null() & pl.col("target").is_not_nan()
    report.missing_labels = labels.height - labels.filter(present).height
    labels = _key_labels(labels.filter(present), spec, store, standardizer, report)
    labels = _average_duplicates(labels, spec, report, keys=("inchikey", "protein_id", "task"))

    molecules, _ = _fetch_features(labels.select("inchikey").unique(maintain_order=True), view, store, spec, report)
    proteins, _ = _fetch_features(labels.select("protein_id").unique(maintain_order=True), protein_view, store, spec, report)
    pairs = labels.join(molecules, on="inchikey", how="semi").join(proteins, on="protein_id", how="semi")
    report.pairs_without_features = labels.height - pairs.height
    if not pairs.height:
        raise ValueError(f"data {spec.name!r}: no usable pairs left (report: {report.to_dict()})")
    pairs = pairs.sort("input_row").with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
    features = pair_features(pairs, view, protein_view, store)
    report.labels = report.pairs = pairs.height
    report.molecules = pairs.get_column("inchikey").n_unique()
    report.proteins = pairs.get_column("protein_id").n_unique()
    report.tasks = 1
    log.info("%s: %d pairs of %d molecules and %d proteins from %d input rows",
             spec.name, report.pairs, report.molecules, report.proteins, report.input_rows)
    label_columns = ["row", "task", "target", "measurements", *(["split"] if spec.split_column else [])]
    return PairDataset(
        spec.name, spec.task_type, [spec.label_column], pairs.select("row", "inchikey", "smiles", "protein_id"),
        pairs.select(label_columns), features, view, report, source_file, protein_view,
    )


def build_training_set(
    spec: DataSpec | PairSpec, view: FeatureView, protein_view: FeatureView | None, store: FeatureStore,
    standardizer: Standardizer = Standardizer(),
) -> MoleculeDataset:
    """The training app's dataset: molecules for a molecule model, pairs for a pair model (one with a protein view)."""
    if isinstance(spec, PairSpec):
        if protein_view is None:
            raise ValueError(f"data {spec.name!r} holds drug–target pairs: use a pair model "
                             "(model=graphdta or model=ecfp_kmer_rf)")
        return build_pair_dataset(spec, view, protein_view, store, standardizer)
    if protein_view is not None:
        raise ValueError(f"this model reads drug–target pairs (it has a protein_view) but data {spec.name!r} holds "
                         "molecules only: use pair data such as data=kiba_sample")
    return build_dataset(spec, view, store, standardizer)
