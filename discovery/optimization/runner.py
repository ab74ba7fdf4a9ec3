"""Run an optimizer against a budgeted oracle and write the run's outputs.

``run_optimization`` is what ``python -m discovery.optimize`` calls; it is a plain
function so notebooks and benchmarks use it directly. Outputs in ``out_dir``:

- ``calls.parquet``: every scored molecule (the budget log; a rerun in the same folder resumes it)
- ``top.parquet``: the best molecules (rank, smiles, inchikey, score, call)
- ``metrics.json``: AUC top-1/10/100, top-k means, diversity, novelty, calls, wall time
- ``optimizer.json``: oracle, seed and every optimizer setting; a rerun in the folder must match it
- ``optimization_curve.png``, ``top12.png``

With a ``logger`` (``featurestore.tracking``), the curve (group ``curve``, step = calls) and
the final metrics are logged too.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from discovery.oracles import Oracle
from discovery.optimization.budget import BudgetedOracle, BudgetExhausted
from discovery.optimization.metrics import TOP_KS, auc_top_k, diversity, novelty, running_curve, top_k_mean
from discovery.optimization.plots import plot_curve, plot_top_grid
from featurestore.io import write_json_atomic, write_parquet_atomic
from featurestore.runs import differences
from featurestore.tracking import TrackingLogger, numbers

log = logging.getLogger(__name__)

CALL_LOG = "calls.parquet"
RUN_SETTINGS = "optimizer.json"
# Field metadata of an optimizer setting that cannot change which molecules a run scores (a progress bar,
# a cache folder): left out of the settings record, so changing it does not refuse a resume.
NOT_RECORDED = {"recorded": False}


class Optimizer(Protocol):
    """What the runner needs from an optimizer."""

    name: str

    def optimize(self, oracle: BudgetedOracle, pool: Sequence[str], rng: np.random.Generator) -> str:
        """Propose and score molecules through ``oracle``; return why it stopped."""


def top_table(calls: pl.DataFrame, n: int) -> pl.DataFrame:
    """The ``n`` best molecules of a call log, ranked by score (ties: earlier call first)."""
    return (
        calls.sort(["score", "call"], descending=[True, False]).head(n)
        .select(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("rank"), "smiles", "inchikey", "score", "call")
    )


def summarize(calls: pl.DataFrame, budget: int, pool_keys: set[str], freq: int = 100) -> dict[str, Any]:
    """PMO metrics of a call log: AUC top-k, top-k means, top-100 diversity and novelty."""
    scores = calls.sort("call").get_column("score").to_numpy()
    top = top_table(calls, 100)
    metrics: dict[str, Any] = {f"auc_top{k}": auc_top_k(scores, k, budget, freq) for k in TOP_KS}
    metrics |= {f"top{k}": top_k_mean(scores, k) for k in TOP_KS}
    metrics["diversity_top100"] = diversity(top.get_column("smiles").to_list())
    metrics["novelty_top100"] = novelty(top.get_column("inchikey").to_list(), pool_keys)
    metrics["calls_used"] = calls.height
    metrics["scoring_errors"] = calls.filter(pl.col("error").is_not_null()).height
    return metrics


def run_settings(oracle: Oracle, optimizer: Optimizer, seed: int) -> dict[str, Any]:
    """What makes a call log replayable: oracle, seed, optimizer class and every setting (plain JSON values)
    except those marked :data:`NOT_RECORDED`."""
    settings = {}
    if dataclasses.is_dataclass(optimizer):
        unrecorded = {field.name for field in dataclasses.fields(optimizer) if not field.metadata.get("recorded", True)}
        settings = {name: value for name, value in dataclasses.asdict(optimizer).items() if name not in unrecorded}
    return json.loads(json.dumps(
        {"oracle": oracle.name, "seed": seed, "optimizer": type(optimizer).__name__, "settings": settings}, default=str,
    ))


def _flat(record: dict[str, Any]) -> dict[str, Any]:
    return {**{key: value for key, value in record.items() if key != "settings"}, **record.get("settings", {})}


def check_run_settings(out_dir: Path, expected: dict[str, Any]) -> bool:
    """Whether ``out_dir`` records the settings ``expected`` (False: it records none, a folder from before the
    record existed); raises, naming what differs, when it records others: a resumed or reused run must be the
    same run, or its log would mix two optimizers."""
    path = out_dir / RUN_SETTINGS
    if not path.is_file():
        return False
    differ = differences(_flat(json.loads(path.read_text())), _flat(expected))
    if differ:
        raise ValueError(f"{out_dir} holds a run with other settings ({'; '.join(differ)}); "
                         "use another folder, or delete it to start over")
    return True


def run_optimization(
    oracle: Oracle, optimizer: Optimizer, pool: Sequence[str], out_dir: str | Path, *, budget: int = 10_000,
    seed: int = 0, pool_keys: set[str] | None = None, freq_log: int = 100, flush_every: int = 100,
    top_n: int = 100, logger: TrackingLogger | None = None,
) -> dict[str, Any]:
    """Optimize ``oracle`` from ``pool`` within ``budget`` unique calls; write outputs; return metrics.

    If ``out_dir`` already holds a call log of this oracle, the run resumes: logged
    molecules are answered from the log, so a seeded optimizer replays its killed run
    for free and continues where it stopped.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = run_settings(oracle, optimizer, seed)
    recorded = check_run_settings(out_dir, settings)
    budgeted = BudgetedOracle(oracle, budget, out_dir / CALL_LOG, flush_every)
    resumed = len(budgeted)
    if resumed:
        log.info("resuming %s: %d calls already logged", out_dir / CALL_LOG, resumed)
        if not recorded:
            log.warning("%s records no optimizer settings (an older run): resuming it as %s", out_dir, settings)
    write_json_atomic(out_dir / RUN_SETTINGS, settings)
    start = time.perf_counter()
    try:
        stopped = optimizer.optimize(budgeted, pool, np.random.default_rng(seed))
    except BudgetExhausted:
        stopped = "budget"
    finally:
        budgeted.flush()
    elapsed = time.perf_counter() - start
    calls = budgeted.log()
    if calls.height == 0:
        raise RuntimeError(f"{optimizer.name} scored no molecule on {oracle.name}; nothing to report")
    metrics = {
        "oracle": oracle.name, "optimizer": optimizer.name, "seed": seed, "budget": budget, "stopped": stopped,
        **summarize(calls, budget, pool_keys or set(), freq_log),
        "cache_hits": budgeted.cache_hits, "invalid_proposals": budgeted.invalid, "resumed_from_calls": resumed,
        "wall_time_s": elapsed,
    }
    top = top_table(calls, top_n)
    write_parquet_atomic(top, out_dir / "top.parquet")
    write_json_atomic(out_dir / "metrics.json", metrics)
    plot_curve(calls, budget, out_dir / "optimization_curve.png", title=f"{optimizer.name} on {oracle.name}", freq=freq_log)
    plot_top_grid(top.head(12), out_dir / "top12.png")
    if logger is not None:  # after the run, from the call log: a resumed run logs its whole curve
        for step, values in running_curve(calls.sort("call").get_column("score").to_numpy(), freq_log).items():
            logger.log_metrics(step, values, "curve")
        logger.log_summary(numbers(metrics))
    return metrics
