"""Drug–target affinity on the KIBA sample: GraphDTA vs ECFP + k-mer random forest, given / cold-drug / cold-target.

Each (split, model, seed) is one ``discovery.train`` run (composed from ``conf/train.yaml``
with ``data=kiba_sample``) into ``<out>/<split>/<model>/seed<k>/``; a run whose
``metrics.json`` exists is read back, not rerun. The cold splits use 60/20/20 fractions so
their fold sizes match the given split (3,000 / 1,000 / 1,000 pairs). Printed per run:
test MSE and concordance index (CI), the test MSE of predicting the training mean, validation
MSE, the best (kept) epoch, pairs per fold and the run's wall seconds (data from the warm
store, training, predicting all folds); the JSON lands in ``benchmarks/results/dta.json``.

Anchor (DESIGN.md): GraphDTA on the full KIBA (118k pairs, random split) reports MSE ~0.14,
CI ~0.89. This is a 5,000-pair sample whose given split is cold on both sides, so expect far
worse; the random forest is the bar.

Run (from the repo root)::

    nice -n 5 .venv/bin/python benchmarks/dta.py --seeds 0
    nice -n 5 .venv/bin/python benchmarks/dta.py --splits cold_target --models graphdta --max-epochs 5
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import polars as pl
from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from discovery.train import run_training  # noqa: E402
from featurestore.io import write_json_atomic  # noqa: E402

SPLITS = ("given", "cold_drug", "cold_target")
MODELS = ("ecfp_kmer_rf", "graphdta")
COLD_FRACTIONS = "[0.6,0.2,0.2]"  # the given split's 3,000 / 1,000 / 1,000


def run_one(split: str, model: str, seed: int, out: Path, store: Path, overrides: list[str]) -> dict[str, Any]:
    """Metrics of one run, computing it unless a finished run is on disk."""
    run_dir = out / split / model / f"seed{seed}"
    if (run_dir / "metrics.json").is_file():
        return json.loads((run_dir / "metrics.json").read_text())
    args = ["data=kiba_sample", f"split={split}", f"model={model}", f"seed={seed}", f"store.root={store}",
            "store.progress=false", *([f"split.fractions={COLD_FRACTIONS}"] if split != "given" else []), *overrides]
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=args)
    return run_training(cfg, run_dir)


def mean_baseline_mse(run_dir: Path) -> float:
    """Test MSE of predicting the training mean for every pair (what a model must beat)."""
    predictions = pl.read_parquet(run_dir / "predictions.parquet")
    train_mean = predictions.filter(pl.col("split") == "train").get_column("target").mean()
    test = predictions.filter(pl.col("split") == "test").get_column("target")
    return float(((test - train_mean) ** 2).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--max-epochs", type=int, default=30, help="GraphDTA epochs (early stopping on val loss)")
    parser.add_argument("--patience", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (shared machine: 1)")
    parser.add_argument("--trees", type=int, default=500, help="random forest trees")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "benchmarks" / "dta")
    parser.add_argument("--store", type=Path, default=REPO / ".featurestore")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results" / "dta.json")
    args = parser.parse_args()
    trainer = [f"trainer.max_epochs={args.max_epochs}", f"trainer.patience={args.patience}",
               f"trainer.batch_size={args.batch_size}", f"trainer.num_threads={args.threads}"]
    rows = []
    for split in args.splits:
        for model in args.models:
            for seed in args.seeds:
                overrides = trainer if model == "graphdta" else [f"model.hparams.n_estimators={args.trees}"]
                metrics = run_one(split, model, seed, args.out, args.store, overrides)
                training = metrics["training"][0]
                rows.append({
                    "split": split, "model": model, "seed": seed,
                    "test_mse": metrics["test"]["mse"], "test_ci": metrics["test"]["ci"],
                    "val_mse": metrics["val"]["mse"], "train_mse": metrics["train"]["mse"],
                    "pairs": metrics["labels_per_fold"], "best_epoch": training.get("best_epoch"),
                    "mean_baseline_test_mse": mean_baseline_mse(args.out / split / model / f"seed{seed}"),
                    "wall_seconds": metrics["wall_seconds"],
                })
                row = rows[-1]
                print(f"{split:<12} {model:<13} seed {seed}  test MSE {row['test_mse']:.3f}  CI {row['test_ci']:.3f}  "
                      f"(val MSE {row['val_mse']:.3f}, train MSE {row['train_mse']:.3f}; "
                      f"pairs {row['pairs']['train']}/{row['pairs']['val']}/{row['pairs']['test']}; "
                      f"{row['wall_seconds']:.0f} s)", flush=True)
    header = (f"{'split':<12} {'model':<13} {'seed':>4} {'test MSE':>9} {'test CI':>8} {'mean MSE':>9} {'val MSE':>8} "
              f"{'best ep':>7} {'wall s':>7}")
    print("\nKIBA sample (5,000 pairs); anchor: GraphDTA on full KIBA MSE ~0.14, CI ~0.89\n" + header)
    for row in rows:
        epochs = "-" if row["best_epoch"] is None else str(row["best_epoch"] + 1)
        print(f"{row['split']:<12} {row['model']:<13} {row['seed']:>4} {row['test_mse']:>9.3f} {row['test_ci']:>8.3f} "
              f"{row['mean_baseline_test_mse']:>9.3f} {row['val_mse']:>8.3f} {epochs:>7} {row['wall_seconds']:>7.0f}")
    write_json_atomic(args.results, {"dataset": "kiba_sample", "graphdta_trainer": trainer, "rf_trees": args.trees,
                                     "cold_fractions": COLD_FRACTIONS, "runs": rows})


if __name__ == "__main__":
    main()
