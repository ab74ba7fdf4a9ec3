"""Rank candidate molecules by one configurable score: ``python -m discovery.rank`` (Hydra app).

Candidates from a shipped dataset (default: the approved-drug catalog) or a CSV/TSV/parquet/.smi
file; optional checkpoints add predictions, ensemble std and the max Tanimoto to their training
molecules; every molecule gets QED, SA score, Lipinski/Veber violations and PAINS/Brenk alerts.
The score (``score=`` group) combines weighted desirabilities. The run folder gets
``ranked.parquet``, ``ranked.csv``, ``top.png``, ``top.svg`` and ``run.json``.

Examples::

    python -m discovery.rank
    python -m discovery.rank input.path=hits.smi score=esol_solubility \\
        'checkpoints=[{path: outputs/train/esol/dmpnn/<time>, name: esol}]'
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

from featurestore.build import load_source
from featurestore.provenance import seed_everything, write_run_record

from discovery.ranking import RankingModel, RankingScore, draw_top, rank_candidates, read_candidates, write_ranking
from discovery.ranking.similarity import run_dir_of

log = logging.getLogger(__name__)


def run_ranking(cfg: DictConfig, out_dir: Path) -> pl.DataFrame:
    """The whole app without Hydra's entry point; returns the ranked table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    torch.set_num_threads(1)  # per-chunk inference is small; more threads only contend on shared machines
    store = instantiate(cfg.store)
    if cfg.input.path:
        table, source = read_candidates(cfg.input.path, cfg.input.column), Path(cfg.input.path)
    else:
        table, source = load_source(cfg.input.dataset, {})
    specs = OmegaConf.to_container(cfg.checkpoints, resolve=True)
    models = [RankingModel.load(spec, store, min_similarity=cfg.domain_min_similarity) for spec in specs]
    score = RankingScore.from_config(OmegaConf.to_container(cfg.score, resolve=True))
    ranked = rank_candidates(table, cfg.input.column, models, score, store, instantiate(cfg.standardizer),
                             cfg.chunk_size, cfg.progress)
    write_ranking(ranked, out_dir)
    draw_top(ranked, out_dir / "top", cfg.top_n, cfg.mols_per_row, cfg.legend_column)
    checkpoint_files = [run_dir_of(spec["path"]) / "data.parquet" for spec in specs]
    write_run_record(out_dir, OmegaConf.to_container(cfg, resolve=True), cfg.seed, [source, *checkpoint_files])
    return ranked


@hydra.main(version_base="1.3", config_path="../conf", config_name="rank")
def main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    ranked = run_ranking(cfg, out_dir)
    failed = ranked.get_column("error").is_not_null().sum()
    log.info("ranked %d rows (%d with errors, ranked last) -> %s", ranked.height, failed, out_dir)
    log.info("top 5:\n%s", ranked.head(5).select("rank", "smiles", "score"))


if __name__ == "__main__":
    main()
