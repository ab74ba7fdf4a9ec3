"""Every run under a folder as one table: ``python -m featurestore.runs outputs/``.

Each app writes ``run.json`` (config, seed, versions) and ``metrics.json`` into its run
folder; :func:`collect_runs` finds them (at any depth, so Hydra multirun folders too)
and flattens both into one polars row per run: ``config.<path>`` and ``metrics.<path>``
columns with ``/``-free dotted paths, plus ``run_dir``, ``app``, ``created``, ``seed``,
``git_commit`` and Hydra's ``overrides``. Nested metric tables that would add hundreds
of columns (``per_task``, per-epoch ``training``) are left out by default. Runs with
different apps or configs simply leave each other's columns null.

:func:`plot_runs` draws one metric per group (mean ± sd over runs, e.g. seeds) as a
PNG, for a quick comparison of a sweep.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from featurestore.io import atomic_path, write_parquet_atomic

DEFAULT_SKIP = ("per_task", "training", "per_fold_patients")


def flatten(values: Mapping[str, Any], prefix: str = "", skip: Iterable[str] = ()) -> dict[str, Any]:
    """Nested mappings -> ``{"a.b.c": scalar}``; lists become JSON text; keys in ``skip`` are left out."""
    skip = set(skip)
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in skip:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}.", skip))
        elif isinstance(value, (list, tuple)):
            out[name] = json.dumps(value, sort_keys=True, default=str)
        else:
            out[name] = value
    return out


def differences(before: Mapping[str, Any], after: Mapping[str, Any], after_label: str = "here") -> list[str]:
    """``"a.b: <before> there, <after> here"`` for every dotted key where two nested configs differ, sorted."""
    old, new = flatten(before), flatten(after)
    return [f"{key}: {old.get(key)!r} there, {new.get(key)!r} {after_label}"
            for key in sorted(old.keys() | new.keys()) if old.get(key) != new.get(key)]


def _app(command: Sequence[str]) -> str | None:
    """``discovery.train`` from a recorded ``sys.argv`` (``.../discovery/train.py`` or ``-m`` form)."""
    if not command:
        return None
    path = Path(command[0])
    if path.suffix != ".py":
        return path.name
    if path.stem == "__main__":
        return ".".join(path.parent.parts[-2:])
    return f"{path.parent.name}.{path.stem}"


def read_run(run_dir: Path, skip: Iterable[str] = DEFAULT_SKIP) -> dict[str, Any]:
    """One run folder (holding ``run.json``) as a flat row."""
    record = json.loads((run_dir / "run.json").read_text())
    row: dict[str, Any] = {
        "run_dir": str(run_dir), "app": _app(record.get("command") or []), "created": record.get("created"),
        "seed": record.get("seed"), "git_commit": record.get("git_commit"),
    }
    overrides = run_dir / ".hydra" / "overrides.yaml"
    row["overrides"] = " ".join(yaml.safe_load(overrides.read_text()) or []) if overrides.is_file() else None
    row.update(flatten(record.get("config") or {}, "config.", skip))
    metrics = run_dir / "metrics.json"
    if metrics.is_file():
        row.update(flatten(json.loads(metrics.read_text()), "metrics.", skip))
    return row


def collect_runs(root: str | Path, skip: Iterable[str] = DEFAULT_SKIP) -> pl.DataFrame:
    """All runs under ``root`` (folders with a ``run.json``), oldest first; raises if there are none."""
    root = Path(root)
    run_dirs = sorted(path.parent for path in root.rglob("run.json"))
    if not run_dirs:
        raise FileNotFoundError(f"no runs (run.json files) under {root}")
    rows = [read_run(run_dir, skip) for run_dir in run_dirs]
    # Values of one key may differ in type between apps (an int here, a string there): keep them as text then.
    columns = dict.fromkeys(key for row in rows for key in row)
    frame = {}
    for column in columns:
        values = [row.get(column) for row in rows]
        kinds = {type(value) for value in values if value is not None}
        if len(kinds) <= 1:
            frame[column] = values
        elif kinds == {int, float}:
            frame[column] = [None if value is None else float(value) for value in values]
        else:
            frame[column] = [None if value is None else str(value) for value in values]
    return pl.DataFrame(frame, strict=False).sort("created", nulls_last=True)


def plot_runs(runs: pl.DataFrame, metric: str, by: str, path: str | Path) -> Path:
    """Bar chart of ``metric`` per value of ``by`` (mean ± sd over runs) written atomically to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for column in (metric, by):
        if column not in runs.columns:
            raise KeyError(f"no column {column!r} in the runs table; columns: {', '.join(runs.columns)}")
    summary = (
        runs.drop_nulls(metric).group_by(by)
        .agg(mean=pl.col(metric).mean(), sd=pl.col(metric).std().fill_null(0.0), n=pl.len())
        .sort(by)
    )
    if summary.is_empty():
        raise ValueError(f"no run has a value for {metric!r}")
    figure, axis = plt.subplots(figsize=(max(4.0, 0.9 * summary.height + 2), 3.5))
    labels = [f"{value}\n(n={n})" for value, n in zip(summary[by].cast(pl.String).to_list(), summary["n"].to_list())]
    axis.bar(labels, summary["mean"].to_list(), yerr=summary["sd"].to_list(), capsize=4, color="#4c72b0")
    axis.set_ylabel(metric)
    axis.set_xlabel(by)
    axis.set_title(f"{metric} by {by} (mean ± sd)")
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120, format=path.suffix.lstrip(".") or "png")
    plt.close(figure)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], prog="python -m featurestore.runs")
    parser.add_argument("root", help="a folder holding runs (outputs/, multirun/, a sweep folder)")
    parser.add_argument("--out", help="write the table here (.parquet or .csv)")
    parser.add_argument("--metric", help="plot this column, e.g. metrics.test.rmse")
    parser.add_argument("--by", default="overrides", help="group runs by this column for the plot")
    parser.add_argument("--plot", default="runs.png", help="PNG path for --metric")
    parser.add_argument("--show", nargs="*", default=None, help="columns to print (default: a few key ones)")
    args = parser.parse_args(argv)
    runs = collect_runs(args.root)
    if args.out:
        out = Path(args.out)
        if out.suffix == ".csv":
            with atomic_path(out) as tmp:
                runs.with_columns(pl.col(pl.List(pl.String)).list.join(" ")).write_csv(tmp)
        else:
            write_parquet_atomic(runs, out)
    shown = args.show or [c for c in ("app", "overrides", "seed", args.metric) if c and c in runs.columns]
    with pl.Config(tbl_rows=50, fmt_str_lengths=60, tbl_width_chars=160):
        print(runs.select(shown))
    print(f"{runs.height} runs, {runs.width} columns")
    if args.metric:
        print(f"plot: {plot_runs(runs, args.metric, args.by, args.plot)}")


if __name__ == "__main__":
    main()
