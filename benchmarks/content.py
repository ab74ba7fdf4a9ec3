"""Cold/warm benchmark of the content and hybrid drug recommenders against behavior models.

What is measured, per dataset and split, on the test fold, full ranking over the whole
catalog (``recommend.evaluate.evaluate_fold``, the run app's evaluation):

- datasets: ``eunomia`` (Eunomia GiBleed OMOP cohort, Synthea-generated patients) and
  ``simulated`` (a SYNTHETIC cohort from ``recommend.simulate``, ``--patients`` patients,
  seed 0; no real patient behind any row; written once to ``.cache/benchmarks/``);
- splits: ``time`` (``conf/usage_split/time.yaml``: warm drugs, the usual setting) and
  ``cold_items`` (every interaction of a random 20% of the drugs in use is the test set:
  those drugs have no training interaction at all);
- models: popularity, EASE, ALS (their ``conf/recommender`` defaults), content
  (``content.yaml``), hybrid (EASE + content, alpha tuned inside training; ``hybrid.yaml``),
  evaluated at each ``--cold-weights`` value (the score scale of drugs without training
  interactions: the cold/warm trade-off; ``hybrid 0.2`` is the configured default);
- metrics: NDCG@10, Recall@20, coverage@20 for task ``all`` (every future drug, nothing
  filtered) and ``new`` (drugs the patient never took, past drugs not ranked), and fit seconds.

Also the query latency of the content model's ``similar_items`` (one drug per query, top
10, 1,000 random catalog drugs, after one warm-up query): p50 / p95 in milliseconds.

Target (issue 6): the hybrid beats pure behavior on cold drugs (``cold_items``) and does
not lose on warm ones (``time``).

Run (from the repo root)::

    nice -n 5 .venv/bin/python benchmarks/content.py                       # both datasets, 20k simulated
    .venv/bin/python benchmarks/content.py --datasets eunomia --models popularity ease content

Prints one table and writes ``benchmarks/results/content.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS (implicit's advice)

REPO = Path(__file__).resolve().parents[1]
# benchmarks/recommend.py would shadow the recommend package: take this folder off the path, put the repo first.
sys.path[:] = [str(REPO), *(p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent)]

import numpy as np  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from benchmarks.featurize import _machine  # noqa: E402
from featurestore.datasets import load_dataset  # noqa: E402
from featurestore.io import write_json_atomic  # noqa: E402
from recommend.evaluate import evaluate_fold  # noqa: E402
from recommend.ingest import load_usage  # noqa: E402
from recommend.interactions import Weighting  # noqa: E402
from recommend.mapping import DrugCatalog, map_events  # noqa: E402
from recommend.models import Recommender  # noqa: E402
from recommend.run import fit_fold  # noqa: E402
from recommend.simulate import simulate, write_synthetic  # noqa: E402
from recommend.splits import make_split  # noqa: E402

CONF = REPO / "conf"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "content.json"
MODELS = ("popularity", "ease", "als", "content", "hybrid")
SPLITS = ("time", "cold_items")
TASKS = ("all", "new")
N_QUERIES = 1000


def _compose(config: str, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose(config, overrides=overrides)


def simulated_usage(n_patients: int) -> list[str]:
    """Overrides pointing ``usage=simulated`` at a SYNTHETIC cohort of ``n_patients`` (generated once)."""
    out_dir = REPO / ".cache" / "benchmarks" / f"synthetic_n{n_patients}_seed0"
    exposures = out_dir / "drug_exposure_synthetic.parquet"
    if not exposures.is_file():
        params = OmegaConf.to_container(_compose("simulate", [f"n_patients={n_patients}", "seed=0"]), resolve=True)
        params.pop("hydra", None)
        write_synthetic(simulate(params, load_dataset("drugs")), out_dir, params)
    return ["usage=simulated", f"usage.tables.drug_exposure.path={exposures}"]


def benchmark_dataset(name: str, usage: list[str], models: list[str], splits: list[str],
                      cold_weights: list[float]) -> list[dict[str, Any]]:
    """One row per (split, model, task) on the test fold of ``name``; the hybrid once per cold weight."""
    cfg = _compose("recommend", usage)
    data = load_usage(OmegaConf.to_container(cfg.usage, resolve=True))
    catalog = DrugCatalog(load_dataset("drugs"), aliases=cfg.catalog.aliases)
    events, _ = map_events(data.events, data.item_kind, catalog, cfg.catalog.granularity, data.vocabulary)
    items, users = catalog.items(cfg.catalog.granularity), events["person_id"].unique().sort()
    weighting = Weighting(**OmegaConf.to_container(cfg.weighting, resolve=True))
    tasks = {task: spec for task, spec in OmegaConf.to_container(cfg.evaluate.tasks).items() if task in TASKS}
    rows = []
    for split in splits:
        split_cfg = _compose("recommend", [*usage, f"usage_split={split}"])
        fold = make_split(events, OmegaConf.to_container(split_cfg.usage_split, resolve=True))["test"]
        for model_name in models:
            spec = OmegaConf.to_container(_compose("recommend", [*usage, f"recommender={model_name}"]).recommender,
                                          resolve=True)
            model, train, seconds = fit_fold(spec, fold, items, users, weighting)
            # cold_weight only scales scores: one fitted hybrid serves every weight.
            for cold_weight in cold_weights if model_name == "hybrid" else [None]:
                label = model_name if cold_weight is None else f"hybrid {cold_weight:g}"
                if cold_weight is not None:
                    model.cold_weight = cold_weight
                results = evaluate_fold(model, train, fold, tasks, [10, 20], cfg.evaluate.mrr_depth)
                for task, values in results.items():
                    rows.append({"dataset": name, "split": split, "model": label, "task": task,
                                 "patients": values.get("patients", 0), "ndcg@10": values.get("ndcg@10"),
                                 "recall@20": values.get("recall@20"), "coverage@20": values.get("coverage@20"),
                                 "fit_s": round(seconds, 2), "alpha": getattr(model, "fitted_alpha", None)})
            print(f"  {name} {split} {model_name}: fit {seconds:.1f} s", flush=True)
            if model_name == "content" and split == splits[0]:
                rows.append({"dataset": name, "latency": similar_items_latency(model)})
    return rows


def similar_items_latency(model: Recommender, n_queries: int = N_QUERIES, seed: int = 0) -> dict[str, float]:
    """p50 / p95 milliseconds of ``similar_items`` for single random drugs (top 10)."""
    queries = np.random.default_rng(seed).integers(0, model.n_items, n_queries)
    model.similar_items(queries[:1], N=10)
    times = []
    for item in queries:
        start = time.perf_counter()
        model.similar_items(np.array([item]), N=10)
        times.append(1000 * (time.perf_counter() - start))
    return {"queries": n_queries, "p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95))}


def _table(rows: list[dict[str, Any]]) -> str:
    header = f"{'dataset':10s} {'split':10s} {'model':11s} {'task':4s} {'patients':>8s} {'NDCG@10':>8s} " \
             f"{'Recall@20':>9s} {'cov@20':>7s} {'fit s':>7s} {'alpha':>5s}"
    lines = [header, "-" * len(header)]
    for r in rows:
        if "latency" in r:
            continue
        values = [f"{r[k]:.4f}" if r[k] is not None else "-" for k in ("ndcg@10", "recall@20", "coverage@20")]
        alpha = "" if r["alpha"] is None else f"{r['alpha']:.1f}"
        lines.append(f"{r['dataset']:10s} {r['split']:10s} {r['model']:11s} {r['task']:4s} {r['patients']:8d} "
                     f"{values[0]:>8s} {values[1]:>9s} {values[2]:>7s} {r['fit_s']:7.1f} {alpha:>5s}")
    for r in rows:
        if "latency" in r:
            lat = r["latency"]
            lines.append(f"content similar_items on {r['dataset']}: {lat['queries']} queries, "
                         f"p50 {lat['p50_ms']:.3f} ms, p95 {lat['p95_ms']:.3f} ms")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["eunomia", "simulated"], choices=["eunomia", "simulated"])
    parser.add_argument("--patients", type=int, default=20_000, help="SYNTHETIC cohort size")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    parser.add_argument("--cold-weights", nargs="+", type=float, default=[0.05, 0.2, 0.5],
                        help="hybrid cold_weight values (0.2 = conf/recommender/hybrid.yaml)")
    parser.add_argument("--resources", action=argparse.BooleanOptionalAction, default=True,
                        help="also the PubMed resource-retrieval table (benchmarks/resources.py)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    began = time.perf_counter()
    rows = []
    for dataset in args.datasets:
        usage = ["usage=eunomia"] if dataset == "eunomia" else simulated_usage(args.patients)
        label = dataset if dataset == "eunomia" else f"simulated (SYNTHETIC, {args.patients} patients)"
        print(f"{label}:", flush=True)
        rows += benchmark_dataset(dataset, usage, args.models, args.splits, args.cold_weights)
    print(_table(rows))
    resources = None
    if args.resources:
        from resources import print_result, run_benchmark  # benchmarks/resources.py, beside this script

        resources = run_benchmark()
        print_result(resources)
    write_json_atomic(args.out, {
        "benchmark": "content", "created": datetime.now(timezone.utc).isoformat(), "rows": rows,
        "resources": resources,
        "simulated": {"synthetic": True, "patients": args.patients, "seed": 0},
        "machine": _machine() | {"load_avg_1m_at_end": os.getloadavg()[0]},
        "seconds": round(time.perf_counter() - began, 1),
    })
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
