"""Training sets from the feature store: key the SMILES, attach targets, fetch the model's feature view.

One path serves every ``conf/data`` option. The source table is turned into long labels
(one row per input row x task), the SMILES are keyed by InChIKey through the store,
repeated measurements of a molecule are averaged, and the model's feature view is read
(computed only for keys the store lacks). Rows that cannot be used are counted, logged
with examples and written to ``data_report.json``: nothing is dropped silently.

Wide tables (ESOL) give one task per label column; long tables (MoleculeACE) name the
task in ``task_columns`` (joined with ``_``: ``CHEMBL237_Ki``, ``CHEMBL237_EC50``).

Task types: ``regression`` (numbers), ``classification`` (binary 0/1 labels) and ``multiclass``
(one task whose labels are class names, strings or integers, at least two classes; binary
data is better served by ``classification``). A multiclass dataset's ``classes`` are the
sorted distinct labels of the table it trains on (integers in numeric order, otherwise
text order), and ``target`` holds each label's index into them; a molecule measured
several times keeps the majority class, a tie going to the class that comes first.

``derived_columns`` adds columns computed from the source table before labels are read
(:data:`DERIVED_COLUMNS`): ``atc_main_group`` on the ``drugs`` catalog is the ATC
anatomical main group (first letter of the drug's first ATC code, null without one).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from featurestore import FeatureStore, FeatureView, Standardizer
from featurestore.build import load_source
from featurestore.io import require_columns

log = logging.getLogger(__name__)

TASK_TYPES = ("regression", "classification", "multiclass")
EXAMPLES_SHOWN = 5


def _atc_main_group(table: pl.DataFrame) -> pl.Series:
    return table.get_column("atc_codes").list.first().str.slice(0, 1).alias("atc_main_group")


# Columns a data spec can derive from its source table by name: name -> (needed columns, builder).
DERIVED_COLUMNS: dict[str, tuple[tuple[str, ...], Any]] = {
    # ATC level 1 (anatomical main group, A-V) of the drug's first ATC code; null when it has none.
    "atc_main_group": (("atc_codes",), _atc_main_group),
}


def derive_columns(table: pl.DataFrame, names: list[str], source: str) -> pl.DataFrame:
    """``table`` with the :data:`DERIVED_COLUMNS` named in ``names`` added (``source`` names the table in errors)."""
    for name in names:
        if name not in DERIVED_COLUMNS:
            raise KeyError(f"unknown derived column {name!r}; known: {sorted(DERIVED_COLUMNS)}")
        needed, build = DERIVED_COLUMNS[name]
        require_columns(table, list(needed), source)
        table = table.with_columns(build(table).alias(name))
    return table


def class_order(labels: list[str]) -> list[str]:
    """Distinct class labels, sorted: numerically when every label is an integer, else as text."""
    distinct = set(labels)
    try:
        return sorted(distinct, key=int)
    except ValueError:
        return sorted(distinct)


def class_names(column: str, classes: list[str]) -> pl.Expr:
    """``column`` of class indices (a multiclass ``target``) as the class names they point to."""
    return pl.col(column).cast(pl.Int64).replace_strict(list(range(len(classes))), classes, return_dtype=pl.String)


def check_source(spec: Any) -> None:
    """A data spec names a known task type and a shipped dataset or a file (``name, task_type, source, path``)."""
    if spec.task_type not in TASK_TYPES:
        raise ValueError(f"data {spec.name!r}: task_type must be one of {TASK_TYPES}, got {spec.task_type!r}")
    if not spec.source and not spec.path:
        raise ValueError(f"data {spec.name!r}: give a shipped dataset (source) or a file (path)")


@dataclass(frozen=True)
class DataSpec:
    """Where molecules and labels come from: one ``conf/data`` option.

    ``source`` names a shipped dataset (``featurestore.datasets``); ``path`` a CSV/TSV/parquet
    file instead. ``label_columns`` hold the values; with ``task_columns`` the table is long
    and the single label column is split into tasks named by those columns. ``target`` keeps
    one task (its exact name or a unique prefix: ``CHEMBL204`` for ``CHEMBL204_Ki``).
    ``split_column`` / ``cliff_column`` carry a given train/test split and activity-cliff flags.
    ``max_rows`` keeps the first rows of the table (quick runs and tests). ``derived_columns``
    names columns computed from the table first (:data:`DERIVED_COLUMNS`), usable as labels.
    ``task_type: multiclass`` takes exactly one task (one label column, or ``target`` picking
    one task of a long table) whose values are class names.
    """

    name: str
    label_columns: list[str]
    source: str | None = None
    path: str | None = None
    smiles_column: str = "smiles"
    task_type: str = "regression"
    task_columns: list[str] = field(default_factory=list)
    target: str | None = None
    split_column: str | None = None
    cliff_column: str | None = None
    max_rows: int | None = None
    derived_columns: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_source(self)
        if self.task_columns and len(self.label_columns) != 1:
            raise ValueError(f"data {self.name!r}: a long table (task_columns) needs exactly one label column")
        if self.task_type == "multiclass" and len(self.label_columns) != 1:
            raise ValueError(f"data {self.name!r}: multiclass supports exactly one task (one label column of class "
                             f"names), got label_columns {list(self.label_columns)}")


@dataclass
class DataReport:
    """What happened to the input rows on the way to the training set."""

    input_rows: int
    labels: int = 0
    missing_labels: int = 0
    failed_smiles: int = 0
    failed_smiles_examples: list[dict] = field(default_factory=list)
    failed_features: int = 0
    failed_features_examples: list[dict] = field(default_factory=list)
    duplicate_labels: int = 0
    duplicate_groups: int = 0
    conflicting_groups: int = 0  # duplicate groups whose class labels disagree (settled by majority vote)
    molecules: int = 0
    tasks: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class MoleculeDataset:
    """Molecules (rows), their labels in long form, and the model's features aligned with the rows.

    ``molecules``: ``row, inchikey, smiles`` (canonical SMILES of the standardized molecule).
    ``labels``: ``row, task, target, measurements`` plus ``split`` / ``cliff_mol`` when given.
    ``features``: the feature view's rows in ``row`` order. ``classes`` (multiclass only): the
    class names, ``target`` being an index into them.
    """

    name: str
    task_type: str
    tasks: list[str]
    molecules: pl.DataFrame
    labels: pl.DataFrame
    features: pl.DataFrame
    view: FeatureView
    report: DataReport
    source_file: Path
    classes: list[str] | None = field(default=None, kw_only=True)

    def __len__(self) -> int:
        return self.molecules.height

    @property
    def views(self) -> dict[str, FeatureView]:
        """The feature views the rows were built from, by entity."""
        return {"molecule": self.view}

    def label_cells(self) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, task columns)`` of every label, in ``labels`` order: its cell in a ``(molecules, tasks)`` matrix."""
        task_index = {task: i for i, task in enumerate(self.tasks)}
        cols = np.array([task_index[t] for t in self.labels.get_column("task").to_list()], dtype=np.int64)
        return self.labels.get_column("row").to_numpy(), cols

    def target_matrix(self) -> np.ndarray:
        """``(molecules, tasks)`` float64 targets, NaN where a molecule has no label for a task."""
        matrix = np.full((len(self), len(self.tasks)), np.nan)
        matrix[self.label_cells()] = self.labels.get_column("target").to_numpy()
        return matrix

    def wide_table(self) -> pl.DataFrame:
        """``row, inchikey, smiles`` + one column per task (null = no label): the table a peer tool trains on.

        Multiclass labels are written as their class names."""
        targets = pl.DataFrame(self.target_matrix(), schema=self.tasks, orient="row").fill_nan(None)
        if self.classes is not None:
            targets = targets.with_columns(
                class_names(task, self.classes) for task in self.tasks
            )
        return pl.concat([self.molecules, targets], how="horizontal")


def _long_labels(table: pl.DataFrame, spec: DataSpec) -> pl.DataFrame:
    """``input_row, input_smiles, task, target`` (+ ``split``, ``cliff_mol``), null targets kept."""
    extras = [pl.col(spec.split_column).cast(pl.String).alias("split")] if spec.split_column else []
    if spec.cliff_column:
        extras.append(pl.col(spec.cliff_column).cast(pl.Int8).alias("cliff_mol"))
    base = table.with_row_index("input_row").with_columns(pl.col(spec.smiles_column).cast(pl.String).alias("input_smiles"))
    label_type = pl.String if spec.task_type == "multiclass" else pl.Float64  # class names stay text until indexed
    if spec.task_columns:
        task = pl.concat_str([pl.col(c).cast(pl.String) for c in spec.task_columns], separator="_").alias("task")
        return base.select("input_row", "input_smiles", task, pl.col(spec.label_columns[0]).cast(label_type).alias("target"), *extras)
    return base.select(
        "input_row", "input_smiles", *extras, *[pl.col(c).cast(label_type) for c in spec.label_columns]
    ).unpivot(index=["input_row", "input_smiles", *[e.meta.output_name() for e in extras]],
              on=spec.label_columns, variable_name="task", value_name="target")


def select_task(tasks: list[str], wanted: str) -> str:
    """The task named ``wanted``, or the only task starting with ``wanted + '_'``."""
    if wanted in tasks:
        return wanted
    matches = [t for t in tasks if t.startswith(f"{wanted}_")]
    if len(matches) != 1:
        raise KeyError(f"target {wanted!r} matches {matches or 'no task'}; tasks: {sorted(tasks)}")
    return matches[0]


def _report_examples(frame: pl.DataFrame, columns: list[str]) -> list[dict]:
    return frame.select(columns).head(EXAMPLES_SHOWN).to_dicts()


def _average_duplicates(labels: pl.DataFrame, spec: DataSpec, report: DataReport,
                        keys: tuple[str, ...] = ("inchikey", "task")) -> pl.DataFrame:
    """One label per ``keys`` (molecule, task): the mean of its measurements (majority vote for classes).

    Binary labels: the mean rounded (a tie counts as 1). Multiclass labels (class indices):
    the most frequent class, a tie going to the lowest index (the class first in order)."""
    extras = []
    if "split" in labels.columns:
        extras.append(pl.col("split").unique().alias("split"))
    if "cliff_mol" in labels.columns:
        extras.append(pl.col("cliff_mol").max())
    multiclass = spec.task_type == "multiclass"
    vote = ([pl.col("target").mode().min(), pl.col("target").n_unique().alias("distinct")] if multiclass
            else [pl.col("target").mean()])
    grouped = labels.group_by(*keys, maintain_order=True).agg(
        *vote, pl.len().alias("measurements"), pl.col("input_row").min(), pl.col("smiles").first(),
        *extras,
    )
    if "split" in grouped.columns:
        conflicting = grouped.filter(pl.col("split").list.len() > 1)
        if conflicting.height:
            raise ValueError(
                f"data {spec.name!r}: {conflicting.height} molecule/task pairs have measurements in several given "
                f"splits, so they cannot be averaged; e.g. {_report_examples(conflicting, [*keys, 'split'])}"
            )
        grouped = grouped.with_columns(pl.col("split").list.first())
    if spec.task_type == "classification":
        grouped = grouped.with_columns((pl.col("target") >= 0.5).cast(pl.Float64))
    duplicated = grouped.filter(pl.col("measurements") > 1)
    report.duplicate_groups = duplicated.height
    report.duplicate_labels = int(duplicated.get_column("measurements").sum() or 0)
    if duplicated.height:
        how = "mean" if spec.task_type == "regression" else "majority vote"
        log.info(
            "%s: %d labels share %d molecule/task pairs (same InChIKey after standardization); "
            "each pair keeps the %s of its measurements", spec.name, report.duplicate_labels, duplicated.height, how,
        )
    if multiclass:
        report.conflicting_groups = grouped.filter(pl.col("distinct") > 1).height
        if report.conflicting_groups:
            log.info("%s: %d molecule/task pairs have disagreeing class labels (majority vote, ties to the first class)",
                     spec.name, report.conflicting_groups)
        grouped = grouped.drop("distinct")
    return grouped


def _key_labels(labels: pl.DataFrame, spec: DataSpec, store: FeatureStore, standardizer: Standardizer,
                report: DataReport) -> pl.DataFrame:
    """Add ``inchikey`` and canonical ``smiles`` to the labels; rows whose SMILES fail are reported and dropped."""
    inputs = labels.select("input_row", "input_smiles").unique("input_row", maintain_order=True)
    keyed = store.standardize(inputs.get_column("input_smiles").to_list(), standardizer).table
    keyed = pl.concat([inputs, keyed.select("inchikey", "smiles", "error")], how="horizontal")
    failed = keyed.filter(pl.col("inchikey").is_null())
    report.failed_smiles = failed.height
    report.failed_smiles_examples = _report_examples(failed, ["input_row", "input_smiles", "error"])
    if failed.height:
        log.warning(
            "%s: %d of %d input rows have SMILES that could not be standardized and are excluded; first: %s",
            spec.name, failed.height, inputs.height, report.failed_smiles_examples,
        )
    return labels.join(keyed.filter(pl.col("inchikey").is_not_null()).select("input_row", "inchikey", "smiles"), on="input_row")


def _fetch_features(molecules: pl.DataFrame, view: FeatureView, store: FeatureStore, spec: DataSpec,
                    report: DataReport) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``view`` rows for the entities (rows keyed by ``view.key_column``); failed ones are reported and dropped."""
    features = store.get(molecules.get_column(view.key_column).to_list(), view)
    broken = features.filter(pl.col("error").is_not_null())
    report.failed_features += broken.height
    report.failed_features_examples += _report_examples(broken, [view.key_column, "error"])
    if broken.height:
        log.warning("%s: %d %s entities have no %s features and are excluded; first: %s",
                    spec.name, broken.height, view.entity, view.id, report.failed_features_examples)
    keep = features.get_column("error").is_null()
    return molecules.filter(keep), features.filter(keep)


def build_dataset(
    spec: DataSpec, view: FeatureView, store: FeatureStore, standardizer: Standardizer = Standardizer()
) -> MoleculeDataset:
    """Read the source, key its SMILES, average duplicates and fetch ``view`` for every molecule."""
    table, source_file = load_source(spec.source or spec.name, {"path": spec.path})
    table = derive_columns(table, spec.derived_columns, str(source_file))
    required = [spec.smiles_column, *spec.label_columns, *spec.task_columns, spec.split_column, spec.cliff_column]
    require_columns(table, [c for c in required if c], str(source_file))
    if spec.max_rows is not None:
        table = table.head(spec.max_rows)
    labels = _long_labels(table, spec)
    if spec.target is not None:
        labels = labels.filter(pl.col("task") == select_task(labels.get_column("task").unique().to_list(), spec.target))
    if spec.task_type == "multiclass" and labels.get_column("task").n_unique() > 1:
        tasks = sorted(labels.get_column("task").unique().to_list())
        raise ValueError(f"data {spec.name!r}: multiclass supports exactly one task, got {len(tasks)} "
                         f"(e.g. {tasks[:5]}); pick one with target=")
    report = DataReport(input_rows=labels.get_column("input_row").n_unique())
    if spec.task_type == "multiclass":
        present = pl.col("target").str.strip_chars().str.len_chars() > 0  # null and blank names are missing labels
    else:
        present = pl.col("target").is_not_null() & pl.col("target").is_not_nan()
    report.missing_labels = labels.height - labels.filter(present).height
    if report.missing_labels:
        log.info("%s: %d input labels are missing (null or empty) and are left out", spec.name, report.missing_labels)
    labels = labels.filter(present)
    if spec.task_type == "classification":
        bad = labels.filter(~pl.col("target").is_in([0.0, 1.0]))
        if bad.height:
            raise ValueError(f"data {spec.name!r}: classification labels must be 0/1; "
                             f"e.g. {_report_examples(bad, ['input_row', 'task', 'target'])}")
    labels = _key_labels(labels, spec, store, standardizer, report)
    classes = None
    if spec.task_type == "multiclass":
        labels = labels.with_columns(pl.col("target").str.strip_chars())
        classes = class_order(labels.get_column("target").to_list())
        labels = labels.with_columns(
            pl.col("target").replace_strict(classes, list(range(len(classes))), return_dtype=pl.Float64)
        )
    labels = _average_duplicates(labels, spec, report)

    molecules = (
        labels.group_by("inchikey").agg(pl.col("input_row").min(), pl.col("smiles").first()).sort("input_row").drop("input_row")
    )
    molecules, features = _fetch_features(molecules, view, store, spec, report)
    molecules = molecules.with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
    labels = labels.join(molecules.select("inchikey", "row"), on="inchikey").sort("row", "task")
    labels = labels.select("row", "task", "target", "measurements", *[c for c in ("split", "cliff_mol") if c in labels.columns])
    tasks = sorted(labels.get_column("task").unique().to_list())
    if not tasks:
        raise ValueError(f"data {spec.name!r}: no usable labels left (report: {report.to_dict()})")
    if classes is not None:
        labels, classes = _check_classes(labels, classes, spec)
    report.labels, report.molecules, report.tasks = labels.height, molecules.height, len(tasks)
    log.info("%s: %d molecules, %d labels over %d task(s) from %d input rows",
             spec.name, molecules.height, labels.height, len(tasks), report.input_rows)
    return MoleculeDataset(spec.name, spec.task_type, tasks, molecules, labels, features, view, report, source_file,
                           classes=classes)


def _check_classes(labels: pl.DataFrame, classes: list[str], spec: DataSpec) -> tuple[pl.DataFrame, list[str]]:
    """At least two classes, each with a label (classes only the dropped molecules had are removed)."""
    used = sorted(int(i) for i in labels.get_column("target").unique().to_list())
    if len(used) < len(classes):
        gone = [classes[i] for i in range(len(classes)) if i not in used]
        log.warning("%s: classes %s have no usable molecule left and are dropped", spec.name, gone)
        labels = labels.with_columns(
            pl.col("target").cast(pl.Int64).replace_strict(used, list(range(len(used))), return_dtype=pl.Float64)
        )
        classes = [classes[i] for i in used]
    if len(classes) < 2:
        raise ValueError(f"data {spec.name!r}: multiclass needs at least two classes, got {classes}")
    if len(classes) == 2:
        log.warning("%s: two classes %s: binary data is better served by task_type=classification with 0/1 labels",
                    spec.name, classes)
    counts = labels.get_column("target").cast(pl.Int64).value_counts().sort("target")
    log.info("%s: %d classes, labels per class: %s", spec.name, len(classes),
             dict(zip([classes[i] for i in counts.get_column("target")], counts.get_column("count").to_list())))
    return labels, classes
