"""The feature store: keyed, versioned, immutable parquet parts with materialize-on-miss.

Layout under ``root``::

    entities/<entity>/part-*.parquet     key + attributes (molecule: inchikey, smiles, rdkit_version)
    views/<view_id>/part-*.parquet       key + feature columns + error
    views/<view_id>/manifest.json        spec, versions, rows, parts
    locks/<name>.lock                    advisory locks serializing appends

Part files are immutable and appear atomically (temp file + rename), so readers never
lock. Writers compute outside the lock, then under the lock drop keys another process
stored meanwhile and append one new part: concurrent materialization of the same view
leaves no duplicate keys.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import polars as pl
from tqdm.auto import tqdm

from featurestore.featurizers import ENTITY_KEYS, FeatureView, StandardizeFeaturizer
from featurestore.featurizers.base import featurize_chunk
from featurestore.io import file_lock, write_json_atomic, write_parquet_atomic
from featurestore.standardize import RDKIT_VERSION, Standardizer

DEFAULT_ROOT_ENV = "FEATURESTORE_ROOT"


def default_root() -> Path:
    """``$FEATURESTORE_ROOT`` or ``./.featurestore``."""
    return Path(os.environ.get(DEFAULT_ROOT_ENV, ".featurestore"))


@dataclass
class MaterializeStats:
    """What one ``get`` call did: rows served from the store vs computed now."""

    view: str
    requested: int = 0
    reused: int = 0
    computed: int = 0
    errors: int = 0
    seconds: float = 0.0


@dataclass
class KeyedMolecules:
    """SMILES -> key result: one row per input (``row``, ``input_smiles``, ``inchikey``, ``smiles``, ``error``)."""

    table: pl.DataFrame
    stats: MaterializeStats = field(default_factory=lambda: MaterializeStats("standardize"))

    @property
    def keys(self) -> list[str]:
        """Unique valid InChIKeys, in first-seen order."""
        return self.table.filter(pl.col("inchikey").is_not_null()).get_column("inchikey").unique(maintain_order=True).to_list()

    @property
    def errors(self) -> pl.DataFrame:
        """The input rows that failed, with the reason."""
        return self.table.filter(pl.col("error").is_not_null()).select("row", "input_smiles", "error")


class FeatureStore:
    """Keyed, versioned feature storage shared by ``discovery`` and ``recommend``.

    Parameters
    ----------
    root: folder of the store (created on first write).
    n_jobs: worker processes for materialization (default: all cores).
    progress: show a progress bar while computing.
    min_parallel: below this many missing items, compute in this process.
    """

    def __init__(
        self, root: str | os.PathLike | None = None, n_jobs: int | None = None, progress: bool = True,
        min_parallel: int = 2000, chunk_size: int = 1000,
    ) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.n_jobs = n_jobs or os.cpu_count() or 1
        self.progress = progress
        self.min_parallel = min_parallel
        self.chunk_size = chunk_size

    # ------------------------------------------------------------------ paths and reads
    def view_dir(self, view: FeatureView) -> Path:
        return self.root / "views" / view.id

    def entity_dir(self, entity: str) -> Path:
        return self.root / "entities" / entity

    @staticmethod
    def _scan(folder: Path) -> pl.LazyFrame | None:
        if not any(folder.glob("part-*.parquet")):
            return None
        return pl.scan_parquet(folder / "part-*.parquet")

    @staticmethod
    def _empty(view: FeatureView) -> pl.DataFrame:
        """A view's stored columns with no rows: key, features, error."""
        return pl.DataFrame(schema={view.key_column: pl.String, **view.build().schema(), "error": pl.String})

    def read_view(self, view: FeatureView) -> pl.DataFrame:
        """Every stored row of a view (empty frame with the right columns if none)."""
        scan = self._scan(self.view_dir(view))
        return self._empty(view) if scan is None else scan.collect()

    def read_entities(self, entity: str) -> pl.DataFrame:
        """Every registered entity row (key + attributes)."""
        scan = self._scan(self.entity_dir(entity))
        return pl.DataFrame(schema={ENTITY_KEYS[entity]: pl.String}) if scan is None else scan.collect()

    def _lookup(self, folder: Path, key: str, keys: pl.DataFrame) -> pl.DataFrame | None:
        scan = self._scan(folder)
        if scan is None:
            return None
        return scan.join(keys.lazy(), on=key, how="semi").collect()

    # ------------------------------------------------------------------ writes
    def _append_unique(self, folder: Path, key: str, rows: pl.DataFrame, lock_name: str) -> pl.DataFrame:
        """Append rows whose key is not stored yet; return the rows actually written."""
        rows = rows.unique(subset=key, keep="first", maintain_order=True)
        with file_lock(self.root / "locks" / f"{lock_name}.lock"):
            scan = self._scan(folder)
            if scan is not None:  # keys only: decoding stored features here would hold the lock for nothing
                rows = rows.join(scan.select(key).collect(), on=key, how="anti")
            if rows.height:
                name = f"part-{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
                write_parquet_atomic(rows, folder / name)
        return rows

    def register_entities(self, entity: str, rows: pl.DataFrame) -> int:
        """Store entity rows (key + attributes such as ``sequence``); existing keys are kept. Returns rows added."""
        key = ENTITY_KEYS[entity]
        if key not in rows.columns:
            raise KeyError(f"entity {entity!r} rows need a {key!r} column; got {rows.columns}")
        if rows.get_column(key).null_count():
            raise ValueError(f"entity {entity!r}: {rows.get_column(key).null_count()} rows have a null {key!r}")
        return self._append_unique(self.entity_dir(entity), key, rows, f"entity-{entity}").height

    def _update_manifest(self, view: FeatureView, added: int) -> None:
        folder = self.view_dir(view)
        with file_lock(self.root / "locks" / f"{view.id}.manifest.lock"):
            parts = sorted(p.name for p in folder.glob("part-*.parquet"))
            rows = pl.scan_parquet(folder / "part-*.parquet").select(pl.len()).collect().item() if parts else 0
            write_json_atomic(
                folder / "manifest.json",
                {
                    "view_id": view.id,
                    "spec": view.spec(),
                    "entity": view.entity,
                    "key": view.key_column,
                    "rdkit_version": RDKIT_VERSION,
                    "polars_version": pl.__version__,
                    "rows": rows,
                    "parts": parts,
                    "last_added": added,
                    "updated": datetime.now(timezone.utc).isoformat(),
                },
            )

    # ------------------------------------------------------------------ compute
    def _compute(self, view: FeatureView, items: Sequence[Any]) -> pl.DataFrame:
        """Run the featurizer over ``items`` (chunked, in parallel for large batches)."""
        spec = view.worker_spec()
        chunks = [items[i : i + self.chunk_size] for i in range(0, len(items), self.chunk_size)]
        bar = tqdm(total=len(items), desc=view.id, unit="item", disable=not self.progress, leave=False)
        frames = []
        if self.n_jobs == 1 or len(items) < self.min_parallel:
            for chunk in chunks:
                frames.append(featurize_chunk(spec, chunk))
                bar.update(len(chunk))
        else:
            # spawn, not fork: forking a process that runs polars' thread pool can deadlock.
            with ProcessPoolExecutor(self.n_jobs, mp_context=get_context("spawn")) as pool:
                for chunk, frame in zip(chunks, pool.map(featurize_chunk, [spec] * len(chunks), chunks)):
                    frames.append(frame)
                    bar.update(len(chunk))
        bar.close()
        return pl.concat(frames, how="vertical") if frames else self._empty(view).drop(view.key_column)

    def get(self, keys: Iterable[str], view: FeatureView) -> pl.DataFrame:
        """Features of ``view`` for ``keys`` in request order, materializing only the missing keys.

        Keys unknown to the view's entity table come back as rows with an ``error``.
        """
        return self.get_with_stats(keys, view)[0]

    def get_with_stats(self, keys: Iterable[str], view: FeatureView) -> tuple[pl.DataFrame, MaterializeStats]:
        """Like :meth:`get`, also returning what was reused and computed."""
        start = time.perf_counter()
        key = view.key_column
        request = pl.DataFrame({key: pl.Series(list(keys), dtype=pl.String)}).with_row_index("_order")
        wanted = request.select(key).unique()
        stats = MaterializeStats(view.id, requested=wanted.height)
        stored = self._lookup(self.view_dir(view), key, wanted)
        missing = wanted if stored is None else wanted.join(stored.select(key), on=key, how="anti")
        stats.reused = wanted.height - missing.height
        frames = [] if stored is None else [stored]
        if missing.height:
            new_rows, stats.computed = self._materialize(view, missing.get_column(key).to_list())
            frames.append(new_rows)
        empty = self._empty(view)
        found = pl.concat([empty, *frames], how="vertical_relaxed") if frames else empty
        result = request.join(found, on=key, how="left").sort("_order").drop("_order")
        stats.errors = int(result.get_column("error").is_not_null().sum())
        stats.seconds = time.perf_counter() - start
        return result, stats

    def _materialize(self, view: FeatureView, keys: list[str]) -> tuple[pl.DataFrame, int]:
        """Compute and store rows for ``keys``; returns all rows (incl. unknown-key errors) and the count computed."""
        key, featurizer = view.key_column, view.cls
        if featurizer.input_column is None:
            inputs = pl.DataFrame({key: keys, "_input": keys})
        else:
            entities = self._lookup(self.entity_dir(view.entity), key, pl.DataFrame({key: keys}))
            known = pl.DataFrame(schema={key: pl.String, "_input": pl.String}) if entities is None else entities.select(
                key, pl.col(featurizer.input_column).alias("_input")
            )
            inputs = pl.DataFrame({key: keys}).join(known, on=key, how="left")
        unknown = inputs.filter(pl.col("_input").is_null())
        inputs = inputs.filter(pl.col("_input").is_not_null())
        computed = self._compute(view, inputs.get_column("_input").to_list())
        rows = pl.concat([inputs.select(key), computed], how="horizontal")
        written = self._append_unique(self.view_dir(view), key, rows, view.id)
        if written.height:
            self._update_manifest(view, written.height)
        if unknown.height:
            # Not stored: registering the entity later must make these keys computable.
            rows = pl.concat(
                [rows, unknown.select(key, pl.lit(f"key not registered for entity {view.entity!r}").alias("error"))],
                how="diagonal_relaxed",
            )
        return rows, computed.height

    # ------------------------------------------------------------------ molecules
    def standardize(self, smiles: Iterable[str], standardizer: Standardizer = Standardizer()) -> KeyedMolecules:
        """Key input SMILES by the InChIKey of their standardized form; registers new molecules.

        The SMILES -> key mapping is itself a cached view, so a second call is a read.
        Bad SMILES become rows with ``inchikey`` null and the reason in ``error``.
        """
        inputs = pl.Series("input_smiles", list(smiles), dtype=pl.String).fill_null("")
        view = FeatureView(StandardizeFeaturizer.name, asdict(standardizer))
        keyed, stats = self.get_with_stats(inputs.to_list(), view)
        new = keyed.filter(pl.col("inchikey").is_not_null()).select("inchikey", "smiles", "rdkit_version")
        if new.height:
            self.register_entities("molecule", new)
        table = keyed.select("input_smiles", "inchikey", "smiles", "error").with_row_index("row")
        return KeyedMolecules(table, stats)

    def featurize_smiles(
        self, smiles: Iterable[str], view: FeatureView, standardizer: Standardizer = Standardizer()
    ) -> pl.DataFrame:
        """One row per input SMILES: ``row``, ``input_smiles``, ``inchikey`` + view features + ``error``.

        The error is the standardization reason if the SMILES failed, else the featurizer's.
        """
        keyed = self.standardize(smiles, standardizer).table
        features = self.get(keyed.get_column("inchikey").drop_nulls().unique().to_list(), view)
        out = keyed.drop("smiles", "error").join(features, on="inchikey", how="left", coalesce=True)
        error = pl.coalesce(keyed.get_column("error"), out.sort("row").get_column("error"))
        return out.sort("row").with_columns(error)

    # ------------------------------------------------------------------ housekeeping
    def views(self) -> pl.DataFrame:
        """One row per stored view: id, featurizer, entity, rows, parts."""
        rows = []
        for manifest in sorted((self.root / "views").glob("*/manifest.json")):
            info = json.loads(manifest.read_text())
            rows.append(
                {"view_id": info["view_id"], "featurizer": info["spec"]["featurizer"], "entity": info["entity"],
                 "rows": info["rows"], "parts": len(info["parts"])}
            )
        return pl.DataFrame(rows, schema={"view_id": pl.String, "featurizer": pl.String, "entity": pl.String,
                                          "rows": pl.Int64, "parts": pl.Int64})

    def compact(self, view: FeatureView) -> int:
        """Merge a view's parts into one (do not run while other processes read it). Returns rows."""
        folder = self.view_dir(view)
        with file_lock(self.root / "locks" / f"{view.id}.lock"):
            old = sorted(folder.glob("part-*.parquet"))
            if len(old) <= 1:
                return self.read_view(view).height
            merged = pl.scan_parquet(old).collect().unique(subset=view.key_column, keep="first", maintain_order=True)
            write_parquet_atomic(merged, folder / f"part-{time.time_ns()}-{os.getpid()}-compact.parquet")
            for path in old:
                path.unlink()
        self._update_manifest(view, 0)
        return merged.height
