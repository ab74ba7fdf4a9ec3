"""Budget accounting, PMO metrics, Graph GA, resume, and the ``discovery.optimize`` command line."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from rdkit import Chem

from discovery.optimization import BudgetedOracle, BudgetExhausted, GraphGA, auc_top_k, run_optimization
from discovery.optimization.graph_operators import Fragment, SizeLimits, _first_valid, crossover, mutate, ring_ok
from discovery.optimization.metrics import diversity, novelty, top_k_mean
from discovery.optimize import load_pool
from discovery.oracles import Oracle, get_oracle
from featurestore.datasets import load_dataset
from featurestore.runs import collect_runs
from tests.molecules import ASPIRIN, ASPIRIN_KEY, CAFFEINE

REPO = Path(__file__).resolve().parents[1]


class CountingObjective:
    """Heavy-atom count / 50, counting how often it is really evaluated; optionally crashes."""

    def __init__(self, crash_at: int | None = None) -> None:
        self.calls = 0
        self.crash_at = crash_at

    def __call__(self, mol: Chem.Mol) -> float:
        self.calls += 1
        if self.calls == self.crash_at:
            raise KeyboardInterrupt("simulated kill")
        return min(1.0, mol.GetNumHeavyAtoms() / 50)


def counting_oracle(crash_at: int | None = None) -> tuple[Oracle, CountingObjective]:
    objective = CountingObjective(crash_at)
    return Oracle("size", objective), objective


@pytest.fixture(scope="module")
def pool() -> list[str]:
    return load_dataset("moses_sample").get_column("smiles").head(500).to_list()


def test_budget_charges_unique_canonical_molecules_once(tmp_path):
    oracle, objective = counting_oracle()
    budgeted = BudgetedOracle(oracle, budget=3, log_path=tmp_path / "calls.parquet", flush_every=2)
    scores = budgeted(["CCO", "OCC", "C(O)C", "not a smiles", "", ASPIRIN, "CCO"])
    assert scores == [3 / 50] * 3 + [0.0, 0.0, 13 / 50, 3 / 50]
    assert (budgeted.calls_used, budgeted.cache_hits, budgeted.invalid, objective.calls) == (2, 3, 2, 2)
    log = pl.read_parquet(tmp_path / "calls.parquet")  # flushed at 2 new calls
    assert log.select("call", "smiles", "inchikey").rows() == [(1, "CCO", "LFQSCWFLJHTTHZ-UHFFFAOYSA-N"),
                                                                (2, "CC(=O)Oc1ccccc1C(=O)O", ASPIRIN_KEY)]
    assert budgeted([CAFFEINE]) == [14 / 50] and budgeted.exhausted
    with pytest.raises(BudgetExhausted, match="budget of 3 calls is spent"):
        budgeted(["CCO", "CCCC"])
    assert budgeted(["OCC"]) == [3 / 50]  # known molecules stay free after the budget is spent
    assert objective.calls == 3 and pl.read_parquet(tmp_path / "calls.parquet").height == 3


def test_scoring_errors_are_logged_not_fatal():
    def broken(mol: Chem.Mol) -> float:
        raise ZeroDivisionError("bad descriptor")

    budgeted = BudgetedOracle(Oracle("broken", broken), budget=5)
    assert budgeted(["CCO"]) == [0.0]
    assert budgeted.log().row(0, named=True)["error"] == "ZeroDivisionError: bad descriptor"


def test_auc_by_hand_with_early_stop():
    # 250 calls of a 300 budget, top-1: 0.5 from call 50, 0.8 from call 150, 0.9 at call 250.
    scores = np.full(250, 0.1)
    scores[49], scores[149], scores[249] = 0.5, 0.8, 0.9
    # trapezoids (0,0)-(100,.5)-(200,.8)-(250,.9), then .9 carried to 300.
    area = 100 * 0.5 / 2 + 100 * (0.8 + 0.5) / 2 + 50 * (0.9 + 0.8) / 2 + 50 * 0.9
    assert auc_top_k(scores, 1, budget=300) == pytest.approx(area / 300)
    # top-10 at 100: (0.5 + 9 * 0.1) / 10 = 0.14; at 200: 0.14 + 0.07 = 0.21; at 250: 0.29.
    area10 = 100 * 0.14 / 2 + 100 * (0.21 + 0.14) / 2 + 50 * (0.29 + 0.21) / 2 + 50 * 0.29
    assert auc_top_k(scores, 10, budget=300) == pytest.approx(area10 / 300)


def test_auc_full_budget_fewer_than_k_and_overrun():
    scores = np.linspace(0, 1, 300)  # call i scores (i - 1) / 299
    at = {n: (n - 1) / 299 for n in (100, 200, 300)}
    area = 100 * at[100] / 2 + 100 * (at[200] + at[100]) / 2 + 100 * (at[300] + at[200]) / 2
    assert auc_top_k(scores, 1, budget=300) == pytest.approx(area / 300)
    assert auc_top_k(np.append(scores, [5.0]), 1, budget=300) == pytest.approx(area / 300)  # beyond budget: ignored
    assert auc_top_k([0.4, 0.2], 10, budget=100) == pytest.approx((2 * 0.3 / 2 + 98 * 0.3) / 100)
    assert top_k_mean([0.4, 0.2], 10) == pytest.approx(0.3) and auc_top_k([], 1, budget=100) == 0.0


def test_diversity_and_novelty():
    assert diversity(["CCO", "CCO"]) == 0.0  # one unique molecule
    assert diversity(["c1ccccc1", "C1CCCCC1"]) == 1.0  # no shared ECFP4 bit
    assert novelty(["A", "B", None, "C"], {"A", "C"}) == 0.5


def test_crossover_and_mutation_give_valid_new_molecules():
    rng = np.random.default_rng(0)
    a, b = Chem.MolFromSmiles("CC(C)(C)NCC(O)c1ccc(O)c(CO)c1"), Chem.MolFromSmiles("COc1ccccc1OCC(O)CN1CCNCC1")
    parents = {Chem.MolToSmiles(a), Chem.MolToSmiles(b)}
    children = [crossover(a, b, rng) for _ in range(20)]
    assert sum(c is not None for c in children) >= 15
    for child in filter(None, children):
        smiles = Chem.MolToSmiles(child)
        assert Chem.MolFromSmiles(smiles) is not None and smiles not in parents and ring_ok(child)
    mutants = {Chem.MolToSmiles(m) for m in (mutate(a, rng, rate=1.0) for _ in range(20)) if m is not None}
    assert len(mutants) >= 5 and Chem.MolToSmiles(a) not in mutants
    assert mutate(a, rng, rate=0.0) is a
    assert Chem.MolToSmiles(a) == "CC(C)(C)NCC(O)c1ccc(O)c(CO)c1"  # inputs untouched


def test_a_crossover_draws_uniformly_among_the_valid_joins():
    # Jensen's GA builds every join and draws among the valid ones; we join in random order and keep the first
    # valid one, which is the same draw: each valid product equally often, never an invalid one.
    chain, quaternary = Fragment.of(Chem.MolFromSmiles("[1*]CCCC")), Fragment.of(Chem.MolFromSmiles("[1*]C(C)(C)C"))
    single, double = (Chem.BondType.SINGLE,), (Chem.BondType.DOUBLE,)
    ends = [Fragment.of(Chem.MolFromSmiles(s)) for s in ("[1*]CCO", "[1*]CCN", "[1*]CCS")]
    joins = [(chain, end, (0,), single) for end in ends] + [(quaternary, ends[0], (0,), double)]  # last: 5-valent C
    joins.append((chain, Fragment.of(Chem.MolFromSmiles("[1*]CC[1*]")), (0,), single))  # attachment counts differ
    rng = np.random.default_rng(0)
    drawn = [Chem.MolToSmiles(_first_valid(joins, rng, SizeLimits(), check_rings=False)) for _ in range(3000)]
    counts = {smiles: drawn.count(smiles) for smiles in set(drawn)}
    assert set(counts) == {"CCCCCCO", "CCCCCCN", "CCCCCCS"}
    assert all(900 < n < 1100 for n in counts.values())  # 1000 each; sd 26
    assert _first_valid(joins[3:], rng, SizeLimits(), check_rings=False) is None


def test_graph_ga_is_deterministic_per_seed_and_improves(tmp_path, pool):
    ga = GraphGA(population_size=20, offspring_size=10)
    runs = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        metrics = run_optimization(get_oracle("qed"), ga, pool, tmp_path / name, budget=150, seed=seed, flush_every=25)
        runs[name] = pl.read_parquet(tmp_path / name / "calls.parquet")
        assert metrics["calls_used"] == 150 and metrics["stopped"] == "budget"
    assert runs["a"].select("smiles", "score").equals(runs["b"].select("smiles", "score"))
    assert not runs["a"].select("smiles").equals(runs["c"].select("smiles"))
    start_top10 = runs["a"].head(20).get_column("score").sort(descending=True).head(10).mean()
    assert runs["a"].get_column("score").sort(descending=True).head(10).mean() > start_top10 + 0.02  # children rank


def test_graph_ga_converges_on_a_flat_objective_and_carries_auc_forward(tmp_path, pool):
    metrics = run_optimization(Oracle("flat", lambda mol: 0.5), GraphGA(population_size=20, offspring_size=10), pool,
                               tmp_path, budget=1000, seed=0)
    assert metrics["stopped"] == "converged" and 100 < metrics["calls_used"] < 1000
    # running top-k is 0.5 from the first checkpoint on: area = 100 * 0.5 / 2 + 900 * 0.5.
    assert metrics["auc_top10"] == pytest.approx((25 + 450) / 1000)


@pytest.fixture(scope="module")
def full(tmp_path_factory, pool) -> pl.DataFrame:
    """The call log of an uninterrupted run that the resumed runs must reproduce."""
    out = tmp_path_factory.mktemp("full")
    oracle, objective = counting_oracle()
    run_optimization(oracle, GraphGA(population_size=20, offspring_size=10), pool, out, budget=150, seed=5,
                     flush_every=10)
    assert objective.calls == 150
    return pl.read_parquet(out / "calls.parquet")


def test_resume_after_a_crash_pays_only_for_new_molecules(tmp_path, pool, full):
    ga = GraphGA(population_size=20, offspring_size=10)
    crashing, _ = counting_oracle(crash_at=70)
    with pytest.raises(KeyboardInterrupt):
        run_optimization(crashing, ga, pool, tmp_path / "run", budget=150, seed=5, flush_every=10)
    assert pl.read_parquet(tmp_path / "run" / "calls.parquet").height == 69  # flushed on the way out
    oracle, objective = counting_oracle()
    metrics = run_optimization(oracle, ga, pool, tmp_path / "run", budget=150, seed=5, flush_every=10)
    assert objective.calls == 150 - 69 and metrics["resumed_from_calls"] == 69
    resumed = pl.read_parquet(tmp_path / "run" / "calls.parquet")
    assert resumed.select("call", "smiles", "score").equals(full.select("call", "smiles", "score"))


def test_a_folder_holding_a_run_of_other_settings_is_refused(tmp_path, pool):
    from benchmarks.pmo import run_one

    ga = GraphGA(population_size=20, offspring_size=10)
    run_optimization(get_oracle("qed"), ga, pool, tmp_path / "run", budget=40, seed=5)
    recorded = json.loads((tmp_path / "run" / "optimizer.json").read_text())
    assert recorded["oracle"] == "qed" and recorded["seed"] == 5 and recorded["settings"]["offspring_size"] == 10
    other = GraphGA(population_size=20, offspring_size=12)
    with pytest.raises(ValueError, match="other settings .offspring_size: 10 there, 12 here"):
        run_optimization(get_oracle("qed"), other, pool, tmp_path / "run", budget=40, seed=5)
    with pytest.raises(ValueError, match="seed: 5 there, 6 here"):
        run_optimization(get_oracle("qed"), ga, pool, tmp_path / "run", budget=40, seed=6)
    # the benchmark reads a finished run back only if it was made with the settings asked for
    run_dir = tmp_path / "pmo" / "graph_ga" / "qed" / "seed5"
    run_dir.mkdir(parents=True)
    for name in ("metrics.json", "optimizer.json"):
        (run_dir / name).write_text((tmp_path / "run" / name).read_text())
    with pytest.raises(ValueError, match="offspring_size: 10 there, 70 here"):
        run_one("graph_ga", "qed", 5, 40, tmp_path / "pmo")


def test_resume_after_a_hard_kill_from_the_last_flushed_log(tmp_path, pool, full):
    (tmp_path / "killed").mkdir()
    full.filter(pl.col("call") <= 60).write_parquet(tmp_path / "killed" / "calls.parquet")  # last flush before a SIGKILL
    oracle, objective = counting_oracle()
    run_optimization(oracle, GraphGA(population_size=20, offspring_size=10), pool, tmp_path / "killed",
                     budget=150, seed=5, flush_every=10)
    assert objective.calls == 90
    assert pl.read_parquet(tmp_path / "killed" / "calls.parquet").select("smiles").equals(full.select("smiles"))


def test_a_resumed_run_stops_where_the_uninterrupted_run_stopped(tmp_path, pool):
    """The stall rule reads only the scores the replay has reached: the whole log of a killed run
    would show no progress at all and stop the resumed run before it scored anything new."""
    ga, flat = GraphGA(population_size=20, offspring_size=10), Oracle("flat", lambda mol: 0.5)
    full = run_optimization(flat, ga, pool, tmp_path / "full", budget=1000, seed=3)
    assert full["stopped"] == "converged" and full["calls_used"] > 120
    (tmp_path / "killed").mkdir()
    log = pl.read_parquet(tmp_path / "full" / "calls.parquet")
    log.filter(pl.col("call") <= 105).write_parquet(tmp_path / "killed" / "calls.parquet")
    resumed = run_optimization(flat, ga, pool, tmp_path / "killed", budget=1000, seed=3)
    assert (resumed["stopped"], resumed["calls_used"]) == ("converged", full["calls_used"])
    assert pl.read_parquet(tmp_path / "killed" / "calls.parquet").select("smiles").equals(log.select("smiles"))


def test_budget_scores_hold_what_this_run_asked_for(tmp_path):
    first = BudgetedOracle(get_oracle("qed"), log_path=tmp_path / "calls.parquet", flush_every=1)
    first(["CCO", "CCN", "c1ccccc1"])
    resumed = BudgetedOracle(get_oracle("qed"), log_path=tmp_path / "calls.parquet")
    assert (resumed.calls_used, resumed.requested, len(resumed.scores())) == (3, 0, 0)
    resumed(["c1ccccc1", "CCCC"])  # one replayed, one new
    assert (resumed.calls_used, resumed.requested) == (4, 2)
    assert resumed.scores().tolist() == [first.scores()[2], resumed.score("CCCC")]


def test_a_log_that_does_not_fit_is_refused_with_row_and_reason(tmp_path):
    oracle, _ = counting_oracle()
    budgeted = BudgetedOracle(oracle, budget=10, log_path=tmp_path / "calls.parquet", flush_every=1)
    budgeted(["CCO", "CCN", "CCC"])
    with pytest.raises(ValueError, match=r"row 0 \(call 1\): written by oracle 'size', this run scores 'qed'"):
        BudgetedOracle(get_oracle("qed"), log_path=tmp_path / "calls.parquet")
    log = pl.read_parquet(tmp_path / "calls.parquet")
    log.filter(pl.col("call") != 2).write_parquet(tmp_path / "gap.parquet")
    with pytest.raises(ValueError, match=r"gap.parquet row 1 \(call 3\): calls must run 1..n without gaps"):
        BudgetedOracle(oracle, log_path=tmp_path / "gap.parquet")
    with pytest.raises(ValueError, match="holds 3 calls, more than the budget 2"):
        BudgetedOracle(oracle, budget=2, log_path=tmp_path / "calls.parquet")


def test_optimize_command_line_writes_every_output(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "discovery.optimize", "oracle=isomers_c7h8n2o2", "optimizer=graph_ga", "budget=200",
         "seed=0", f"hydra.run.dir={out}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("calls.parquet", "top.parquet", "metrics.json", "optimization_curve.png", "top12.png", "run.json"):
        assert (out / name).is_file(), name
    assert pl.read_parquet(out / "pool_errors.parquet").columns == ["row", "smiles", "reason"]  # shipped pool: empty
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["calls_used"] == 200 and metrics["oracle"] == "isomers_c7h8n2o2" and 0 < metrics["auc_top10"] < 1
    calls, top = pl.read_parquet(out / "calls.parquet"), pl.read_parquet(out / "top.parquet")
    assert top.columns == ["rank", "smiles", "inchikey", "score", "call"] and top.height == 100
    assert top.get_column("score").is_sorted(descending=True)
    start_best = calls.filter(pl.col("call") <= 120).get_column("score").max()  # the 120 sampled pool molecules
    assert top.row(0, named=True)["score"] > start_best and top.row(0, named=True)["call"] > 120
    assert json.loads((out / "run.json").read_text())["config"]["oracle"]["name"] == "isomers_c7h8n2o2"
    curve = pl.read_csv(out / "metrics_log.csv")  # logger=csv, the default: the running top-k every 100 calls
    assert curve.columns == ["group", "step", "top1", "top10", "top100"]
    assert curve.select("group", "step").rows() == [("curve", 100), ("curve", 200)]
    first_100 = calls.filter(pl.col("call") <= 100).get_column("score").sort(descending=True)
    assert curve.row(0, named=True)["top10"] == pytest.approx(first_100.head(10).mean())
    assert curve.row(1, named=True)["top100"] == pytest.approx(metrics["top100"])
    runs = collect_runs(out)  # the run as one row of the runs table
    assert runs.select("app", "config.oracle.name", "config.logger._target_", "metrics.calls_used").row(0) == (
        "discovery.optimize", "isomers_c7h8n2o2", "featurestore.tracking.CSVLogger", 200)


@pytest.mark.slow
def test_graph_ga_on_qed_reaches_the_published_auc(tmp_path):
    pool = load_dataset("moses_sample").get_column("smiles").to_list()
    metrics = run_optimization(get_oracle("qed"), GraphGA(), pool, tmp_path, budget=10_000, seed=0)
    assert metrics["auc_top10"] > 0.92  # PMO Graph GA: 0.940 (5 seeds, ZINC 250k pool)


def test_pmo_benchmark_settings_get_their_own_run_folders():
    from benchmarks.pmo import parse_settings, variant_name

    assert parse_settings(["explore=0.1", "acquisition=ei"]) == {"explore": 0.1, "acquisition": "ei"}
    assert variant_name("surrogate_ga", {"explore": 0.1, "beta": 2}) == "surrogate_ga-beta-2-explore-0.1"
    assert variant_name("graph_ga", {}) == "graph_ga"  # defaults keep the folders of earlier runs
    with pytest.raises(SystemExit, match="KEY=VALUE, got 'explore'"):
        parse_settings(["explore"])


def test_a_pool_file_keeps_readable_rows_and_names_the_others(tmp_path, caplog):
    path = tmp_path / "pool.csv"
    path.write_text("SMILES\nCCO\nC1CC\nc1ccccc1O\n")
    spec = {"dataset": "moses_sample", "path": str(path), "column": "SMILES"}
    with caplog.at_level(logging.WARNING, logger="discovery.optimize"):
        pool = load_pool(spec)
    assert pool.smiles == ["CCO", "c1ccccc1O"] and pool.keys == set()
    assert "1 of 3 pool rows left out: row 1: " in caplog.text and "C1CC" in caplog.text
    assert pool.errors["row"].to_list() == [1] and pool.errors["smiles"].to_list() == ["C1CC"]
    assert "C1CC" in pool.errors["reason"][0]
    path.write_text("SMILES\nC1CC\nnonsense(\n")
    with pytest.raises(ValueError, match=r"no readable SMILES in column 'SMILES' \(row 0: .*row 1: "):
        load_pool(spec)
