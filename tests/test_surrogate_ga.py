"""The GNN-surrogate Graph GA (acquisition, screening, determinism, resume, command line) and the checkpoint oracle."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from rdkit import Chem

from discovery.optimization import BudgetedOracle, BudgetExhausted, SurrogateGA, run_optimization
from discovery.optimization.surrogate_ga import Surrogate, acquisition_values, select_top
from discovery.oracles import Oracle, checkpoint_oracle
from discovery.oracles.transforms import Clipped
from discovery.train import run_training
from featurestore.datasets import load_dataset
from tests.molecules import ASPIRIN, CAFFEINE
from tests.test_optimize import counting_oracle

REPO = Path(__file__).resolve().parents[1]
# A surrogate small enough for a test: 2 members, width 16, short fits; breeding
# (graph crossover) dominates its time, so only twice the children are proposed.
TINY = dict(population_size=20, offspring_size=10, proposal_factor=2, ensemble=2, hidden=16, depth=2,
            refit_every=40, first_epochs=3, epochs=1, batch_size=32)


@pytest.fixture(scope="module")
def pool() -> list[str]:
    return load_dataset("moses_sample").get_column("smiles").head(500).to_list()


def test_acquisition_rules_on_a_hand_made_table():
    mean, std = np.array([0.5, 0.3, 0.6, 0.2]), np.array([0.0, 0.4, 0.05, 0.1])
    assert select_top(acquisition_values(mean, std, "ucb", beta=1.0), 2) == [1, 2]  # 0.70, 0.65 > 0.50, 0.30
    assert select_top(acquisition_values(mean, std, "ucb", beta=0.1), 2) == [2, 0]  # 0.605, 0.50 > 0.34
    assert select_top(acquisition_values(mean, std, "greedy"), 4) == [2, 0, 1, 3]
    ei = acquisition_values(mean, std, "ei", best=0.55)
    # mean 0.6, std 0.05: z = 1, EI = 0.05 * Phi(1) + 0.05 * phi(1); zero spread: max(mean - best, 0) = 0.
    assert ei[2] == pytest.approx(0.05 * 0.841345 + 0.05 * 0.241971, rel=1e-5) and ei[0] == 0.0
    with pytest.raises(ValueError, match="unknown acquisition 'pi'"):
        acquisition_values(mean, std, "pi")
    with pytest.raises(ValueError, match="needs a spread"):
        SurrogateGA(acquisition="ucb", ensemble=1)


def test_surrogate_sends_the_best_ucb_and_skips_scored_molecules():
    surrogate = Surrogate(SurrogateGA(beta=1.0), seed=0)
    surrogate.scores = {"CCO": 0.1}
    children = [Chem.MolFromSmiles(s) for s in ("OCC", "CCN", "NCC", "c1ccccc1", "CCCl", "CCBr")]
    fresh = surrogate.unscored(children)
    assert list(fresh) == ["CCN", "c1ccccc1", "CCCl", "CCBr"]  # OCC is scored CCO; NCC repeats CCN
    table = {"CCN": (0.5, 0.0), "c1ccccc1": (0.3, 0.4), "CCCl": (0.6, 0.05), "CCBr": (0.2, 0.1)}
    surrogate.predict = lambda smiles: tuple(np.array([table[s][i] for s in smiles]) for i in (0, 1))
    assert surrogate.choose(list(fresh), 2) == ["c1ccccc1", "CCCl"]
    assert surrogate.choose(["CCN"], 2) == ["CCN"]  # no more candidates than slots: no screening needed


def test_exploration_sends_a_share_of_random_children_past_the_surrogate():
    table = {f"C{'C' * i}O": (i / 10, 0.0) for i in range(10)}  # the longer, the better predicted
    picks = []
    for seed in (0, 1):
        surrogate = Surrogate(SurrogateGA(acquisition="greedy", explore=0.5), seed=seed)
        surrogate.scores = {"C": 0.0}
        surrogate.predict = lambda smiles: tuple(np.array([table[s][i] for s in smiles]) for i in (0, 1))
        chosen = surrogate.choose(list(table), 4)
        assert chosen[:2] == ["CCCCCCCCCCO", "CCCCCCCCCO"]  # half by the surrogate, best first
        assert len(set(chosen)) == 4 and not set(chosen[2:]) & set(chosen[:2])  # half at random from the rest
        picks.append(chosen[2:])
    assert picks[0] != picks[1]  # the random half follows the seed
    with pytest.raises(ValueError, match="explore is a share"):
        SurrogateGA(explore=1.5)


def test_a_capped_refit_trains_on_the_new_molecules_and_a_seeded_replay_of_older_ones():
    capped = Surrogate(SurrogateGA(refit_size=50), seed=3)
    rows = capped._refit_rows(total=1000, new=20)
    assert len(rows) == 50 and len(set(rows.tolist())) == 50
    assert rows[-20:].tolist() == list(range(980, 1000))  # every new molecule, last (they are the validation set)
    assert rows[:30].max() < 980 and np.all(np.diff(rows[:30]) > 0)  # 30 older ones, in scoring order
    assert np.array_equal(Surrogate(SurrogateGA(refit_size=50), seed=3)._refit_rows(1000, 20), rows)
    capped.fits = 1  # the next refit draws another replay sample
    assert not np.array_equal(capped._refit_rows(1000, 20), rows)
    assert capped._refit_rows(40, 20).tolist() == list(range(40))  # under the cap: everything
    assert Surrogate(SurrogateGA(refit_size=None), seed=3)._refit_rows(1000, 20).tolist() == list(range(1000))  # no cap
    with pytest.raises(ValueError, match="refit_size is a number"):
        SurrogateGA(refit_size=1)


def _calls(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "calls.parquet").select("call", "smiles", "score")


def test_surrogate_ga_is_deterministic_and_never_resends_a_scored_molecule(tmp_path, pool, monkeypatch):
    ga = SurrogateGA(**TINY)
    picked: list[tuple[list[str], set[str], int]] = []
    budgeted = BudgetedOracle(counting_oracle()[0], budget=120)
    choose = Surrogate.choose

    def spy(self, candidates, n):
        chosen = choose(self, candidates, n)
        picked.append((chosen, set(budgeted.log().get_column("smiles")), len(candidates)))
        return chosen

    monkeypatch.setattr(Surrogate, "choose", spy)
    try:
        ga.optimize(budgeted, pool, np.random.default_rng(5))
    except BudgetExhausted:  # or it returns "budget" when a generation spends the last call
        pass
    assert budgeted.exhausted and len(picked) >= 9
    assert all(len(chosen) == min(10, offered) for chosen, _, offered in picked)
    assert sum(offered > 10 for *_, offered in picked) >= 5  # the surrogate really screened
    assert all(not set(chosen) & scored for chosen, scored, _ in picked)  # never an already-scored molecule
    # every pick was charged as a new call (the last generation's picks run past the budget)
    assert set().union(*(chosen for chosen, *_ in picked[:-1])) <= set(budgeted.log().get_column("smiles"))
    monkeypatch.undo()

    first = run_optimization(counting_oracle()[0], ga, pool, tmp_path / "a", budget=120, seed=5, flush_every=10)
    assert first["calls_used"] == 120 and _calls(tmp_path / "a").equals(budgeted.log().select("call", "smiles", "score"))


@pytest.mark.slow
def test_surrogate_ga_resumes_a_killed_run_exactly(tmp_path, pool):
    ga = SurrogateGA(**TINY)
    run_optimization(counting_oracle()[0], ga, pool, tmp_path / "a", budget=120, seed=5, flush_every=10)
    crashing, _ = counting_oracle(crash_at=70)
    with pytest.raises(KeyboardInterrupt):
        run_optimization(crashing, ga, pool, tmp_path / "resumed", budget=120, seed=5, flush_every=10)
    oracle, objective = counting_oracle()
    run_optimization(oracle, ga, pool, tmp_path / "resumed", budget=120, seed=5, flush_every=10)
    assert objective.calls == 120 - 69 and _calls(tmp_path / "resumed").equals(_calls(tmp_path / "a"))


def test_surrogate_ga_command_line_writes_the_standard_outputs(tmp_path):
    out = tmp_path / "run"
    small = [f"optimizer.{key}={value}" for key, value in TINY.items()]
    result = subprocess.run(
        [sys.executable, "-m", "discovery.optimize", "oracle=qed", "optimizer=surrogate_ga", "budget=150", "seed=0",
         *small, f"hydra.run.dir={out}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("calls.parquet", "top.parquet", "metrics.json", "optimization_curve.png", "top12.png", "run.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["optimizer"], metrics["calls_used"], metrics["stopped"]) == ("surrogate_ga", 150, "budget")
    assert 0 < metrics["auc_top10"] < 1 and "surrogate fit" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def esol_checkpoint(tmp_path_factory) -> Path:
    """A 2-member GIN ensemble trained 5 epochs on 100 ESOL molecules."""
    out = tmp_path_factory.mktemp("esol_gin")
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[
            "trainer=fast", "trainer.num_threads=1", "store.progress=false", "store.n_jobs=1", f"store.root={out / 'store'}",
            "data=esol", "data.max_rows=100", "model=gin", "model.hparams.hidden=32", "model.hparams.depth=2", "ensemble=2",
        ])
    run_training(cfg, out)
    return out


def test_checkpoint_oracle_is_a_transformed_prediction(esol_checkpoint, store):
    from discovery.checkpoint import load_predictor

    transform = {"kind": "clipped", "lower": -6.0, "upper": 0.0}
    oracle = checkpoint_oracle("solubility", esol_checkpoint / "checkpoint", transform=transform, kappa=0.5)
    molecules = [ASPIRIN, CAFFEINE, "CCCCCCCCCCCCCCCC", "OCC(O)CO", "c1ccc2ccccc2c1"]
    predicted = load_predictor(esol_checkpoint).predict(molecules, store)
    expected = [Clipped(upper=0.0, lower=-6.0)(row["prediction"] + 0.5 * row["std"]) for row in predicted.iter_rows(named=True)]
    scores = [oracle(s) for s in molecules]
    assert scores == pytest.approx(expected, abs=1e-6) and all(0.0 <= s <= 1.0 for s in scores)
    assert len(set(np.round(scores, 6))) > 1  # the model tells the molecules apart
    assert oracle("not a smiles") == 0.0 and oracle("") == 0.0
    assert checkpoint_oracle("s", esol_checkpoint, task="log_solubility", transform=transform)(ASPIRIN) == pytest.approx(
        Clipped(upper=0.0, lower=-6.0)(predicted.row(0, named=True)["prediction"]), abs=1e-6)
    with pytest.raises(ValueError, match=r"has no task 'logP'; its tasks are \['log_solubility'\]"):
        checkpoint_oracle("s", esol_checkpoint, task="logP", transform=transform)


def test_checkpoint_oracle_config_instantiates(esol_checkpoint):
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("optimize", overrides=["oracle=checkpoint", f"oracle.path={esol_checkpoint}", "oracle.kappa=1.0",
                                             "oracle.transform={kind: clipped, lower: -6.0, upper: 0.0}"])
    oracle = instantiate(cfg.oracle)
    assert isinstance(oracle, Oracle) and oracle.name == "checkpoint" and 0.0 < oracle(ASPIRIN) < 1.0
    with pytest.raises(ValueError, match="regression checkpoint needs a transform"):
        checkpoint_oracle("raw", esol_checkpoint)  # raw log-solubility is no [0, 1] score
