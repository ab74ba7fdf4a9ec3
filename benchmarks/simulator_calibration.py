"""Antibiotic use in the SYNTHETIC cohort (``recommend.simulate``) against UK primary-care records.

Reference: Shallcross L, Beckley N, Rait G, Hayward A, Petersen I. Antibiotic prescribing frequency
amongst patients in primary care: a cohort study using electronic health records. J Antimicrob
Chemother 2017;72(6):1818-1824 (1,948,390 adults, 385 UK practices, 2011-13): 30.1% of patients were
prescribed at least one antibiotic a year; 9% of patients, each with at least five prescriptions over
the 3 years, received 53% of them (3,922,732 prescriptions: 0.67 per patient-year); any comorbidity
raised the rate by 44% (adjusted IRR 1.44), women's rate exceeded men's by 62% (adjusted IRR 1.62).

The same figures on a simulated cohort: adults (18+ in 2017), antibiotic courses = drug courses whose
indication is an acute infection (respiratory or urinary tract), years 2017-19 (2018 for the one-year
share); the simulator's IRRs are crude (its acute rates do not depend on age). The acute rates, the
frailty shape and the loadings in ``conf/simulate.yaml`` were chosen to match them (this script, a
handful of runs); ``--override`` measures other settings, e.g. ``population.acute_frailty_shape=null``.

Run (from the repo root)::

    nice -n 5 .venv/bin/python benchmarks/simulator_calibration.py
    nice -n 5 .venv/bin/python benchmarks/simulator_calibration.py --override population.acute_frailty_shape=null
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path[:] = [str(REPO), *(p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent)]

from benchmarks.featurize import _git_commit  # noqa: E402
from featurestore.io import write_json_atomic  # noqa: E402

INFECTIONS = ["respiratory_infection", "urinary_tract_infection"]  # the simulator's antibiotic indications
PUBLISHED = {"courses_per_patient_year": 0.67, "share_with_any_in_a_year": 0.301, "share_of_courses_to_top_9pct": 0.53,
             "share_with_5_or_more_in_3_years": 0.09, "rate_ratio_any_chronic": 1.44, "rate_ratio_women": 1.62}


def antibiotic_statistics(cohort: Path) -> dict[str, float]:
    """The reference's six figures on a simulated cohort folder (its three ``*_synthetic.parquet`` tables)."""
    conditions = pl.read_parquet(cohort / "condition_occurrence_synthetic.parquet")
    adults = pl.read_parquet(cohort / "person_synthetic.parquet").filter(pl.col("year_of_birth") <= 2017 - 18)
    infections = conditions.filter(pl.col("condition_source_value").is_in(INFECTIONS))
    courses = (pl.scan_parquet(cohort / "drug_exposure_synthetic.parquet")
               .join(infections.lazy().select("condition_occurrence_id"), left_on="indication_condition_occurrence_id",
                     right_on="condition_occurrence_id")
               .group_by("person_id", "course_id").agg(year=pl.col("drug_exposure_start_date").min().dt.year())
               .collect())
    chronic = conditions.filter(~pl.col("condition_source_value").is_in([*INFECTIONS, "pain"]))["person_id"].unique()
    per_adult = (adults.select("person_id", female=pl.col("gender_source_value") == "F",
                               chronic=pl.col("person_id").is_in(chronic.implode()))
                 .join(courses.filter(pl.col("year").is_between(2017, 2019)).group_by("person_id").len("n"),
                       on="person_id", how="left")
                 .join(courses.filter(pl.col("year") == 2018).group_by("person_id").len("n_2018"),
                       on="person_id", how="left")
                 .fill_null(0))
    n = per_adult["n"].sort(descending=True)
    by_chronic = dict(per_adult.group_by("chronic").agg(pl.col("n").mean()).iter_rows())
    by_female = dict(per_adult.group_by("female").agg(pl.col("n").mean()).iter_rows())
    return {"courses_per_patient_year": n.mean() / 3, "share_with_any_in_a_year": (per_adult["n_2018"] > 0).mean(),
            "share_of_courses_to_top_9pct": n.head(int(0.09 * n.len())).sum() / n.sum(),
            "share_with_5_or_more_in_3_years": (n >= 5).mean(),
            "rate_ratio_any_chronic": by_chronic[True] / by_chronic[False],
            "rate_ratio_women": by_female[True] / by_female[False], "adults": per_adult.height}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE", help="recommend.simulate overrides")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "simulator_calibration.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "recommend.simulate", f"n_patients={args.patients}", f"seed={args.seed}",
                        *args.override, f"out_dir={tmp}", f"hydra.run.dir={tmp}/hydra"],
                       cwd=REPO, check=True, stdout=subprocess.DEVNULL)  # Hydra's errors stay on stderr
        measured = antibiotic_statistics(Path(tmp))
    print(f"SYNTHETIC cohort, {args.patients:,} patients ({measured['adults']:,} adults), overrides {args.override}")
    print(f"{'figure':34s} {'simulated':>10s} {'Shallcross 2017':>16s}")
    for key, published in PUBLISHED.items():
        print(f"{key:34s} {measured[key]:10.3f} {published:16.3f}")
    result = {"benchmark": "simulator_calibration", "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "git_commit": _git_commit(), "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "note": "SYNTHETIC cohort vs Shallcross et al., J Antimicrob Chemother 2017;72(6):1818-1824 (UK adults)",
              "simulated": measured, "published": PUBLISHED}
    write_json_atomic(args.out, result)
    return result


if __name__ == "__main__":
    main()
