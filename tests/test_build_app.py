"""The feature-store build app: function API and the Hydra command line."""

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from featurestore import FeatureStore, FeatureView
from featurestore.build import build_feature_store

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def smiles_csv(tmp_path) -> Path:
    path = tmp_path / "candidates.csv"
    pl.DataFrame({"SMILES": ["CCO", "bad((", "CC(=O)[O-].[Na+]", "", "CCO"], "id": range(5)}).write_csv(path)
    return path


def test_build_reports_keys_views_and_bad_rows(tmp_path, smiles_csv):
    store = FeatureStore(tmp_path / "store", n_jobs=1, progress=False)
    views = {"ecfp": FeatureView("ecfp"), "graph": FeatureView("graph")}
    datasets = {"mine": {"path": str(smiles_csv), "molecules": {"column": "SMILES", "views": ["ecfp", "graph", "maccs"]}}}
    summary, errors, files = build_feature_store(store, datasets, views)
    assert summary["view"].to_list()[1:] == [views["ecfp"].id, views["graph"].id]  # maccs not selected: skipped
    first = summary.row(0, named=True)
    assert (first["entity"], first["inputs"], first["keys"], first["errors"]) == ("smiles", 5, 4, 2)
    assert summary["keys"].to_list()[1:] == [2, 2]
    assert errors.select("row", "error").rows() == [(1, "SMILES syntax error in 'bad(('"), (3, "empty SMILES")]
    assert files == [smiles_csv]
    again, _, _ = build_feature_store(store, datasets, views)
    assert again["computed"].sum() == 0 and again["reused"].to_list() == [4, 2, 2]


def test_missing_column_and_empty_file_fail_fast(tmp_path, smiles_csv):
    store = FeatureStore(tmp_path / "store", n_jobs=1, progress=False)
    views = {"ecfp": FeatureView("ecfp")}
    with pytest.raises(KeyError, match=r"candidates.csv: missing column\(s\) \['smiles'\]"):
        build_feature_store(store, {"x": {"path": str(smiles_csv), "molecules": {"column": "smiles", "views": []}}}, views)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match="input file is empty: .*empty.csv"):
        build_feature_store(store, {"x": {"path": str(empty), "molecules": {"column": "smiles", "views": []}}}, views)
    header_only = tmp_path / "header.csv"
    header_only.write_text("smiles\n")
    with pytest.raises(ValueError, match="input file has no rows: .*header.csv"):
        build_feature_store(store, {"x": {"path": str(header_only), "molecules": {"column": "smiles", "views": []}}}, views)


def test_hydra_command_writes_summary_errors_and_run_record(tmp_path, smiles_csv):
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "featurestore.build", "dataset=[file]", f"dataset.file.path={smiles_csv}",
         "dataset.file.molecules.column=SMILES", "featurizer=[ecfp]", f"store.root={tmp_path / 'store'}",
         "store.progress=false", f"hydra.run.dir={out}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "2 error rows" in result.stdout
    assert pl.read_parquet(out / "summary.parquet").height == 2
    assert pl.read_parquet(out / "errors.parquet").height == 2
    record = (out / "run.json").read_text()
    assert str(smiles_csv) in record and '"sha256"' in record and '"rdkit"' in record
