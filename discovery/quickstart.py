"""The discovery half of the quickstart: ``python -m discovery.quickstart [out_dir]``.

Short schedules of the real apps, each into its own run folder under ``out_dir`` (with its
``report.html``): a D-MPNN on ESOL, the 30-target MoleculeACE model (ECFP MLP), target
prediction for two drugs, ranking of the approved-drug catalog by predicted solubility and
med-chem terms, and Graph GA on one PMO task with a small budget. The same functions the
Hydra apps run; longer schedules are a matter of overrides (see README).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from featurestore.provenance import write_run_record
from featurestore.report import quickstart_parser, render_report, write_step_summary

from discovery.optimization.runner import run_optimization
from discovery.optimize import load_pool
from discovery.predict_targets import run_predict_targets
from discovery.rank import run_ranking
from discovery.train import run_training

CONF = Path(__file__).resolve().parents[1] / "conf"
log = logging.getLogger(__name__)


def _config(app: str, store: Sequence[str], *overrides: str) -> DictConfig:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose(app, overrides=[*store, *overrides])


def run_discovery_quickstart(out_dir: str | Path, store_root: str | Path, budget: int = 300) -> dict[str, Any]:
    """Every discovery step on short schedules; returns ``{step: headline numbers}`` (also in ``summary.json``)."""
    out_dir = Path(out_dir)
    store = [f"store.root={store_root}", "store.progress=false"]
    timings: dict[str, float] = {}
    summary: dict[str, Any] = {}

    def step(name: str) -> Path:
        timings[name] = time.perf_counter()
        return out_dir / name

    def done(name: str, **numbers: Any) -> None:
        render_report(out_dir / name)
        summary[name] = {**numbers, "seconds": round(time.perf_counter() - timings[name], 1)}
        log.info("quickstart %s: %s", name, summary[name])

    short = ["trainer=fast", "trainer.max_epochs=15", "trainer.num_threads=2"]
    metrics = run_training(_config("train", store, "data=esol", "model=dmpnn", "model.hparams.hidden=128", *short),
                           step("train_esol_dmpnn"))
    done("train_esol_dmpnn", test_rmse=metrics["test"]["rmse"])

    metrics = run_training(_config("train", store, "data=moleculeace_multitask", "split=moleculeace",
                                   "model=ecfp_mlp", *short, "trainer.max_epochs=8", "trainer.batch_size=256"),
                           step("train_targets_multitask"))
    done("train_targets_multitask", test_rmse=metrics["test"]["rmse"], test_rmse_cliff=metrics["test"]["rmse_cliff"])

    targets = run_predict_targets(_config("predict_targets", store, f"checkpoint={out_dir / 'train_targets_multitask'}",
                                          "top_k=3"), step("predict_targets"))
    best = targets.filter(pl.col("rank") == 1)
    done("predict_targets", **{f"top_target[{smiles}]": task for smiles, task in zip(best["input"], best["task"])})

    ranked = run_ranking(_config("rank", store, "score=esol_solubility", "progress=false",
                                 f"checkpoints=[{{path: {out_dir / 'train_esol_dmpnn'}, name: esol}}]"),
                         step("rank_drugs"))
    done("rank_drugs", ranked=ranked.height, top=ranked["name"][0] if "name" in ranked.columns else None)

    cfg = _config("optimize", [], "oracle=celecoxib_rediscovery", f"budget={budget}", "seed=0")
    run_dir = step("optimize_celecoxib")
    pool = load_pool(cfg.pool)
    write_run_record(run_dir, OmegaConf.to_container(cfg, resolve=True), cfg.seed, [pool.source])
    result = run_optimization(instantiate(cfg.oracle), instantiate(cfg.optimizer), pool.smiles, run_dir,
                              budget=budget, seed=cfg.seed, pool_keys=pool.keys)
    done("optimize_celecoxib", auc_top10=result["auc_top10"], top1=result["top1"])
    write_step_summary(out_dir, "discovery", summary)
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    parser = quickstart_parser("python -m discovery.quickstart", __doc__.split("\n")[0])
    parser.add_argument("--budget", type=int, default=300, help="oracle calls of the optimization step")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()
    run_discovery_quickstart(args.out_dir, args.store, args.budget)
    print(f"discovery quickstart: {time.perf_counter() - start:.0f} s -> {args.out_dir}")


if __name__ == "__main__":
    main()
