"""Tests of the committed real datasets (data/*.parquet) and their loader/builder."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import featurestore.datasets as ds
from featurestore.datasets.build import PlainDataUnpickler, build_datasets, load_plain_pickle

COMMITTED = Path(ds.__file__).resolve().parents[2] / "data"
COMMITTED_NAMES = [name for name, info in ds.DATASETS.items() if not info.on_demand]


def load(name: str) -> pl.DataFrame:
    return ds.load_dataset(name, data_dir=COMMITTED)


@pytest.mark.parametrize(
    ("name", "rows"),
    [
        ("esol", 1_128),
        ("freesolv", 642),
        ("lipophilicity", 4_200),
        ("moleculeace", 48_714),
        ("kiba_sample", 5_000),
        ("drugs", 2_845),
        ("moses_sample", 100_000),
    ],
)
def test_row_counts(name: str, rows: int) -> None:
    assert load(name).height == rows


@pytest.mark.parametrize("name", COMMITTED_NAMES)
def test_columns_and_dtypes_match_registry(name: str) -> None:
    info = ds.DATASETS[name]
    df = load(name)
    assert df.columns == list(info.columns)
    for column, description in info.columns.items():
        assert str(df.schema[column]) == description.split(",", 1)[0], column
    if info.smiles_column:
        assert df[info.smiles_column].null_count() == 0
        keys = df["inchikey"].drop_nulls()
        assert keys.str.contains(r"^[A-Z]{14}-[A-Z]{10}-[A-Z]$").all()


@pytest.mark.parametrize("name", COMMITTED_NAMES)
def test_datasheet_matches_parquet(name: str) -> None:
    path = ds.dataset_path(name, COMMITTED)
    sheet = path.with_suffix(".md").read_text(encoding="utf-8")
    assert hashlib.sha256(path.read_bytes()).hexdigest() in sheet
    assert f"python -m featurestore.datasets build {name}" in sheet
    assert f"| rows | {load(name).height:,} |" in sheet


def test_readme_lists_committed_datasets() -> None:
    readme = (COMMITTED / "README.md").read_text(encoding="utf-8")
    for name in COMMITTED_NAMES:
        assert f"[`{name}`]({name}.md)" in readme
    assert not list(COMMITTED.glob("*.tmp")) and not list(COMMITTED.glob(".*.tmp"))


def test_moleculeace_sets_and_units() -> None:
    df = load("moleculeace")
    sets = df.select("target_id", "activity_type").unique()
    assert sets.height == 30
    assert df["target_id"].n_unique() == 29  # CHEMBL237 has a Ki and an EC50 set
    assert set(df["activity_type"]) == {"Ki", "EC50"}
    assert (df["p_activity"] - (9 + df["y"])).abs().max() < 1e-12
    assert (df["y"] + df["exp_mean_nM"].log10()).abs().max() < 1e-9
    assert set(df["split"]) == {"train", "test"}
    assert set(df["cliff_mol"]) == {0, 1}
    sizes = df.group_by("target_id", "activity_type").len()["len"]
    assert (sizes.min(), sizes.max()) == (615, 3_657)


def test_kiba_splits_are_cold() -> None:
    df = load("kiba_sample")
    assert df["split"].value_counts().sort("split").rows() == [
        ("test", 1_000),
        ("train", 3_000),
        ("val", 1_000),
    ]
    for column in ("ligand_id", "prot_id"):
        per_entity = df.group_by(column).agg(pl.col("split").n_unique())
        assert per_entity["split"].max() == 1


def test_drugs_aspirin() -> None:
    df = load("drugs")
    aspirin = df.filter(pl.col("inchikey") == "BSYNRYMUTXBXSQ-UHFFFAOYSA-N")
    assert aspirin.height == 1
    row = aspirin.row(0, named=True)
    assert row["name"] in {"Acetylsalicylic acid", "Aspirin"}
    assert row["drug_id"] == row["drugbank_id"] == "DB00945"
    # The source carries level-4 ATC codes: B01AC (B01AC06) and N02BA (N02BA01).
    assert {"B01AC", "N02BA"} <= set(row["atc_codes"])
    assert "BLOOD AND BLOOD FORMING ORGANS" in row["atc_level1_names"]
    assert row["first_approval"] == 1950
    assert "aspirin" in row["synonyms"]
    assert row["mesh_ids"] == ["D058633"]


def test_drugs_ids_and_lists() -> None:
    df = load("drugs")
    assert df["drug_id"].is_unique().all()
    assert df["drug_id"].str.contains(r"^DB\d{5}$").all()
    accessions = df["drugbank_ids"].explode()
    assert accessions.is_unique().all()
    assert (df["drugbank_ids"].list.first() == df["drug_id"]).all()
    assert df["atc_codes"].explode().drop_nulls().str.len_chars().eq(5).all()
    assert df.filter(pl.col("atc_codes").list.len() > 0).height == 2_163
    years = df["first_approval"].drop_nulls()
    assert 1900 < years.min() and years.max() <= 2025


def test_esol_known_value() -> None:
    row = load("esol").filter(pl.col("name") == "Amigdalin").row(0, named=True)
    assert row["log_solubility"] == pytest.approx(-0.77)
    assert row["smiles"] == "OCC3OC(OCC2OC(OC(C#N)c1ccccc1)C(O)C(O)C2O)C(O)C(O)C3O"


def test_moses_sample_indices() -> None:
    df = load("moses_sample")
    assert df.height == 100_000
    assert df["moses_index"].is_unique().all()
    assert df["moses_index"].min() >= 0 and df["moses_index"].max() < 1_584_663
    assert df["moses_index"].is_sorted()


def test_registry_api() -> None:
    assert ds.list_datasets() == list(ds.DATASETS)
    assert "moses_full" in ds.DATASETS and ds.DATASETS["moses_full"].on_demand
    assert ds.dataset_path("esol", "/x") == Path("/x/esol.parquet")


def test_data_dir_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DRUGPLATFORM_DATA_DIR", str(tmp_path))
    assert ds.data_dir() == tmp_path
    assert ds.dataset_path("drugs") == tmp_path / "drugs.parquet"
    monkeypatch.delenv("DRUGPLATFORM_DATA_DIR")
    assert ds.data_dir() == COMMITTED


def test_unknown_dataset_message() -> None:
    with pytest.raises(KeyError, match="unknown dataset 'nope'; known datasets: esol, freesolv"):
        ds.load_dataset("nope")


def test_missing_file_message(tmp_path: Path) -> None:
    expected = (
        re.escape(f"{tmp_path / 'esol.parquet'} not found")
        + ".*"
        + re.escape("python -m featurestore.datasets build esol")
    )
    with pytest.raises(FileNotFoundError, match=expected):
        ds.load_dataset("esol", data_dir=tmp_path)


def test_plain_data_unpickler() -> None:
    data = {"a": [1, 2.5, "x", True], "b": {"c": None}, "s": {1, 2}, "f": frozenset({3})}
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        assert load_plain_pickle(pickle.dumps(data, protocol=protocol)) == data
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        load_plain_pickle(pickle.dumps(os.getcwd))
    with pytest.raises(pickle.UnpicklingError):
        PlainDataUnpickler(io.BytesIO(pickle.dumps(Path("x")))).load()


@pytest.mark.slow
def test_rebuild_esol_matches_committed(tmp_path: Path) -> None:
    (path,) = build_datasets(["esol"], data_dir=tmp_path)
    assert path == tmp_path / "esol.parquet"
    assert (tmp_path / "esol.md").is_file() and (tmp_path / "README.md").is_file()
    assert_frame_equal(ds.load_dataset("esol", data_dir=tmp_path), load("esol"))
