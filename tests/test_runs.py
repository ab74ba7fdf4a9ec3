"""featurestore.runs: every run under a folder as one table, and its comparison plot."""

import json
from pathlib import Path

import polars as pl
import pytest

from featurestore.provenance import write_run_record
from featurestore.runs import _app, collect_runs, flatten, main, plot_runs


def _run(root: Path, name: str, model: str, seed: int, rmse: float | None, layers: object = 3) -> Path:
    run_dir = root / name
    write_run_record(run_dir, {"model": {"name": model, "hparams": {"layers": layers}}, "seed": seed}, seed)
    if rmse is not None:
        (run_dir / "metrics.json").write_text(json.dumps(
            {"test": {"rmse": rmse, "n": 10}, "per_task": {"a": {"rmse": 1.0}}, "tasks": ["a"]}))
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "overrides.yaml").write_text(f"- model={model}\n- seed={seed}\n")
    return run_dir


def test_flatten_dots_nested_keys_lists_to_json_and_skips():
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "skip": {"x": 1}, "d": None}, "m.", skip=["skip"]) == {
        "m.a.b": 1, "m.a.c": "[1, 2]", "m.d": None}


def test_app_name_from_recorded_command():
    assert _app(["/repo/discovery/train.py", "model=gin"]) == "discovery.train"
    assert _app(["/repo/featurestore/datasets/__main__.py"]) == "featurestore.datasets"
    assert _app(["/venv/bin/runs"]) == "runs"
    assert _app([]) is None


def test_collect_runs_one_row_per_run_with_config_metrics_and_overrides(tmp_path):
    _run(tmp_path / "multirun", "0", "gin", 0, 0.8)
    _run(tmp_path / "multirun", "1", "gin", 1, 0.6)
    _run(tmp_path / "outputs" / "deep" / "er", "2", "dmpnn", 0, 0.5, layers="auto")
    _run(tmp_path / "outputs", "3", "dmpnn", 1, None)  # crashed before metrics: kept, metrics null
    runs = collect_runs(tmp_path)
    assert runs.height == 4
    assert runs["config.model.name"].to_list() == ["gin", "gin", "dmpnn", "dmpnn"]
    assert runs["metrics.test.rmse"].to_list() == [0.8, 0.6, 0.5, None]
    assert runs["overrides"][0] == "model=gin seed=0"
    assert runs["metrics.tasks"][0] == '["a"]'
    assert not any(column.startswith("metrics.per_task") for column in runs.columns)
    # an int in one run and a string in another: the column keeps both as text
    assert runs["config.model.hparams.layers"].to_list() == ["3", "3", "auto", "3"]


def test_plot_runs_groups_mean_and_names_missing_columns(tmp_path):
    for seed, rmse in enumerate([0.8, 0.6]):
        _run(tmp_path, f"gin{seed}", "gin", seed, rmse)
    _run(tmp_path, "dmpnn0", "dmpnn", 0, 0.5)
    runs = collect_runs(tmp_path)
    png = plot_runs(runs, "metrics.test.rmse", "config.model.name", tmp_path / "cmp.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(KeyError, match="no column 'metrics.val.rmse'"):
        plot_runs(runs, "metrics.val.rmse", "config.model.name", tmp_path / "x.png")


def test_collect_runs_without_runs_says_where(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"no runs .* under {tmp_path}"):
        collect_runs(tmp_path)


def test_cli_writes_table_and_plot(tmp_path, capsys):
    _run(tmp_path / "runs", "a", "gin", 0, 0.7)
    _run(tmp_path / "runs", "b", "gin", 1, 0.9)
    main([str(tmp_path / "runs"), "--out", str(tmp_path / "runs.parquet"), "--metric", "metrics.test.rmse",
          "--by", "config.model.name", "--plot", str(tmp_path / "runs.png")])
    table = pl.read_parquet(tmp_path / "runs.parquet")
    assert table["metrics.test.rmse"].mean() == pytest.approx(0.8)
    assert (tmp_path / "runs.png").is_file()
    assert "2 runs" in capsys.readouterr().out
