"""Drug–target affinity: pair datasets, given / cold splits, concordance index, graphdta and ecfp_kmer_rf."""

import itertools
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hydra import compose, initialize_config_dir

from featurestore import FeatureView
from discovery.checkpoint import load_predictor
from discovery.data import DataSpec
from discovery.dta import PairSpec, build_pair_dataset, build_training_set, pair_features
from discovery.metrics import concordance_index
from discovery.splits import ColdSplit, GivenSplit
from discovery.train import run_training
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # one torch thread per test process

REPO = Path(__file__).resolve().parents[1]
PAIRS = REPO / "tests" / "data" / "dta_pairs.csv"  # 4 ligands x 4 short made-up sequences; P3 val, P4 test
SPEC = PairSpec(name="pairs", path=str(PAIRS), label_column="affinity", protein_id_column="prot_id",
                sequence_column="aa_sequence", split_column="split")
TOKENS = FeatureView("protein_tokens", {"max_length": 1000})


def _brute_force_ci(target, prediction):
    concordant, pairs = 0.0, 0
    for i, j in itertools.permutations(range(len(target)), 2):
        if target[i] > target[j]:
            pairs += 1
            concordant += 1.0 if prediction[i] > prediction[j] else 0.5 if prediction[i] == prediction[j] else 0.0
    return concordant / pairs


def test_concordance_index_on_a_hand_computed_case():
    # Ordered pairs (y_i > y_j): (2,1) .4>.1 1; (3,1) .3>.1 1; (4,1) .4>.1 1; (3,2) .3<.4 0; (4,2) .4=.4 1/2; (4,3) 1.
    assert concordance_index(np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.1, 0.4, 0.3, 0.4])) == pytest.approx(4.5 / 6)
    # Tied targets are not a pair: only (2 vs first 1): 0 and (2 vs second 1): 1 count.
    assert concordance_index(np.array([1.0, 1.0, 2.0]), np.array([0.5, 0.2, 0.3])) == pytest.approx(0.5)
    assert concordance_index(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])) == 0.0
    assert concordance_index(np.array([1.0, 2.0, 3.0]), np.array([7.0, 7.0, 7.0])) == 0.5
    assert concordance_index(np.array([2.0, 2.0]), np.array([1.0, 3.0])) is None


def test_concordance_index_matches_the_quadratic_definition_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(5):
        target, prediction = rng.integers(0, 6, 60).astype(float), rng.integers(0, 8, 60).astype(float)
        assert concordance_index(target, prediction) == pytest.approx(_brute_force_ci(target, prediction), abs=1e-12)


def test_pair_dataset_rows_are_pairs_with_both_views_side_by_side(store):
    data = build_pair_dataset(SPEC, FeatureView("graph"), TOKENS, store)
    assert len(data) == 16 and data.molecules.columns == ["row", "inchikey", "smiles", "protein_id"]
    assert data.report.to_dict()["proteins"] == 4 and data.report.molecules == 4
    assert {"atom_features", "protein_tokens"} <= set(data.features.columns) and data.features.height == 16
    # Row 3 is (CCO, P4): its features are ethanol's graph and P4's tokens.
    assert data.molecules.row(3, named=True)["protein_id"] == "P4"
    assert data.features.row(3, named=True)["num_atoms"] == 3
    assert data.features.get_column("protein_tokens").list.len().to_list()[:4] == [24, 29, 30, 37]
    assert data.views == {"molecule": FeatureView("graph"), "protein": TOKENS}
    assert data.wide_table().columns == ["row", "inchikey", "smiles", "protein_id", "affinity"]


def test_bad_rows_are_reported_and_the_good_pairs_kept(store, tmp_path):
    table = pl.read_csv(PAIRS).with_columns(pl.col("smiles").cast(pl.String))
    bad = pl.DataFrame({"smiles": ["C1CC", "CCN"], "prot_id": ["P1", "P9"], "aa_sequence": [table.item(0, "aa_sequence"), None],
                        "affinity": [11.0, 12.0], "split": ["train", "train"]})
    path = tmp_path / "pairs.csv"
    pl.concat([table, bad]).write_csv(path)
    data = build_pair_dataset(PairSpec(**{**SPEC.__dict__, "path": str(path)}), FeatureView("graph"), TOKENS, store)
    report = data.report.to_dict()
    assert len(data) == 16
    assert report["failed_smiles"] == 1 and report["failed_smiles_examples"][0]["input_row"] == 16
    assert report["missing_proteins"] == 1 and report["missing_proteins_examples"][0]["protein_id"] == "P9"


def test_a_protein_id_with_two_sequences_is_an_error(store, tmp_path):
    table = pl.read_csv(PAIRS)
    path = tmp_path / "pairs.csv"
    table.with_columns(pl.when(pl.col("smiles") == "CCO").then(pl.lit("MKV")).otherwise(pl.col("aa_sequence"))
                       .alias("aa_sequence")).write_csv(path)
    with pytest.raises(ValueError, match=r"protein ids with several sequences: \['P1', 'P2', 'P3', 'P4'\]"):
        build_pair_dataset(PairSpec(**{**SPEC.__dict__, "path": str(path)}), FeatureView("graph"), TOKENS, store)


def test_given_split_keeps_the_data_s_train_val_test(store):
    data = build_pair_dataset(SPEC, FeatureView("graph"), TOKENS, store)
    split = GivenSplit(seed=0).assign(data, store)
    by_fold = {fold: sorted(set(data.molecules[split.rows(fold)].get_column("protein_id"))) for fold in ("train", "val", "test")}
    assert by_fold == {"train": ["P1", "P2"], "val": ["P3"], "test": ["P4"]}


@pytest.mark.parametrize("column", ["inchikey", "protein_id"])
def test_cold_splits_never_put_a_ligand_or_protein_in_two_folds(store, column):
    data = build_pair_dataset(SPEC, FeatureView("graph"), TOKENS, store)
    split = ColdSplit(column, fractions=(0.5, 0.25, 0.25), seed=1).assign(data, store)
    groups = [set(data.molecules[split.rows(fold)].get_column(column)) for fold in ("train", "val", "test")]
    assert [len(g) for g in groups] == [2, 1, 1]  # 4 groups of 4 pairs each: 8 / 4 / 4 pairs
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert ColdSplit(column, (0.5, 0.25, 0.25), seed=1).assign(data, store).assignment.tolist() == split.assignment.tolist()
    with pytest.raises(ValueError, match="has no 'protein_id'"):
        ColdSplit("protein_id").assign(type(data)(**{**data.__dict__, "molecules": data.molecules.drop("protein_id")}), store)


def test_pair_data_needs_a_pair_model_and_back(store):
    with pytest.raises(ValueError, match="holds drug–target pairs: use a pair model"):
        build_training_set(SPEC, FeatureView("graph"), None, store)
    esol = DataSpec(name="esol", source="esol", label_columns=["log_solubility"])
    with pytest.raises(ValueError, match="holds molecules only"):
        build_training_set(esol, FeatureView("graph"), TOKENS, store)


def _train(tmp_path: Path, *overrides: str) -> dict:
    args = ["data=kiba_sample", "data.source=null", f"data.path={PAIRS}", "split=given", "trainer=fast",
            "trainer.max_epochs=2", "trainer.num_threads=1", "store.progress=false", "store.n_jobs=1",
            f"store.root={tmp_path / 'store'}", *overrides]
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=args)
    return run_training(cfg, tmp_path / "run")


def test_graphdta_trains_on_pairs_and_its_checkpoint_reproduces_the_predictions(tmp_path):
    metrics = _train(tmp_path, "model=graphdta", "model.hparams.hidden=16", "model.hparams.protein_embed_dim=8",
                     "model.hparams.ffn_hidden=16", "model.hparams.protein_filters=[4,4,4]")
    assert metrics["labels_per_fold"] == {"train": 8, "val": 4, "test": 4}
    assert set(metrics["test"]) >= {"mse", "ci", "rmse"} and metrics["test"]["n"] == 4
    saved = pl.read_parquet(tmp_path / "run" / "predictions.parquet").filter(pl.col("split") == "test")
    assert saved.get_column("protein_id").to_list() == ["P4"] * 4
    predictor = load_predictor(tmp_path / "run")
    assert predictor.protein_view == TOKENS and predictor.members[0].hparams["protein_vocab_size"] == 27
    from featurestore import FeatureStore

    store = FeatureStore(tmp_path / "store", n_jobs=1, progress=False)
    features = pair_features(saved.select("inchikey", "protein_id"), predictor.view, predictor.protein_view, store)
    assert features.get_column("error").null_count() == 4
    mean, _ = predictor.predict_features(features)
    assert mean[:, 0].tolist() == saved.get_column("prediction").to_list()
    with pytest.raises(ValueError, match="predicts drug–target pairs"):
        predictor.predict(["CCO"], store)


def test_ecfp_kmer_rf_reads_fingerprint_bits_then_kmer_composition(tmp_path):
    metrics = _train(tmp_path, "model=ecfp_kmer_rf", "model.hparams.n_estimators=5")
    assert metrics["test"]["n"] == 4 and metrics["training"][0]["tasks"] == [{"trees": 5}]
    predictor = load_predictor(tmp_path / "run")
    assert predictor.members[0].in_dim == 2048 + 20 + 400
    assert predictor.protein_view.featurizer == "protein_kmer"
