"""Compare recommendation runs: read their ``metrics.json`` files, tabulate and plot.

After ``python -m recommend.run -m recommender=a,b,c`` the Hydra callback
:class:`CompareCallback` writes ``comparison.parquet`` and ``comparison.png`` into the
sweep folder; :func:`compare_runs` does the same for any list of run folders.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import polars as pl
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from featurestore.io import atomic_path, write_parquet_atomic

METRICS = ("ndcg@10", "recall@20", "coverage@10")


def collect_runs(run_dirs: Iterable[str | Path]) -> pl.DataFrame:
    """Long table: run, label, fold, task, metric, value, fit_seconds (one row per number)."""
    rows = []
    for run_dir in map(Path, run_dirs):
        metrics = json.loads((run_dir / "metrics.json").read_text())
        for fold in ("validation", "test"):
            for task, values in metrics[fold]["tasks"].items():
                rows += [
                    {"run": run_dir.name, "label": metrics["label"], "fold": fold, "task": task, "metric": name,
                     "value": float(value), "fit_seconds": metrics[fold]["fit_seconds"]}
                    for name, value in values.items() if isinstance(value, (int, float))
                ]
    if not rows:
        raise ValueError("no metrics.json found in the given run folders")
    return pl.DataFrame(rows)


def plot_comparison(table: pl.DataFrame, path: str | Path, metrics: Sequence[str] = METRICS,
                    fold: str = "test") -> Path:
    """Grouped bars: one panel per metric, one group per task, one bar per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = table.filter(pl.col("fold") == fold)
    tasks = data["task"].unique(maintain_order=True).to_list()
    runs = data.select("run", "label").unique(maintain_order=True).rows()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.8), squeeze=False)
    width = 0.8 / max(len(runs), 1)
    for ax, metric in zip(axes[0], metrics):
        for i, (run, label) in enumerate(runs):
            values = [_value(data, run, task, metric) for task in tasks]
            ax.bar([t + i * width for t in range(len(tasks))], values, width, label=label)
        ax.set_xticks([t + width * (len(runs) - 1) / 2 for t in range(len(tasks))], tasks)
        ax.set_title(f"{metric} ({fold})")
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return path


def _value(data: pl.DataFrame, run: str, task: str, metric: str) -> float:
    match = data.filter((pl.col("run") == run) & (pl.col("task") == task) & (pl.col("metric") == metric))
    return match["value"].item() if match.height else 0.0


def compare_runs(run_dirs: Iterable[str | Path], out_dir: str | Path) -> pl.DataFrame:
    """Write ``comparison.parquet`` and ``comparison.png`` for the runs into ``out_dir``."""
    table = collect_runs(run_dirs)
    out_dir = Path(out_dir)
    write_parquet_atomic(table, out_dir / "comparison.parquet")
    plot_comparison(table, out_dir / "comparison.png")
    return table


class CompareCallback(Callback):
    """Hydra callback: after a multirun, compare every job of the sweep that wrote metrics."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(config.hydra.sweep.dir)
        runs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
        if runs:
            compare_runs(runs, sweep)
            print(f"comparison of {len(runs)} runs: {sweep / 'comparison.png'}")
