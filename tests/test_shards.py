"""Sharded, idempotent featurization: slices, done-markers, and 4 shards through submitit_local == 1 process."""

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from featurestore import FeatureStore, FeatureView
from featurestore.shards import ShardMarkers, shard_slice

REPO = Path(__file__).resolve().parents[1]
SMILES = ["CCO", "c1ccccc1", "CC(=O)Oc1ccccc1C(=O)O", "bad((", "CCN", "CCCC", "CC(C)O", "c1ccncc1", "CCO",
          "OC(=O)CC(O)(CC(=O)O)C(=O)O", "C1CCCCC1", "CCOC(=O)C"]


@pytest.mark.parametrize("n_rows,num_shards", [(10, 4), (3, 5), (0, 2), (7, 1)])
def test_shard_slices_partition_the_rows_in_order(n_rows, num_shards):
    slices = [shard_slice(n_rows, shard, num_shards) for shard in range(num_shards)]
    rows = [row for offset, length in slices for row in range(offset, offset + length)]
    assert rows == list(range(n_rows))
    assert max(length for _, length in slices) - min(length for _, length in slices) <= 1


def test_shard_index_out_of_range_is_refused():
    with pytest.raises(ValueError, match=r"shard must be in \[0, 3\], got 4"):
        shard_slice(10, 4, 4)


def test_reduce_names_the_shards_that_have_not_finished(tmp_path):
    markers = ShardMarkers.for_job(tmp_path, "featurize", {"a": 1}, 4)
    markers.mark_done(0, {"summary": []})
    markers.mark_done(2, {"summary": []})
    assert ShardMarkers.for_job(tmp_path, "featurize", {"a": 2}, 4).missing() == [0, 1, 2, 3]  # other settings
    with pytest.raises(RuntimeError, match="2 of 4 shards have not finished .* missing shard 1, 3"):
        markers.require_all_done()


def _build(*overrides: str, multirun: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "featurestore.build", *(["-m"] if multirun else []), "store.n_jobs=1",
               "store.progress=false", "featurizer=[ecfp]", *overrides]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_four_shards_through_submitit_local_equal_one_process(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    path = tmp_path / "mols.csv"
    pl.DataFrame({"smiles": SMILES}).write_csv(path)
    data = ["dataset=file", f"dataset.file.path={path}", "dataset.file.molecules.views=[ecfp]"]
    _build(*data, f"store.root={tmp_path / 'single'}", f"hydra.run.dir={tmp_path / 'single_run'}")
    sharded = [*data, "num_shards=4", f"store.root={tmp_path / 'sharded'}"]
    _build(*sharded, "shard=0,1,2,3", "hydra/launcher=submitit_local", f"hydra.sweep.dir={tmp_path / 'sweep'}",
           multirun=True)
    again = _build(*sharded, "shard=2", f"hydra.run.dir={tmp_path / 'again'}")
    assert "shard 2 of 4 already done" in again.stdout
    _build(*sharded, "reduce=true", f"hydra.run.dir={tmp_path / 'reduce'}")

    view = FeatureView("ecfp")
    single = FeatureStore(tmp_path / "single").read_view(view).sort("inchikey")
    merged_store = FeatureStore(tmp_path / "sharded")
    merged = merged_store.read_view(view).sort("inchikey")
    assert merged.height == single.height == 10  # 12 rows: one duplicate, one unparseable
    assert merged.equals(single.select(merged.columns))
    assert merged_store.views().filter(pl.col("view_id") == view.id)["parts"].item() == 1  # compacted
    summary = pl.read_parquet(tmp_path / "reduce" / "summary.parquet")
    assert summary.filter(pl.col("entity") == "smiles")["inputs"].item() == len(SMILES)
    errors = pl.read_parquet(tmp_path / "reduce" / "errors.parquet")
    assert errors.select("row", "input_smiles").rows() == [(3, "bad((")]  # the row in the whole file
