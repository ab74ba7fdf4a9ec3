"""Property-prediction benchmark: our D-MPNN vs ECFP+SVR vs chemprop 2.3.1 on the same split indices.

Datasets: ESOL, FreeSolv, Lipophilicity (``--datasets``). Splits: random 80/10/10 with each
of ``--seeds`` plus one Bemis–Murcko scaffold split (``--no-scaffold`` skips it). Models
(``--models``):

``gnn``       ``python -m discovery.train +experiment=<--gnn-preset>`` (default ``property_dmpnn``,
              the tuned D-MPNN; ``--gnn-override key=value`` adds Hydra overrides)
``svr``       ``python -m discovery.train model=ecfp_svr`` (ECFP4 + RBF SVR, C chosen on validation)
``chemprop``  ``chemprop train`` 2.3.1 with its defaults (hidden 300, depth 3, 50 epochs, batch 64,
              best validation epoch kept) in ``.cache/chemprop-venv`` (created on demand, see
              ``benchmarks/featurize.py``), fed the GNN run's ``data.parquet`` (standardized
              SMILES, duplicates averaged) with a ``split`` column built from its ``splits.json``

so all three see identical molecules, labels and train/val/test rows (the SVR run's
``splits.json`` is checked against the GNN's). Every model runs as its own process with one
torch/BLAS thread (``OMP_NUM_THREADS=1``, ``trainer.num_threads=1``) and is timed end to end
(imports, featurization from the shared feature store, training, prediction, writing), one
after another for each split, so the models meet the same machine load; the 1-minute load
average is recorded before and after each run. ``--epochs`` sets the epochs of both neural
models (default 50).

Printed: test RMSE mean ± sd over the random seeds, the scaffold-split RMSE and the wall
seconds per run for each dataset and model, and the ratios GNN / chemprop. With ``--profile``
(default on) one in-process ESOL run of the GNN is broken down: featurization with a cold
(temporary, empty) and a warm store, split, graph building, collation, forward (train and
validation), backward, optimizer steps, and the rest of the loop.

Run (from the repo root)::

    nice -n 5 .venv/bin/python benchmarks/property.py --datasets esol --seeds 0 --epochs 10   # quick
    nice -n 5 .venv/bin/python benchmarks/property.py                                         # full protocol

Run folders go under ``--work-dir`` (default ``outputs/benchmarks/property``); the JSON under
``benchmarks/results/property.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import polars as pl
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from featurize import CHEMPROP_VERSION, ensure_chemprop_venv, run_tag  # noqa: E402
from featurestore.io import write_json_atomic  # noqa: E402
from featurestore.provenance import git_commit, package_versions  # noqa: E402
from featurestore.runs import differences, flatten  # noqa: E402

DATASETS = ("esol", "freesolv", "lipophilicity")
MODELS = ("gnn", "svr", "chemprop")
DEFAULT_OUT = REPO / "benchmarks" / "results" / "property.json"
DEFAULT_WORK = REPO / "outputs" / "benchmarks" / "property"
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def load1() -> float:
    """The 1-minute load average (the machine is shared: read timings against it)."""
    return round(os.getloadavg()[0], 2)


def timed_process(command: list[str], log_path: Path, timeout_s: float = 7200) -> dict[str, Any]:
    """Run ``command`` from the repo root with one thread; its output goes to ``log_path``.

    Returns ``wall_s``, ``cpu_s`` (user + system seconds of the process and everything it
    waited for: on a loaded machine the fairer cost), ``rc`` and the load average before and after.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    before = load1()
    cpu_before = _children_cpu_s()
    start = time.perf_counter()
    with open(log_path, "w") as log:
        done = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s,
                              env={**os.environ, **ONE_THREAD})
    return {"wall_s": round(time.perf_counter() - start, 2), "cpu_s": round(_children_cpu_s() - cpu_before, 2),
            "rc": done.returncode, "load1_before": before, "load1_after": load1()}


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def job_config(overrides: list[str]) -> dict[str, Any]:
    """The training app's job config for ``overrides``, as Hydra composes it (``--cfg job``: nothing runs)."""
    done = subprocess.run([sys.executable, "-m", "discovery.train", *overrides, "--cfg", "job"], cwd=REPO,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise ValueError(f"discovery.train {' '.join(overrides)} does not compose: {done.stderr.strip()[-500:]}")
    return yaml.safe_load(done.stdout)


def config_differences(run_dir: Path, overrides: list[str]) -> list[str]:
    """Keys where the config ``run_dir`` was trained with differs from what ``overrides`` compose to now
    (a changed preset or default); every key when the run recorded none."""
    recorded_file = run_dir / ".hydra" / "config.yaml"
    wanted = job_config(overrides)
    if not recorded_file.is_file():
        return sorted(flatten(wanted))
    return differences(yaml.safe_load(recorded_file.read_text()), wanted, after_label="now")


def run_app(overrides: list[str], run_dir: Path) -> dict[str, Any]:
    """``python -m discovery.train <overrides>`` into ``run_dir``, reused when its metrics exist and it was trained
    with the config the overrides compose to now; a run of another config is moved to ``<run_dir>.stale`` first.

    Returns the timing plus ``metrics`` (``metrics.json``), or ``error`` with the log's tail.
    """
    overrides = [*overrides, "trainer.num_threads=1"]
    metrics_file = run_dir / "metrics.json"
    timing_file = run_dir / "benchmark_timing.json"
    if metrics_file.exists() and timing_file.exists():
        differences = config_differences(run_dir, overrides)
        if not differences:
            return {**json.loads(timing_file.read_text()), "metrics": json.loads(metrics_file.read_text()), "reused": True}
        stale = run_dir.with_name(f"{run_dir.name}.stale")
        shutil.rmtree(stale, ignore_errors=True)
        run_dir.rename(stale)
        print(f"{run_dir}: trained with another config ({'; '.join(differences[:3])}); moved to {stale}, rerunning",
              flush=True)
    command = [sys.executable, "-m", "discovery.train", *overrides, f"hydra.run.dir={run_dir}"]
    timing = timed_process(command, run_dir.parent / f"{run_dir.name}.log")
    if timing["rc"] != 0 or not metrics_file.exists():
        tail = (run_dir.parent / f"{run_dir.name}.log").read_text().strip().splitlines()[-3:]
        return {**timing, "error": " | ".join(tail)[-500:]}
    write_json_atomic(timing_file, timing)
    return {**timing, "metrics": json.loads(metrics_file.read_text())}


def chemprop_table(gnn_dir: Path, csv_path: Path) -> tuple[list[str], pl.DataFrame]:
    """Write the GNN run's molecules, labels and folds as chemprop's input CSV; returns the task columns and the table."""
    data = pl.read_parquet(gnn_dir / "data.parquet")
    folds = json.loads((gnn_dir / "splits.json").read_text())["folds"]
    split = np.full(data.height, "", dtype=object)
    for fold, rows in folds.items():
        split[rows] = fold
    if (split == "").any():
        raise ValueError(f"{gnn_dir}/splits.json leaves {(split == '').sum()} rows without a fold")
    tasks = [c for c in data.columns if c not in ("row", "inchikey", "smiles")]
    table = data.select("smiles", *tasks).with_columns(pl.Series("split", split.tolist(), dtype=pl.String))
    table.write_csv(csv_path)
    return tasks, table


def run_chemprop(python: Path, gnn_dir: Path, run_dir: Path, seed: int, epochs: int) -> dict[str, Any]:
    """Train chemprop's default model on the GNN run's exact rows and folds; test RMSE from its predictions."""
    result_file = run_dir / "benchmark_result.json"
    if result_file.exists():
        return {**json.loads(result_file.read_text()), "reused": True}
    run_dir.mkdir(parents=True, exist_ok=True)
    tasks, table = chemprop_table(gnn_dir, run_dir / "input.csv")
    command = [str(python.parent / "chemprop"), "train", "-i", str(run_dir / "input.csv"), "-s", "smiles",
               "--target-columns", *tasks, "--splits-column", "split", "--epochs", str(epochs),
               "--pytorch-seed", str(seed), "--data-seed", str(seed), "-o", str(run_dir / "out"),
               "--accelerator", "cpu", "--devices", "1"]
    timing = timed_process(command, run_dir / "chemprop.log")
    predictions_file = run_dir / "out" / "model_0" / "test_predictions.csv"
    if timing["rc"] != 0 or not predictions_file.exists():
        tail = (run_dir / "chemprop.log").read_text().strip().splitlines()[-3:]
        return {**timing, "error": " | ".join(tail)[-500:]}
    test = table.filter(pl.col("split") == "test")
    predicted = pl.read_csv(predictions_file)
    if predicted.height != test.height or predicted.get_column("smiles").to_list() != test.get_column("smiles").to_list():
        raise ValueError(f"{predictions_file}: test rows differ from the input's test fold")
    errors = np.concatenate([predicted.get_column(t).to_numpy() - test.get_column(t).to_numpy() for t in tasks])
    errors = errors[~np.isnan(errors)]
    result = {**timing, "test_rmse": float(np.sqrt(np.mean(errors**2))), "n_test": int(errors.size)}
    write_json_atomic(result_file, result)
    return result


def split_specs(seeds: list[int], scaffold: bool) -> list[tuple[str, str, int]]:
    """``(label, split option, seed)`` per split: random with the first seed, scaffold (model seed 0), other seeds.

    The scaffold split comes second so a run cut short still has both kinds of split.
    """
    specs = [(f"random_seed{seed}", "random", seed) for seed in seeds]
    return specs[:1] + ([("scaffold", "scaffold", 0)] if scaffold else []) + specs[1:]


def benchmark_split(dataset: str, label: str, split: str, seed: int, args: argparse.Namespace,
                    chemprop_python: Path | None) -> dict[str, dict[str, Any]]:
    """All requested models on one (dataset, split); the GNN runs first because chemprop reuses its folds."""
    base = args.work_dir / run_tag(args.gnn_preset, f"e{args.epochs}", *args.gnn_override) / dataset / label
    common = [f"data={dataset}", f"split={split}", f"seed={seed}"]
    out: dict[str, dict[str, Any]] = {}
    gnn_overrides = [f"+experiment={args.gnn_preset}", *common, f"trainer.max_epochs={args.epochs}", *args.gnn_override]
    needs_gnn_run = "gnn" in args.models or "chemprop" in args.models
    gnn = run_app(gnn_overrides, base / "gnn") if needs_gnn_run else None
    if "gnn" in args.models:
        out["gnn"] = _summary(gnn)
    if "svr" in args.models:
        svr = run_app([*common, "model=ecfp_svr"], base / "svr")
        out["svr"] = _summary(svr)
        if gnn is not None and "error" not in gnn and "error" not in svr:
            same = json.loads((base / "gnn" / "splits.json").read_text())["folds"] == \
                json.loads((base / "svr" / "splits.json").read_text())["folds"]
            out["svr"]["same_split_as_gnn"] = same
    if "chemprop" in args.models:
        if chemprop_python is None:
            out["chemprop"] = {"error": args.chemprop_skip}
        elif "error" in gnn:
            out["chemprop"] = {"error": "no GNN run to take the split from"}
        else:
            out["chemprop"] = run_chemprop(chemprop_python, base / "gnn", base / "chemprop", seed, args.epochs)
    return out


def _summary(run: dict[str, Any]) -> dict[str, Any]:
    """Test RMSE and timings of one ``run_app`` result."""
    keep = {k: run[k] for k in ("wall_s", "cpu_s", "load1_before", "load1_after", "error", "reused") if k in run}
    if "metrics" in run:
        metrics = run["metrics"]
        keep.update(test_rmse=metrics["test"]["rmse"], n_test=metrics["test"]["n"], val_rmse=metrics["val"]["rmse"],
                    app_wall_s=metrics["wall_seconds"], training=metrics["training"])
    return keep


def _mean_sd(values: list[float]) -> dict[str, Any]:
    return {"mean": statistics.fmean(values) if values else None,
            "sd": statistics.stdev(values) if len(values) > 1 else None, "n": len(values)}


def summarize(results: dict[str, dict[str, dict[str, Any]]], models: list[str]) -> dict[str, Any]:
    """Per dataset and model: random-split RMSE mean ± sd, scaffold RMSE, mean wall; ratios to chemprop."""
    summary: dict[str, Any] = {}
    for dataset, splits in results.items():
        rows: dict[str, Any] = {}
        for model in models:
            runs = {label: split[model] for label, split in splits.items() if model in split}
            ok = {label: run for label, run in runs.items() if "test_rmse" in run}
            random_rmse = [run["test_rmse"] for label, run in ok.items() if label.startswith("random")]
            rows[model] = {
                "random_rmse": _mean_sd(random_rmse),
                "scaffold_rmse": ok["scaffold"]["test_rmse"] if "scaffold" in ok else None,
                "wall_s": _mean_sd([run["wall_s"] for run in ok.values()]),
                "cpu_s": _mean_sd([run["cpu_s"] for run in ok.values() if "cpu_s" in run]),
                "errors": {label: run["error"] for label, run in runs.items() if "error" in run},
            }
        if "gnn" in rows and "chemprop" in rows:
            gnn, peer = rows["gnn"], rows["chemprop"]
            rows["gnn_over_chemprop"] = {
                "random_rmse": _ratio(gnn["random_rmse"]["mean"], peer["random_rmse"]["mean"]),
                "scaffold_rmse": _ratio(gnn["scaffold_rmse"], peer["scaffold_rmse"]),
                "wall_s": _ratio(gnn["wall_s"]["mean"], peer["wall_s"]["mean"]),
                "cpu_s": _ratio(gnn["cpu_s"]["mean"], peer["cpu_s"]["mean"]),
            }
        summary[dataset] = rows
    return summary


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _fmt(stats: dict[str, Any], spec: str = ".3f") -> str:
    if stats["mean"] is None:
        return "-"
    return f"{stats['mean']:{spec}}" + (f" ± {stats['sd']:{spec}}" if stats["sd"] is not None else "")


def print_table(summary: dict[str, Any], models: list[str]) -> None:
    print(f"\n{'dataset':<14}{'model':<10}{'random RMSE (mean ± sd)':>26}{'n':>3}{'scaffold RMSE':>15}{'wall s / run':>18}{'CPU s / run':>18}")
    for dataset, rows in summary.items():
        for model in models:
            row = rows[model]
            scaffold = "-" if row["scaffold_rmse"] is None else f"{row['scaffold_rmse']:.3f}"
            print(f"{dataset:<14}{model:<10}{_fmt(row['random_rmse']):>26}{row['random_rmse']['n']:>3}{scaffold:>15}"
                  f"{_fmt(row['wall_s'], '.1f'):>18}{_fmt(row['cpu_s'], '.1f'):>18}" + (f"  errors: {row['errors']}" if row["errors"] else ""))
        if "gnn_over_chemprop" in rows:
            ratio = rows["gnn_over_chemprop"]
            print(f"{'':<14}{'gnn/chemprop':<14} random RMSE x{ratio['random_rmse']}, scaffold RMSE "
                  f"x{ratio['scaffold_rmse']}, wall x{ratio['wall_s']}, CPU x{ratio['cpu_s']}")


# ---------------------------------------------------------------------------------- where the time goes
@contextmanager
def stopwatch(totals: dict[str, float], key: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        totals[key] += time.perf_counter() - start


@contextmanager
def instrumented_training(model: Any, totals: dict[str, float]) -> Iterator[None]:
    """Accumulate seconds in collation, train/eval forward, backward and optimizer steps while inside.

    Hooks and patches live only in this benchmark process (PyG's ``Collater.__call__``,
    ``Tensor.backward``, torch's global optimizer-step hooks, forward hooks on ``model``),
    so the trainer itself carries no timing code.
    """
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
    from torch_geometric.loader.dataloader import Collater

    collate, backward = Collater.__call__, torch.Tensor.backward
    marks: dict[str, float] = {}

    def timed_collate(self: Any, batch: Any) -> Any:
        with stopwatch(totals, "collation"):
            return collate(self, batch)

    def timed_backward(self: Any, *a: Any, **k: Any) -> Any:
        with stopwatch(totals, "backward"):
            return backward(self, *a, **k)

    def forward_start(module: Any, _inputs: Any) -> None:
        marks["forward"] = time.perf_counter()

    def forward_end(module: Any, _inputs: Any, _output: Any) -> None:
        totals["forward_train" if module.training else "forward_eval"] += time.perf_counter() - marks["forward"]

    def step_start(_optimizer: Any, _args: Any, _kwargs: Any) -> None:
        marks["step"] = time.perf_counter()

    def step_end(_optimizer: Any, _args: Any, _kwargs: Any) -> None:
        totals["optimizer_step"] += time.perf_counter() - marks["step"]

    handles = [model.register_forward_pre_hook(forward_start), model.register_forward_hook(forward_end),
               register_optimizer_step_pre_hook(step_start),
               register_optimizer_step_post_hook(step_end)]
    Collater.__call__, torch.Tensor.backward = timed_collate, timed_backward
    try:
        yield
    finally:
        Collater.__call__, torch.Tensor.backward = collate, backward
        for handle in handles:
            handle.remove()


def where_the_time_goes(dataset: str, args: argparse.Namespace) -> dict[str, Any]:
    """One in-process GNN run on ``dataset`` (random split, seed 0) broken down by stage, in seconds."""
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from discovery.checkpoint import TargetScaler
    from discovery.data import build_dataset
    from discovery.inputs import input_dims, model_inputs
    from discovery.models import build_model, model_class
    from discovery.splits import FOLDS
    from discovery.trainer import fit, labelled_examples, predict_outputs
    from featurestore.provenance import seed_everything

    overrides = [f"+experiment={args.gnn_preset}", f"data={dataset}", "split=random", "seed=0",
                 f"trainer.max_epochs={args.epochs}", "trainer.num_threads=1", *args.gnn_override]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    torch.set_num_threads(1)
    totals: dict[str, float] = defaultdict(float)
    standardizer, view = instantiate(cfg.standardizer), instantiate(cfg.model.view)
    with tempfile.TemporaryDirectory() as root:
        store = instantiate(cfg.store, root=root)
        with stopwatch(totals, "featurize_cold_store"):
            build_dataset(instantiate(cfg.data), view, store, standardizer)
        with stopwatch(totals, "featurize_warm_store"):
            data = build_dataset(instantiate(cfg.data), view, store, standardizer)
    with stopwatch(totals, "split"):
        split = instantiate(cfg.split).assign(data, store)
    with stopwatch(totals, "graphs_from_store_rows"):
        inputs = model_inputs(model_class(cfg.model.name).input_kind, data.features)
    labelled = ~np.isnan(data.target_matrix())
    masks = {fold: split.label_mask(fold, labelled) for fold in FOLDS}
    scaled = TargetScaler.fit(data.target_matrix(), masks["train"]).transform(data.target_matrix())
    with stopwatch(totals, "labelled_examples"):
        train, val = (labelled_examples(inputs, split.rows(f), scaled, masks[f]) for f in ("train", "val"))
    seed_everything(0)
    hparams = {**dict(cfg.model.hparams), "n_tasks": 1, **input_dims("graph", inputs)}
    model = build_model(cfg.model.name, hparams)
    trainer = instantiate(cfg.trainer)
    with instrumented_training(model, totals), stopwatch(totals, "fit_total"):
        result = fit(model, train, val, trainer, data.task_type, 0)
    with stopwatch(totals, "predict_test"):
        predict_outputs(model, [inputs[row] for row in split.rows("test")], trainer.eval_batch_size, trainer.device)
    parts = ("collation", "forward_train", "forward_eval", "backward", "optimizer_step")
    totals["fit_other"] = totals["fit_total"] - sum(totals[p] for p in parts)
    return {"dataset": dataset, "molecules": len(data), "epochs_run": len(result.history), "overrides": overrides,
            "store_n_jobs": cfg.store.n_jobs, "load1_after": load1(),
            "seconds": {key: round(value, 3) for key, value in totals.items()}}


def print_profile(profile: dict[str, Any]) -> None:
    seconds = profile["seconds"]
    print(f"\nwhere the time goes: GNN on {profile['dataset']} ({profile['molecules']} molecules, "
          f"{profile['epochs_run']} epochs, 1 thread, load {profile['load1_after']})")
    fit_total = seconds["fit_total"]
    for key, value in seconds.items():
        share = f"{100 * value / fit_total:5.1f}% of fit" if key in (
            "collation", "forward_train", "forward_eval", "backward", "optimizer_step", "fit_other") else ""
        print(f"  {key:<24}{value:>9.2f} s  {share}")


def build_report(args: argparse.Namespace, started: str, results: dict[str, Any], chemprop_python: Path | None,
                 profile: dict[str, Any] | None) -> dict[str, Any]:
    """The JSON written to ``--out``: arguments, conditions, versions, summary, every run, the profile."""
    return {
        "benchmark": "property", "started": started, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "conditions": {"cpu_count": os.cpu_count(), "threads_per_run": 1, "load1_end": load1(),
                       "note": "models run one after another per split on a shared machine; compare within this file"},
        "versions": {**package_versions(), "chemprop": CHEMPROP_VERSION if chemprop_python else None},
        "git_commit": git_commit(REPO), "summary": summarize(results, args.models), "runs": results,
        "where_the_time_goes": profile,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="random-split seeds")
    parser.add_argument("--no-scaffold", action="store_true", help="skip the scaffold split")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--epochs", type=int, default=50, help="epochs of the GNN and of chemprop")
    parser.add_argument("--gnn-preset", default="property_dmpnn", help="conf/experiment preset of our GNN")
    parser.add_argument("--gnn-override", nargs="*", default=[], help="extra Hydra overrides for the GNN runs")
    parser.add_argument("--no-profile", action="store_true", help="skip the 'where the time goes' ESOL run")
    parser.add_argument("--profile-only", action="store_true", help="only the 'where the time goes' ESOL run")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    if args.profile_only:
        profile = where_the_time_goes("esol", args)
        write_json_atomic(args.out, {"benchmark": "property/where_the_time_goes", "versions": package_versions(),
                                     "git_commit": git_commit(REPO), "where_the_time_goes": profile})
        print_profile(profile)
        return profile
    chemprop_python = None
    if "chemprop" in args.models:
        chemprop_python, args.chemprop_skip = ensure_chemprop_venv()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results: dict[str, dict[str, dict[str, Any]]] = {dataset: {} for dataset in args.datasets}
    # Splits outermost, so every dataset has its first seed early; the JSON is rewritten after each split.
    for label, split, seed in split_specs(args.seeds, not args.no_scaffold):
        for dataset in args.datasets:
            results[dataset][label] = benchmark_split(dataset, label, split, seed, args, chemprop_python)
            brief = {m: r.get("test_rmse", r.get("error")) for m, r in results[dataset][label].items()}
            print(f"{dataset} {label}: {brief}", file=sys.stderr, flush=True)
            report = build_report(args, started, results, chemprop_python, None)
            write_json_atomic(args.out, report)
    profile = None if args.no_profile else where_the_time_goes("esol", args)
    report = build_report(args, started, results, chemprop_python, profile)
    write_json_atomic(args.out, report)
    print_table(report["summary"], args.models)
    if profile:
        print_profile(profile)
    print(f"\nsaved {args.out}")
    return report


if __name__ == "__main__":
    main()
