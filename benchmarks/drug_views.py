"""Build time of all drug content views (``featurestore.build_drug_views``), cold and warm.

Cold: a fresh temporary store, every view computed for the whole catalog (2,845 drugs):
``drug_atc``, ``drug_classes``, ``drug_text`` (lookups in ``data/drug_annotations.parquet``)
and ``drug_ecfp`` (ECFP4 through the molecule store: standardize the catalog SMILES, then
ECFP per InChIKey). Warm: the same call again, every row read back. Reported per view:
keys, computed, reused, errors, wall seconds; per pass: wall and CPU seconds (this process
and its reaped workers) and the 1-minute load average (compare CPU seconds when the load is
above the core count).

Run (from the repo root)::

    .venv/bin/python benchmarks/drug_views.py                  # store n_jobs = all cores
    .venv/bin/python benchmarks/drug_views.py --n-jobs 1 --out /tmp/drug_views.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from featurestore import FeatureStore, build_drug_views

RESULTS = Path(__file__).resolve().parent / "results" / "drug_views.json"


def cpu_seconds() -> float:
    """User + system seconds of this process and its reaped children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-jobs", type=int, default=None, help="store worker processes (default: all cores)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    passes, tables = [], []
    with tempfile.TemporaryDirectory() as root:
        store = FeatureStore(root, n_jobs=args.n_jobs, progress=False)
        for label in ("cold", "warm"):
            wall, cpu = time.perf_counter(), cpu_seconds()
            table = build_drug_views(store)
            passes.append({"pass": label, "wall_s": round(time.perf_counter() - wall, 2),
                           "cpu_s": round(cpu_seconds() - cpu, 2), "load_1min": round(os.getloadavg()[0], 2)})
            tables.append(table.with_columns(pl.lit(label).alias("pass"), pl.col("seconds").round(2)))
    views = pl.concat(tables).select("pass", "name", "keys", "computed", "reused", "errors", "seconds")
    with pl.Config(tbl_rows=20, tbl_hide_dataframe_shape=True):
        print(views)
        print(pl.DataFrame(passes))
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.node(),
        "cores": os.cpu_count(), "n_jobs": store.n_jobs, "passes": passes, "views": views.to_dicts(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
