"""Rank candidate molecules by one configurable score: ``python -m discovery.rank`` (Hydra app).

Candidates from a shipped dataset (default: the approved-drug catalog) or a CSV/TSV/parquet/.smi
file; optional checkpoints add predictions, ensemble std and the max Tanimoto to their training
molecules; every molecule gets QED, SA score, Lipinski/Veber violations and PAINS/Brenk alerts;
``oracles=[...]`` adds ``oracle_<name>`` columns (any registered oracle, e.g. the PMO tasks), so a
sharded ranking is also sharded oracle scoring.
The score (``score=`` group) combines weighted desirabilities. The run folder gets
``ranked.parquet``, ``ranked.csv``, ``top.png``, ``top.svg`` and ``run.json``.

Sharded: ``shard=i num_shards=N`` ranks one slice of the candidates into a part under
``shards_root`` and skips itself when that part is done; ``reduce=true`` checks every part
is there and merges them (polars, streaming) into one global ranking in its run folder.

Examples::

    python -m discovery.rank
    python -m discovery.rank input.path=hits.smi score=esol_solubility \\
        'checkpoints=[{path: outputs/train/esol/dmpnn/<time>, name: esol}]'
    python -m discovery.rank -m input.path=big.smi shard='range(0,8)' num_shards=8 hydra/launcher=joblib
    python -m discovery.rank input.path=big.smi num_shards=8 reduce=true
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
from featurestore.io import write_parquet_atomic
from featurestore.provenance import seed_everything, write_run_record
from featurestore.shards import ShardMarkers, shard_slice

from discovery.oracles import get_oracle
from discovery.ranking import (
    RankingModel,
    RankingScore,
    draw_top,
    merge_rankings,
    rank_candidates,
    read_candidates,
    write_ranking,
)
from discovery.ranking.similarity import run_dirs_of

log = logging.getLogger(__name__)


def shard_markers(cfg: DictConfig) -> ShardMarkers:
    """Done-markers and parts of this ranking job (same candidates, checkpoints, score, standardizer, N)."""
    settings = {key: OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
                for key in ("input", "checkpoints", "score", "standardizer", "domain_min_similarity", "oracles")}
    return ShardMarkers.for_job(cfg.shards_root, "rank", settings, cfg.num_shards)


def run_ranking(cfg: DictConfig, out_dir: Path) -> pl.DataFrame:
    """The whole app without Hydra's entry point; returns the ranked table (this shard's part when sharded)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    torch.set_num_threads(1)  # per-chunk inference is small; more threads only contend on shared machines
    store = instantiate(cfg.store)
    if cfg.input.path:
        table, source = read_candidates(cfg.input.path, cfg.input.column), Path(cfg.input.path)
    else:
        table, source = load_source(cfg.input.dataset, {})
    specs = OmegaConf.to_container(cfg.checkpoints, resolve=True)
    record = (OmegaConf.to_container(cfg, resolve=True), cfg.seed,
              [source, *(run_dir / "data.parquet" for spec in specs for run_dir in run_dirs_of(spec["path"]))])
    markers = shard_markers(cfg)
    if cfg.reduce:
        parts = [Path(info["part"]) for info in markers.require_all_done()]
        ranked = merge_rankings(parts, out_dir / "ranked.parquet")
        write_ranking(ranked, out_dir)
    else:
        offset = 0
        if cfg.shard is not None:
            offset, length = shard_slice(table.height, cfg.shard, cfg.num_shards)
            table = table.slice(offset, length)
        models = [RankingModel.load(spec, store, min_similarity=cfg.domain_min_similarity) for spec in specs]
        score = RankingScore.from_config(OmegaConf.to_container(cfg.score, resolve=True))
        oracles = [get_oracle(name) for name in cfg.oracles]
        ranked = rank_candidates(table, cfg.input.column, models, score, store, instantiate(cfg.standardizer),
                                 cfg.chunk_size, cfg.progress, oracles).with_columns(pl.col("input_row") + offset)
        if cfg.shard is not None:  # a part of the global ranking: no pictures, ranks are local
            part = write_parquet_atomic(ranked, markers.folder / f"part-{cfg.shard}-of-{cfg.num_shards}.parquet")
            markers.mark_done(cfg.shard, {"part": str(part.resolve()), "rows": ranked.height})
            write_run_record(out_dir, *record)
            return ranked
        write_ranking(ranked, out_dir)
    draw_top(ranked, out_dir / "top", cfg.top_n, cfg.mols_per_row, cfg.legend_column)
    write_run_record(out_dir, *record)
    return ranked


@hydra.main(version_base="1.3", config_path="../conf", config_name="rank")
def main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    markers = shard_markers(cfg)
    if cfg.shard is not None and not cfg.reduce and markers.is_done(cfg.shard):
        log.info("shard %d of %d already ranked (%s): skipped", cfg.shard, cfg.num_shards, markers.path(cfg.shard))
        return
    ranked = run_ranking(cfg, out_dir)
    failed = ranked.get_column("error").is_not_null().sum()
    log.info("ranked %d rows (%d with errors, ranked last) -> %s", ranked.height, failed, out_dir)
    log.info("top 5:\n%s", ranked.head(5).select("rank", "smiles", "score"))


if __name__ == "__main__":
    main()
