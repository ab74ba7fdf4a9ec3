"""Training sets from the feature store and their splits (``discovery.data``, ``discovery.splits``)."""

import logging

import numpy as np
import polars as pl
import pytest

from featurestore import FeatureView
from discovery.data import DataSpec, build_dataset, select_task
from discovery.splits import FOLDS, GivenSplit, RandomSplit, ScaffoldSplit

GRAPH = FeatureView("graph")


def _dataset(store, tmp_path, table: pl.DataFrame, **spec):
    path = tmp_path / "data.csv"
    table.write_csv(path)
    defaults = {"name": "file", "path": str(path), "label_columns": ["y"]}
    return build_dataset(DataSpec(**{**defaults, **spec}), GRAPH, store)


def test_bad_smiles_are_reported_and_duplicates_averaged(store, tmp_path, caplog):
    table = pl.DataFrame({
        "smiles": ["CCO", "bad((", "c1ccccc1", "", "OCC", "CC(=O)O", "CCN"],
        "y": [1.0, 2.0, 3.0, 4.0, 2.0, None, 5.0],
    })
    with caplog.at_level(logging.WARNING, logger="discovery.data"):
        data = _dataset(store, tmp_path, table)
    report = data.report
    assert (report.input_rows, report.missing_labels, report.failed_smiles) == (7, 1, 2)
    assert report.failed_smiles_examples == [
        {"input_row": 1, "input_smiles": "bad((", "error": "SMILES syntax error in 'bad(('"},
        {"input_row": 3, "input_smiles": "", "error": "empty SMILES"},
    ]
    assert "2 of 6 input rows have SMILES that could not be standardized" in caplog.text
    # "CCO" and "OCC" are one molecule: one row, the mean of 1.0 and 2.0.
    assert data.molecules.get_column("smiles").to_list() == ["CCO", "c1ccccc1", "CCN"]
    assert data.target_matrix()[:, 0].tolist() == [1.5, 3.0, 5.0]
    assert (report.duplicate_groups, report.duplicate_labels, report.molecules) == (1, 2, 3)
    assert len(data.features) == 3


def test_classification_labels_must_be_binary(store, tmp_path):
    with pytest.raises(ValueError, match="classification labels must be 0/1"):
        _dataset(store, tmp_path, pl.DataFrame({"smiles": ["CCO", "CCN"], "y": [0.0, 0.7]}), task_type="classification")


def test_long_tables_give_tasks_and_target_selects_one():
    tasks = ["CHEMBL237_EC50", "CHEMBL237_Ki", "CHEMBL204_Ki"]
    assert select_task(tasks, "CHEMBL204") == "CHEMBL204_Ki"
    assert select_task(tasks, "CHEMBL237_Ki") == "CHEMBL237_Ki"
    with pytest.raises(KeyError, match="CHEMBL237_EC50"):
        select_task(tasks, "CHEMBL237")


def test_random_split_sizes_and_seed(store, tmp_path):
    smiles = ["C" * n for n in range(1, 21)]
    data = _dataset(store, tmp_path, pl.DataFrame({"smiles": smiles, "y": np.arange(20.0)}))
    split = RandomSplit((0.8, 0.1, 0.1), seed=0).assign(data, store)
    rows = {fold: split.rows(fold) for fold in FOLDS}
    assert [len(rows[f]) for f in FOLDS] == [16, 2, 2]
    assert sorted(np.concatenate(list(rows.values())).tolist()) == list(range(20))
    again = RandomSplit((0.8, 0.1, 0.1), seed=0).assign(data, store)
    other = RandomSplit((0.8, 0.1, 0.1), seed=1).assign(data, store)
    assert np.array_equal(again.assignment, split.assignment)
    assert not np.array_equal(other.assignment, split.assignment)
    assert "per_task" not in split.to_json(data.tasks)


def test_scaffold_split_packs_whole_scaffolds_largest_first(store, tmp_path):
    smiles = [
        "c1ccccc1C", "c1ccccc1O", "c1ccccc1N", "c1ccccc1CC",  # benzene scaffold (4)
        "C1CCCCC1O", "C1CCCCC1N",                             # cyclohexane (2)
        "c1ccncc1C",                                          # pyridine (1)
        "CCCCO",                                              # acyclic: empty scaffold (1)
    ]
    data = _dataset(store, tmp_path, pl.DataFrame({"smiles": smiles, "y": np.arange(8.0)}))
    split = ScaffoldSplit((0.5, 0.25, 0.25)).assign(data, store)
    assert split.rows("train").tolist() == [0, 1, 2, 3]
    assert split.rows("val").tolist() == [4, 5]
    assert split.rows("test").tolist() == [6, 7]


def test_scaffold_split_never_divides_a_scaffold_on_esol(store):
    data = build_dataset(DataSpec(name="esol", source="esol", label_columns=["log_solubility"], max_rows=150), GRAPH, store)
    splitter = ScaffoldSplit((0.8, 0.1, 0.1))
    split = splitter.assign(data, store)
    folds = pl.DataFrame({"scaffold": splitter.scaffolds(data, store), "fold": split.assignment[:, 0]})
    assert folds.group_by("scaffold").agg(pl.col("fold").n_unique()).get_column("fold").max() == 1
    assert folds.get_column("fold").n_unique() == 3
    assert len(split.rows("train")) <= int(0.8 * len(data))


def test_given_split_keeps_test_and_carves_validation_from_train(store, tmp_path):
    table = pl.DataFrame({
        "smiles": ["CCO", "CCN", "CCC", "CCCC", "CCCCC", "CCCCCC", "CCO", "CCCl", "CCBr", "CCCCO", "CCCN", "CCCO"],
        "target_id": ["A"] * 6 + ["B"] * 6,
        "kind": ["Ki"] * 12,
        "y": np.arange(12.0),
        "split": ["train", "train", "train", "train", "train", "test", "test", "train", "train", "train", "train", "test"],
    })
    data = _dataset(store, tmp_path, table, task_columns=["target_id", "kind"], split_column="split")
    assert data.tasks == ["A_Ki", "B_Ki"]
    split = GivenSplit(val_fraction=0.2, seed=0).assign(data, store)
    targets = data.target_matrix()
    labelled = ~np.isnan(targets)
    test_values = sorted(targets[split.label_mask("test", labelled)].tolist())
    assert test_values == [5.0, 6.0, 11.0]
    assert split.label_mask("val", labelled).sum() == 2  # round(20% of the 9 molecules with training labels)
    in_train = split.label_mask("train", labelled).any(1)
    assert not (in_train & split.label_mask("val", labelled).any(1)).any()
    # CCO is a training molecule of A and a test molecule of B: per-task index lists are written.
    saved = split.to_json(data.tasks)
    assert saved["per_task"]["B_Ki"]["test"] == [0, 10] and saved["per_task"]["A_Ki"]["test"] == [5]
    assert saved["folds"]["test"] == [0, 5, 10]


def test_a_data_spec_needs_a_source_or_a_file():
    with pytest.raises(ValueError, match=r"give a shipped dataset \(source\) or a file \(path\)"):
        DataSpec(name="file", label_columns=["y"])
