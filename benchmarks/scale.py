"""Scale-out benchmark: sharded featurization and ranking of MOSES molecules on this machine.

Runs the real apps as separate processes, ``--jobs`` shards at a time (what a SLURM array
does across nodes): ``python -m featurestore.build shard=i num_shards=N`` then its reduce
step, and ``python -m discovery.rank shard=i num_shards=N`` (med-chem score) then its
reduce. Reports molecules/s, molecules per CPU-second (the per-core rate to extrapolate
from), the peak RSS of each shard process (``wait4``), and the merge times; then the cost
of 10^9 molecules on a cluster from the measured per-core rate.

    python benchmarks/scale.py --n 1000000 --shards 8 --jobs 2     # the full MOSES training set
    python benchmarks/scale.py --n 20000 --shards 4 --jobs 2       # a quick run

``--n`` above 100,000 needs the full set: ``python -m featurestore.datasets build moses_full --moses-full``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from featurestore.datasets import dataset_path, load_dataset

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def molecules(n: int) -> pl.DataFrame:
    """The first ``n`` MOSES training molecules (the committed 100k sample when it suffices)."""
    if n <= 100_000:
        return load_dataset("moses_sample").head(n).select("smiles")
    path = dataset_path("moses_full")
    if not path.is_file():
        sys.exit(f"{path} is missing: python -m featurestore.datasets build moses_full --moses-full")
    return pl.read_parquet(path).head(n).select("smiles")


def run_shards(commands: list[list[str]], jobs: int) -> tuple[float, list[dict]]:
    """Run the shard commands ``jobs`` at a time; wall seconds and per-shard CPU seconds / peak RSS."""
    pending, running, done = list(enumerate(commands)), {}, []
    start = time.perf_counter()
    while pending or running:
        while pending and len(running) < jobs:
            shard, command = pending.pop(0)
            log = open(Path(tempfile.gettempdir()) / f"scale-shard-{shard}.log", "w")
            running[subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT).pid] = (shard, log)
        pid, status, usage = os.wait4(-1, 0)
        shard, log = running.pop(pid)
        log.close()
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"shard {shard} failed: see {log.name}")
        done.append({"shard": shard, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024})
    return time.perf_counter() - start, sorted(done, key=lambda row: row["shard"])


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - start


def step_row(step: str, n: int, wall: float, shards: list[dict], merge: float) -> dict:
    cpu = sum(row["cpu_s"] for row in shards)
    return {"step": step, "molecules": n, "shards": len(shards), "wall_s": round(wall, 1), "mol_per_s": round(n / wall),
            "mol_per_cpu_s": round(n / cpu), "peak_rss_mb_max": round(max(r["peak_rss_mb"] for r in shards)),
            "merge_s": round(merge, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="shard processes at once")
    parser.add_argument("--views", default="ecfp", help="featurizer list, e.g. ecfp,graph")
    parser.add_argument("--work", type=Path, default=None, help="folder for the input, store and runs (default: tmp)")
    parser.add_argument("--cluster-nodes", type=int, default=100, help="for the 10^9 extrapolation")
    parser.add_argument("--cores-per-node", type=int, default=64)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="scale-"))
    work.mkdir(parents=True, exist_ok=True)
    table = molecules(args.n)
    source = work / "molecules.parquet"
    table.write_parquet(source)
    python = sys.executable
    views = args.views.split(",")
    common = [f"store.root={work / 'store'}", "store.n_jobs=1", "store.progress=false"]
    featurize = [python, "-m", "featurestore.build", *common, "dataset=file", f"dataset.file.path={source}",
                 f"dataset.file.molecules.views=[{','.join(views)}]", f"featurizer=[{','.join(views)}]",
                 f"num_shards={args.shards}"]
    wall, shards = run_shards([[*featurize, f"shard={i}", f"hydra.run.dir={work / 'featurize' / str(i)}"]
                               for i in range(args.shards)], args.jobs)
    merge = timed([*featurize, "reduce=true", f"hydra.run.dir={work / 'featurize' / 'reduce'}"])
    rows = [step_row(f"featurize ({'+'.join(views)})", args.n, wall, shards, merge)]

    rank = [python, "-m", "discovery.rank", *common, f"input.path={source}", "progress=false",
            f"num_shards={args.shards}", f"shards_root={work / 'rank_parts'}"]
    wall, shards = run_shards([[*rank, f"shard={i}", f"hydra.run.dir={work / 'rank' / str(i)}"]
                               for i in range(args.shards)], args.jobs)
    merge = timed([*rank, "reduce=true", f"hydra.run.dir={work / 'rank' / 'reduce'}"])
    rows.append(step_row("rank (med-chem score, warm store)", args.n, wall, shards, merge))

    result = pl.DataFrame(rows)
    with pl.Config(tbl_cols=-1, tbl_width_chars=200):
        print(result)
    extrapolation = []
    cores = args.cluster_nodes * args.cores_per_node
    for row in rows:
        core_hours = 1e9 / row["mol_per_cpu_s"] / 3600
        extrapolation.append({"step": row["step"], "core_hours_per_1e9": round(core_hours),
                              f"wall_hours_on_{cores}_cores": round(core_hours / cores, 1)})
    print(pl.DataFrame(extrapolation))
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} cores; work folder {work}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"scale_n{args.n}.json"
    out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "steps": rows,
                               "extrapolation": extrapolation, "load_average": load}, indent=2))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
