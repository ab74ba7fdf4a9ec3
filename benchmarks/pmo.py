"""PMO benchmark (Gao et al. 2022): AUC top-10 per task against the published REINVENT and Graph GA columns.

Each (task, seed) runs ``discovery.optimization.run_optimization`` with the optimizer's
default hyper-parameters on the 100k MOSES training sample (the paper used ZINC 250k,
not available here) into ``<out>/<optimizer>/<task>/seed<k>/``. A run whose
``metrics.json`` exists for the same budget is read back, not rerun; a killed run resumes
from its call log; both refuse a folder whose ``optimizer.json`` records other settings.
Printed per task: AUC top-10 mean ± sd over seeds beside the published means (5 seeds,
DESIGN.md 3.3), the difference, and wall seconds per run; then the sums over the tasks
run (the 20-task sums when all ran: published REINVENT 11.601, Graph GA 11.444).

Run (from the repo root)::

    .venv/bin/python benchmarks/pmo.py --tasks qed celecoxib_rediscovery --seeds 0 --budget 10000
    .venv/bin/python benchmarks/pmo.py --seeds 0 1 2 --jobs 2          # all 20 tasks, 3 seeds

``--pmo-compat`` runs ``isomers_c7h8n2o2``, ``isomers_c9h10n2o2pf2cl``, ``zaleplon_mpo`` and
``sitagliptin_mpo`` with their ``*_pmo`` oracles (PyTDC 0.3.6's total-atom count, the one the
published numbers were computed with; see ``discovery/oracles/tasks.py``) into their own
``<out>/<optimizer>/<name>_pmo/`` run directories; the table names the oracle each row used.
``--set explore=0.1`` runs the optimizer with other settings, into ``<out>/surrogate_ga-explore-0.1/``
and ``pmo_surrogate_ga-explore-0.1.json``.
``<out>/runs.parquet`` holds the metrics of the runs asked for; ``--results`` (default
``benchmarks/results/pmo_<optimizer>.json``) accumulates every (oracle, seed, budget) run across
invocations, so a benchmark run task by task builds one file, with the table of all of them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from discovery.optimization import GraphGA, Reinvent, SurrogateGA, run_optimization  # noqa: E402
from discovery.optimization.runner import check_run_settings, run_settings  # noqa: E402
from discovery.oracles import PMO_COMPAT, PMO_TASKS, get_oracle  # noqa: E402
from featurestore.datasets import load_dataset  # noqa: E402
from benchmarks.featurize import _git_commit, _machine  # noqa: E402
from featurestore.io import write_json_atomic, write_parquet_atomic  # noqa: E402

# Published AUC top-10, mean of 5 seeds (Gao et al. 2022, Table 2; DESIGN.md 3.3): (REINVENT, Graph GA).
PUBLISHED: dict[str, tuple[float, float]] = {
    "albuterol_similarity": (0.883, 0.839), "amlodipine_mpo": (0.635, 0.661),
    "celecoxib_rediscovery": (0.714, 0.630), "deco_hop": (0.667, 0.619), "fexofenadine_mpo": (0.785, 0.761),
    "isomers_c7h8n2o2": (0.852, 0.862), "isomers_c9h10n2o2pf2cl": (0.643, 0.719), "median1": (0.357, 0.295),
    "median2": (0.277, 0.274), "mestranol_similarity": (0.619, 0.579), "osimertinib_mpo": (0.837, 0.832),
    "perindopril_mpo": (0.537, 0.539), "qed": (0.941, 0.940), "ranolazine_mpo": (0.760, 0.728),
    "scaffold_hop": (0.560, 0.518), "sitagliptin_mpo": (0.022, 0.433), "thiothixene_rediscovery": (0.534, 0.479),
    "troglitazone_rediscovery": (0.441, 0.390), "valsartan_smarts": (0.179, 0.000), "zaleplon_mpo": (0.358, 0.347),
}
RESULT_COLUMNS = ["oracle", "seed", "auc_top1", "auc_top10", "auc_top100", "top10", "calls_used", "stopped", "wall_time_s"]
OPTIMIZERS = {"graph_ga": GraphGA, "surrogate_ga": SurrogateGA, "reinvent": Reinvent}


def variant_name(optimizer: str, params: dict[str, Any]) -> str:
    """The optimizer with its non-default settings, e.g. ``surrogate_ga-explore-0.1`` (run folders, results file)."""
    return "-".join([optimizer, *(f"{key}-{value}" for key, value in sorted(params.items()))])


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """``["explore=0.1", "beta=2"]`` -> ``{"explore": 0.1, "beta": 2}`` (values read as YAML scalars)."""
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set wants KEY=VALUE, got {pair!r}")
        settings[key] = yaml.safe_load(value)
    return settings


def run_one(optimizer: str, task: str, seed: int, budget: int, out: Path,
            params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Metrics of one (task, seed) run, computing it unless a finished run is on disk."""
    params = params or {}
    run_dir = out / variant_name(optimizer, params) / task / f"seed{seed}"
    oracle, chosen = get_oracle(task), OPTIMIZERS[optimizer](**params)
    metrics_file = run_dir / "metrics.json"
    if metrics_file.is_file():
        done = json.loads(metrics_file.read_text())
        if done["budget"] == budget:
            if not check_run_settings(run_dir, run_settings(oracle, chosen, seed)):
                print(f"warning: {run_dir} records no optimizer settings (an older run); reading it back as is")
            return done
    pool = load_dataset("moses_sample")
    start = time.perf_counter()
    metrics = run_optimization(
        oracle, chosen, pool.get_column("smiles").to_list(), run_dir, budget=budget,
        seed=seed, pool_keys=set(pool.get_column("inchikey").drop_nulls().to_list()),
    )
    print(f"{task} seed {seed}: AUC top-10 {metrics['auc_top10']:.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
    return metrics


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def oracle_for(task: str, pmo_compat: bool) -> str:
    """The oracle that runs ``task``: its PMO-compatible variant under ``--pmo-compat`` where one exists."""
    return PMO_COMPAT.get(task, task) if pmo_compat else task


def report(runs: pl.DataFrame, optimizer: str) -> str:
    """Per-task table and sums as text; the oracle column names the oracle each task ran with."""
    lines = [f"{'task':26s} {'oracle':30s} {optimizer + ' (ours)':>16s} {'REINVENT':>9s} {'Graph GA':>9s} "
             f"{'Δ GA':>7s} {'s/run':>7s} seeds"]
    ours_sum = reinvent_sum = ga_sum = 0.0
    ran = set(runs.get_column("oracle"))
    for task in PMO_TASKS:
        for oracle in [o for o in (task, PMO_COMPAT.get(task)) if o in ran]:
            rows = runs.filter(pl.col("oracle") == oracle)
            aucs = rows.get_column("auc_top10").to_list()
            mean = statistics.mean(aucs)
            reinvent, ga = PUBLISHED[task]
            ours_sum, reinvent_sum, ga_sum = ours_sum + mean, reinvent_sum + reinvent, ga_sum + ga
            lines.append(f"{task:26s} {oracle:30s} {_mean_sd(aucs):>16s} {reinvent:9.3f} {ga:9.3f} "
                         f"{mean - ga:+7.3f} {rows.get_column('wall_time_s').mean():7.0f} {len(aucs)}")
    n = runs.get_column("oracle").n_unique()
    lines.append(f"{'sum of ' + str(n) + ' tasks':26s} {'':30s} {ours_sum:16.3f} {reinvent_sum:9.3f} {ga_sum:9.3f} "
                 f"{ours_sum - ga_sum:+7.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> pl.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(PMO_TASKS), choices=PMO_TASKS, metavar="TASK")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=10_000)
    parser.add_argument("--optimizer", default="graph_ga", choices=sorted(OPTIMIZERS))
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "pmo")
    parser.add_argument("--results", type=Path, default=None,
                        help="JSON accumulating all runs (default benchmarks/results/pmo_<optimizer>.json)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="optimizer settings other than its defaults, e.g. explore=0.1 (own run folders and "
                             "results file: <optimizer>-explore-0.1)")
    parser.add_argument("--pmo-compat", action="store_true",
                        help=f"run {', '.join(PMO_COMPAT)} with their _pmo oracles (PyTDC 0.3.6 isomer atom count)")
    args = parser.parse_args(argv)
    params = parse_settings(args.set)
    OPTIMIZERS[args.optimizer](**params)  # unknown or invalid settings fail here, before any run
    name = variant_name(args.optimizer, params)
    oracles = [oracle_for(task, args.pmo_compat) for task in args.tasks]
    swapped = [o for t, o in zip(args.tasks, oracles) if o != t]
    print(f"oracles: {', '.join(oracles)}" + (f" (PMO-compatible: {', '.join(swapped)})" if swapped else ""), flush=True)
    jobs = [(args.optimizer, oracle, seed, args.budget, args.out, params) for oracle in oracles for seed in args.seeds]
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            results = list(pool.map(run_one, *zip(*jobs)))
    else:
        results = [run_one(*job) for job in jobs]
    runs = pl.DataFrame(results)
    write_parquet_atomic(runs, args.out / "runs.parquet")
    print(f"\nPMO AUC top-10, budget {args.budget}, pool: MOSES 100k sample (paper: ZINC 250k), "
          f"isomer atom count: {'PyTDC 0.3.6 (--pmo-compat)' if args.pmo_compat else 'GuacaMol'}")
    print(report(runs, name))
    results = args.results or REPO / "benchmarks" / "results" / f"pmo_{name}.json"
    everything = accumulate(results, runs, args.budget)
    write_json_atomic(results, {
        "benchmark": "pmo", "optimizer": args.optimizer, "settings": params, "pool": "moses_sample (100k MOSES training molecules)",
        "git_commit": _git_commit(), "machine": _machine() | {"load_avg_1m_at_end": os.getloadavg()[0]}, "runs": everything.to_dicts(),
        "table": {str(budget): report(everything.filter(pl.col("budget") == budget), name)
                  for budget in sorted(set(everything.get_column("budget")))},
    })
    print(f"all runs so far: {results}")
    return runs


def accumulate(results: Path, runs: pl.DataFrame, budget: int) -> pl.DataFrame:
    """Earlier runs from ``results`` with ``runs`` replacing those of the same oracle, seed and budget."""
    fresh = runs.select(RESULT_COLUMNS).with_columns(pl.lit(budget, dtype=pl.Int64).alias("budget"))
    if not results.is_file():
        return fresh
    earlier = pl.DataFrame(json.loads(results.read_text())["runs"], schema=fresh.schema)
    kept = earlier.join(fresh, on=["oracle", "seed", "budget"], how="anti")
    return pl.concat([kept, fresh]).sort("oracle", "seed", "budget")


if __name__ == "__main__":
    main()
