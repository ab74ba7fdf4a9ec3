"""The README's main job: the discovery and recommend quickstarts end to end (slow: about 3 minutes cold)."""

import json

import pytest

from discovery.quickstart import run_discovery_quickstart
from recommend.quickstart import run_recommend_quickstart


@pytest.mark.slow
def test_quickstart_runs_every_step_and_links_the_reports(tmp_path):
    from featurestore.report import render_index

    out, store = tmp_path / "quickstart", tmp_path / "store"
    discovery = run_discovery_quickstart(out, store, budget=150)
    recommend = run_recommend_quickstart(out, store)
    assert set(discovery) == {"train_esol_dmpnn", "train_targets_multitask", "predict_targets", "rank_drugs",
                              "optimize_celecoxib"}
    assert discovery["train_esol_dmpnn"]["test_rmse"] < 1.5 and discovery["rank_drugs"]["ranked"] == 2845
    assert recommend["recommend_eunomia_ease"]["test_new_ndcg@10"] > 0.3
    index = render_index(out).read_text()
    for step in [*discovery, *recommend]:
        assert (out / step / "report.html").is_file() and f'href="{step}/report.html"' in index
    assert json.loads((out / "summary_recommend.json").read_text()) == recommend
