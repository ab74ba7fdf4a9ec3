"""A self-contained HTML report of a run folder: ``python -m featurestore.report <run_dir>``.

Works for any app's run folder (it reads what the run wrote, not the app's code): the
header from ``run.json`` (app, time, commit, seed, data fingerprints), the metrics from
``metrics.json`` as tables, every PNG/SVG picture the run drew, a preview of each result
table (parquet) with a 2-D structure drawing for rows that carry a ``smiles`` column, a
patient's history beside their recommendations (when the run wrote both), and the
resolved config. Pictures are embedded (base64 data URLs, structures as inline SVG) and
the style is inline: the file opens offline and loads nothing from the network.

Each app writes ``report.html`` at the end of a successful job through
:class:`ReportCallback` (``hydra.callbacks.report`` in its primary config).
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from featurestore.io import atomic_path, write_json_atomic
from featurestore.runs import collect_runs, flatten, read_run

# Result tables first, in this order; other parquet files follow by name. Inputs are skipped.
TABLE_ORDER = ("ranked", "recommendations", "best_molecules", "top_molecules", "predictions", "calls")
SKIP_TABLES = ("data", "users", "items", "ingest_errors", "histories")
# (left table, right table, key): one key value's rows shown side by side, e.g. a patient's
# history beside their recommendations.
PAIRED_TABLES = (("histories", "recommendations", "person_id"),)
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;
color:#222;padding:0 1em} h1{font-size:1.5em} h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-top:.6em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0} td,th{border:1px solid #ddd;padding:3px 6px;
text-align:left;vertical-align:middle;max-width:24em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap} th{background:#f3f3f3} td.num{text-align:right;font-variant-numeric:tabular-nums}
.meta td:first-child{font-weight:600} figure{display:inline-block;margin:.5em;text-align:center}
figure img{max-width:560px;border:1px solid #eee} pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:.8em}
td.mol{min-width:180px;padding:0} td.mol svg{display:block;width:180px;height:130px} .note{color:#666;font-size:.85em} .pair{display:flex;gap:2em;align-items:flex-start}
"""


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f'<td class="num">{value:.4g}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value}</td>'
    if isinstance(value, list):
        value = ", ".join(map(str, value))
    text = html.escape("" if value is None else str(value)[:500])
    return f'<td title="{text}">{text}</td>'


def html_table(frame: pl.DataFrame, extra: Mapping[str, Sequence[str]] | None = None) -> str:
    """An HTML table of ``frame``; ``extra`` adds raw-HTML columns (already safe) in front."""
    extra = extra or {}
    head = "".join(f"<th>{html.escape(name)}</th>" for name in [*extra, *frame.columns])
    rows = []
    for index, row in enumerate(frame.iter_rows()):
        cells = "".join(f'<td class="mol">{column[index]}</td>' for column in extra.values())
        rows.append(f"<tr>{cells}{''.join(_cell(value) for value in row)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def molecule_svg(smiles: str | None, size: tuple[int, int] = (180, 130)) -> str:
    """An inline SVG drawing of a molecule, or a short note when it does not parse."""
    from rdkit import Chem
    from rdkit.Chem.Draw import rdMolDraw2D

    mol = Chem.MolFromSmiles(smiles) if smiles else None
    if mol is None:
        return '<span class="note">no structure</span>'
    drawer = rdMolDraw2D.MolDraw2DSVG(*size)
    drawer.drawOptions().clearBackground = False
    rdMolDraw2D.PrepareAndDrawMolecule(drawer, mol)
    drawer.FinishDrawing()
    svg = drawer.GetDrawingText()
    return svg[svg.index("<svg"):]  # drop the XML declaration: it is not allowed inside HTML


def _metrics_section(metrics: Mapping[str, Any]) -> str:
    """Metrics by top-level key: one table of numbers per block, scalars in one table."""
    scalars = {key: value for key, value in metrics.items() if not isinstance(value, (Mapping, list))}
    parts = [html_table(pl.DataFrame({"metric": list(scalars), "value": [str(v) for v in scalars.values()]}))] \
        if scalars else []
    for key, value in metrics.items():
        if not isinstance(value, Mapping):
            continue
        flat = {name: number for name, number in flatten(value).items() if isinstance(number, (int, float))}
        if not flat or len(flat) > 400:  # large per-target blocks stay in metrics.json
            continue
        parts.append(f"<h3>{html.escape(key)}</h3>" + html_table(
            pl.DataFrame({"metric": list(flat), "value": [float(v) for v in flat.values()]})))
    return "".join(parts)


def _figures_section(run_dir: Path) -> str:
    """Every picture, as an embedded image (an SVG twin of a PNG is shown once, as the PNG)."""
    pngs = sorted(run_dir.glob("*.png"))
    svgs = [path for path in sorted(run_dir.glob("*.svg")) if path.with_suffix(".png") not in pngs]
    figures = []
    for path in sorted([*pngs, *svgs]):
        kind = "image/png" if path.suffix == ".png" else "image/svg+xml"
        data = base64.b64encode(path.read_bytes()).decode()
        figures.append(f'<figure><img alt="{html.escape(path.name)}" src="data:{kind};base64,{data}">'
                       f"<figcaption>{html.escape(path.name)}</figcaption></figure>")
    return "".join(figures)


def _table_order(path: Path) -> tuple[int, str]:
    return (TABLE_ORDER.index(path.stem) if path.stem in TABLE_ORDER else len(TABLE_ORDER), path.stem)


def _tables_section(run_dir: Path, max_rows: int, max_structures: int) -> str:
    parts = []
    for path in sorted(run_dir.glob("*.parquet"), key=_table_order):
        if path.stem in SKIP_TABLES:
            continue
        # Only the previewed rows are read: result tables may hold millions of rows.
        table = pl.scan_parquet(path)
        preview, n_rows = table.head(max_rows).collect(), table.select(pl.len()).collect().item()
        smiles_column = next((c for c in preview.columns if c.lower() in ("smiles", "canonical_smiles")), None)
        extra = {}
        if smiles_column:
            extra["structure"] = [molecule_svg(s) if i < max_structures else "" for i, s in
                                  enumerate(preview[smiles_column].to_list())]
        parts.append(f"<h3>{html.escape(path.name)}</h3><p class='note'>first {preview.height} of {n_rows} "
                     f"rows</p>" + html_table(preview, extra))
    return "".join(parts)


def _paired_section(run_dir: Path) -> str:
    """For each pair of tables present: the first key value's rows of both, side by side."""
    parts = []
    for left, right, key in PAIRED_TABLES:
        paths = [run_dir / f"{left}.parquet", run_dir / f"{right}.parquet"]
        if not all(path.is_file() for path in paths):
            continue
        first = pl.scan_parquet(paths[1]).select(key).head(1).collect()
        if first.is_empty():
            continue
        value = first[key][0]
        shown = [pl.scan_parquet(path).filter(pl.col(key) == value).drop(key).collect() for path in paths]
        parts.append(f"<h3>{html.escape(key)} {html.escape(str(value))}: {left} beside {right}</h3><div class='pair'>"
                     + "".join(f"<div><p class='note'>{name}</p>{html_table(table)}</div>"
                               for name, table in zip((left, right), shown)) + "</div>")
    return "".join(parts)


def render_report(run_dir: str | Path, out: str | Path | None = None, title: str | None = None,
                  max_rows: int = 20, max_structures: int = 12) -> Path:
    """Write the run's report (default ``<run_dir>/report.html``) atomically and return its path."""
    run_dir = Path(run_dir)
    if not (run_dir / "run.json").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder: it has no run.json")
    record = json.loads((run_dir / "run.json").read_text())
    row = read_run(run_dir)
    title = title or f"{row['app'] or 'run'}: {run_dir.name}"
    meta = {"app": row["app"], "folder": str(run_dir.resolve()), "created": row["created"], "seed": row["seed"],
            "git commit": row["git_commit"], "overrides": row["overrides"],
            "data": ", ".join(f"{Path(p).name} ({v['sha256'][:12]})" for p, v in (record.get("data") or {}).items())}
    sections = [f"<h1>{html.escape(title)}</h1>", "<table class='meta'>" + "".join(
        f"<tr><td>{html.escape(k)}</td>{_cell(v)}</tr>" for k, v in meta.items() if v is not None) + "</table>"]
    metrics_path = run_dir / "metrics.json"
    if metrics_path.is_file():
        sections += ["<h2>Metrics</h2>", _metrics_section(json.loads(metrics_path.read_text()))]
    figures = _figures_section(run_dir)
    if figures:
        sections += ["<h2>Figures</h2>", figures]
    tables = _paired_section(run_dir) + _tables_section(run_dir, max_rows, max_structures)
    if tables:
        sections += ["<h2>Results</h2>", tables]
    config = yaml.safe_dump(record.get("config") or {}, sort_keys=False)
    sections += ["<h2>Config</h2>", f"<pre>{html.escape(config)}</pre>"]
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(sections)}</body></html>")
    out = Path(out) if out else run_dir / "report.html"
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out


def render_index(root: str | Path, title: str = "Quickstart") -> Path:
    """``<root>/index.html``: every run folder under ``root`` with a link to its report and its headline
    numbers (``summary*.json`` files in ``root``, written by the quickstart steps)."""
    root = Path(root)
    runs = collect_runs(root)
    rows = []
    for row in runs.iter_rows(named=True):
        folder = Path(row["run_dir"])
        relative = folder.relative_to(root).as_posix()
        link = f'<a href="{html.escape(relative)}/report.html">{html.escape(relative)}</a>' \
            if (folder / "report.html").is_file() else html.escape(relative)
        rows.append(f"<tr><td>{link}</td>{_cell(row['app'])}{_cell(row['created'])}</tr>")
    sections = [f"<h1>{html.escape(title)}</h1>", f"<p class='note'>{html.escape(str(root.resolve()))}</p>",
                "<h2>Runs</h2><table><tr><th>run (report)</th><th>app</th><th>created</th></tr>" + "".join(rows)
                + "</table>"]
    for summary in sorted(root.glob("summary*.json")):
        steps = json.loads(summary.read_text())
        flat = [{"step": name, **{key: str(value) for key, value in numbers.items()}} for name, numbers in steps.items()]
        sections += [f"<h2>{html.escape(summary.stem)}</h2>", html_table(pl.DataFrame(flat, strict=False))]
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(sections)}</body></html>")
    out = root / "index.html"
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out


def quickstart_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The arguments both quickstart halves take: the output folder and the feature-store root."""
    parser = argparse.ArgumentParser(description=description, prog=prog)
    parser.add_argument("out_dir", nargs="?", default="outputs/quickstart")
    parser.add_argument("--store", default=os.environ.get("FEATURESTORE_ROOT", ".featurestore"))
    return parser


def write_step_summary(out_dir: str | Path, name: str, steps: Mapping[str, Mapping[str, Any]]) -> Path:
    """``<out_dir>/summary_<name>.json`` (shown by :func:`render_index`), and one line per step on stdout."""
    for step, numbers in steps.items():
        print(f"{step:26s} {dict(numbers)}")
    return write_json_atomic(Path(out_dir) / f"summary_{name}.json", steps)


class ReportCallback(Callback):
    """Hydra callback: ``report.html`` in the job's output folder after each successful job."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status == JobStatus.COMPLETED:
            render_report(HydraConfig.get().runtime.output_dir)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], prog="python -m featurestore.report")
    parser.add_argument("run_dir", help="a run folder (it holds run.json)")
    parser.add_argument("--out", help="HTML path (default: <run_dir>/report.html)")
    parser.add_argument("--max-rows", type=int, default=20, help="rows shown per result table")
    args = parser.parse_args(argv)
    print(render_report(args.run_dir, args.out, max_rows=args.max_rows))


if __name__ == "__main__":
    main()
