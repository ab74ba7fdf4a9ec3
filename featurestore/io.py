"""Atomic file writes and inter-process locks.

Every file the platform writes goes through here: a reader never sees a half-written
file (temp file in the same directory, then ``os.replace``), and writers that must
not interleave take an advisory ``flock`` on a lock file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import polars as pl


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success rename it over ``path``, on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_parquet_atomic(
    df: pl.DataFrame, path: str | os.PathLike, compression_level: int = 3, data_page_size: int | None = None
) -> Path:
    """Write ``df`` as zstd parquet to ``path`` atomically (``data_page_size``: bytes, None = polars default)."""
    with atomic_path(path) as tmp:
        df.write_parquet(tmp, compression="zstd", compression_level=compression_level, data_page_size=data_page_size)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if needed) for the block.

    ``flock`` is reliable on local file systems; on NFS use a store root on local disk
    per node or one writer per view.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (the data fingerprint recorded with every run)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def read_table(path: str | os.PathLike, required: Iterable[str] = ()) -> pl.DataFrame:
    """Read a parquet/CSV/TSV table; fail fast naming the file if it is missing, empty, or lacks a column."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"input file is empty: {path}")
    suffixes = "".join(path.suffixes).lower()
    if ".parquet" in suffixes:
        table = pl.read_parquet(path)
    elif ".tsv" in suffixes or ".txt" in suffixes:
        table = pl.read_csv(path, separator="\t", infer_schema_length=10000)
    else:
        table = pl.read_csv(path, infer_schema_length=10000)
    if table.height == 0:
        raise ValueError(f"input file has no rows: {path}")
    require_columns(table, required, str(path))
    return table


def require_columns(table: pl.DataFrame, required: Iterable[str], source: str) -> None:
    """Raise ``KeyError`` naming ``source`` and each missing column."""
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise KeyError(f"{source}: missing column(s) {missing}; available: {table.columns}")
