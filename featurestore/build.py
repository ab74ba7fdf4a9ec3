"""Build the feature store for datasets: ``python -m featurestore.build`` (Hydra app).

Standardizes every dataset's SMILES to InChIKeys, materializes the configured feature
views (only keys not stored yet are computed), registers proteins for pair datasets,
prints a summary table and writes ``summary.parquet``, ``errors.parquet`` and
``run.json`` into the Hydra run directory.

Examples::

    python -m featurestore.build                                   # every shipped dataset
    python -m featurestore.build 'dataset=[esol]' 'featurizer=[ecfp]'
    python -m featurestore.build dataset=file dataset.file.path=my.csv dataset.file.molecules.column=SMILES

Sharded (each job takes a contiguous slice of every dataset's rows, skips itself when
already done; the reduce step checks every shard finished, merges each view's parts and
the shards' summaries and errors)::

    python -m featurestore.build -m shard='range(0,4)' num_shards=4 hydra/launcher=joblib   # or submitit_slurm
    python -m featurestore.build reduce=true num_shards=4
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import hydra
import polars as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from featurestore.datasets import dataset_path, load_dataset
from featurestore.featurizers import FeatureView, drug_features_with_stats
from featurestore.featurizers.molecule import StandardizeFeaturizer
from featurestore.io import read_table, require_columns, write_json_atomic, write_parquet_atomic
from featurestore.provenance import write_run_record
from featurestore.shards import ShardMarkers, shard_slice
from featurestore.store import FeatureStore, MaterializeStats
from featurestore.standardize import Standardizer

SUMMARY_SCHEMA = {
    "dataset": pl.String, "entity": pl.String, "view": pl.String, "inputs": pl.Int64, "keys": pl.Int64,
    "reused": pl.Int64, "computed": pl.Int64, "errors": pl.Int64, "seconds": pl.Float64,
}


def _summary_row(dataset: str, entity: str, inputs: int, stats: MaterializeStats) -> dict[str, Any]:
    return {
        "dataset": dataset, "entity": entity, "view": stats.view, "inputs": inputs, "keys": stats.requested,
        "reused": stats.reused, "computed": stats.computed, "errors": stats.errors, "seconds": round(stats.seconds, 3),
    }


def source_path(name: str, spec: Mapping[str, Any]) -> Path:
    """Where a dataset's table is read from: ``spec['path']`` when given, else the shipped dataset ``name``."""
    return Path(spec["path"]) if spec.get("path") else dataset_path(name)


def load_source(name: str, spec: Mapping[str, Any]) -> tuple[pl.DataFrame, Path]:
    """A dataset's table (see :func:`source_path`) and its path."""
    path = source_path(name, spec)
    return (read_table(path) if spec.get("path") else load_dataset(name)), path


def _selected(names: list[str], views: Mapping[str, FeatureView]) -> list[FeatureView]:
    """The dataset's views that ``featurizer=[...]`` selected, in the dataset's order."""
    return [views[name] for name in names if name in views]


def build_feature_store(
    store: FeatureStore, datasets: Mapping[str, Mapping[str, Any]], views: Mapping[str, FeatureView],
    standardizer: Standardizer = Standardizer(), shard: int | None = None, num_shards: int = 1,
) -> tuple[pl.DataFrame, pl.DataFrame, list[Path]]:
    """Featurize every dataset (or shard ``shard`` of ``num_shards`` of its rows); return (summary, error rows, data files read).

    ``datasets`` maps a name to ``{path?, molecules: {column, views}, proteins?: {key, column, views},
    drugs?: {key, views}}`` (drug views are keyed by drug_id: :func:`drug_features_with_stats`).
    Views a dataset names but that are not selected in ``views`` are skipped with a
    note, so ``featurizer=[ecfp]`` narrows every dataset at once.
    """
    rows, errors, files = [], [], []
    for name, spec in datasets.items():
        table, source = load_source(name, spec)
        files.append(source)
        offset = 0  # error rows name the row in the whole file, not in the shard
        if shard is not None:
            offset, length = shard_slice(table.height, shard, num_shards)
            table = table.slice(offset, length)
        if molecules := spec.get("molecules"):
            require_columns(table, [molecules["column"]], str(source))
            smiles = table.get_column(molecules["column"]).cast(pl.String)
            keyed = store.standardize(smiles.to_list(), standardizer)
            rows.append(_summary_row(name, "smiles", table.height, keyed.stats))
            errors.append(keyed.errors.with_columns(pl.col("row") + offset, pl.lit(name).alias("dataset"),
                                                    pl.lit("standardize").alias("view")))
            for view in _selected(molecules["views"], views):
                features, stats = store.get_with_stats(keyed.keys, view)
                rows.append(_summary_row(name, "molecule", len(keyed.keys), stats))
                errors.append(_view_errors(features, name, view))
        if proteins := spec.get("proteins"):
            require_columns(table, [proteins["key"], proteins["column"]], str(source))
            entities = table.select(
                pl.col(proteins["key"]).cast(pl.String).alias("protein_id"), pl.col(proteins["column"]).alias("sequence")
            ).unique("protein_id", maintain_order=True)
            store.register_entities("protein", entities)
            for view in _selected(proteins["views"], views):
                features, stats = store.get_with_stats(entities.get_column("protein_id").to_list(), view)
                rows.append(_summary_row(name, "protein", entities.height, stats))
                errors.append(_view_errors(features, name, view))
        if drugs := spec.get("drugs"):
            require_columns(table, [drugs["key"]], str(source))
            drug_ids = table.get_column(drugs["key"]).cast(pl.String).unique(maintain_order=True).to_list()
            for view in _selected(drugs["views"], views):
                features, stats = drug_features_with_stats(store, view, drug_ids)
                rows.append(_summary_row(name, "drug", len(drug_ids), stats))
                errors.append(_view_errors(features, name, view))
    error_schema = {"dataset": pl.String, "view": pl.String, "row": pl.UInt32, "input_smiles": pl.String,
                    "key": pl.String, "error": pl.String}
    error_frame = pl.concat([pl.DataFrame(schema=error_schema), *errors], how="diagonal_relaxed").select(list(error_schema))
    return pl.DataFrame(rows, schema=SUMMARY_SCHEMA), error_frame, files


def _view_errors(features: pl.DataFrame, dataset: str, view: FeatureView) -> pl.DataFrame:
    return features.filter(pl.col("error").is_not_null()).select(
        pl.lit(dataset).alias("dataset"), pl.lit(view.id).alias("view"),
        pl.col(view.key_column).alias("key"), "error",
    )


def print_summary(summary: pl.DataFrame, errors: pl.DataFrame, store: FeatureStore, seconds: float) -> None:
    """Render the summary table (and the first error rows) on the terminal."""
    table = Table(title=f"Feature store {store.root} — {seconds:.1f} s")
    for column in summary.columns:
        table.add_column(column, justify="right" if summary.schema[column].is_numeric() else "left")
    for row in summary.iter_rows():
        table.add_row(*(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row))
    console = Console(width=None if Console().is_terminal else 160)
    console.print(table)
    if errors.height:
        console.print(f"{errors.height} error rows (all in errors.parquet); first ones:")
        console.print(errors.head(10))


def shard_markers(store: FeatureStore, datasets: Mapping[str, Any], views: Mapping[str, FeatureView],
                  standardizer: Standardizer, num_shards: int) -> ShardMarkers:
    """The done-markers of this featurization job (same datasets, views, standardizer and shard count)."""
    settings = {"datasets": datasets, "views": sorted(view.id for view in views.values()),
                "standardizer": asdict(standardizer)}
    return ShardMarkers.for_job(store.root, "featurize", settings, num_shards)


def reduce_shards(store: FeatureStore, markers: ShardMarkers, views: Mapping[str, FeatureView],
                  standardizer: Standardizer) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int]]:
    """After every shard finished: merge each stored view's parts, add up the shards' summaries, gather their errors.

    Returns (summary, errors, rows per compacted view id).
    """
    infos = markers.require_all_done()
    stored = set(store.views().get_column("view_id").to_list())
    merged = [*views.values(), FeatureView(StandardizeFeaturizer.name, asdict(standardizer))]
    compacted = {view.id: store.compact(view) for view in merged if view.id in stored}
    summary = (
        pl.DataFrame([row for info in infos for row in info["summary"]], schema=SUMMARY_SCHEMA)
        .group_by("dataset", "entity", "view", maintain_order=True)
        .agg(pl.col("inputs", "keys", "reused", "computed", "errors", "seconds").sum())
    )
    error_files = [Path(info["errors"]) for info in infos if Path(info["errors"]).is_file()]
    errors = pl.concat([pl.read_parquet(path) for path in error_files], how="vertical_relaxed") if error_files \
        else pl.DataFrame()
    return summary, errors, compacted


@hydra.main(version_base="1.3", config_path="../conf", config_name="featurize")
def main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    store: FeatureStore = instantiate(cfg.store)
    views = {name: instantiate(node) for name, node in cfg.featurizer.items()}
    standardizer = instantiate(cfg.standardizer)
    datasets = OmegaConf.to_container(cfg.dataset, resolve=True)
    markers = shard_markers(store, datasets, views, standardizer, cfg.num_shards)
    start = time.perf_counter()
    if cfg.reduce:
        summary, errors, compacted = reduce_shards(store, markers, views, standardizer)
        write_json_atomic(out_dir / "reduce.json", {"num_shards": cfg.num_shards, "rows_per_view": compacted,
                                                     "merge_seconds": round(time.perf_counter() - start, 3)})
        files = [source_path(name, spec) for name, spec in datasets.items()]
    elif cfg.shard is not None and markers.is_done(cfg.shard):
        print(f"shard {cfg.shard} of {cfg.num_shards} already done ({markers.path(cfg.shard)}): skipped")
        return
    else:
        summary, errors, files = build_feature_store(store, datasets, views, standardizer, cfg.shard, cfg.num_shards)
    elapsed = time.perf_counter() - start
    write_parquet_atomic(summary, out_dir / "summary.parquet")
    write_parquet_atomic(errors, out_dir / "errors.parquet")
    write_run_record(out_dir, OmegaConf.to_container(cfg, resolve=True), cfg.get("seed"), files)
    if cfg.shard is not None and not cfg.reduce:
        markers.mark_done(cfg.shard, {"summary": summary.to_dicts(), "errors": str((out_dir / "errors.parquet").resolve()),
                                      "seconds": round(elapsed, 3)})
    print_summary(summary, errors, store, elapsed)
    print(f"outputs: {out_dir}")


if __name__ == "__main__":
    main()
