"""SMILES / protein token featurizers and the 1-D CNN SMILES model (``model=smiles_cnn``)."""

from pathlib import Path

import polars as pl
import pytest
import torch
from hydra import compose, initialize_config_dir
from torch_geometric.data import Batch

from featurestore import FeatureStore, FeatureView
from featurestore.featurizers.tokens import (
    PAD_ID,
    UNK_ID,
    ProteinTokenFeaturizer,
    SmilesTokenFeaturizer,
    tokenize_smiles,
)
from discovery.checkpoint import load_predictor
from discovery.inputs import input_dims, model_inputs
from discovery.models.cnn import TokenCNNEncoder, pad_tokens
from discovery.train import run_training
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # one torch thread per test process

REPO = Path(__file__).resolve().parents[1]


def test_smiles_tokenizer_keeps_two_letter_atoms_bracket_atoms_and_ring_closures_whole():
    assert tokenize_smiles("Clc1ccccc1Br") == ["Cl", "c", "1", "c", "c", "c", "c", "c", "1", "Br"]
    assert tokenize_smiles("C[C@@H](N)c1cc[nH]c1%10") == ["C", "[C@@H]", "(", "N", ")", "c", "1", "c", "c", "[nH]",
                                                          "c", "1", "%10"]
    with pytest.raises(ValueError, match=r"SMILES 'CC&O': no token matches the text at position 2"):
        tokenize_smiles("CC&O")


def test_smiles_token_ids_round_trip_and_unknown_tokens_map_to_unk():
    featurizer = SmilesTokenFeaturizer()
    ids = featurizer("Clc1ccccc1Br")
    assert featurizer.decode(ids) == tokenize_smiles("Clc1ccccc1Br")
    assert ids.tolist() == [featurizer.ids[t] for t in tokenize_smiles("Clc1ccccc1Br")]
    xenon = featurizer("C[Xe]C")
    assert xenon.tolist() == [featurizer.ids["C"], UNK_ID, featurizer.ids["C"]]
    assert min(featurizer.ids.values()) == 2 and PAD_ID not in ids  # 0 and 1 are reserved
    assert featurizer.n_ids == len(featurizer.params["vocabulary"]) + 2


def test_vocabulary_is_a_view_parameter_so_another_vocabulary_is_another_view():
    default = FeatureView("smiles_tokens")
    assert default.resolved_params["vocabulary"][:4] == ["c", "C", "(", ")"]
    assert FeatureView("smiles_tokens", {"vocabulary": ["C", "c"]}).id != default.id
    with pytest.raises(ValueError, match="repeats tokens"):
        SmilesTokenFeaturizer(vocabulary=["C", "C"])


def test_store_tokenizes_the_standardized_canonical_smiles(store):
    # The sodium salt standardizes to acetic acid (largest fragment, neutralized): no '.', '[Na+]' or '[O-]' tokens.
    rows = store.featurize_smiles(["OCC", "CC(=O)[O-].[Na+]", "not-a-smiles"], FeatureView("smiles_tokens"))
    decode = SmilesTokenFeaturizer().decode
    assert decode(rows.get_column("smiles_tokens")[0]) == ["C", "C", "O"]
    assert decode(rows.get_column("smiles_tokens")[1]) == ["C", "C", "(", "=", "O", ")", "O"]
    assert rows.get_column("smiles_tokens")[2] is None and rows.get_column("error")[2].startswith("SMILES syntax error")


def test_protein_tokens_cut_at_max_length_and_unknown_residues_are_unk():
    featurizer = ProteinTokenFeaturizer(max_length=4)
    assert featurizer.decode(featurizer("mkvJaa")) == ["M", "K", "V", "<unk>"]
    assert len(ProteinTokenFeaturizer()("A" * 1500)) == 1000
    with pytest.raises(ValueError, match="empty input"):
        featurizer("  ")


def test_pad_tokens_pads_right_to_the_longest_or_the_minimum():
    padded = pad_tokens(torch.tensor([5, 6, 7, 8, 9]), torch.tensor([3, 2]), min_length=4)
    assert padded.tolist() == [[5, 6, 7, PAD_ID], [8, 9, PAD_ID, PAD_ID]]


def test_cnn_output_of_a_sequence_does_not_depend_on_its_batch():
    torch.manual_seed(0)
    encoder = TokenCNNEncoder(vocab_size=10, embed_dim=4, filters=[3, 5], kernel_sizes=[3, 2]).eval()
    short, long = torch.tensor([2, 3, 4, 5]), torch.tensor([2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 2])
    alone = encoder(short, torch.tensor([4]))
    together = encoder(torch.cat([short, long, short]), torch.tensor([4, 11, 4]))
    assert together.shape == (3, 5)
    assert torch.allclose(together[0], alone[0], atol=1e-6) and torch.equal(together[0], together[2])
    # A sequence shorter than the receptive field (4) still gives an output.
    assert torch.isfinite(encoder(torch.tensor([2]), torch.tensor([1]))).all()


def test_smiles_cnn_batches_from_the_token_view(store):
    keys = store.standardize(["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"]).keys
    view = FeatureView("smiles_tokens")
    examples = model_inputs("smiles_tokens", store.get(keys, view))
    # Canonical SMILES: CCO, Oc1ccccc1, CC(=O)Nc1ccc(O)cc1.
    assert [int(e.smiles_tokens_length) for e in examples] == [3, 9, 18]
    dims = input_dims("smiles_tokens", examples, {"molecule": view})
    assert dims == {"vocab_size": SmilesTokenFeaturizer().n_ids}
    with pytest.raises(ValueError, match="needs the smiles_tokens view"):
        model_inputs("smiles_tokens", store.get(keys, FeatureView("ecfp", {"n_bits": 64})))
    batch = Batch.from_data_list(examples)
    assert batch.smiles_tokens.shape == (30,) and batch.smiles_tokens_length.tolist() == [3, 9, 18]


def test_smiles_cnn_trains_through_the_app_and_its_checkpoint_reproduces_the_predictions(tmp_path):
    overrides = ["model=smiles_cnn", "data.max_rows=60", "trainer=fast", "trainer.max_epochs=2", "trainer.num_threads=1",
                 "store.progress=false", "store.n_jobs=1", f"store.root={tmp_path / 'store'}", "model.hparams.embed_dim=16"]
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    metrics = run_training(cfg, tmp_path / "run")
    assert metrics["labels_per_fold"] == {"train": 48, "val": 6, "test": 6}
    assert len(pl.read_csv(tmp_path / "run" / "metrics_log.csv")) == 2
    assert metrics["test"]["n"] == 6 and 0.0 <= metrics["test"]["ci"] <= 1.0
    predictor = load_predictor(tmp_path / "run")
    assert predictor.view.featurizer == "smiles_tokens" and predictor.members[0].hparams["vocab_size"] == 82
    # The test fold, predicted as one batch again: identical numbers (other batchings agree to float rounding).
    saved = pl.read_parquet(tmp_path / "run" / "predictions.parquet").filter(pl.col("split") == "test")
    again = predictor.predict(saved.get_column("smiles").to_list(), FeatureStore(tmp_path / "store", n_jobs=1, progress=False))
    assert again.get_column("prediction").to_list() == saved.get_column("prediction").to_list()
