"""How far above popularity can any model get on task (b) of the SYNTHETIC cohort? Oracles that know part of the future.

Issue 5 asks for tuned ALS or EASE >= 1.3x popularity (NDCG@10, new drugs). This script asks whether the
simulated cohort allows it. It reads what the simulator writes beside the usage records (OMOP-shaped:
each exposure's ``indication_condition_occurrence_id``, the condition's concept, the person's sex) to
label every task-(b) target of the test fold of the benchmark's time split (``benchmarks/recommend.py``):

- **acute**: a course for an acute condition (``acute:`` in ``conf/simulate.yaml``); which patient has
  one is predictable from history (frailty, comorbidity), which drug is not: the simulator draws it by
  within-class popularity, the same for everyone (sex changes the mix of conditions);
- **chronic**, by what the patient's history shows for the same condition:
  - *switch*: a drug of the same ATC level-4 class was taken before (the class is known, the new drug is not);
  - *add-on*: a drug for that condition was taken before, of another class;
  - *first*: no drug for that condition before (a new diagnosis, or a prevalent one treated now).

Rankings on the same patients (drugs taken before are never ranked, as in the benchmark):
popularity (patients per drug, the tuned baseline), popularity within the patient's sex (and within their
practice, for a cohort simulated with ``practices``), and
*oracles*: the true targets of one kind ranked first, the rest by popularity. An oracle is not a
model; it bounds what knowing that part of the future is worth. The tuned models of a
``benchmarks/recommend.py`` results file (``--tuned``) are refitted at their best task-(b) point and
ranked too, with their recall@10 on acute and chronic targets.

Run (from the repo root)::

    nice -n 5 .venv/bin/python benchmarks/recommend_ceiling.py                    # 100k, calibrated simulator
    .venv/bin/python benchmarks/recommend_ceiling.py --sim-patients 10000 --tuned-dataset sim100000 --models ease \
        --out /tmp/ceiling.json                                                   # a quick look
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:] = [str(REPO), *(p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent)]

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from benchmarks.featurize import _git_commit, _machine  # noqa: E402
from benchmarks.recommend import _compose, compose_cfg, prepare, simulated  # noqa: E402
from featurestore.io import write_json_atomic  # noqa: E402
from recommend.interactions import Interactions, Weighting, build_interactions, pair_matrix  # noqa: E402
from recommend.metrics import hits_matrix, ranking_metrics  # noqa: E402
from recommend.models.base import _empty_ranking, _top_n  # noqa: E402
from recommend.run import fit_fold  # noqa: E402
from recommend.splits import Fold, excluded_items, task_targets  # noqa: E402

KINDS = ("acute", "switch", "addon", "first")
FEMALE = 8532  # OMOP gender concept


def target_kinds(root: Path, fold: Fold, targets: pl.DataFrame, items: pl.DataFrame,
                 acute_concepts: list[int]) -> pl.DataFrame:
    """``targets`` (person_id, item) with ``kind``: acute, switch, addon or first (see the module docstring)."""
    reference = fold.future["reference"][0]
    exposures = pl.read_parquet(root / "drug_exposure_synthetic.parquet",
                                columns=["person_id", "drug_source_value", "drug_exposure_start_date",
                                         "indication_condition_occurrence_id"])
    conditions = pl.read_parquet(root / "condition_occurrence_synthetic.parquet",
                                 columns=["condition_occurrence_id", "condition_concept_id"])
    indicated = (exposures.join(conditions, left_on="indication_condition_occurrence_id",
                                right_on="condition_occurrence_id")
                 .select("person_id", pl.col("drug_source_value").alias("item"), "condition_concept_id",
                         after=pl.col("drug_exposure_start_date").cast(pl.Datetime("us")) >= reference)
                 .unique()
                 .join(items.select("item", atc4=pl.col("atc").str.slice(0, 5)), on="item", how="left"))
    future = indicated.filter("after").join(targets, on=["person_id", "item"], how="semi")
    before = indicated.filter(~pl.col("after")).select("person_id", "condition_concept_id",
                                                       before_atc4=pl.col("atc4"))
    labelled = (future.join(before, on=["person_id", "condition_concept_id"], how="left")
                .group_by("person_id", "item")
                .agg(acute=pl.col("condition_concept_id").is_in(acute_concepts).any(),
                     same_class=(pl.col("before_atc4") == pl.col("atc4")).any(),
                     same_condition=pl.col("before_atc4").is_not_null().any()))
    kind = (pl.when("acute").then(pl.lit("acute")).when("same_class").then(pl.lit("switch"))
            .when("same_condition").then(pl.lit("addon")).otherwise(pl.lit("first")))
    out = targets.join(labelled.select("person_id", "item", kind=kind), on=["person_id", "item"], how="left")
    if out["kind"].null_count():
        raise ValueError(f"{out['kind'].null_count()} targets have no indication in {root}: not a simulated cohort?")
    return out


def top10(scores: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """Top-10 columns per row as the models rank them (``_top_n``: excluded cells never ranked, ties: lower column)."""
    ids, values = _empty_ranking(len(scores), 10)
    _top_n(np.where(excluded, -np.inf, scores).astype(np.float32), ids, values)
    return ids


def quality(ids: np.ndarray, truth: sp.csr_matrix, by_kind: dict[str, sp.csr_matrix]) -> dict[str, float]:
    """NDCG@10, and recall@10 over the acute and the chronic targets (pooled over patients)."""
    chronic = by_kind["switch"] + by_kind["addon"] + by_kind["first"]  # disjoint: one kind per target
    return {"ndcg@10": ranking_metrics(ids, truth, [10])["ndcg@10"],
            "recall@10 acute": float(hits_matrix(ids, by_kind["acute"]).sum() / max(1, by_kind["acute"].nnz)),
            "recall@10 chronic": float(hits_matrix(ids, chronic).sum() / max(1, chronic.nnz))}


def tuned_points(path: Path, dataset: str, models: list[str] | None) -> list[dict[str, Any]]:
    """The best task-(b) point of each model in a ``benchmarks/recommend.py`` results file."""
    tables = json.loads(path.read_text())["quality"]
    if dataset not in tables:
        raise KeyError(f"{path} has no results on {dataset} (it has {sorted(tables)}): pass --tuned-dataset")
    rows = [r for r in tables[dataset] if r["task"] == "new"]
    return [r for r in rows if r["model"] != "popularity" and (models is None or r["model"] in models)]


def popularity_within(matrix: sp.csr_matrix, group_of_row: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Scores of the patients in ``rows``: patients per drug among the matrix rows of the same group."""
    groups, index = np.unique(group_of_row, return_inverse=True)
    table = np.stack([np.asarray(matrix[index == g].getnnz(axis=0), dtype=np.float64) for g in range(len(groups))])
    return table[index[rows]]


def ceiling(n_patients: int, sim_root: Path, tuned: Path, tuned_dataset: str | None,
            models: list[str] | None, overrides: list[str]) -> dict[str, Any]:
    root = simulated(n_patients, sim_root, overrides=overrides)
    items, users, folds, patients = prepare(compose_cfg("simulated", root), patients=True)
    fold = folds["test"]
    train: Interactions = build_interactions(fold.history, users, items["item"], progress=False)
    acute_concepts = [c["concept_id"] for c in OmegaConf.to_container(_compose("simulate", []).acute).values()]
    targets = target_kinds(root, fold, task_targets(fold, "new"), items, acute_concepts)
    persons = targets["person_id"].unique().sort()
    rows = train.rows(persons)
    truth = pair_matrix(targets, persons, train)
    excluded = pair_matrix(excluded_items(fold, "history"), persons, train).toarray() > 0
    by_kind = {k: pair_matrix(targets.filter(pl.col("kind") == k), persons, train) for k in KINDS}

    popularity = np.asarray(train.matrix.getnnz(axis=0), dtype=np.float64)
    person = pl.DataFrame({"person_id": users}).join(patients.persons, on="person_id", how="left")  # per matrix row
    rankings: dict[str, np.ndarray] = {
        "popularity": np.broadcast_to(popularity, excluded.shape),
        "popularity within sex": popularity_within(train.matrix, (person["gender_concept_id"] == FEMALE).to_numpy(),
                                                   rows),
    }
    if "care_site_id" in person.columns and person["care_site_id"].null_count() < person.height:  # practices=...
        rankings["popularity within practice"] = popularity_within(
            train.matrix, person["care_site_id"].fill_null(0).to_numpy(), rows)
    first = 2.0 * popularity.max() + 1.0  # ranks an oracle's targets above every popularity score
    oracles = {"switch": ("switch",), "add-on": ("addon",), "switch + add-on": ("switch", "addon"),
               "first": ("first",), "all chronic": ("switch", "addon", "first"), "acute": ("acute",)}
    for name, kinds in oracles.items():
        known = sum(by_kind[k] for k in kinds).toarray() > 0
        rankings[f"oracle: {name}"] = popularity + first * known
    results = {name: quality(top10(scores, excluded), truth, by_kind) for name, scores in rankings.items()}
    for point in tuned_points(tuned, tuned_dataset or f"sim{n_patients}", models):
        start = time.perf_counter()
        model, matrix, _ = fit_fold({"name": point["model"], **point["params"]}, fold, items, users,
                                    Weighting(**point["weighting"]), patients=patients)
        scores = model.score(rows, matrix.matrix[rows])
        results[f"{point['model']} (tuned)"] = quality(top10(scores, excluded), truth, by_kind) | {
            "params": point["params"], "weighting": point["weighting"],
            "seconds": round(time.perf_counter() - start, 1)}
    base = results["popularity"]["ndcg@10"]
    for row in results.values():
        row["x popularity"] = round(row["ndcg@10"] / base, 3)
    counts = targets["kind"].value_counts().sort("kind")
    return {"dataset": f"sim{n_patients} (SYNTHETIC)", "patients_ranked": len(persons), "targets": targets.height,
            "target_kinds": dict(zip(counts["kind"], counts["count"])), "rankings": results}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sim-patients", type=int, default=100_000)
    parser.add_argument("--sim-root", type=Path, default=REPO / "outputs" / "simulate")
    parser.add_argument("--tuned", type=Path,
                        default=REPO / "benchmarks" / "results" / "recommend_grid12_calibrated.json",
                        help="results of benchmarks/recommend.py on the same cohort: the tuned models' best points")
    parser.add_argument("--tuned-dataset", default=None, help="data set of --tuned (default: sim<patients>)")
    parser.add_argument("--models", nargs="*", default=None, help="models of --tuned to rank (default: all)")
    parser.add_argument("--sim-override", nargs="*", default=[], metavar="KEY=VALUE",
                        help="recommend.simulate overrides of the cohort, as in benchmarks/recommend.py")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    result = ceiling(args.sim_patients, args.sim_root, args.tuned, args.tuned_dataset, args.models, args.sim_override)
    result |= {"benchmark": "recommend_ceiling", "git_commit": _git_commit(), "machine": _machine(),
               "tuned_from": str(args.tuned), "note": "SYNTHETIC cohort (recommend.simulate); oracles are not models"}
    print(f"{result['dataset']}: {result['patients_ranked']:,} patients, {result['targets']:,} new-drug targets "
          f"{result['target_kinds']}")
    print(f"{'ranking':32s} {'NDCG@10':>8s} {'x pop':>6s} {'R@10 acute':>10s} {'R@10 chronic':>12s}")
    for name, row in result["rankings"].items():
        print(f"{name:32s} {row['ndcg@10']:8.4f} {row['x popularity']:6.3f} {row['recall@10 acute']:10.3f} "
              f"{row['recall@10 chronic']:12.3f}")
    out = args.out or REPO / "benchmarks" / "results" / f"recommend_ceiling_sim{args.sim_patients}.json"
    write_json_atomic(out, result)
    print(f"results: {out}")
    return result


if __name__ == "__main__":
    main()
