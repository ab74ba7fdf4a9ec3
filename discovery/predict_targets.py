"""Rank the targets of a multitask checkpoint for given molecules: ``python -m discovery.predict_targets``.

For each SMILES, every task of the checkpoint (the 30 MoleculeACE targets when trained with
``data=moleculeace_multitask split=moleculeace``) ordered by predicted p-activity, with the
ensemble std when the checkpoint has several members. ``evaluate_ranking=true`` also measures how well
the model ranks the measured target of each held-out test label (top-1/top-3) next to a
nearest-neighbour baseline. The run folder gets ``targets.parquet``, ``targets.csv``,
``targets.json``, ``run.json`` (and ``target_ranking.json`` / ``target_ranking.parquet``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import polars as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from featurestore.io import atomic_path, write_json_atomic, write_parquet_atomic
from featurestore.provenance import seed_everything, write_run_record

from discovery.checkpoint import load_predictor
from discovery.ranking import read_candidates
from discovery.ranking.similarity import run_dirs_of
from discovery.ranking.targets import evaluate_target_ranking, predict_targets

log = logging.getLogger(__name__)


def run_predict_targets(cfg: DictConfig, out_dir: Path) -> pl.DataFrame:
    """The whole app without Hydra's entry point; returns the target table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    torch.set_num_threads(1)
    store = instantiate(cfg.store)
    predictor = load_predictor(cfg.checkpoint)
    if cfg.input.path:
        smiles = read_candidates(cfg.input.path, cfg.input.column).get_column(cfg.input.column).cast(pl.String).to_list()
    else:
        smiles = list(cfg.smiles)
    if not smiles:
        raise ValueError("no molecules: give smiles=[...] or input.path=<file>")
    table = predict_targets(predictor, smiles, store, cfg.rank_by)
    if cfg.top_k:
        table = table.filter(pl.col("rank").is_null() | (pl.col("rank") <= cfg.top_k))
    write_parquet_atomic(table, out_dir / "targets.parquet")
    with atomic_path(out_dir / "targets.csv") as tmp:
        table.write_csv(tmp)
    per_molecule = table.group_by("input_row", "input", "inchikey", "smiles", maintain_order=True).agg(
        pl.struct(pl.exclude("input_row", "input", "inchikey", "smiles", "error")).alias("targets"),
        pl.col("error").first(),
    )
    write_json_atomic(out_dir / "targets.json", per_molecule.to_dicts())
    run_dirs = run_dirs_of(cfg.checkpoint)
    if cfg.evaluate_ranking:
        summary, per_label = evaluate_target_ranking(run_dirs, predictor, store, cfg.ks)
        write_json_atomic(out_dir / "target_ranking.json", summary)
        write_parquet_atomic(per_label, out_dir / "target_ranking.parquet")
        log.info("target ranking on %d test labels: %s", summary["labels"], summary)
    # The checkpoints' training data too, where their run folders hold it (fingerprint_files skips a bare checkpoint/).
    data_files = [*([Path(cfg.input.path)] if cfg.input.path else []), *(d / "data.parquet" for d in run_dirs)]
    write_run_record(out_dir, OmegaConf.to_container(cfg, resolve=True), cfg.seed, data_files)
    return table


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict_targets")
def main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    table = run_predict_targets(cfg, out_dir)
    log.info("best targets:\n%s", table.filter(pl.col("rank") == 1).select("input", "task", "prediction"))


if __name__ == "__main__":
    main()
