"""The benchmarks reuse a finished training run only if it was trained with the config asked for."""

import yaml

from benchmarks.property import config_differences, job_config

OVERRIDES = ["data=esol", "model=ecfp_svr", "seed=3", "trainer.num_threads=1"]


def test_a_run_is_reused_only_with_the_config_it_was_trained_with(tmp_path):
    composed = job_config(OVERRIDES)
    assert composed["seed"] == 3 and composed["trainer"]["num_threads"] == 1
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(composed))
    assert config_differences(tmp_path, OVERRIDES) == []
    composed["trainer"]["num_threads"] = 4  # a preset or default changed since the run
    (tmp_path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(composed))
    assert config_differences(tmp_path, OVERRIDES) == ["trainer.num_threads: 4 there, 1 now"]
    (tmp_path / ".hydra" / "config.yaml").unlink()  # a run that recorded no config is never reused
    assert "seed" in config_differences(tmp_path, OVERRIDES)


def test_the_als_grid_regularization_grows_with_the_cohort_beyond_100k_patients():
    from benchmarks.recommend import als_regularization_scale

    assert als_regularization_scale(2_694) == 1.0  # Eunomia: the grid as written
    assert als_regularization_scale(100_000) == 1.0
    assert als_regularization_scale(1_000_000) == 10.0


def test_results_of_runs_that_split_the_models_merge_into_one_table(tmp_path):
    import json

    import pytest

    from benchmarks.recommend import merge_results

    def results(name, rows, cohort):
        path = tmp_path / name
        path.write_text(json.dumps({"note": "synthetic", "when": name, "quality": {"sim": rows},
                                    "synthetic_cohort_parameters": {"sim": cohort}}))
        return path

    row = lambda model, ndcg: {"model": model, "task": "new", "ndcg@10": ndcg}  # noqa: E731
    first = results("a.json", [row("popularity", 0.2), row("ease", 0.25)], {"seed": 0})
    second = results("b.json", [row("als", 0.3), row("newstart", 0.32)], {"seed": 0, "out_dir": "/elsewhere"})
    merged = merge_results([first, second])  # the same cohort written to another folder
    assert [r["model"] for r in merged["quality"]["sim"]] == ["popularity", "ease", "als", "newstart"]
    assert merged["ratios"]["sim: best(ALS, EASE) / popularity, test NDCG@10 task b"]["ratio"] == 1.5
    assert merged["ratios"]["sim: best model / popularity, test NDCG@10 task b"]["best"] == "newstart"
    assert set(merged["runs"]) == {str(first), str(second)}
    (tmp_path / "merged.json").write_text(json.dumps(merged))
    third = results("c.json", [row("gru", 0.31)], {"seed": 0})
    again = merge_results([tmp_path / "merged.json", third])  # a merged file keeps the runs it was made of
    assert set(again["runs"]) == {str(first), str(second), str(third)} and again["runs"][str(first)]["when"] == "a.json"
    assert merged["ratios"]["sim: best(ALS, EASE, with covariates) / popularity, test NDCG@10 task b"]["best"] == "als"
    with pytest.raises(ValueError, match=r"measures \[\('als', 'new'\), \('newstart', 'new'\)\] again"):
        merge_results([second, second])
    with pytest.raises(ValueError, match="simulated with other parameters"):
        merge_results([first, results("c.json", [row("als", 0.3)], {"seed": 1})])


def test_the_final_svr_refits_on_every_training_label_with_the_tuned_c(tmp_path):
    from benchmarks.moleculeace import final_svr

    tuned = {"metrics": {"training": [{"tasks": [{"C": 3.0, "val_rmse_by_C": {"1.0": 0.7, "3.0": 0.6}}]}]}}
    refit = final_svr(tuned, ["data.target=CHEMBL2835_Ki", "seed=0", f"store.root={tmp_path / 'store'}"],
                      tmp_path / "final")
    assert "error" not in refit, refit.get("error")
    metrics = refit["metrics"]
    assert metrics["labels_per_fold"]["val"] == 0 and metrics["labels_per_fold"]["train"] > 0
    assert [task["C"] for task in metrics["training"][0]["tasks"]] == [3.0]


def test_a_run_over_two_data_sets_splits_into_pieces_that_merge(tmp_path):
    import json

    from benchmarks.recommend import main, merge_results

    row = lambda model, ndcg: {"model": model, "task": "new", "ndcg@10": ndcg}  # noqa: E731
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"note": "synthetic", "when": "run", "ratios": {},
                               "quality": {"eunomia": [row("popularity", 0.6), row("ease", 0.5)],
                                           "sim": [row("popularity", 0.3), row("ease", 0.33)]},
                               "synthetic_cohort_parameters": {"sim": {"seed": 0}}}))
    pieces = main(["--split", str(run), "--drop", "popularity", "--out", str(tmp_path / "pieces")])
    assert set(pieces) == {"eunomia", "sim"} and pieces["eunomia"]["synthetic_cohort_parameters"] == {}
    assert [r["model"] for r in pieces["sim"]["quality"]["sim"]] == ["ease"]
    assert "popularity left out" in pieces["sim"]["split_from"]
    table = tmp_path / "table.json"  # a table of the same cohort that has popularity already
    table.write_text(json.dumps({"note": "synthetic", "quality": {"sim": [row("popularity", 0.3)]},
                                 "synthetic_cohort_parameters": {"sim": {"seed": 0}}}))
    merged = merge_results([table, tmp_path / "pieces" / "run_sim.json"])
    assert merged["ratios"]["sim: best(ALS, EASE) / popularity, test NDCG@10 task b"]["ratio"] == 1.1
