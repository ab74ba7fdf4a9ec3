"""Target prediction from a multitask checkpoint (``discovery.ranking.targets``, ``python -m discovery.predict_targets``)."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hydra import compose, initialize_config_dir

from featurestore import FeatureStore, FeatureView
from featurestore.datasets import load_dataset
from discovery.checkpoint import ensemble_of, load_predictor, save_ensemble
from discovery.ranking.rank import RankingModel
from discovery.ranking.similarity import fold_labels, training_fingerprints
from discovery.predict_targets import run_predict_targets
from discovery.ranking.targets import evaluate_target_ranking, nearest_neighbour_scores, predict_targets, target_ranks
from discovery.train import run_training

REPO = Path(__file__).resolve().parents[1]
TASKS = ["t_a", "t_b", "t_c"]


def _compose(primary: str, overrides: list[str]):
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose(primary, overrides=overrides)


@pytest.fixture(scope="module")
def multitask_run(tmp_path_factory) -> tuple[Path, Path]:
    """A 2-member ECFP MLP on 90 ESOL molecules x 3 tasks with missing labels (random split): (run, store root).
    Beside ``run``: ``run_seed1`` (seed 1, its own split) and ``run_seed1_split0`` (seed 1 on run's split)."""
    base = tmp_path_factory.mktemp("multitask")
    smiles = load_dataset("esol").get_column("smiles").head(90).to_list()
    rng = np.random.default_rng(0)
    values = rng.normal(6.0, 1.0, size=(90, 3))
    keep = np.arange(90)[:, None] % 3 == np.arange(3)[None, :]  # one task per molecule ...
    keep[::4] = True                                                # ... every 4th molecule has all three
    labels = pl.DataFrame(np.where(keep, values, np.nan), schema=TASKS).fill_nan(None)
    table = pl.concat([pl.DataFrame({"smiles": smiles}), labels], how="horizontal")
    table.write_csv(base / "multitask.csv")
    cfg = _compose("train", cfg_overrides(base))
    run_training(cfg, base / "run")
    for name, overrides in (("run_seed1", ["seed=1"]),                     # another split, so another scaler
                            ("run_seed1_split0", ["seed=1", "split.seed=0"])):  # the first run's split
        run_training(_compose("train", cfg_overrides(base) + overrides), base / name)
    return base / "run", base / "store"


def cfg_overrides(base: Path) -> list[str]:
    return ["trainer=fast", "trainer.num_threads=1", "store.progress=false", "store.n_jobs=1",
            f"store.root={base / 'store'}", "data=file", f"data.path={base / 'multitask.csv'}",
            f"data.label_columns=[{','.join(TASKS)}]", "model=ecfp_mlp", "model.hparams.hidden=32", "ensemble=2"]


def test_predict_targets_orders_targets_per_molecule(multitask_run):
    run, store_root = multitask_run
    store = FeatureStore(store_root, n_jobs=1, progress=False)
    predictor = load_predictor(run)
    smiles = ["CCO", "not a smiles", "c1ccccc1O"]
    table = predict_targets(predictor, smiles, store)
    assert table.height == len(smiles) * len(TASKS)
    assert table.columns == ["input_row", "input", "inchikey", "smiles", "rank", "task", "prediction", "relative", "std",
                             "error"]
    for row, group in table.group_by("input_row", maintain_order=True):
        predictions = group.get_column("prediction").to_list()
        if row[0] == 1:
            assert group.get_column("rank").null_count() == 3 and group.get_column("error")[0].startswith("SMILES syntax")
            continue
        assert predictions == sorted(predictions, reverse=True) and group.get_column("rank").to_list() == [1, 2, 3]
        assert sorted(group.get_column("task")) == TASKS
        assert (group.get_column("std") > 0).all()
    # Same numbers as the predictor, only reordered.
    expected = predictor.predict(smiles, store).filter(pl.col("input") == "CCO").sort("task")
    got = table.filter(pl.col("input") == "CCO").sort("task")
    assert got.get_column("prediction").to_list() == expected.get_column("prediction").to_list()
    # relative: the prediction as a z-score of the task's training labels, i.e. of the checkpoint's scaler
    scaler = dict(zip(TASKS, zip(predictor.scaler.mean, predictor.scaler.std)))
    for task, prediction, relative in got.select("task", "prediction", "relative").iter_rows():
        assert relative == pytest.approx((prediction - scaler[task][0]) / scaler[task][1])
    by_relative = predict_targets(predictor, smiles, store, rank_by="relative").filter(pl.col("input") == "CCO")
    assert by_relative.get_column("relative").to_list() == sorted(got.get_column("relative"), reverse=True)
    with pytest.raises(ValueError, match="rank_by must be one of"):
        predict_targets(predictor, smiles, store, rank_by="potency")


def test_target_ranks_and_nearest_neighbour_by_hand():
    scores = np.array([[0.2, 0.9, 0.5], [0.7, 0.7, 0.1]])
    assert target_ranks(scores, np.array([2, 0])).tolist() == [2, 2]  # a tie counts against the target
    query = np.array([[1, 1, 0, 0]], dtype=np.uint8)
    train = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 1]], dtype=np.uint8)
    nn = nearest_neighbour_scores(query, train, [np.array([1, 2]), np.array([0]), np.array([], dtype=np.int64)])
    assert nn.tolist() == [[0.5, 1.0, 0.0]]


def test_evaluate_target_ranking_agrees_with_predict_targets(multitask_run):
    run, store_root = multitask_run
    store = FeatureStore(store_root, n_jobs=1, progress=False)
    predictor = load_predictor(run)
    summary, per_label = evaluate_target_ranking(run, predictor, store)
    splits = json.loads((run / "splits.json").read_text())
    data = pl.read_parquet(run / "data.parquet")
    test_labels = data[splits["folds"]["test"]].select(pl.sum_horizontal(pl.col(TASKS).is_not_null())).to_series().sum()
    assert summary["labels"] == per_label.height == test_labels
    assert summary["model"]["top3"] == summary["model_relative"]["top3"] == summary["nearest_neighbour"]["top3"] == 1.0
    assert summary["model"]["top1"] == pytest.approx((per_label.get_column("model_rank") == 1).mean())
    smiles = data.join(per_label.select("row").unique(), on="row").sort("row")
    ranks = predict_targets(predictor, smiles.get_column("smiles").to_list(), store).join(
        smiles.select("inchikey", "row"), on="inchikey")
    joined = per_label.join(ranks.select("row", "task", "rank"), on=["row", "task"])
    assert joined.height == per_label.height
    assert joined.get_column("model_rank").to_list() == joined.get_column("rank").to_list()
    relative = predict_targets(predictor, smiles.get_column("smiles").to_list(), store, rank_by="relative").join(
        smiles.select("inchikey", "row"), on="inchikey")
    joined = per_label.join(relative.select("row", "task", "rank"), on=["row", "task"])
    assert joined.get_column("model_relative_rank").to_list() == joined.get_column("rank").to_list()


def test_predict_targets_app_writes_tables(multitask_run, tmp_path):
    run, store_root = multitask_run
    cfg = _compose("predict_targets", [f"checkpoint={run}", f"store.root={store_root}", "store.n_jobs=1",
                                       "top_k=2", "evaluate_ranking=true"])
    table = run_predict_targets(cfg, tmp_path)
    assert table.height == 2 * 2  # two default molecules, two best targets each
    molecules = json.loads((tmp_path / "targets.json").read_text())
    assert [len(m["targets"]) for m in molecules] == [2, 2]
    assert [t["rank"] for t in molecules[0]["targets"]] == [1, 2]
    assert pl.read_csv(tmp_path / "targets.csv").height == 4
    assert str(run / "data.parquet") in json.loads((tmp_path / "run.json").read_text())["data"]  # what it trained on
    assert set(json.loads((tmp_path / "target_ranking.json").read_text())) == {"labels", "molecules", "tasks", "model", "model_relative",
                                                                              "nearest_neighbour"}


def test_a_list_of_runs_predicts_as_one_ensemble_of_all_their_members(multitask_run):
    run, store_root = multitask_run
    store = FeatureStore(store_root, n_jobs=1, progress=False)
    other = run.parent / "run_seed1"
    first, second = load_predictor(run), load_predictor(other)
    assert first.scaler != second.scaler  # each run keeps its own target scaling
    ensemble = load_predictor([run, other / "checkpoint"])
    assert len(ensemble.members) == 4
    smiles = ["CCO", "c1ccccc1O", "C1CC"]
    table, one, two = (p.predict(smiles, store) for p in (ensemble, first, second))
    assert table.filter(pl.col("input") == "C1CC").get_column("error").null_count() == 0
    m1, m2, m = (t.get_column("prediction").fill_null(np.nan).to_numpy() for t in (one, two, table))
    s1, s2, s = (t.get_column("std").fill_null(np.nan).to_numpy() for t in (one, two, table))
    np.testing.assert_allclose(m, (m1 + m2) / 2)  # two members each: the mean of the runs' means
    np.testing.assert_allclose(s, np.sqrt((s1**2 + s2**2) / 2 + ((m1 - m2) / 2) ** 2))  # spread over all four
    with pytest.raises(ValueError, match="not saved as one checkpoint.*save_ensemble"):
        ensemble.save(run.parent / "ensemble")


def test_a_saved_ensemble_is_one_folder_that_loads_and_ranks_as_its_runs(multitask_run, tmp_path):
    run, store_root = multitask_run
    same_split = run.parent / "run_seed1_split0"
    saved = save_ensemble([run, same_split / "checkpoint"], tmp_path / "bundle")
    assert sorted(p.name for p in saved.iterdir()) == ["ensemble.json", "run0", "run1"]
    assert (saved / "run1" / "data.parquet").read_bytes() == (same_split / "data.parquet").read_bytes()
    store = FeatureStore(store_root, n_jobs=1, progress=False)
    smiles = ["CCO", "c1ccccc1O"]
    expected = load_predictor([run, same_split]).predict(smiles, store)
    assert load_predictor(saved).predict(smiles, store).equals(expected)
    cfg = _compose("predict_targets", [f"checkpoint={saved}", f"store.root={store_root}", "store.n_jobs=1",
                                       "evaluate_ranking=true"])
    run_predict_targets(cfg, tmp_path / "app")  # the applicability data and splits travel with the runs
    assert json.loads((tmp_path / "app" / "target_ranking.json").read_text())["labels"] > 0
    with pytest.raises(ValueError, match="exists; save the ensemble into a new folder"):
        save_ensemble([run, same_split], saved)
    with pytest.raises(ValueError, match="at least two runs"):
        save_ensemble([run], tmp_path / "one")
    (saved / "ensemble.json").write_text(json.dumps({"runs": ["run0", "../../elsewhere"]}))
    with pytest.raises(ValueError, match="must list the folders run0, run1"):
        load_predictor(saved)


def test_runs_of_other_tasks_or_features_do_not_make_an_ensemble(multitask_run):
    run, _ = multitask_run
    predictor = load_predictor(run)
    with pytest.raises(ValueError, match="b cannot join an ensemble with a: its tasks differ"):
        ensemble_of([predictor, replace(predictor, tasks=["t_a", "t_b", "other"])], ["a", "b"])
    with pytest.raises(ValueError, match="its tasks, view differ"):
        ensemble_of([predictor, replace(predictor, tasks=["x"], view=FeatureView("ecfp", {"radius": 3}))], ["a", "b"])
    with pytest.raises(ValueError, match="no checkpoint given"):
        load_predictor([])


def test_an_ensembles_target_ranking_uses_every_runs_training_molecules_and_refuses_leaks(multitask_run, tmp_path):
    run, store_root = multitask_run
    same_split = run.parent / "run_seed1_split0"
    cfg = _compose("predict_targets", [f"checkpoint=[{run},{same_split}]", f"store.root={store_root}",
                                       "store.n_jobs=1", "evaluate_ranking=true"])
    table = run_predict_targets(cfg, tmp_path)
    assert set(table.columns) >= {"prediction", "std"}
    alone = json.loads((tmp_path / "target_ranking.json").read_text())
    store = FeatureStore(store_root, n_jobs=1, progress=False)
    summary, _ = evaluate_target_ranking(run, load_predictor(run), store)
    assert alone["labels"] == summary["labels"]  # the same test labels as the first run alone
    other_split = run.parent / "run_seed1"
    with pytest.raises(ValueError, match="are training labels of one of the runs"):
        evaluate_target_ranking([run, other_split], load_predictor([run, other_split]), store)
    molecules, _ = training_fingerprints([run, other_split], store)
    rows = set(fold_labels(run, "train").get_column("row")) | set(fold_labels(other_split, "train").get_column("row"))
    assert set(molecules.get_column("row")) == rows and len(rows) > len(set(fold_labels(run, "train")["row"]))
    ranking_model = RankingModel.load({"path": [run, other_split], "name": "both"}, store)  # discovery.rank's view
    assert len(ranking_model.predictor.members) == 4 and ranking_model.training_bits.shape[0] == len(rows)
