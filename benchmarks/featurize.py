"""Featurization throughput benchmark: featurestore vs chemprop vs a plain RDKit loop.

What is measured, in one run, on one molecule set (default ``data/moses_sample.parquet``,
column ``smiles``; ``--smiles-file`` takes any parquet/CSV(.gz) with a smiles column):

(a) ``standardize``     SMILES -> InChIKey (``FeatureStore.standardize``), cold, fresh temporary store
(b) ``ecfp cold``       ``store.get(keys, FeatureView("ecfp"))``, nothing stored yet
(c) ``graph cold``      ``store.get(keys, FeatureView("graph"))``, nothing stored yet
(c') ``graph in-process`` ``GraphFeaturizer().batch(smiles)`` in this process, no store, 1 process
                        (diagnostic: featurizer cost without pool start-up, joins and parquet writes)
(d) ``graph warm``      the same ``store.get`` again: every row read back from parquet
(d') ``graphs_from_frame`` rebuilding PyG ``Data`` objects from the warm frame
(e) ``chemprop``        chemprop 2.3.1: ``make_mol(smi, keep_h=False, add_h=False)`` then
                        ``SimpleMoleculeMolGraphFeaturizer()(mol)``, in a separate venv
                        (``.cache/chemprop-venv``, created on demand) by a worker that prints JSON
(f) ``plain rdkit``     ``Chem.MolFromSmiles`` + the same atom/bond getters as
                        ``featurestore/featurizers/graph.py``, in this process (the floor)

Steps (c'), (e) and (f) run on the standardized canonical SMILES the graph view featurizes
(one per unique InChIKey), so every graph row works on identical molecules.

Reported per step: molecules, wall seconds, molecules/s, molecules/s per core (rate divided
by the worker processes actually used: the store's ``n_jobs`` pool when it parallelizes,
else 1), and peak RSS: the main process's high-water mark for that step (``VmHWM``, reset
before each step through ``/proc/self/clear_refs``; lifetime ``ru_maxrss`` where that is
unavailable), ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` (largest single child so far,
cumulative over the run) and the sampled peak of all children's RSS summed during the step.
Also: CPU seconds per step (user + system of this process and its reaped children, from
``getrusage``; chemprop's worker reports its loop's ``process_time``), molecules per CPU
second, and the 1-minute load average when the step ended. On a shared machine wall-clock
rates drop when other jobs compete for the cores; molecules per CPU second barely move,
so compare those when the load column is above the core count.
Ratios: graph-cold per-core rate / chemprop per-core rate (target >= 1, aim 2; also the
same ratio per CPU second) and graph cold / graph warm wall time (target >= 50x).

Run (from the repo root)::

    .venv/bin/python benchmarks/featurize.py                      # all of data/moses_sample.parquet
    .venv/bin/python benchmarks/featurize.py --n 5000 --no-chemprop
    .venv/bin/python benchmarks/featurize.py --smiles-file some.csv.gz --n-jobs 2 --out /tmp/f.json

The first run with chemprop creates ``.cache/chemprop-venv`` (``pip install torch==2.13.0``
first, so pip does not pull a multi-GB CUDA build, then ``chemprop==2.3.1``; a few minutes,
network needed). If that fails the chemprop row says ``skipped: <reason>``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SMILES_FILE = REPO / "data" / "moses_sample.parquet"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "featurize.json"
CHEMPROP_VENV = REPO / ".cache" / "chemprop-venv"
CHEMPROP_VERSION = "2.3.1"
TORCH_PIN = "torch==2.13.0"  # CPU build here; an unpinned torch pulls a multi-GB CUDA build.

GRAPH_TARGET_RATIO, GRAPH_AIM_RATIO, WARM_TARGET_SPEEDUP = 1.0, 2.0, 50.0

# Runs inside the chemprop venv: argv[1] = file with one SMILES per line. Prints one JSON line.
CHEMPROP_WORKER = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import chemprop
from chemprop.featurizers import SimpleMoleculeMolGraphFeaturizer
from chemprop.utils import make_mol
import rdkit, numpy, torch
from rdkit import RDLogger
RDLogger.DisableLog("rdApp.*")
import_s = time.perf_counter() - t0
with open(sys.argv[1]) as fh:
    smiles = fh.read().split("\n")
featurizer = SimpleMoleculeMolGraphFeaturizer()
ok = failed = atoms = edges = 0
start, cpu_start = time.perf_counter(), time.process_time()
for smi in smiles:
    try:
        graph = featurizer(make_mol(smi, keep_h=False, add_h=False))
    except Exception:
        failed += 1
        continue
    ok += 1
    atoms += graph.V.shape[0]
    edges += graph.E.shape[0]
seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
print(json.dumps({
    "molecules": len(smiles), "ok": ok, "failed": failed, "atoms": atoms, "directed_edges": edges,
    "seconds": seconds, "cpu_seconds": cpu_seconds, "import_seconds": import_s,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "atom_fdim": featurizer.atom_fdim, "bond_fdim": featurizer.bond_fdim,
    "versions": {"chemprop": chemprop.__version__, "rdkit": rdkit.__version__, "numpy": numpy.__version__,
                 "torch": torch.__version__, "python": sys.version.split()[0]},
}))
"""


# ---------------------------------------------------------------------------------- measuring
def _vm_hwm_mib() -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _children_maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


class ChildRssSampler:
    """Background thread sampling the summed RSS of all live descendants (psutil)."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "ChildRssSampler":
        import psutil

        me = psutil.Process()

        def run() -> None:
            while not self._stop.wait(self.interval):
                total = 0
                for child in me.children(recursive=True):
                    try:
                        total += child.memory_info().rss
                    except psutil.Error:
                        pass
                self.peak = max(self.peak, total / 2**20)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


@dataclass
class Step:
    """One row of the results table."""

    key: str
    label: str
    molecules: int = 0
    seconds: float | None = None
    processes: int = 1
    cpu_seconds: float | None = None
    loadavg_1min: float | None = None
    rss_main_mib: float | None = None
    rss_children_maxrss_mib: float | None = None
    rss_children_sampled_mib: float | None = None
    skipped: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float | None:
        return self.molecules / self.seconds if self.seconds else None

    @property
    def rate_per_core(self) -> float | None:
        rate = self.rate
        return None if rate is None else rate / max(self.processes, 1)

    @property
    def rate_per_cpu_second(self) -> float | None:
        return self.molecules / self.cpu_seconds if self.cpu_seconds else None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "molecules_per_s": self.rate, "molecules_per_s_per_core": self.rate_per_core,
                "molecules_per_cpu_second": self.rate_per_cpu_second}


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its reaped children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _load1() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def measure(key: str, label: str, fn: Callable[[], Any], multiprocess: bool = False) -> tuple[Step, Any]:
    """Time ``fn()`` once; record peak RSS of this process (and children if ``multiprocess``)."""
    hwm_ok = _reset_hwm()
    sampler = ChildRssSampler() if multiprocess else None
    if sampler:
        sampler.__enter__()
    cpu_start = _cpu_seconds()
    start = time.perf_counter()
    try:
        result = fn()
    finally:
        seconds = time.perf_counter() - start
        if sampler:
            sampler.__exit__()
    # Pool workers are joined (reaped) when the store's executor closes, so their CPU time is in.
    step = Step(key, label, seconds=seconds, cpu_seconds=_cpu_seconds() - cpu_start, loadavg_1min=_load1())
    step.rss_main_mib = _vm_hwm_mib() if hwm_ok else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if multiprocess:
        step.rss_children_maxrss_mib = _children_maxrss_mib()
        step.rss_children_sampled_mib = sampler.peak if sampler else None
    return step, result


# ---------------------------------------------------------------------------------- inputs
def read_smiles(path: Path, n: int | None) -> list[str]:
    """First ``n`` SMILES of a parquet / CSV(.gz) file's ``smiles`` column (any case)."""
    import polars as pl

    name = path.name.lower()
    if name.endswith(".parquet") or name.endswith(".pq"):
        df = pl.read_parquet(path)
    elif name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz", ".smi", ".txt")):
        sep = "\t" if ".tsv" in name else ","
        df = pl.read_csv(path, separator=sep, infer_schema_length=0)
    else:
        raise SystemExit(f"--smiles-file: unsupported file type {path.name!r} (parquet, csv, csv.gz, tsv)")
    columns = {c.lower(): c for c in df.columns}
    if "smiles" not in columns:
        raise SystemExit(f"{path}: no smiles column (columns: {df.columns})")
    series = df.get_column(columns["smiles"]).cast(pl.String)
    if n is not None:
        series = series.head(n)
    return series.to_list()


def wait_for(path: Path, timeout_s: float) -> bool:
    """Poll for ``path`` (another job may still be writing it)."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() >= deadline:
            return False
        print(f"waiting for {path} ...", file=sys.stderr)
        time.sleep(min(30.0, max(deadline - time.monotonic(), 0.1)))
    return True


# ---------------------------------------------------------------------------------- chemprop
def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _chemprop_installed(python: Path) -> str | None:
    if not python.exists():
        return None
    probe = subprocess.run(
        [str(python), "-c", "import chemprop, sys; sys.stdout.write(chemprop.__version__)"],
        capture_output=True, text=True, timeout=300,
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


def ensure_chemprop_venv(venv: Path = CHEMPROP_VENV) -> tuple[Path | None, str | None]:
    """Return ``(python, None)`` for a venv with chemprop==CHEMPROP_VERSION, creating it if needed,
    or ``(None, reason)``. The pip log goes to ``<venv>-install.log``."""
    python = _venv_python(venv)
    try:
        if _chemprop_installed(python) == CHEMPROP_VERSION:
            return python, None
        log_path = venv.parent / f"{venv.name}-install.log"
        venv.parent.mkdir(parents=True, exist_ok=True)
        print(f"creating {venv} (chemprop=={CHEMPROP_VERSION}); log: {log_path}", file=sys.stderr)
        commands = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", TORCH_PIN],
            [str(python), "-m", "pip", "install", f"chemprop=={CHEMPROP_VERSION}", TORCH_PIN],
        ]
        with open(log_path, "w") as log:
            for command in commands:
                log.write(f"$ {' '.join(command)}\n")
                log.flush()
                done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=3600)
                if done.returncode != 0:
                    tail = log_path.read_text().strip().splitlines()[-1:] or [""]
                    return None, f"`{' '.join(command[2:])}` failed (rc={done.returncode}): {tail[0][:160]} (see {log_path})"
        version = _chemprop_installed(python)
        if version != CHEMPROP_VERSION:
            return None, f"chemprop {version or 'not importable'} after install (see {log_path})"
        return python, None
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


def run_chemprop(smiles: list[str], enabled: bool) -> tuple[Step, dict[str, Any]]:
    label = f"(e) chemprop {CHEMPROP_VERSION} SimpleMoleculeMolGraphFeaturizer"
    step = Step("chemprop", label, molecules=len(smiles))
    if not enabled:
        step.skipped = "skipped: --no-chemprop"
        return step, {}
    python, reason = ensure_chemprop_venv()
    if python is None:
        step.skipped = f"skipped: {reason}"
        return step, {}
    with tempfile.NamedTemporaryFile("w", suffix=".smi", delete=False) as fh:
        fh.write("\n".join(smiles))
        smiles_path = fh.name
    try:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        done = subprocess.run(
            [str(python), "-c", CHEMPROP_WORKER, smiles_path], capture_output=True, text=True, timeout=7200, env=env
        )
    except (OSError, subprocess.SubprocessError) as exc:
        step.skipped = f"skipped: worker {type(exc).__name__}: {exc}"
        return step, {}
    finally:
        os.unlink(smiles_path)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        step.skipped = f"skipped: chemprop worker failed (rc={done.returncode}): {tail[:200]}"
        return step, {}
    report = json.loads(lines[-1])
    step.molecules = report["molecules"]
    step.seconds = report["seconds"]
    step.cpu_seconds = report["cpu_seconds"]
    step.loadavg_1min = _load1()
    step.rss_main_mib = report["peak_rss_mib"]
    step.notes = {k: report[k] for k in ("ok", "failed", "atoms", "directed_edges", "import_seconds", "atom_fdim", "bond_fdim")}
    return step, report["versions"]


# ---------------------------------------------------------------------------------- plain RDKit floor
def plain_rdkit_graphs(smiles: list[str]) -> dict[str, int]:
    """Parse + the getters of ``GraphFeaturizer.__call__`` into Python tuples: the floor."""
    from rdkit import Chem

    ok = failed = atoms_n = edges_n = 0
    for smi in smiles:
        mol = Chem.MolFromSmiles(smi)
        if mol is None or mol.GetNumAtoms() == 0:
            failed += 1
            continue
        atoms = [
            (
                a.GetAtomicNum(), a.GetTotalDegree(), a.GetFormalCharge(), int(a.GetChiralTag()),
                a.GetTotalNumHs(), int(a.GetHybridization()), a.GetIsAromatic(), a.IsInRing(), a.GetMass(),
            )
            for a in mol.GetAtoms()
        ]
        bonds = [
            (b.GetBeginAtomIdx(), b.GetEndAtomIdx(), int(b.GetBondType()), b.GetIsConjugated(), b.IsInRing(), int(b.GetStereo()))
            for b in mol.GetBonds()
        ]
        ok += 1
        atoms_n += len(atoms)
        edges_n += 2 * len(bonds)
    return {"ok": ok, "failed": failed, "atoms": atoms_n, "directed_edges": edges_n}


# ---------------------------------------------------------------------------------- report
def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for dist in ("rdkit", "polars", "pyarrow", "numpy", "torch", "torch-geometric", "psutil", "drugplatform"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def run_tag(*parts: str) -> str:
    """Folder name for one configuration (preset, epochs, overrides...), so a run of other settings is not reused."""
    return "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in "_".join(parts))


def _machine() -> dict[str, Any]:
    import psutil

    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
    try:
        with open("/proc/cpuinfo") as fh:
            info["cpu_model"] = next((l.split(":", 1)[1].strip() for l in fh if l.startswith("model name")), None)
    except OSError:
        info["cpu_model"] = platform.processor() or None
    return info


def _git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return done.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(steps: list[Step], ratios: dict[str, Any], title: str) -> None:
    headers = ["step", "molecules", "wall s", "mol/s", "procs", "mol/s/core", "CPU s", "mol/CPU-s",
               "RSS main MiB", "RSS child max MiB", "RSS children sum MiB", "load1"]
    rows = []
    for s in steps:
        if s.skipped:
            rows.append([s.label, str(s.molecules), s.skipped, *[""] * (len(headers) - 3)])
            continue
        rows.append([
            s.label, str(s.molecules), _fmt(s.seconds, ".3f"), _fmt(s.rate, ",.0f"), str(s.processes),
            _fmt(s.rate_per_core, ",.0f"), _fmt(s.cpu_seconds, ".1f"), _fmt(s.rate_per_cpu_second, ",.0f"),
            _fmt(s.rss_main_mib, ",.0f"), _fmt(s.rss_children_maxrss_mib, ",.0f"),
            _fmt(s.rss_children_sampled_mib, ",.0f"), _fmt(s.loadavg_1min, ".1f"),
        ])
    ratio_lines = [f"{k}: {v}" for k, v in ratios.items()]
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        for i, h in enumerate(headers):
            table.add_column(h, justify="left" if i == 0 else "right", no_wrap=i == 0)
        for row in rows:
            table.add_row(*row)
        console = Console(width=max(200, Console().width))
        console.print(table)
        for line in ratio_lines:
            console.print(line, highlight=False)
    except ImportError:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        print(title)
        print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths))))
        for row in rows:
            print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        print("\n".join(ratio_lines))


# ---------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=None, help="use the first N SMILES (default: all)")
    parser.add_argument("--n-jobs", type=int, default=os.cpu_count() or 1, help="store worker processes (default: cpu count)")
    parser.add_argument("--no-chemprop", action="store_true", help="skip the chemprop comparison")
    parser.add_argument("--smiles-file", type=Path, default=None,
                        help=f"parquet/CSV(.gz) with a smiles column (default: {DEFAULT_SMILES_FILE.relative_to(REPO)})")
    parser.add_argument("--wait", type=float, default=1200.0,
                        help="seconds to wait for the default SMILES file to appear (default 1200)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results path")
    args = parser.parse_args(argv)

    smiles_file = args.smiles_file or DEFAULT_SMILES_FILE
    if args.smiles_file is None and not wait_for(smiles_file, args.wait):
        raise SystemExit(f"{smiles_file} not found after {args.wait:.0f}s; pass --smiles-file")
    if not smiles_file.exists():
        raise SystemExit(f"{smiles_file} not found")
    smiles = read_smiles(smiles_file, args.n)
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"{len(smiles):,} SMILES from {smiles_file}; n_jobs={args.n_jobs}; cpu_count={os.cpu_count()}", file=sys.stderr)

    import polars as pl

    from featurestore import FeatureStore, FeatureView, graphs_from_frame
    from featurestore.featurizers.graph import GraphFeaturizer

    steps: list[Step] = []

    def store_procs(store: FeatureStore, items: int) -> int:
        """Worker processes ``FeatureStore._compute`` actually uses for ``items`` missing items."""
        if store.n_jobs == 1 or items < store.min_parallel:
            return 1
        return min(store.n_jobs, -(-items // store.chunk_size))

    with tempfile.TemporaryDirectory(prefix="featurize-bench-") as root:
        store = FeatureStore(root, n_jobs=args.n_jobs, progress=False)

        # (a) SMILES -> key, cold
        step, keyed = measure("standardize", "(a) standardize SMILES -> InChIKey (cold)",
                              lambda: store.standardize(smiles), multiprocess=True)
        step.molecules = len(smiles)
        step.processes = store_procs(store, keyed.stats.computed)
        keys = keyed.keys
        step.notes = {"unique_inputs": keyed.stats.requested, "computed": keyed.stats.computed,
                      "errors": keyed.errors.height, "unique_keys": len(keys)}
        steps.append(step)
        print(f"(a) {step.seconds:.2f}s: {len(keys):,} keys, {keyed.errors.height} errors", file=sys.stderr)

        def cold_view(key: str, label: str, view: FeatureView):
            """Materialize ``view`` for every key into the empty store and record the step."""
            step, (frame, stats) = measure(key, label, lambda: store.get_with_stats(keys, view), multiprocess=True)
            step.molecules, step.processes = len(keys), store_procs(store, stats.computed)
            step.notes = {"computed": stats.computed, "reused": stats.reused, "errors": stats.errors}
            steps.append(step)
            print(f"{label.split()[0]} {step.seconds:.2f}s", file=sys.stderr)
            return step, frame

        cold_view("ecfp_cold", "(b) ECFP4 2048 (cold)", FeatureView("ecfp"))
        graph_view = FeatureView("graph")
        graph_cold_step, graph_cold = cold_view("graph_cold", "(c) graph features (cold, store)", graph_view)

        # The standardized SMILES the graph view featurized, one per key, in key order.
        canonical = (
            pl.DataFrame({"inchikey": keys})
            .join(store.read_entities("molecule").select("inchikey", "smiles"), on="inchikey", how="left")
            .get_column("smiles").to_list()
        )

        # (c') the featurizer alone, in this process
        featurizer = GraphFeaturizer()
        step, inproc = measure("graph_inprocess", "(c') graph featurizer in-process (no store)",
                               lambda: featurizer.batch(canonical))
        step.molecules = len(canonical)
        step.notes = {"errors": int(inproc.get_column("error").is_not_null().sum())}
        steps.append(step)
        del inproc
        print(f"(c') {step.seconds:.2f}s", file=sys.stderr)

        # (d) graph, warm
        step, (graph_warm, stats) = measure("graph_warm", "(d) graph features (warm read)",
                                            lambda: store.get_with_stats(keys, graph_view))
        step.molecules = len(keys)
        step.notes = {"computed": stats.computed, "reused": stats.reused,
                      "identical_to_cold": graph_warm.equals(graph_cold)}
        steps.append(step)
        graph_warm_step = step
        print(f"(d) {step.seconds:.3f}s", file=sys.stderr)
        del graph_cold

        # (d') PyG Data objects from the stored columns (torch / PyG imported before timing)
        start = time.perf_counter()
        import torch  # noqa: F401
        import torch_geometric.data  # noqa: F401
        import_seconds = time.perf_counter() - start
        ok_rows = graph_warm.filter(pl.col("error").is_null())
        step, graphs = measure("graphs_from_frame", "(d') graphs_from_frame -> PyG Data",
                               lambda: graphs_from_frame(ok_rows))
        step.molecules = len(graphs)
        step.notes = {"torch_import_seconds_excluded": round(import_seconds, 3)}
        steps.append(step)
        del graphs, graph_warm, ok_rows
        print(f"(d') {step.seconds:.2f}s", file=sys.stderr)

    # (f) plain RDKit floor
    step, counts = measure("plain_rdkit", "(f) plain RDKit loop (parse + getters)", lambda: plain_rdkit_graphs(canonical))
    step.molecules = len(canonical)
    step.notes = counts
    steps.append(step)
    print(f"(f) {step.seconds:.2f}s", file=sys.stderr)

    # (e) chemprop, in its own venv
    chemprop_step, chemprop_versions = run_chemprop(canonical, enabled=not args.no_chemprop)
    steps.insert(len(steps) - 1, chemprop_step)
    print(f"(e) {chemprop_step.skipped or f'{chemprop_step.seconds:.2f}s'}", file=sys.stderr)

    ratios: dict[str, Any] = {}
    graph_rate = graph_cold_step.rate_per_core
    if chemprop_step.rate_per_core and graph_rate:
        ratios["graph_cold_per_core_over_chemprop_per_core"] = round(graph_rate / chemprop_step.rate_per_core, 3)
        inproc_rate = next(s for s in steps if s.key == "graph_inprocess").rate_per_core
        ratios["graph_inprocess_over_chemprop"] = round(inproc_rate / chemprop_step.rate_per_core, 3)
        if graph_cold_step.rate_per_cpu_second and chemprop_step.rate_per_cpu_second:
            ratios["graph_cold_per_cpu_second_over_chemprop_per_cpu_second"] = round(
                graph_cold_step.rate_per_cpu_second / chemprop_step.rate_per_cpu_second, 3)
    else:
        ratios["graph_cold_per_core_over_chemprop_per_core"] = chemprop_step.skipped
    ratios["graph_cold_over_warm_speedup"] = round(graph_cold_step.seconds / graph_warm_step.seconds, 1)
    ratios["targets"] = (f"graph/chemprop per core >= {GRAPH_TARGET_RATIO:g} (aim {GRAPH_AIM_RATIO:g}); "
                         f"warm speed-up >= {WARM_TARGET_SPEEDUP:g}x")

    result = {
        "benchmark": "featurize",
        "created": datetime.now(timezone.utc).isoformat(),
        "git_commit": _git_commit(),
        "input": {"file": str(smiles_file), "n_requested": args.n, "smiles": len(smiles), "unique_keys": len(keys)},
        "n_jobs": args.n_jobs,
        "machine": {**_machine(), "loadavg_start": load_start,
                    "loadavg_end": os.getloadavg() if hasattr(os, "getloadavg") else None},
        "versions": _versions(),
        "chemprop_venv": {"path": str(CHEMPROP_VENV), "versions": chemprop_versions},
        "steps": [s.to_json() for s in steps],
        "ratios": ratios,
    }
    title = (f"featurize benchmark: {len(smiles):,} SMILES ({len(keys):,} unique keys) from {smiles_file.name}, "
             f"n_jobs={args.n_jobs}, cpu_count={os.cpu_count()}")
    print_table(steps, {k: v for k, v in ratios.items()}, title)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
