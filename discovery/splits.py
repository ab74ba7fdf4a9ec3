"""Train/validation/test splits as per-label fold assignments, saved as index lists.

A :class:`Split` assigns every (molecule, task) label to a fold. Random and scaffold
splits assign whole molecules; the MoleculeACE split follows the given per-target split,
so in the 30-target multitask set a molecule can be a training molecule of one target and
a test molecule of another (its test label is never trained on). ``splits.json`` holds the
row indices of each fold (rows of ``data.parquet``) so another tool can reuse them.

Bemis–Murcko scaffolds are a feature view (``murcko_scaffold``), computed once with RDKit
and stored like any other feature, so splitting never calls RDKit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from featurestore import FeatureStore, FeatureView

from discovery.data import MoleculeDataset
from discovery.features import MurckoScaffoldFeaturizer

FOLDS = ("train", "val", "test")
UNASSIGNED = -1


@dataclass
class Split:
    """``assignment[row, task]``: index into :data:`FOLDS`, or ``UNASSIGNED`` (no label)."""

    assignment: np.ndarray
    strategy: str
    params: dict[str, Any]

    def label_mask(self, fold: str, labelled: np.ndarray) -> np.ndarray:
        """``(rows, tasks)`` bool: the labels of ``fold`` (``labelled`` masks missing labels)."""
        return (self.assignment == FOLDS.index(fold)) & labelled

    def rows(self, fold: str) -> np.ndarray:
        """Rows with at least one label in ``fold`` (ascending)."""
        return np.flatnonzero((self.assignment == FOLDS.index(fold)).any(axis=1))

    def to_json(self, tasks: Sequence[str]) -> dict[str, Any]:
        """Index lists per fold; per task as well when folds differ between tasks."""
        out: dict[str, Any] = {"strategy": self.strategy, "params": self.params,
                               "folds": {fold: self.rows(fold).tolist() for fold in FOLDS}}
        folds_per_row = sum((self.assignment == i).any(axis=1).astype(int) for i in range(len(FOLDS)))
        if (folds_per_row > 1).any():
            out["per_task"] = {
                task: {fold: np.flatnonzero(self.assignment[:, t] == FOLDS.index(fold)).tolist() for fold in FOLDS}
                for t, task in enumerate(tasks)
            }
        return out


def _molecule_split(folds: np.ndarray, labelled: np.ndarray, strategy: str, params: dict[str, Any]) -> Split:
    """Broadcast one fold per molecule (``folds``: ``(rows,)``) over its labelled tasks."""
    assignment = np.where(labelled, folds[:, None], UNASSIGNED).astype(np.int8)
    return Split(assignment, strategy, params)


def _fold_sizes(n: int, fractions: Sequence[float]) -> tuple[int, int]:
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {list(fractions)}")
    n_train = int(fractions[0] * n)
    return n_train, int((fractions[0] + fractions[1]) * n) - n_train


@dataclass
class RandomSplit:
    """Molecules shuffled with ``seed``; the first ``fractions[0]`` train, the next ``fractions[1]`` validation."""

    fractions: Sequence[float] = (0.8, 0.1, 0.1)
    seed: int = 0

    def assign(self, dataset: MoleculeDataset, store: FeatureStore) -> Split:
        n = len(dataset)
        n_train, n_val = _fold_sizes(n, self.fractions)
        order = np.random.default_rng(self.seed).permutation(n)
        folds = np.empty(n, dtype=np.int8)
        folds[order[:n_train]], folds[order[n_train:n_train + n_val]], folds[order[n_train + n_val:]] = 0, 1, 2
        params = {"fractions": list(self.fractions), "seed": self.seed}
        return _molecule_split(folds, ~np.isnan(dataset.target_matrix()), "random", params)


@dataclass
class ScaffoldSplit:
    """Bemis–Murcko scaffold groups packed largest first into train, then validation, then test.

    A group goes to train if it fits the train size, else to validation if it fits, else to
    test (chemprop's unbalanced scaffold split). Deterministic: ties keep data order, and
    there is no seed. All molecules of one scaffold land in one fold.
    """

    fractions: Sequence[float] = (0.8, 0.1, 0.1)
    chirality: bool = False

    def scaffolds(self, dataset: MoleculeDataset, store: FeatureStore) -> list[str]:
        """The scaffold SMILES of every row (from the store's ``murcko_scaffold`` view)."""
        view = FeatureView(MurckoScaffoldFeaturizer.name, {"chirality": self.chirality})
        frame = store.get(dataset.molecules.get_column("inchikey").to_list(), view)
        failed = frame.filter(pl.col("error").is_not_null())
        if failed.height:
            raise ValueError(f"no scaffold for {failed.height} molecules, e.g. {failed.head(3).rows()}")
        return frame.get_column("scaffold").to_list()

    def assign(self, dataset: MoleculeDataset, store: FeatureStore) -> Split:
        n = len(dataset)
        n_train, n_val = _fold_sizes(n, self.fractions)
        groups: dict[str, list[int]] = {}
        for row, scaffold in enumerate(self.scaffolds(dataset, store)):
            groups.setdefault(scaffold, []).append(row)
        # sorted() is stable, so equal-size groups keep first-appearance order.
        ordered = sorted(groups.values(), key=len, reverse=True)
        folds = np.empty(n, dtype=np.int8)
        filled = [0, 0, 0]
        for members in ordered:
            if filled[0] + len(members) <= n_train:
                fold = 0
            elif filled[1] + len(members) <= n_val:
                fold = 1
            else:
                fold = 2
            folds[members] = fold
            filled[fold] += len(members)
        params = {"fractions": list(self.fractions), "chirality": self.chirality, "scaffolds": len(groups)}
        return _molecule_split(folds, ~np.isnan(dataset.target_matrix()), "scaffold", params)


@dataclass
class GivenSplit:
    """The dataset's own train/test labels (MoleculeACE); validation = a seeded random share of training molecules.

    Validation is carved per molecule: every training label of a chosen molecule moves to
    validation, so a molecule never has labels in both train and validation. Data that
    gives its own validation labels (``val``, as KIBA does) keeps them and nothing is carved.
    """

    val_fraction: float = 0.1
    seed: int = 0

    def assign(self, dataset: MoleculeDataset, store: FeatureStore) -> Split:
        if "split" not in dataset.labels.columns:
            raise ValueError(f"data {dataset.name!r} has no given split column; use split=random or split=scaffold")
        labels = dataset.labels
        given = set(labels.get_column("split").unique().to_list())
        if given - set(FOLDS):
            raise ValueError(f"data {dataset.name!r}: given split values must be train/val/test, "
                             f"found {sorted(given - set(FOLDS))}")
        assignment = np.full((len(dataset), len(dataset.tasks)), UNASSIGNED, dtype=np.int8)
        assignment[dataset.label_cells()] = [FOLDS.index(fold) for fold in labels.get_column("split").to_list()]
        if "val" in given:
            return Split(assignment, "given", {"val_fraction": None, "seed": self.seed})
        train_rows = np.flatnonzero((assignment == 0).any(axis=1))
        rng = np.random.default_rng(self.seed)
        val_rows = rng.choice(train_rows, size=int(round(self.val_fraction * len(train_rows))), replace=False)
        assignment[val_rows] = np.where(assignment[val_rows] == 0, 1, assignment[val_rows])
        return Split(assignment, "given", {"val_fraction": self.val_fraction, "seed": self.seed})


@dataclass
class ColdSplit:
    """Rows grouped by ``column`` of ``dataset.molecules``, no group in two folds (cold drug / cold target).

    ``column='inchikey'``: no test ligand is seen in training; ``'protein_id'``: no test protein.
    Groups are shuffled with ``seed`` and dealt whole into train while train holds fewer than
    ``fractions[0]`` of the rows, then into validation, then test (fold sizes are approximate).
    """

    column: str
    fractions: Sequence[float] = (0.8, 0.1, 0.1)
    seed: int = 0

    def assign(self, dataset: MoleculeDataset, store: FeatureStore) -> Split:
        if self.column not in dataset.molecules.columns:
            raise ValueError(f"data {dataset.name!r} has no {self.column!r} to group rows by; "
                             f"columns: {dataset.molecules.columns}")
        n_train, n_val = _fold_sizes(len(dataset), self.fractions)
        groups, members, sizes = np.unique(dataset.molecules.get_column(self.column).to_numpy(), return_inverse=True,
                                           return_counts=True)
        order = np.random.default_rng(self.seed).permutation(len(groups))
        dealt_before = np.cumsum(sizes[order]) - sizes[order]
        group_folds = np.empty(len(groups), dtype=np.int8)
        group_folds[order] = np.where(dealt_before < n_train, 0, np.where(dealt_before < n_train + n_val, 1, 2))
        params = {"column": self.column, "fractions": list(self.fractions), "seed": self.seed, "groups": len(groups)}
        return _molecule_split(group_folds[members], ~np.isnan(dataset.target_matrix()), "cold", params)
