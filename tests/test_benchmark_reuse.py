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
