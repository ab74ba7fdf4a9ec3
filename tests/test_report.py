"""featurestore.report: a self-contained HTML report of a run folder, rendered in headless Chromium."""

import json
import os
import re
import shutil
import subprocess

import matplotlib
from matplotlib.image import imread
import polars as pl
import pytest

from featurestore.provenance import write_run_record
from featurestore.report import render_report

matplotlib.use("Agg")


@pytest.fixture()
def run_dir(tmp_path):
    import matplotlib.pyplot as plt

    run = tmp_path / "run"
    write_run_record(run, {"model": {"name": "gin"}, "seed": 3}, 3)
    (run / "metrics.json").write_text(json.dumps({"ensemble": 1, "test": {"rmse": 0.6125, "r2": 0.81}}))
    figure, axis = plt.subplots(figsize=(2, 2))
    axis.plot([0, 1], [1, 0])
    figure.savefig(run / "learning_curve.png")
    plt.close(figure)
    pl.DataFrame({"rank": [1, 2, 3], "smiles": ["CC(=O)Oc1ccccc1C(=O)O", "c1ccccc1", "not-a-smiles"],
                  "score": [0.9, 0.5, None], "alerts": [["PAINS"], [], ["invalid"]]}).write_parquet(run / "ranked.parquet")
    pl.DataFrame({"smiles": ["C"] * 5}).write_parquet(run / "data.parquet")  # an input: not shown
    return run


def test_report_embeds_metrics_figures_structures_and_config_without_network_assets(run_dir):
    page = render_report(run_dir).read_text()
    assert (run_dir / "report.html").is_file()
    assert "<td class=\"num\">0.6125</td>" in page
    assert "data:image/png;base64," in page and "learning_curve.png" in page
    assert "ranked.parquet" in page and "first 3 of 3 rows" in page
    assert page.count("<svg") == 2 and "no structure" in page  # aspirin, benzene; the invalid row says so
    assert "data.parquet" not in page
    assert "name: gin" in page
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page)
    assert "<script" not in page and "<link" not in page


def test_report_of_a_folder_without_a_run_record_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no run.json"):
        render_report(tmp_path)


def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("REQUIRE_CHROMIUM"):
            pytest.fail("REQUIRE_CHROMIUM is set but no chromium is installed (.ci/run installs Debian's chromium)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    page = render_report(run_dir)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([browser, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=60)
    assert "first 3 of 3 rows" in dom.stdout and "<svg" in dom.stdout, dom.stderr[-2000:]
    shot = tmp_path / "shot.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=900,900", page.as_uri()],
                   capture_output=True, timeout=60)
    pixels = imread(shot)
    assert pixels.shape[:2] == (900, 900) and pixels.std() > 0.05  # drawn, not blank


def test_index_links_every_run_report_and_shows_step_summaries(run_dir, tmp_path):
    from featurestore.report import render_index

    render_report(run_dir)
    write_run_record(tmp_path / "nested" / "second", {"x": 1}, 0)  # a run without a report: listed, no link
    (tmp_path / "summary_demo.json").write_text(json.dumps({"train": {"test_rmse": 0.61, "seconds": 7.0}}))
    page = render_index(tmp_path).read_text()
    assert '<a href="run/report.html">run</a>' in page and "nested/second" in page
    assert "summary_demo" in page and "0.61" in page
