"""Run records: every run writes its config, seed, package versions and data fingerprints.

``write_run_record(out_dir, config, seed, data_files)`` writes ``run.json`` next to a
run's outputs; apps in ``discovery`` and ``recommend`` call it too.
"""

from __future__ import annotations

import os
import platform
import random
import subprocess
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from featurestore.io import sha256_file, write_json_atomic

TRACKED_PACKAGES = (
    "drugplatform", "rdkit", "torch", "torch-geometric", "polars", "pyarrow", "numpy", "scipy",
    "scikit-learn", "hydra-core", "omegaconf", "implicit",
)


def package_versions(names: Iterable[str] = TRACKED_PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (``None`` if absent)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(path: str | os.PathLike = ".") -> str | None:
    """The checked-out commit (with ``-dirty`` if the tree has changes), or ``None`` outside git."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def fingerprint_files(paths: Iterable[str | os.PathLike]) -> dict[str, dict[str, Any]]:
    """``{path: {sha256, bytes}}`` for each existing file (the data a run read)."""
    out = {}
    for path in map(Path, paths):
        if path.is_file():
            out[str(path)] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return out


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and (if imported) torch."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def run_record(config: Mapping[str, Any], seed: int | None = None, data_files: Iterable[str | os.PathLike] = ()) -> dict:
    """Everything needed to reproduce a run, as plain JSON-able data."""
    return {
        "created": datetime.now(timezone.utc).isoformat(),
        "command": sys.argv,
        "config": dict(config),
        "seed": seed,
        "python": sys.version,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "packages": package_versions(),
        "git_commit": git_commit(Path(__file__).resolve().parent),
        "data": fingerprint_files(data_files),
    }


def write_run_record(
    out_dir: str | os.PathLike, config: Mapping[str, Any], seed: int | None = None,
    data_files: Iterable[str | os.PathLike] = (),
) -> Path:
    """Write ``run.json`` into ``out_dir`` atomically and return its path."""
    return write_json_atomic(Path(out_dir) / "run.json", run_record(config, seed, data_files))
