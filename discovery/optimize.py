"""Optimize a molecule objective under an oracle budget: ``python -m discovery.optimize`` (Hydra app).

    python -m discovery.optimize oracle=celecoxib_rediscovery optimizer=graph_ga budget=10000 seed=0
    python -m discovery.optimize -m oracle=qed,zaleplon_mpo seed=0,1,2
    python -m discovery.optimize oracle=custom_mpo pool.path=my.csv pool.column=SMILES

Writes calls.parquet, top.parquet, metrics.json, optimization_curve.png, top12.png, run.json,
pool_errors.parquet (pool rows left out: row, SMILES, reason) and the logger's curve
(``logger=csv``: metrics_log.csv) into the Hydra run directory and returns AUC top-10 (what a sweep maximizes).
Rerun with the same ``hydra.run.dir=...`` to resume a killed run.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import hydra
import polars as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from discovery.optimization import run_optimization
from featurestore.build import load_source
from featurestore.io import require_columns, write_parquet_atomic
from featurestore.provenance import seed_everything, write_run_record
from featurestore.standardize import parse_smiles
from featurestore.tracking import start_logger

log = logging.getLogger(__name__)


class Pool(NamedTuple):
    """An optimizer's starting molecules and where they came from."""

    smiles: list[str]
    keys: set[str]  # InChIKeys of the pool, for novelty (empty when the file has no ``inchikey`` column)
    source: Path
    errors: pl.DataFrame  # row (0-based data row), smiles, reason: the rows left out


def load_pool(spec: Mapping[str, Any]) -> Pool:
    """Starting SMILES, the InChIKeys of the pool (for novelty), the file read and the rows left out.

    The keys come from the file's ``inchikey`` column (every shipped dataset has one);
    a file without it gives an empty key set and novelty is then reported against nothing.
    Such a file (not keyed by the feature store, so never standardized) is parsed: rows RDKit
    cannot read are left out, logged and returned in ``errors`` with their row number and reason;
    none readable is an error.
    """
    table, source = load_source(spec["dataset"], spec)
    require_columns(table, [spec["column"]], str(source))
    smiles = table.get_column(spec["column"]).cast(pl.String)
    empty = smiles.is_null() | (smiles.str.strip_chars() == "")
    if empty.any():
        rows = empty.arg_true().head(5).to_list()
        raise ValueError(f"{source}: column {spec['column']!r} has {empty.sum()} empty SMILES (rows {rows}...)")
    errors = pl.DataFrame(schema={"row": pl.Int64, "smiles": pl.String, "reason": pl.String})
    if "inchikey" in table.columns:
        return Pool(smiles.to_list(), set(table.get_column("inchikey").drop_nulls().to_list()), source, errors)
    reasons = [parse_smiles(s)[1] for s in smiles]
    rejected = [(row, text, reason) for row, (text, reason) in enumerate(zip(smiles, reasons)) if reason]
    named = [f"row {row}: {reason}" for row, _, reason in rejected]
    if len(rejected) == len(reasons):
        raise ValueError(f"{source}: no readable SMILES in column {spec['column']!r} ({'; '.join(named[:3])})")
    if rejected:
        log.warning("%s: %d of %d pool rows left out: %s", source, len(rejected), len(reasons), "; ".join(named[:10]))
        errors = pl.DataFrame(rejected, schema=errors.schema, orient="row")
    return Pool([s for s, reason in zip(smiles, reasons) if not reason], set(), source, errors)


@hydra.main(version_base="1.3", config_path="../conf", config_name="optimize")
def main(cfg: DictConfig) -> float:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    # SIGTERM (a scheduler's kill) becomes SystemExit so the call log is flushed on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    seed_everything(cfg.seed)
    oracle = instantiate(cfg.oracle)
    optimizer = instantiate(cfg.optimizer)
    pool = load_pool(cfg.pool)
    write_parquet_atomic(pool.errors, out_dir / "pool_errors.parquet")
    config = OmegaConf.to_container(cfg, resolve=True)
    write_run_record(out_dir, config, cfg.seed, [pool.source])
    logger = start_logger(cfg.logger, out_dir, "discovery.optimize", config)
    metrics = run_optimization(
        oracle, optimizer, pool.smiles, out_dir, budget=cfg.budget, seed=cfg.seed, pool_keys=pool.keys,
        freq_log=cfg.freq_log, flush_every=cfg.flush_every, top_n=cfg.top_n, logger=logger,
    )
    logger.close()
    log.info(
        "%s on %s: AUC top-10 %.3f, top-10 %.3f, %d calls (%s), %.0f s; outputs in %s", optimizer.name, oracle.name,
        metrics["auc_top10"], metrics["top10"], metrics["calls_used"], metrics["stopped"], metrics["wall_time_s"], out_dir,
    )
    return metrics["auc_top10"]


if __name__ == "__main__":
    main()
