"""MoleculeACE benchmark (van Tilborg et al. 2022): our D-MPNN vs ECFP4 + SVR on the 30 targets' given splits.

Per target, each model runs as ``python -m discovery.train`` in its own process with one
thread (see ``benchmarks/property.py``): the GNN with ``+experiment=<--gnn-preset>`` (default
``moleculeace_dmpnn``; ``--gnn-override`` adds Hydra overrides, e.g. ``ensemble=3``) and the
SVR with ``+experiment=moleculeace_svr`` (C chosen on a seeded 10% validation share of the
training molecules, the same share the GNN early-selects on). Reported per target: test RMSE
and RMSE_cliff (test molecules with ``cliff_mol == 1``) of both, wall seconds, and the load
average; then the means over targets and the number of targets where the GNN has the lower
RMSE (goal: at least 15 of 30; the paper found SVM + ECFP ahead of every deep model). Beside them, not
counted for the goal: the equal-weight mean of the GNN's and the SVR's predictions (a hybrid; the weight is fixed,
not tuned on test), which shows whether the GNN knows what the SVR does not.

``--multitask``: the GNN is one model over all 30 targets (``data=moleculeace_multitask``,
masked loss, each label in its set's given split), trained once per ``--multitask-seeds``
seed (the seed also draws the validation share); each target's GNN row is the test RMSE of
the models' mean prediction on the target's test molecules (the same molecules as the
single-target runs), and its wall time the runs' total divided by the 30 targets.
``--multitask-variants`` makes the ensemble span configurations too (every variant x seed),
e.g. ``'' 'model.hparams.dropout=0.25'``. ``--finetune-epochs N`` then fine-tunes each member
on each target alone (``init_from=`` the member: its graph encoder, a new head, N epochs, the
member's seed and variant); each target's GNN row is the fine-tuned members' mean prediction,
its wall time the fine-tuning runs plus the multitask share. ``--target-ranking`` then ranks the 30
targets for each test label by the ensemble (``discovery.predict_targets``' evaluation: top-1/top-3 of
the measured target, next to a nearest-neighbour baseline) and by its first member alone.

``--final-fit`` follows MoleculeACE's protocol: what was chosen on the validation share (the GNN's
epochs, fixed by the preset; each SVR's C, read from its tuned run) is kept and every model is
refit on all training labels (``split.val_fraction=0``, the last epoch kept); the SVR rows are the refits.

Targets run smallest first, and the JSON is rewritten after each, so a run cut short still
reports the targets it finished. A finished run folder is read back, not rerun.

Run (from the repo root)::

    nice -n 5 .venv/bin/python benchmarks/moleculeace.py --targets CHEMBL2835_Ki CHEMBL2047_EC50 --epochs 10
    nice -n 5 .venv/bin/python benchmarks/moleculeace.py                      # all 30 targets, 50 epochs
    nice -n 5 .venv/bin/python benchmarks/moleculeace.py --multitask --gnn-preset moleculeace_dmpnn_ecfp --epochs 20
    nice -n 5 .venv/bin/python benchmarks/moleculeace.py --multitask --multitask-seeds 0 1 2 --gnn-preset ...  # ensemble
    nice -n 5 .venv/bin/python benchmarks/moleculeace.py --multitask ... --finetune-epochs 10   # then per target
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from discovery.checkpoint import load_predictor  # noqa: E402
from discovery.ranking.targets import evaluate_target_ranking  # noqa: E402
from featurestore import FeatureStore  # noqa: E402
from featurestore.io import write_json_atomic  # noqa: E402
from featurestore.provenance import git_commit, package_versions  # noqa: E402
from featurize import run_tag  # noqa: E402
from property import load1, run_app  # noqa: E402

FINAL_FIT = "split.val_fraction=0"  # no validation share: train on every training label (fixed epochs / C)
DEFAULT_OUT = REPO / "benchmarks" / "results" / "moleculeace.json"
DEFAULT_WORK = REPO / "outputs" / "benchmarks" / "moleculeace"


def all_targets() -> list[str]:
    """The 30 MoleculeACE task names (``CHEMBL<id>_<Ki|EC50>``), fewest molecules first."""
    table = pl.read_parquet(REPO / "data" / "moleculeace.parquet")
    sizes = table.group_by(pl.concat_str("target_id", "activity_type", separator="_").alias("task")).len()
    return sizes.sort("len", "task").get_column("task").to_list()


def target_row(run: dict[str, Any]) -> dict[str, Any]:
    """Test RMSE, RMSE_cliff and timings of one ``run_app`` result (or its error)."""
    row = {k: run[k] for k in ("wall_s", "cpu_s", "load1_before", "load1_after", "error", "reused") if k in run}
    if "metrics" in run:
        test = run["metrics"]["test"]
        row.update(rmse=test["rmse"], rmse_cliff=test["rmse_cliff"], n_test=test["n"], n_cliff=test["n_cliff"],
                   training=run["metrics"]["training"])
    return row


def mean_test_predictions(run_dirs: list[Path], task: str | None = None) -> pl.DataFrame:
    """The runs' mean test prediction per molecule and task (``task``: that task's rows only)."""
    keys = ["inchikey", "task", "target", "cliff_mol"]
    test = pl.concat([pl.read_parquet(d / "predictions.parquet").filter(pl.col("split") == "test").select(
        *keys, "prediction") for d in run_dirs])
    if task is not None:
        test = test.filter(pl.col("task") == task)
    mean = test.group_by(keys).agg(pl.col("prediction").mean(), members=pl.len())
    if (mean["members"] != len(run_dirs)).any():
        raise ValueError(f"the runs {run_dirs} do not predict the same test labels")
    return mean.drop("members")


def task_scores(predictions: pl.DataFrame) -> dict[str, dict[str, Any]]:
    """Per task: test RMSE, and RMSE on the activity-cliff molecules (``cliff_mol == 1``)."""
    squared = predictions.with_columns(error=(pl.col("prediction") - pl.col("target")) ** 2)
    per_task = squared.group_by("task").agg(
        rmse=pl.col("error").mean().sqrt(), n_test=pl.len(),
        rmse_cliff=pl.col("error").filter(pl.col("cliff_mol") == 1).mean().sqrt(),
        n_cliff=(pl.col("cliff_mol") == 1).sum())
    return {row.pop("task"): row for row in per_task.iter_rows(named=True)}


def multitask_rows(runs: list[dict[str, Any]], run_dirs: list[Path]) -> dict[str, dict[str, Any]]:
    """Per target, a :func:`target_row` of the mean test prediction of the multitask runs (one per seed): RMSE and
    RMSE on cliff molecules, the runs' wall and CPU time shared evenly over the targets."""
    scores = task_scores(mean_test_predictions(run_dirs))
    # None where a run's timing lacks the value (a run measured elsewhere)
    shared = {k: sum(run[k] for run in runs) / len(scores) if all(run.get(k) is not None for run in runs) else None
              for k in ("wall_s", "cpu_s")}
    load = {k: runs[-1][k] for k in ("load1_before", "load1_after") if k in runs[-1]}
    return {task: {**load, **shared, **row, "members": len(runs)} for task, row in scores.items()}


def blend_row(target: str, gnn_dirs: list[Path], svr_dir: Path, gnn_task: str | None) -> dict[str, Any]:
    """RMSE of the equal-weight mean of the GNN's prediction (its members' mean; ``gnn_task``: the target's task in
    multitask runs) and the SVR's on the target's test molecules: a GNN + SVR hybrid, reported beside the GNN, not as
    it. The weight is fixed, never tuned on test."""
    svr = mean_test_predictions([svr_dir])
    gnn = mean_test_predictions(gnn_dirs, gnn_task)
    both = svr.join(gnn.select("inchikey", gnn="prediction"), on="inchikey", how="inner")
    if both.height != svr.height or both.height != gnn.height:
        raise ValueError(f"{target}: the GNN runs {gnn_dirs} and the SVR run {svr_dir} predict other test molecules")
    (row,) = task_scores(both.with_columns(prediction=(pl.col("prediction") + pl.col("gnn")) / 2)).values()
    return row


def finetune_dirs(members: list[tuple[list[str], int, Path]], epochs: int, target: str) -> list[Path]:
    """Where each multitask member is fine-tuned on ``target``."""
    return [member_dir.with_name(f"{member_dir.name}_finetune_e{epochs}") / target for _, _, member_dir in members]


def finetuned_row(target: str, members: list[tuple[list[str], int, Path]], epochs: int, gnn_args: list[str],
                  shared: dict[str, Any]) -> dict[str, Any]:
    """The mean prediction of the multitask members each fine-tuned on ``target`` alone (``shared``: the target's
    multitask row, whose wall and CPU share are added to the fine-tuning runs')."""
    dirs = finetune_dirs(members, epochs, target)
    runs = [run_app([*gnn_args, *extra, f"seed={seed}", f"data.target={target}", f"trainer.max_epochs={epochs}",
                     f"init_from={member_dir}"], run_dir) for (extra, seed, member_dir), run_dir in zip(members, dirs)]
    failed = [run["error"] for run in runs if "error" in run]
    if failed:
        return {"error": failed[0]}
    (row,) = multitask_rows(runs, dirs).values()  # one task: the target's own, whatever its column is named
    for key in ("wall_s", "cpu_s"):
        row[key] = None if row[key] is None or shared.get(key) is None else row[key] + shared[key]
    return row


def final_svr(tuned: dict[str, Any], common: list[str], run_dir: Path) -> dict[str, Any]:
    """The SVR refit into ``run_dir`` on all the target's training labels with the C its tuned run chose on
    validation (``tuned``: that run's ``run_app`` result); returns the refit's ``run_app`` result."""
    (chosen,) = tuned["metrics"]["training"][0]["tasks"]
    return run_app(["+experiment=moleculeace_svr", *common, FINAL_FIT, f"model.hparams.c_grid=[{chosen['C']}]"],
                   run_dir)


def target_ranking(member_dirs: list[Path]) -> dict[str, Any]:
    """``discovery.ranking.targets.evaluate_target_ranking`` of the members' ensemble and of its first member alone
    (top-1/top-3 and mean rank of each test label's measured target among the 30; nearest-neighbour baseline)."""
    store = FeatureStore(progress=False)
    out = {}
    for name, dirs in (("ensemble", member_dirs), ("first_member", member_dirs[:1])):
        predictor = load_predictor(dirs)
        summary, _ = evaluate_target_ranking(dirs, predictor, store)
        out[name] = {**summary, "members": len(predictor.members)}
    return out


def summarize(per_target: dict[str, dict[str, Any]], requested: int) -> dict[str, Any]:
    """Means over the targets both models finished (of ``requested``), GNN wins, and the wall-time ratio."""
    done = {t: r for t, r in per_target.items() if "rmse" in r["gnn"] and "rmse" in r["svr"]}
    out: dict[str, Any] = {"targets_done": len(done), "targets_requested": requested}
    for model in ("gnn", "svr"):
        for metric in ("rmse", "rmse_cliff", "wall_s"):
            out[f"{model}_mean_{metric}"] = statistics.fmean(r[model][metric] for r in done.values()) if done else None
    out["gnn_wins_rmse"] = sum(r["gnn"]["rmse"] < r["svr"]["rmse"] for r in done.values())
    out["gnn_wins_rmse_cliff"] = sum(r["gnn"]["rmse_cliff"] < r["svr"]["rmse_cliff"] for r in done.values())
    blends = [r for r in done.values() if "gnn_svr_blend" in r]  # the hybrid, beside the goal, not in it
    if blends:
        for metric in ("rmse", "rmse_cliff"):
            out[f"gnn_svr_blend_mean_{metric}"] = statistics.fmean(r["gnn_svr_blend"][metric] for r in blends)
        out["gnn_svr_blend_wins_rmse"] = sum(r["gnn_svr_blend"]["rmse"] < r["svr"]["rmse"] for r in blends)
    if done:
        out["gnn_over_svr_wall"] = round(out["gnn_mean_wall_s"] / out["svr_mean_wall_s"], 3)
    out["errors"] = {t: {m: r[m]["error"] for m in ("gnn", "svr") if "error" in r[m]}
                     for t, r in per_target.items() if t not in done}
    return out


def print_table(per_target: dict[str, dict[str, Any]], summary: dict[str, Any]) -> None:
    print(f"\n{'target':<18}{'n_test':>7}{'n_cliff':>8}{'GNN RMSE':>10}{'SVR RMSE':>10}{'GNN cliff':>10}"
          f"{'SVR cliff':>10}{'GNN s':>8}{'SVR s':>8}{'load':>6}  winner")
    for target, row in per_target.items():
        gnn, svr = row["gnn"], row["svr"]
        if "rmse" not in gnn or "rmse" not in svr:
            print(f"{target:<18}  error: {gnn.get('error') or svr.get('error')}")
            continue
        print(f"{target:<18}{gnn['n_test']:>7}{gnn['n_cliff']:>8}{gnn['rmse']:>10.3f}{svr['rmse']:>10.3f}"
              f"{gnn['rmse_cliff']:>10.3f}{svr['rmse_cliff']:>10.3f}{gnn['wall_s']:>8.1f}{svr['wall_s']:>8.1f}"
              f"{gnn['load1_after']:>6.1f}  {'GNN' if gnn['rmse'] < svr['rmse'] else 'SVR'}")
    if summary["targets_done"]:
        s = summary
        print(f"{'mean':<33}{s['gnn_mean_rmse']:>10.3f}{s['svr_mean_rmse']:>10.3f}{s['gnn_mean_rmse_cliff']:>10.3f}"
              f"{s['svr_mean_rmse_cliff']:>10.3f}{s['gnn_mean_wall_s']:>8.1f}{s['svr_mean_wall_s']:>8.1f}")
    print(f"GNN wins on RMSE: {summary['gnn_wins_rmse']}/{summary['targets_done']} targets (goal >= 15/30); "
          f"on RMSE_cliff: {summary['gnn_wins_rmse_cliff']}/{summary['targets_done']}")
    if "gnn_svr_blend_wins_rmse" in summary:
        print(f"GNN + SVR equal-weight blend (a hybrid, not the GNN): mean RMSE {summary['gnn_svr_blend_mean_rmse']:.3f}"
              f", cliff {summary['gnn_svr_blend_mean_rmse_cliff']:.3f}; beats the SVR on "
              f"{summary['gnn_svr_blend_wins_rmse']}/{summary['targets_done']} targets")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", nargs="+", default=None, help="task names (default: all 30, smallest first)")
    parser.add_argument("--epochs", type=int, default=50, help="GNN epochs")
    parser.add_argument("--seed", type=int, default=0, help="validation share and model seed")
    parser.add_argument("--gnn-preset", default="moleculeace_dmpnn", help="conf/experiment preset of our GNN")
    parser.add_argument("--gnn-override", nargs="*", default=[], help="extra Hydra overrides for the GNN runs")
    parser.add_argument("--multitask", action="store_true",
                        help="one GNN over all 30 targets (data=moleculeace_multitask), trained once per seed")
    parser.add_argument("--multitask-seeds", nargs="+", type=int, default=None,
                        help="--multitask: the models' seeds, their mean prediction is scored (default: --seed)")
    parser.add_argument("--multitask-variants", nargs="+", default=[""],
                        help="--multitask: extra Hydra overrides per ensemble member configuration, one quoted, "
                             "space-separated string each ('' = none); the ensemble is every variant x seed")
    parser.add_argument("--finetune-epochs", type=int, default=None,
                        help="--multitask: fine-tune every member on each target alone for this many epochs")
    parser.add_argument("--target-ranking", action="store_true",
                        help="--multitask: also rank the 30 targets of each test label (top-1/top-3) by the ensemble "
                             "and by its first member, next to the nearest-neighbour baseline")
    parser.add_argument("--final-fit", action="store_true",
                        help="MoleculeACE's protocol: choices made on the validation share (the GNN's epochs, the "
                             "SVR's C), then every model refit on all training labels (split.val_fraction=0)")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if (args.finetune_epochs is not None or args.target_ranking) and not args.multitask:
        parser.error("--finetune-epochs and --target-ranking use the members of a --multitask run")

    targets = args.targets or all_targets()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    gnn_override = [*args.gnn_override, *([FINAL_FIT] if args.final_fit else [])]
    model_args = [f"+experiment={args.gnn_preset}", *gnn_override]  # fine-tuning sets its own epochs
    gnn_args = [*model_args, f"trainer.max_epochs={args.epochs}"]
    multitask, pretrained = None, []
    if args.multitask:
        seeds = args.multitask_seeds or [args.seed]
        members = [(variant.split(), seed) for variant in args.multitask_variants for seed in seeds]
        dirs = [args.work_dir / run_tag(args.gnn_preset, f"e{args.epochs}", *gnn_override, *extra, "multitask")
                / f"seed{seed}" for extra, seed in members]
        runs = [run_app([*gnn_args, *extra, f"seed={seed}", "data=moleculeace_multitask"], d)
                for (extra, seed), d in zip(members, dirs)]
        failed = [run["error"] for run in runs if "error" in run]
        multitask = ({target: {"error": failed[0]} for target in targets} if failed
                     else multitask_rows(runs, dirs))
        pretrained = [(extra, seed, d) for (extra, seed), d in zip(members, dirs)]
    else:
        tag = run_tag(args.gnn_preset, f"e{args.epochs}", f"seed{args.seed}", *gnn_override)
    per_target: dict[str, dict[str, Any]] = {}
    report: dict[str, Any] = {}
    for target in targets:
        common = [f"data.target={target}", f"seed={args.seed}"]
        gnn_task = None  # the task name in the GNN's predictions, where its runs predict several
        if multitask is not None and args.finetune_epochs is not None and "error" not in multitask.get(target, {}):
            gnn_row = finetuned_row(target, pretrained, args.finetune_epochs, model_args, multitask[target])
            gnn_dirs = finetune_dirs(pretrained, args.finetune_epochs, target)
        elif multitask is not None:
            gnn_row = multitask.get(target, {"error": f"{target} is not a task of the multitask run"})
            gnn_dirs, gnn_task = dirs, target
        else:
            gnn_dirs = [args.work_dir / tag / target / "gnn"]
            gnn_row = target_row(run_app([*gnn_args, f"seed={args.seed}", f"data.target={target}"], gnn_dirs[0]))
        svr_dir = args.work_dir / f"svr_seed{args.seed}" / target
        svr = run_app(["+experiment=moleculeace_svr", *common], svr_dir)
        if args.final_fit and "metrics" in svr:
            svr_dir = args.work_dir / f"svr_seed{args.seed}_final" / target
            svr = final_svr(svr, common, svr_dir)
        per_target[target] = {"gnn": gnn_row, "svr": target_row(svr)}
        if "rmse" in gnn_row and "rmse" in per_target[target]["svr"]:
            per_target[target]["gnn_svr_blend"] = blend_row(target, gnn_dirs, svr_dir, gnn_task)
        print(f"{target}: GNN {per_target[target]['gnn'].get('rmse', gnn_row.get('error'))} "
              f"SVR {per_target[target]['svr'].get('rmse', svr.get('error'))}", file=sys.stderr, flush=True)
        report = {
            "benchmark": "moleculeace", "started": started,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "conditions": {"threads_per_run": 1, "load1_end": load1(),
                           "note": "GNN then SVR per target on a shared machine; compare within this file"},
            "versions": package_versions(), "git_commit": git_commit(REPO),
            "summary": summarize(per_target, len(targets)), "per_target": per_target,
        }
        write_json_atomic(args.out, report)
    if args.target_ranking and multitask is not None and not failed:
        report["target_ranking"] = target_ranking(dirs)
        write_json_atomic(args.out, report)
        print(json.dumps(report["target_ranking"], indent=1))
    print_table(per_target, report["summary"])
    print(f"\nsaved {args.out}")
    return report


if __name__ == "__main__":
    main()
