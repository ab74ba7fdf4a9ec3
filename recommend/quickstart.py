"""The recommendation half of the quickstart: ``python -m recommend.quickstart [out_dir]``.

Into run folders under ``out_dir`` (each with its ``report.html``): EASE on the Eunomia
OMOP cohort (time split, tasks all/new/visit, top-10 per patient with explanations and
each patient's history), the content model's "drugs like" neighbourhood, and PubMed
abstracts for one Eunomia patient (BM25 over the whole shipped catalog). Then the
quickstart's index page (``index.html``) linking every run folder under ``out_dir``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from featurestore.report import quickstart_parser, render_index, render_report, write_step_summary

from recommend.resources.run import run_resources
from recommend.run import run_recommend

CONF = Path(__file__).resolve().parents[1] / "conf"
log = logging.getLogger(__name__)


def _config(app: str, *overrides: str) -> DictConfig:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose(app, overrides=list(overrides))


def run_recommend_quickstart(out_dir: str | Path, store_root: str | Path, person_id: int = 6) -> dict[str, Any]:
    """The recommendation steps; returns ``{step: headline numbers}`` (also in ``summary_recommend.json``)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit's advice
    out_dir = Path(out_dir)
    summary: dict[str, Any] = {}
    for name, recommender in (("recommend_eunomia_ease", "ease"), ("recommend_eunomia_content", "content")):
        start = time.perf_counter()
        overrides = [f"recommender={recommender}"] + ([f"recommender.store_root={store_root}"]
                                                      if recommender == "content" else [])
        result = run_recommend(_config("recommend", *overrides), out_dir / name, label=recommender)
        render_report(out_dir / name)
        new = result["metrics"]["test"]["tasks"]["new"]
        summary[name] = {"test_new_ndcg@10": new.get("ndcg@10"), "patients": new.get("patients"),
                         "seconds": round(time.perf_counter() - start, 1)}
        log.info("quickstart %s: %s", name, summary[name])
    start = time.perf_counter()
    name = "resources_patient"
    result = run_resources(_config("resources", f"patient.person_id={person_id}", "index.svd_components=0"),
                           out_dir / name)
    render_report(out_dir / name)
    summary[name] = {"person_id": person_id, "top": result["table"]["title"][0] if result["table"].height else None,
                     "seconds": round(time.perf_counter() - start, 1)}
    write_step_summary(out_dir, "recommend", summary)
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    parser = quickstart_parser("python -m recommend.quickstart", __doc__.split("\n")[0])
    parser.add_argument("--person", type=int, default=6, help="Eunomia person for the resource step")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()
    run_recommend_quickstart(args.out_dir, args.store, args.person)
    index = render_index(args.out_dir)
    print(f"recommend quickstart: {time.perf_counter() - start:.0f} s; every run's report: {index}")


if __name__ == "__main__":
    main()
