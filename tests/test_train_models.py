"""Models, losses and the training loop of ``discovery.train`` (no Hydra, tiny inputs)."""

import math

import numpy as np
import pytest
import torch
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.svm import SVR
from torch_geometric.data import Batch

from featurestore import FeatureView
from discovery.checkpoint import TargetScaler
from discovery.inputs import input_dims, model_inputs
from discovery.models import MODELS, build_model
from discovery.models.classical import FingerprintRandomForest, FingerprintSVR
from discovery.models.dmpnn import DMPNN, DirectedMessagePassing, reverse_edge_index
from discovery.models.layers import graph_pooling
from discovery.trainer import TrainerConfig, fit, labelled_examples, lr_schedule, masked_loss, predict_outputs


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _inputs(store, smiles, kind="graph"):
    view = FeatureView("graph") if kind == "graph" else FeatureView("ecfp", {"n_bits": 64})
    keys = store.standardize(smiles).table.get_column("inchikey").to_list()
    return model_inputs(kind, store.get(keys, view))


# Ethanol C0-C1-O2, with bonds given in a shuffled order: e0 1->2, e1 0->1, e2 2->1, e3 1->0.
ETHANOL_EDGES = torch.tensor([[1, 0, 2, 1], [2, 1, 1, 0]])


def test_reverse_edges_are_found_whatever_the_edge_order():
    assert reverse_edge_index(ETHANOL_EDGES, 3).tolist() == [2, 3, 0, 1]
    assert reverse_edge_index(torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]), 3).tolist() == [1, 0, 3, 2]
    with pytest.raises(ValueError, match="undirected"):
        reverse_edge_index(torch.tensor([[0, 1], [1, 2]]), 3)


def test_bond_messages_leave_out_the_reverse_bond():
    layer = DirectedMessagePassing(atom_dim=1, bond_dim=1, hidden=4, depth=2, dropout=0.0)
    states = torch.eye(4)  # bond state k = unit vector k, so each message shows which bonds it summed
    messages = layer.bond_messages(states, ETHANOL_EDGES, reverse_edge_index(ETHANOL_EDGES, 3), num_nodes=3)
    # m[v->w] = sum of bonds arriving at v, minus w->v:
    # e0 1->2: arriving at 1 are e1 (0->1) and e2 (2->1); minus e2 -> e1.
    # e1 0->1: arriving at 0 is e3 (1->0), which is its reverse -> nothing.
    # e2 2->1: arriving at 2 is e0 (1->2), its reverse -> nothing.
    # e3 1->0: arriving at 1 are e1, e2; minus e1 -> e2.
    expected = torch.tensor([[0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]], dtype=torch.float32)
    assert torch.equal(messages, expected)


def test_dmpnn_shapes_on_a_batch_with_an_isolated_atom(store):
    graphs = _inputs(store, ["CCO", "c1ccccc1", "C"])
    batch = Batch.from_data_list(graphs)
    model = DMPNN(n_tasks=2, hidden=16, depth=3).eval()
    atoms = model.encoder(batch.x, batch.edge_index, batch.edge_attr)
    assert atoms.shape == (3 + 6 + 1, 16)
    assert batch.edge_index.shape == (2, 2 * (2 + 6 + 0))
    assert model(batch).shape == (3, 2)



def test_norm_readout_is_the_atom_sum_over_100_and_the_dmpnn_default():
    states = torch.arange(10, dtype=torch.float32).reshape(5, 2)
    batch = torch.tensor([0, 0, 0, 1, 1])
    pooled = graph_pooling("norm")(states, batch, size=2)
    assert torch.allclose(pooled, torch.tensor([[0.06, 0.09], [0.14, 0.16]]))
    assert DMPNN(n_tasks=1).hparams["pooling"] == "norm"  # chemprop 2's --aggregation default
    with pytest.raises(ValueError, match="unknown pooling 'median'"):
        graph_pooling("median")

@pytest.mark.parametrize("name", ["gin", "dmpnn", "attentivefp", "ecfp_mlp"])
def test_neural_models_rebuild_from_their_recorded_hyperparameters(store, name):
    kind = MODELS[name].input_kind
    examples = _inputs(store, ["CCO", "c1ccccc1O", "CC(=O)N"], kind)
    hparams = {"n_tasks": 3, **input_dims(kind, examples), "hidden": 8, "depth": 2}
    torch.manual_seed(0)
    model = build_model(name, hparams).eval()
    rebuilt = build_model(name, model.hparams).eval()
    rebuilt.load_state_dict(model.state_dict())
    batch = Batch.from_data_list(examples)
    assert model(batch).shape == (3, 3)
    assert torch.equal(model(batch), rebuilt(batch))


def test_graph_models_concatenate_molecule_features_to_the_readout(store):
    view = FeatureView("graph", {"fingerprint": {"radius": 2, "n_bits": 32, "counts": True}})
    keys = store.standardize(["CCO", "c1ccccc1O", "CC(=O)N"]).table.get_column("inchikey").to_list()
    examples = model_inputs("graph", store.get(keys, view))
    dims = input_dims("graph", examples)
    assert dims["extra_dim"] == 32 and "extra_dim" not in input_dims("graph", _inputs(store, ["CCO"]))
    torch.manual_seed(0)
    model = build_model("dmpnn", {"n_tasks": 1, **dims, "hidden": 8, "depth": 2}).eval()
    assert model.head[1].in_features == 8 + 32
    batch = Batch.from_data_list(examples)
    before = model(batch)
    batch.mol_features = batch.mol_features + 1.0  # the readout reads the features
    assert not torch.equal(before, model(batch))
    batch.mol_features = -1e30 * torch.ones_like(batch.mol_features)  # descriptors: any sign and magnitude
    assert torch.isfinite(model(batch)).all()
    with pytest.raises(ValueError, match="attentivefp reads graphs only"):
        build_model("attentivefp", {"n_tasks": 1, **dims})


def test_masked_loss_ignores_missing_labels():
    outputs = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    targets = torch.tensor([[0.0, float("nan")], [3.0, 2.0]])
    mask = torch.tensor([[True, False], [True, True]])
    loss = masked_loss(outputs, targets, mask, "regression")
    assert loss.item() == pytest.approx((1.0 + 0.0 + 4.0) / 3)
    loss.backward()
    assert outputs.grad[0, 1] == 0.0
    # BCE on logit 0 is ln 2 whatever the label; the masked entries (logit 5, label 0) would add far more.
    bce = masked_loss(torch.tensor([[0.0, 5.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([[True, False]]), "classification")
    assert bce.item() == pytest.approx(math.log(2))


def test_lr_schedule_warms_up_then_decays_to_the_final_rate():
    config = TrainerConfig(max_epochs=10, init_lr=1e-4, max_lr=1e-3, final_lr=1e-5, warmup_epochs=2)
    factor = lr_schedule(config, steps_per_epoch=5)
    assert factor(0) * config.max_lr == pytest.approx(1e-4)
    assert factor(5) * config.max_lr == pytest.approx(5.5e-4)
    assert factor(10) == pytest.approx(1.0)
    assert factor(50) * config.max_lr == pytest.approx(1e-5)


def test_target_scaler_uses_training_labels_only():
    targets = np.array([[1.0, 10.0], [3.0, np.nan], [100.0, 30.0]])
    mask = np.array([[True, True], [True, False], [False, True]])
    scaler = TargetScaler.fit(targets, mask)
    assert scaler.mean == [2.0, 20.0] and scaler.std == [1.0, 10.0]
    assert np.allclose(scaler.inverse(scaler.transform(targets[:1])), targets[:1])


def test_early_stopping_restores_the_best_validation_weights(store):
    # Random labels: the MLP can only memorize, so validation loss soon rises and training stops.
    examples = _inputs(store, ["CCO", "CCN", "CCC", "c1ccccc1", "CC(=O)O", "CCOC", "CN", "OCCO", "CCCl", "C1CC1"], "fingerprint")
    rng = np.random.default_rng(0)
    targets, mask = rng.normal(size=(10, 1)), np.ones((10, 1), dtype=bool)
    train = labelled_examples(examples, np.arange(6), targets, mask)
    val = labelled_examples(examples, np.arange(6, 10), targets, mask)
    torch.manual_seed(0)
    model = build_model("ecfp_mlp", {"n_tasks": 1, "in_dim": 64, "hidden": 64, "depth": 2, "dropout": 0.0})
    config = TrainerConfig(max_epochs=200, batch_size=3, init_lr=1e-2, max_lr=1e-2, final_lr=1e-2, patience=3, device="cpu")
    result = fit(model, train, val, config, "regression", seed=0)
    assert len(result.history) == result.best_epoch + 1 + config.patience < config.max_epochs
    restored = float(np.mean((predict_outputs(model, val, batch_size=10, device="cpu") - targets[6:]) ** 2))
    assert restored == pytest.approx(result.best_val_loss, rel=1e-6)
    assert restored < result.history[-1]["val_loss"]


def test_without_validation_every_epoch_runs_and_the_last_is_kept(store):
    examples = _inputs(store, ["CCO", "CCN", "CCC", "c1ccccc1", "CC(=O)O", "CCOC"], "fingerprint")
    targets, mask = np.random.default_rng(0).normal(size=(6, 1)), np.ones((6, 1), dtype=bool)
    train = labelled_examples(examples, np.arange(6), targets, mask)
    torch.manual_seed(0)
    model = build_model("ecfp_mlp", {"n_tasks": 1, "in_dim": 64, "hidden": 64, "depth": 2, "dropout": 0.0})
    with pytest.raises(ValueError, match="early stopping needs validation examples.*trainer.patience=null"):
        fit(model, train, [], TrainerConfig(max_epochs=4, patience=3, device="cpu"), "regression", seed=0)
    config = TrainerConfig(max_epochs=4, batch_size=3, patience=None, device="cpu")
    result = fit(model, train, [], config, "regression", seed=0)
    assert [record["epoch"] for record in result.history] == [0, 1, 2, 3] and result.best_epoch == 3
    assert all(np.isnan(record["val_loss"]) for record in result.history)
    # the kept weights are the last epoch's: one more epoch of training changes the predictions
    last = predict_outputs(model, train, batch_size=6, device="cpu")
    fit(model, train, [], TrainerConfig(max_epochs=1, batch_size=3, patience=None, device="cpu"), "regression", seed=1)
    assert not np.allclose(last, predict_outputs(model, train, batch_size=6, device="cpu"))


def _bits(rows, width, seed):
    return np.random.default_rng(seed).integers(0, 2, size=(rows, width)).astype(np.uint8)


def test_svr_stored_as_arrays_predicts_like_scikit_learn():
    x, x_val = _bits(60, 32, 0), _bits(20, 32, 1)
    y = x[:, :4].sum(1) + 0.1 * np.random.default_rng(2).normal(size=60)
    y_val = x_val[:, :4].sum(1)
    model = FingerprintSVR(n_tasks=1, in_dim=32, c_grid=[0.1, 10.0])
    chosen = model.fit(x, y[:, None], np.ones((60, 1), bool), x_val, y_val[:, None], np.ones((20, 1), bool), seed=0)
    best_c = chosen["tasks"][0]["C"]
    assert chosen["tasks"][0]["val_rmse_by_C"][best_c] == min(chosen["tasks"][0]["val_rmse_by_C"].values())
    reference = SVR(C=best_c, epsilon=0.1, gamma=1.0 / (32 * x.astype(float).var())).fit(x, y)
    assert np.allclose(model.predict(x_val)[:, 0], reference.predict(x_val), atol=1e-9)
    reloaded = FingerprintSVR(**model.hparams)
    reloaded.load_state_dict(model.state_dict())
    assert np.array_equal(reloaded.predict(x_val), model.predict(x_val))


@pytest.mark.parametrize("task_type", ["regression", "classification"])
def test_random_forest_stored_as_node_arrays_predicts_like_scikit_learn(task_type):
    x, x_test = _bits(80, 16, 3), _bits(30, 16, 4)
    y = (x[:, 0] + x[:, 1] * x[:, 2]).astype(float)
    if task_type == "classification":
        y = (y > 0).astype(float)
    model = FingerprintRandomForest(n_tasks=1, in_dim=16, task_type=task_type, n_estimators=20, max_features=0.5)
    model.fit(x, y[:, None], np.ones((80, 1), bool), x_test, y[:30, None], np.ones((30, 1), bool), seed=7)
    forest_class = RandomForestClassifier if task_type == "classification" else RandomForestRegressor
    reference = forest_class(n_estimators=20, max_features=0.5, random_state=7).fit(x, y)
    expected = reference.predict_proba(x_test)[:, 1] if task_type == "classification" else reference.predict(x_test)
    assert np.allclose(model.predict(x_test)[:, 0], expected, atol=1e-12)
    reloaded = FingerprintRandomForest(**model.hparams)
    reloaded.load_state_dict(model.state_dict())
    assert np.array_equal(reloaded.predict(x_test), model.predict(x_test))


def test_svr_refuses_classification():
    with pytest.raises(ValueError, match="regression only"):
        FingerprintSVR(n_tasks=1, in_dim=8, task_type="classification")


def test_gin_trains_when_the_last_batch_would_be_a_lone_methane(store):
    # Three methanes, batches of two: the trailing batch holds one atom, which batch norm cannot train on.
    methane = _inputs(store, ["C", "C", "C"])
    targets, mask = np.zeros((3, 1)), np.ones((3, 1), dtype=bool)
    model = build_model("gin", {"n_tasks": 1, "hidden": 8, "depth": 1})
    config = TrainerConfig(max_epochs=2, batch_size=2, device="cpu")
    result = fit(model, labelled_examples(methane, np.arange(3), targets, mask),
                 labelled_examples(methane, np.arange(1), targets, mask), config, "regression", seed=0)
    assert len(result.history) == 2
