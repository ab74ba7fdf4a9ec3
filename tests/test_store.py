import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from featurestore import FeatureStore, FeatureView, Standardizer
from tests.counting_featurizer import UppercaseCount
from tests.molecules import ASPIRIN, ASPIRIN_KEY, CAFFEINE, CAFFEINE_KEY

COUNTER = FeatureView("test_uppercase_count")


def test_standardize_keys_rows_and_reports_errors(store):
    keyed = store.standardize([ASPIRIN, "CC(=O)[O-].[Na+]", "nonsense(", "", CAFFEINE, ASPIRIN])
    table = keyed.table
    assert table["row"].to_list() == [0, 1, 2, 3, 4, 5]
    assert table["inchikey"].to_list()[:2] == [ASPIRIN_KEY, "QTBSBXVTEAMEQO-UHFFFAOYSA-N"]
    assert keyed.keys == [ASPIRIN_KEY, "QTBSBXVTEAMEQO-UHFFFAOYSA-N", CAFFEINE_KEY]
    assert keyed.errors["row"].to_list() == [2, 3]
    assert keyed.errors["error"].to_list() == ["SMILES syntax error in 'nonsense('", "empty SMILES"]
    molecules = store.read_entities("molecule")
    assert sorted(molecules["inchikey"]) == sorted(keyed.keys)
    assert set(molecules.columns) == {"inchikey", "smiles", "rdkit_version"}


def test_round_trip_returns_features_in_request_order(store):
    keys = store.standardize([CAFFEINE, ASPIRIN]).keys
    view = FeatureView("ecfp")
    first = store.get([ASPIRIN_KEY, CAFFEINE_KEY, ASPIRIN_KEY], view)
    assert first["inchikey"].to_list() == [ASPIRIN_KEY, CAFFEINE_KEY, ASPIRIN_KEY]
    assert first["fp"][0].to_list() == first["fp"][2].to_list()
    reread = FeatureStore(store.root, n_jobs=1, progress=False).get(keys, view)
    assert np.array_equal(reread["fp"].to_numpy(), first[[1, 0]]["fp"].to_numpy())
    assert store.read_view(view).height == 2
    manifest = json.loads((store.view_dir(view) / "manifest.json").read_text())
    assert manifest["rows"] == 2 and manifest["spec"]["params"]["n_bits"] == 2048


def test_only_missing_keys_are_computed(store):
    smiles = ["CCO", "CCN", "CCC", "c1ccccc1", "CC(=O)O"]
    keys = store.standardize(smiles).keys
    UppercaseCount.calls = 0
    _, stats = store.get_with_stats(keys[:3], COUNTER)
    assert UppercaseCount.calls == 3 and (stats.reused, stats.computed) == (0, 3)
    _, stats = store.get_with_stats(keys, COUNTER)
    assert UppercaseCount.calls == 5 and (stats.reused, stats.computed) == (3, 2)
    frame, stats = store.get_with_stats(list(reversed(keys)), COUNTER)
    assert UppercaseCount.calls == 5 and stats.computed == 0
    assert frame["n_upper"].to_list() == [4, 0, 3, 3, 3]  # uppercase letters in CC(=O)O, c1ccccc1, CCC, CCN, CCO
    assert len(list(store.view_dir(COUNTER).glob("part-*.parquet"))) == 2


def test_standardization_is_cached_as_a_view(store):
    store.standardize([ASPIRIN, "bad"])
    _, stats = store.get_with_stats([ASPIRIN, "bad"], FeatureView("standardize", {}))
    assert stats.computed == 0 and stats.errors == 1
    assert store.standardize([ASPIRIN, "bad"]).stats.computed == 0
    # another standardizer configuration is another view: computed again, same key for aspirin
    other = store.standardize([ASPIRIN], Standardizer(neutralize=False))
    assert other.stats.computed == 1 and other.keys == [ASPIRIN_KEY]


def test_unknown_keys_are_error_rows_not_stored(store):
    frame = store.get(["NOT-A-REGISTERED-KEY"], FeatureView("ecfp"))
    assert frame["error"].to_list() == ["key not registered for entity 'molecule'"]
    assert store.read_view(FeatureView("ecfp")).height == 0


def test_featurize_smiles_keeps_every_input_row(store):
    frame = store.featurize_smiles(["CCO", "C1CC", "OCC"], FeatureView("graph"))
    assert frame["row"].to_list() == [0, 1, 2]
    assert frame["inchikey"][0] == frame["inchikey"][2] == "LFQSCWFLJHTTHZ-UHFFFAOYSA-N"
    assert frame["num_atoms"].to_list() == [3, None, 3]
    assert frame["error"].to_list() == [None, "SMILES syntax error in 'C1CC'", None]


def test_other_entities_use_the_same_api(store):
    proteins = pl.DataFrame({"protein_id": ["P1", "P2"], "sequence": ["MKVA", "GGGG"]})
    assert store.register_entities("protein", proteins) == 2
    assert store.register_entities("protein", proteins) == 0
    frame = store.get(["P2", "P1"], FeatureView("protein_kmer", {"ks": [1]}))
    assert frame["protein_id"].to_list() == ["P2", "P1"]
    assert frame["kmer"][0].to_list()[5] == pytest.approx(1.0)  # G is the 6th amino acid
    with pytest.raises(KeyError, match="need a 'protein_id' column"):
        store.register_entities("protein", pl.DataFrame({"id": ["P3"]}))


def test_parallel_materialization_matches_serial(tmp_path):
    smiles = [f"C{'C' * (i % 17)}O{'N' * (i % 3)}" for i in range(300)] + ["bad(("]
    serial = FeatureStore(tmp_path / "a", n_jobs=1, progress=False)
    parallel = FeatureStore(tmp_path / "b", n_jobs=2, progress=False, min_parallel=10, chunk_size=40)
    a = serial.featurize_smiles(smiles, FeatureView("ecfp"))
    b = parallel.featurize_smiles(smiles, FeatureView("ecfp"))
    assert a.equals(b)
    assert a["error"].null_count() == len(smiles) - 1


def test_compact_merges_parts(store):
    keys = store.standardize(["CCO", "CCN", "CCC"]).keys
    for k in keys:
        store.get([k], FeatureView("ecfp"))
    assert store.views().filter(pl.col("featurizer") == "ecfp")["parts"].item() == 3
    assert store.compact(FeatureView("ecfp")) == 3
    assert store.views().filter(pl.col("featurizer") == "ecfp")["parts"].item() == 1
    assert store.get(keys, FeatureView("ecfp"))["error"].null_count() == 3


WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from featurestore import FeatureStore, FeatureView
    root, go, ready = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    smiles = [f"C{'C' * (i % 23)}{'O' * (i % 4)}{'N' * (i % 5)}" for i in range(400)]
    store = FeatureStore(root, n_jobs=1, progress=False)
    ready.touch()
    while not go.exists():
        time.sleep(0.001)
    frame = store.featurize_smiles(smiles, FeatureView("graph"))
    print(frame["error"].null_count())
    """
)


def test_two_processes_materializing_the_same_view(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    root, go = tmp_path / "store", tmp_path / "go"
    readies = [tmp_path / f"ready{i}" for i in range(2)]
    procs = [
        subprocess.Popen([sys.executable, str(script), str(root), str(go), str(r)], stdout=subprocess.PIPE, text=True,
                         cwd=Path(__file__).resolve().parents[1])
        for r in readies
    ]
    deadline = time.time() + 60
    while not all(r.exists() for r in readies) and time.time() < deadline:
        time.sleep(0.01)
    go.touch()
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    store = FeatureStore(root, progress=False)
    for view, key in [(FeatureView("graph"), "inchikey"), (FeatureView("standardize"), "input_smiles")]:
        rows = store.read_view(view)
        assert rows[key].n_unique() == rows.height, f"duplicate keys in {view}"
    molecules = store.read_entities("molecule")
    assert molecules["inchikey"].n_unique() == molecules.height
    assert store.read_view(FeatureView("graph")).height == molecules.height
    assert outputs[0] == outputs[1] == "400"
