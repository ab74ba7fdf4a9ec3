"""Multiclass classification in ``discovery.train``: labels, duplicates, loss, metrics, training, reload, ranking."""

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from featurestore import FeatureStore, FeatureView
from featurestore.datasets import load_dataset
from discovery.checkpoint import Predictor, load_predictor
from discovery.data import DataSpec, build_dataset, class_order, derive_columns
from discovery.metrics import OBJECTIVES, majority_accuracy, multiclass_metrics
from discovery.models import build_model
from discovery.ranking.rank import RankingModel, score_molecules
from discovery.train import run_training
from discovery.trainer import masked_loss

REPO = Path(__file__).resolve().parents[1]
SMALL = ["trainer=fast", "trainer.num_threads=1", "store.progress=false"]
GRAPH = FeatureView("graph")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _dataset(store, tmp_path, table: pl.DataFrame, **spec):
    path = tmp_path / "data.csv"
    table.write_csv(path)
    defaults = {"name": "file", "path": str(path), "label_columns": ["y"], "task_type": "multiclass"}
    return build_dataset(DataSpec(**{**defaults, **spec}), GRAPH, store)


def test_labels_become_indices_into_the_sorted_classes(store, tmp_path):
    table = pl.DataFrame({"smiles": ["CCO", "CCN", "CCC", "CCCl", "bad((", "CCS"],
                          "y": ["ol", "amine", "alkane", "halide", "ol", None]})
    data = _dataset(store, tmp_path, table)
    assert data.classes == ["alkane", "amine", "halide", "ol"]
    assert data.tasks == ["y"]
    assert data.molecules.get_column("smiles").to_list() == ["CCO", "CCN", "CCC", "CCCl"]
    assert data.target_matrix()[:, 0].tolist() == [3.0, 1.0, 0.0, 2.0]
    assert (data.report.missing_labels, data.report.failed_smiles) == (1, 1)  # reported, not silently dropped
    assert data.wide_table().get_column("y").to_list() == ["ol", "amine", "alkane", "halide"]


def test_integer_classes_sort_numerically():
    assert class_order(["10", "2", "1", "2"]) == ["1", "2", "10"]
    assert class_order(["b", "10", "a"]) == ["10", "a", "b"]


def test_duplicates_keep_the_majority_class_and_ties_go_to_the_first_class(store, tmp_path):
    table = pl.DataFrame({
        # CCO = OCC = C(C)O: b, a, b -> b. CCN = NCC: c, a (tie) -> a. Benzene: c.
        "smiles": ["CCO", "OCC", "C(C)O", "CCN", "NCC", "c1ccccc1"],
        "y": ["b", "a", "b", "c", "a", "c"],
    })
    data = _dataset(store, tmp_path, table)
    assert data.classes == ["a", "b", "c"]
    assert data.molecules.get_column("smiles").to_list() == ["CCO", "CCN", "c1ccccc1"]
    assert data.target_matrix()[:, 0].tolist() == [1.0, 0.0, 2.0]
    assert (data.report.duplicate_groups, data.report.duplicate_labels, data.report.conflicting_groups) == (2, 5, 2)


def test_multiclass_takes_exactly_one_label_column(tmp_path):
    with pytest.raises(ValueError, match=r"data 'mine': multiclass supports exactly one task"):
        DataSpec(name="mine", path=str(tmp_path / "x.csv"), label_columns=["a", "b"], task_type="multiclass")


def test_one_class_is_not_enough(store, tmp_path):
    with pytest.raises(ValueError, match="at least two classes"):
        _dataset(store, tmp_path, pl.DataFrame({"smiles": ["CCO", "CCN"], "y": ["a", "a"]}))


def test_cross_entropy_loss_by_hand():
    outputs = torch.tensor([[0.0, 0.0, 0.0], [0.0, math.log(2.0), 0.0], [10.0, 0.0, 0.0]], requires_grad=True)
    targets = torch.tensor([[2.0], [1.0], [2.0]])
    mask = torch.tensor([[True], [True], [False]])
    loss = masked_loss(outputs, targets, mask, "multiclass")
    # Uniform logits: -log(1/3); [1, 2, 1] / 4 for class 1: -log(1/2); the masked row (loss ~10) is left out.
    assert loss.item() == pytest.approx((math.log(3.0) + math.log(2.0)) / 2)
    loss.backward()
    assert torch.all(outputs.grad[2] == 0.0)


def test_metrics_by_hand():
    target = np.array([0, 0, 1, 1, 2, 2])
    probabilities = np.array([
        [0.7, 0.2, 0.1],  # -> 0, right
        [0.3, 0.4, 0.3],  # -> 1, wrong
        [0.2, 0.6, 0.2],  # -> 1, right
        [0.1, 0.3, 0.6],  # -> 2, wrong
        [0.1, 0.1, 0.8],  # -> 2, right
        [0.2, 0.5, 0.3],  # -> 1, wrong
    ])
    metrics = multiclass_metrics(target, probabilities, ["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(0.5)
    assert metrics["balanced_accuracy"] == pytest.approx(0.5)
    # F1: a P=1 R=1/2 -> 2/3; b P=1/3 R=1/2 -> 0.4; c P=1/2 R=1/2 -> 0.5.
    assert metrics["f1_macro"] == pytest.approx((2 / 3 + 0.4 + 0.5) / 3)
    # One-vs-rest AUC: a 8/8; b (0.6 beats 4, 0.3 beats 2) 6/8; c (0.8 beats 4, 0.3 beats 2 and ties 1) 6.5/8.
    assert metrics["roc_auc_per_class"] == pytest.approx({"a": 1.0, "b": 0.75, "c": 0.8125})
    assert metrics["roc_auc_macro"] == pytest.approx((1.0 + 0.75 + 0.8125) / 3)
    assert metrics["log_loss"] == pytest.approx(-np.mean(np.log([0.7, 0.3, 0.6, 0.3, 0.8, 0.3])))
    assert metrics["n"] == 6
    # A class absent from the fold has no AUC; the macro mean is over the others.
    partial = multiclass_metrics(target[:4], probabilities[:4], ["a", "b", "c"])
    assert partial["roc_auc_per_class"]["c"] is None and partial["roc_auc_macro"] == pytest.approx((1.0 + 0.75) / 2)
    assert majority_accuracy(np.array([2, 1, 1, 2]), np.array([1, 2, 1])) == pytest.approx(2 / 3)  # tie -> class 1
    assert OBJECTIVES["multiclass"] == ("roc_auc_macro", "maximize")


def _three_classes(path: Path) -> Path:
    """60 molecules in three classes by functional group: alcohols, amines, chlorides on C1-C20 chains."""
    rows = [(("C" * n) + group, label) for n in range(1, 21) for group, label in (("O", "ol"), ("N", "amine"), ("Cl", "halide"))]
    pl.DataFrame({"smiles": [s for s, _ in rows], "group": [g for _, g in rows]}).write_csv(path)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[Path, Path, dict]]:
    """gin (30 epochs, hidden 32) and ecfp_rf (20 trees) on the 60-molecule table: {model: (run, store root, metrics)}.

    gin needs ~30 of these tiny epochs (2 batches each) before its batch-norm statistics let the
    eval-mode model beat chance; measured when written: accuracy 1.0 on every fold (~5 s)."""
    base = tmp_path_factory.mktemp("multiclass")
    data = ["data=file", f"data.path={_three_classes(base / 'groups.csv')}", "data.label_columns=[group]",
            "data.task_type=multiclass", f"store.root={base / 'store'}"]
    out = {}
    for model, extra in (("gin", ["model.hparams.hidden=32", "model.hparams.ffn_hidden=32", "trainer.max_epochs=30"]),
                         ("ecfp_rf", ["model.hparams.n_estimators=20"])):
        with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
            cfg = compose("train", overrides=[*SMALL, *data, f"model={model}", *extra])
        out[model] = (base / model, base / "store", run_training(cfg, base / model))
    return out


@pytest.mark.parametrize("model", ["gin", "ecfp_rf"])
def test_training_writes_class_predictions_and_metrics(runs, model):
    run_dir, _, metrics = runs[model]
    for name in ["predictions.parquet", "metrics.json", "data.parquet", "data_report.json", "checkpoint/model.json",
                 "checkpoint/weights.pt", "splits.json", "run.json"]:
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "metrics.json").read_text())["objective"] == metrics["objective"]
    assert metrics["classes"] == ["amine", "halide", "ol"]
    assert {"accuracy", "balanced_accuracy", "f1_macro", "roc_auc_macro", "log_loss", "roc_auc_per_class",
            "majority_accuracy", "n"} <= set(metrics["test"])
    assert metrics["objective"] == {"name": "val/roc_auc_macro", "direction": "maximize",
                                    "value": metrics["val"]["roc_auc_macro"]}
    assert metrics["train"]["n"] + metrics["val"]["n"] + metrics["test"]["n"] == 60
    spec = json.loads((run_dir / "checkpoint/model.json").read_text())
    assert spec["task_type"] == "multiclass" and spec["classes"] == ["amine", "halide", "ol"]
    predictions = pl.read_parquet(run_dir / "predictions.parquet")
    assert predictions.columns == ["inchikey", "smiles", "task", "split", "target", "prediction", "probability",
                                   "p_amine", "p_halide", "p_ol", "measurements"]
    assert set(predictions.get_column("prediction")) <= {"amine", "halide", "ol"}
    probabilities = predictions.select("p_amine", "p_halide", "p_ol").to_numpy()
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert np.array_equal(predictions.get_column("probability").to_numpy(), probabilities.max(axis=1))
    # Functional groups are easy: the tiny models get the training fold mostly right.
    assert metrics["train"]["accuracy"] > 0.8


@pytest.mark.parametrize("model", ["gin", "ecfp_rf"])
def test_checkpoint_reload_reproduces_saved_predictions_exactly(runs, model):
    run_dir, store_root, _ = runs[model]
    predictor = load_predictor(run_dir)
    assert predictor.classes == ["amine", "halide", "ol"]
    saved = pl.read_parquet(run_dir / "predictions.parquet")
    again = predictor.predict(saved.get_column("inchikey").to_list(), FeatureStore(store_root, n_jobs=1, progress=False))
    for column in ["prediction", "probability", "p_amine", "p_halide", "p_ol"]:
        assert again.get_column(column).to_list() == saved.get_column(column).to_list(), column


def test_ensemble_averages_member_probabilities(tmp_path):
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[*SMALL, "data=file", f"data.path={_three_classes(tmp_path / 'g.csv')}",
                                          "data.label_columns=[group]", "data.task_type=multiclass", "model=ecfp_mlp",
                                          "model.hparams.hidden=32", "ensemble=2", f"store.root={tmp_path / 'store'}"])
    run_training(cfg, tmp_path / "run")
    saved = pl.read_parquet(tmp_path / "run/predictions.parquet")
    assert saved.columns[5:9] == ["prediction", "probability", "std", "p_amine"]
    predictor = load_predictor(tmp_path / "run")
    assert predictor.members[0].hparams["n_tasks"] == 3  # one output per class
    features = FeatureStore(tmp_path / "store", n_jobs=1, progress=False).get(saved.get_column("inchikey").to_list(),
                                                                              predictor.view)
    members = []
    for member in predictor.members:
        single = Predictor(predictor.model_name, [member], predictor.tasks, predictor.task_type, predictor.scaler,
                           predictor.view, predictor.standardizer, predictor.batch_size, classes=predictor.classes)
        members.append(single.predict_features(features)[0])
    mean = (members[0] + members[1]) / 2
    best = np.argmax(mean, axis=1)
    rows = np.arange(len(best))
    assert np.allclose(saved.select("p_amine", "p_halide", "p_ol").to_numpy(), mean, rtol=0, atol=1e-12)
    assert saved.get_column("prediction").to_list() == [predictor.classes[k] for k in best]
    spread = np.abs(members[0][rows, best] - members[1][rows, best]) / 2  # std of the predicted class's probability
    assert np.allclose(saved.get_column("std").to_numpy(), spread, rtol=0, atol=1e-12)


def test_random_forest_multiclass_round_trips_and_matches_scikit_learn():
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    x, x_test = rng.integers(0, 2, (90, 16)), rng.integers(0, 2, (30, 16))
    y = (x[:, 0] + 2 * x[:, 1]).clip(max=2).astype(float)  # 3 classes
    hparams = {"n_tasks": 1, "in_dim": 16, "task_type": "multiclass", "n_classes": 4, "n_estimators": 15, "max_features": 0.5}
    model = build_model("ecfp_rf", hparams)
    model.fit(x, y[:, None], np.ones((90, 1), bool), x_test, y[:30, None], np.ones((30, 1), bool), seed=3)
    expected = RandomForestClassifier(n_estimators=15, max_features=0.5, random_state=3).fit(x, y.astype(int)).predict_proba(x_test)
    predicted = model.predict(x_test)
    assert predicted.shape == (30, 4) and np.all(predicted[:, 3] == 0.0)  # class 3 never seen in training
    assert np.allclose(predicted[:, :3], expected, atol=1e-12)
    reloaded = build_model("ecfp_rf", model.hparams)
    reloaded.load_state_dict(model.state_dict())
    assert np.array_equal(reloaded.predict(x_test), predicted)


def test_svr_refuses_multiclass(tmp_path):
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[*SMALL, "data=file", f"data.path={_three_classes(tmp_path / 'g.csv')}",
                                          "data.label_columns=[group]", "data.task_type=multiclass", "model=ecfp_svr",
                                          f"store.root={tmp_path / 'store'}"])
    with pytest.raises(ValueError, match="ecfp_svr is regression only.*multiclass"):
        run_training(cfg, tmp_path / "run")


def test_ranking_scores_with_the_probability_of_a_named_class(runs):
    run_dir, store_root, _ = runs["ecfp_rf"]
    store = FeatureStore(store_root, n_jobs=1, progress=False)
    with pytest.raises(ValueError, match="multiclass: name the class"):
        RankingModel.load({"path": str(run_dir), "name": "group"}, store)
    model = RankingModel.load({"path": str(run_dir), "name": "group", "class": "ol"}, store)
    smiles = ["CCCCO", "CCCCN", "bad(("]
    scored = score_molecules(smiles, [model], store)
    expected = model.predictor.predict(smiles, store).get_column("p_ol")
    assert scored.get_column("pred_group").to_list() == expected.to_list()
    assert scored.get_column("pred_group")[2] is None and "std_group" not in scored.columns


def test_atc_main_group_config_derives_the_label_from_the_drug_catalog():
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["data=atc_main_group"])
    spec = instantiate(cfg.data)
    assert (spec.source, spec.task_type, spec.label_columns) == ("drugs", "multiclass", ["atc_main_group"])
    drugs = derive_columns(load_dataset("drugs"), spec.derived_columns, "drugs")
    groups = drugs.get_column("atc_main_group")
    assert set(groups.drop_nulls()) <= set("ABCDGHJLMNPRSV")
    assert groups.null_count() == drugs.filter(pl.col("atc_codes").list.len() == 0).height  # no ATC: missing label
    first = drugs.filter(pl.col("atc_codes").list.len() > 0).row(0, named=True)
    assert first["atc_main_group"] == first["atc_codes"][0][0]
