"""Cold/warm benchmark of the content and hybrid drug recommenders against behavior models.

What is measured, per dataset and split, on the test fold, full ranking over the whole
catalog (``recommend.evaluate.evaluate_fold``, the run app's evaluation):

- datasets: ``eunomia`` (Eunomia GiBleed OMOP cohort, Synthea-generated patients) and
  ``simulated`` (a SYNTHETIC cohort from ``recommend.simulate``, ``--patients`` patients,
  seed 0; no real patient behind any row; written once to ``.cache/benchmarks/``);
- splits: ``time`` (``conf/usage_split/time.yaml``: warm drugs, the usual setting) and
  ``cold_items`` (every interaction of a random 20% of the drugs in use is the test set:
  those drugs have no training interaction at all), drawn with each ``--cold-seeds`` seed
  (default 0 1 2: which drugs are held out moves the figures a lot);
- models: popularity, EASE, ALS (their ``conf/recommender`` defaults, binary weighting),
  ``popularity tuned`` (the best behavior model of ``benchmarks/recommend.py``'s 12-point
  grids on task b, picked by validation NDCG@10: popularity by summed weight under the
  dataset's tuned weighting, ``TUNED_WEIGHTING``), content (``content.yaml``), hybrid
  (``hybrid.yaml``: behavior candidates EASE and popularity, alpha and cold weight tuned on
  inner folds of the run's split inside the training history) under the same tuned
  weighting, ``hybrid +p+q`` (the same with the cold score's propagation and usage prior
  tuned too) and ``hybrid <w>`` for each ``--cold-weights`` value (the first model: EASE
  only, fixed cold weight, alpha tuned on a per-patient holdout);
- metrics: NDCG@10, Recall@20, coverage@20 for task ``all`` (every future drug, nothing
  filtered) and ``new`` (drugs the patient never took, past drugs not ranked), and fit seconds.

Also the query latency of the content model's ``similar_items`` (one drug per query, top
10, 1,000 random catalog drugs, after one warm-up query): p50 / p95 in milliseconds.

Target (issue 6), checked on task ``new`` under the table: on ``cold_items`` the hybrid
beats pure behavior and pure content on NDCG@10; on ``time`` it loses less than 5 % to the best
behavior model.

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
from recommend.simulate import cached_cohort  # noqa: E402
from recommend.splits import make_split  # noqa: E402

CONF = REPO / "conf"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "content.json"
MODELS = ("popularity", "ease", "als", "content", "hybrid")
BEHAVIOR = ("popularity", "ease", "als")
# The weighting of each dataset's best behavior model on task b in benchmarks/results/recommend_grid12.json
# (12-point grids, picked by validation NDCG@10): recency-weighted popularity on Eunomia; on the synthetic
# cohort popularity by patients, i.e. binary weights.
TUNED_WEIGHTING = {"eunomia": {"scheme": "recency", "half_life_days": 540}, "simulated": {"scheme": "binary"}}
SPLITS = ("time", "cold_items")
TASKS = ("all", "new")
N_QUERIES = 1000


def _compose(config: str, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose(config, overrides=overrides)


def simulated_usage(n_patients: int) -> list[str]:
    """Overrides pointing ``usage=simulated`` at a SYNTHETIC cohort of ``n_patients`` (simulated once per settings)."""
    params = OmegaConf.to_container(_compose("simulate", [f"n_patients={n_patients}", "seed=0"]), resolve=True)
    cohort = cached_cohort(REPO / ".cache" / "benchmarks" / f"synthetic_n{n_patients}_seed0", params)
    return ["usage=simulated", f"usage.cohort={cohort}"]


Variant = tuple[str, dict[str, Any], bool, bool]  # label, spec overrides, tuned on the run's split?, tuned weighting?


def model_variants(model: str, cold_weights: list[float]) -> list[Variant]:
    """The rows measured for ``model``.

    ``hybrid``: the configured model (behavior candidate, alpha and cold weight tuned on inner folds of the
    run's split, plain content cold score); ``hybrid +p+q``: the same with propagation and the usage prior
    tuned too; ``hybrid <w>``: the first model, EASE only, fixed cold weight, alpha tuned on a per-patient
    holdout. Hybrids and ``popularity tuned`` use the dataset's tuned weighting.
    """
    if model == "popularity":
        return [("popularity", {}, True, False), ("popularity tuned", {"by": "weight"}, True, True)]
    if model != "hybrid":
        return [(model, {}, True, False)]
    first = [(f"hybrid {w:g}", {"behavior": {"name": "ease", "l2": 500.0}, "cold_weight": w, "propagation": 0.0,
                                "prior": 0.0, "repeats": 1}, False, False) for w in cold_weights]
    return [("hybrid", {}, True, True), ("hybrid +p+q", {"propagation": None, "prior": None}, True, True), *first]


def benchmark_dataset(name: str, usage: list[str], models: list[str], splits: list[str],
                      cold_weights: list[float], cold_seeds: list[int]) -> list[dict[str, Any]]:
    """One row per (split, seed, model, task) on the test fold of ``name``; the hybrid in each
    :func:`model_variants`. ``cold_items`` is drawn once per seed of ``cold_seeds`` (which drugs are held
    out; the models' seeds follow), ``time`` once with seed 0."""
    cfg = _compose("recommend", usage)
    data = load_usage(OmegaConf.to_container(cfg.usage, resolve=True), patients=False)
    catalog = DrugCatalog(load_dataset("drugs"), aliases=cfg.catalog.aliases)
    events, _ = map_events(data.events, data.item_kind, catalog, cfg.catalog.granularity, data.vocabulary)
    items, users = catalog.items(cfg.catalog.granularity), events["person_id"].unique().sort()
    weighting = Weighting(**OmegaConf.to_container(cfg.weighting, resolve=True))
    tuned_weighting = Weighting(**TUNED_WEIGHTING[name])
    tasks = {task: spec for task, spec in OmegaConf.to_container(cfg.evaluate.tasks).items() if task in TASKS}
    rows = []
    for split, seed in [(split, seed) for split in splits for seed in (cold_seeds if split == "cold_items" else [0])]:
        split_cfg = _compose("recommend", [*usage, f"usage_split={split}", f"seed={seed}"])
        split_spec = OmegaConf.to_container(split_cfg.usage_split, resolve=True)
        fold = make_split(events, split_spec)["test"]
        for model_name in models:
            spec = OmegaConf.to_container(
                _compose("recommend", [*usage, f"recommender={model_name}", f"seed={seed}"]).recommender, resolve=True)
            for label, overrides, tuned, tuned_weights in model_variants(model_name, cold_weights):
                model, train, seconds = fit_fold(spec | overrides, fold, items, users,
                                                 tuned_weighting if tuned_weights else weighting,
                                                 split=split_spec if tuned else None)
                results = evaluate_fold(model, train, fold, tasks, [10, 20], cfg.evaluate.mrr_depth)
                fitted = getattr(model, "fitted", None)
                for task, values in results.items():
                    rows.append({"dataset": name, "split": split, "seed": seed, "model": label, "task": task,
                                 "patients": values.get("patients", 0), "ndcg@10": values.get("ndcg@10"),
                                 "recall@20": values.get("recall@20"), "coverage@20": values.get("coverage@20"),
                                 "fit_s": round(seconds, 2), "fitted": fitted})
                print(f"  {name} {split} seed {seed} {label}: fit {seconds:.1f} s{f', {fitted}' if fitted else ''}",
                      flush=True)
            if model_name == "content" and split == splits[0] and seed == 0:
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


def _settings(fitted: dict[str, float] | None) -> str:
    """A hybrid's settings in use: b(ehavior candidate) a(lpha) w (cold weight) p(ropagation) q (prior power)."""
    if not fitted:
        return ""
    return " ".join(f"{short}={fitted[key]:g}" for short, key in (
        ("b", "behavior"), ("a", "alpha"), ("w", "cold_weight"), ("p", "propagation"), ("q", "prior"))
        if key in fitted)


def _verdicts(rows: list[dict[str, Any]]) -> list[str]:
    """Issue 6's target on task ``new`` (NDCG@10 averaged over the seeds): on cold_items the hybrid beats every
    behavior model and content; on time it loses less than 5 % to the best behavior model."""
    runs: dict[tuple[str, str, str], list[float]] = {}
    for r in rows:
        if r.get("task") == "new":
            runs.setdefault((r["dataset"], r["split"], r["model"]), []).append(r["ndcg@10"])
    ndcg = {key: float(np.mean(values)) for key, values in runs.items()}
    lines = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        hybrid = ndcg.get((dataset, "cold_items", "hybrid"))
        others = {m: v for (d, split, m), v in ndcg.items()
                  if d == dataset and split == "cold_items" and not m.startswith("hybrid")}
        if hybrid is not None and others:
            best = max(others, key=others.get)
            seeds = len(runs[(dataset, "cold_items", "hybrid")])
            lines.append(f"{dataset} cold_items ({seeds} seeds): hybrid {hybrid:.4f} vs best other ({best}) "
                         f"{others[best]:.4f}: {'met' if hybrid > others[best] else 'NOT met'}")
        hybrid = ndcg.get((dataset, "time", "hybrid"))
        behavior = {m: v for (d, split, m), v in ndcg.items()
                    if d == dataset and split == "time" and m.split()[0] in BEHAVIOR}
        if hybrid is not None and behavior:
            best = max(behavior, key=behavior.get)
            loss = 1 - hybrid / behavior[best] if behavior[best] > 0 else 0.0
            lines.append(f"{dataset} time: hybrid {hybrid:.4f} vs best behavior ({best}) {behavior[best]:.4f} "
                         f"({-loss:+.1%}): {'met' if loss < 0.05 else 'NOT met'} (< 5 % loss)")
    return lines


def _table(rows: list[dict[str, Any]]) -> str:
    header = f"{'dataset':10s} {'split':10s} {'seed':>4s} {'model':13s} {'task':4s} {'patients':>8s} {'NDCG@10':>8s} " \
             f"{'Recall@20':>9s} {'cov@20':>7s} {'fit s':>7s}  settings"
    lines = [header, "-" * len(header)]
    for r in rows:
        if "latency" in r:
            continue
        values = [f"{r[k]:.4f}" if r[k] is not None else "-" for k in ("ndcg@10", "recall@20", "coverage@20")]
        lines.append(f"{r['dataset']:10s} {r['split']:10s} {r['seed']:4d} {r['model']:13s} {r['task']:4s} "
                     f"{r['patients']:8d} {values[0]:>8s} {values[1]:>9s} {values[2]:>7s} {r['fit_s']:7.1f}  "
                     f"{_settings(r['fitted'])}")
    for r in rows:
        if "latency" in r:
            lat = r["latency"]
            lines.append(f"content similar_items on {r['dataset']}: {lat['queries']} queries, "
                         f"p50 {lat['p50_ms']:.3f} ms, p95 {lat['p95_ms']:.3f} ms")
    return "\n".join(lines + _verdicts(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["eunomia", "simulated"], choices=["eunomia", "simulated"])
    parser.add_argument("--patients", type=int, default=20_000, help="SYNTHETIC cohort size")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    parser.add_argument("--cold-weights", nargs="*", type=float, default=[],
                        help="fixed cold_weight values of the first hybrid (0.2 was its default)")
    parser.add_argument("--cold-seeds", nargs="+", type=int, default=[0, 1, 2],
                        help="seeds of the cold_items split (which 20 %% of the drugs are held out)")
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
        rows += benchmark_dataset(dataset, usage, args.models, args.splits, args.cold_weights, args.cold_seeds)
    print(_table(rows))
    resources = None
    if args.resources:
        from benchmarks.resources import print_result, run_benchmark

        resources = run_benchmark()
        print_result(resources)
    write_json_atomic(args.out, {
        "benchmark": "content", "created": datetime.now(timezone.utc).isoformat(), "rows": rows,
        "resources": resources,
        "simulated": {"synthetic": True, "patients": args.patients, "seed": 0}, "cold_seeds": args.cold_seeds,
        "tuned_weighting": TUNED_WEIGHTING,
        "machine": _machine() | {"load_avg_1m_at_end": os.getloadavg()[0]},
        "seconds": round(time.perf_counter() - began, 1),
    })
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
