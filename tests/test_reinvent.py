"""REINVENT: the SMILES prior (cache, save/load, sampling) and the policy-gradient optimizer under the budget."""

import copy
import json
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
import torch
from rdkit import Chem

from discovery.optimization import BudgetedOracle, Reinvent, run_optimization
from discovery.optimization import reinvent as rv
from discovery.optimization.reinvent import PriorConfig, SmilesRNN, prior_for
from discovery.oracles import Oracle, get_oracle
from featurestore.datasets import load_dataset

# Small enough to train in well under a second; its samples are mostly invalid, which the budget test needs.
TINY = PriorConfig(embedding=16, hidden=32, layers=1, max_tokens=60, epochs=3, batch_size=16)


@pytest.fixture(scope="module")
def pool() -> list[str]:
    return load_dataset("moses_sample").get_column("smiles").head(200).to_list()


@pytest.fixture(scope="module")
def cache(tmp_path_factory, pool):
    """A cache folder holding the tiny prior of ``pool``."""
    root = tmp_path_factory.mktemp("priors")
    torch.set_num_threads(1)
    prior_for(pool, TINY, root, progress=False)
    return root


@pytest.fixture
def prior(cache, pool) -> SmilesRNN:
    return prior_for(pool, TINY, cache, progress=False)[0]


def test_prior_is_cached_and_round_trips_through_plain_files(cache, pool, monkeypatch):
    def no_training(*_args, **_kwargs):
        raise AssertionError("a cached prior must not be trained again")

    monkeypatch.setattr(rv, "pretrain_prior", no_training)
    model, directory = prior_for(pool, TINY, cache, progress=False)
    assert directory.parent == cache and sorted(p.name for p in directory.iterdir()) == ["model.json", "weights.pt"]
    config = json.loads((directory / "model.json").read_text())
    assert config["hidden"] == 32 and config["layers"] == 1 and config["training"]["n_smiles"] == 200
    assert config["training"]["data_fingerprint"] == rv.data_fingerprint(pool)
    assert set(config["tokens"]) >= {"c", "C", "(", ")", "1", "=", "O", "N"}
    reloaded = SmilesRNN.load(directory)
    seqs = model.encode(pool[:8])
    assert torch.equal(model.log_likelihood(seqs), reloaded.log_likelihood(seqs))
    # another pool or another prior size is another cache entry
    assert rv.prior_dir(pool, TINY, cache) == directory
    assert rv.prior_dir(pool[:50], TINY, cache) != directory
    assert rv.prior_dir(pool, replace(TINY, hidden=64), cache) != directory


def test_pretraining_is_deterministic_by_seed(pool):
    config = replace(TINY, epochs=1)
    first, again = (rv.pretrain_prior(pool[:48], config, progress=False).state_dict() for _ in range(2))
    other = rv.pretrain_prior(pool[:48], replace(config, seed=1), progress=False).state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["out.weight"], other["out.weight"])


def test_encode_names_the_smiles_it_cannot_encode(prior):
    with pytest.raises(ValueError, match=r"SMILES 1 'C\[Xe\]C': token\(s\) \['\[Xe\]'\] not in the prior's vocabulary"):
        prior.encode(["CCO", "C[Xe]C"])


def test_training_drops_no_row_silently():
    tokens, usable, rejected = rv.build_vocabulary(["CCO", "C" * 120, "C&C"], max_tokens=100)
    assert usable == ["CCO"] and tokens == ["C", "O"]
    assert rejected[0].startswith("row 1 ") and "121 tokens > max_tokens 100" in rejected[0]
    assert rejected[1].startswith("row 2: ") and "position 1" in rejected[1]


def test_sampling_is_deterministic_by_seed_and_decodes_to_eos(prior):
    first = prior.sample(16, torch.Generator().manual_seed(3))
    assert torch.equal(first, prior.sample(16, torch.Generator().manual_seed(3)))
    assert not torch.equal(first, prior.sample(16, torch.Generator().manual_seed(4)))
    assert not (first == rv.BOS).any()
    ended = [row for row in first.tolist() if rv.EOS in row]
    assert ended and all(set(row[row.index(rv.EOS) + 1:]) <= {rv.PAD} for row in ended)
    assert all(rv.PAD not in row[: row.index(rv.EOS)] for row in ended)


def test_policy_steps_raise_the_likelihood_of_the_rewarded_molecule(prior):
    """Two molecules, one scored 1 and one 0: the update must move the agent toward the first only."""
    seqs = prior.encode(["CCOc1ccccc1", "CC(=O)NC"])
    agent = copy.deepcopy(prior)
    optimizer = torch.optim.Adam(agent.parameters(), lr=5e-3)
    reinvent = Reinvent(sigma=20.0, experience_replay=0, likelihood_penalty=0.0)
    with torch.no_grad():
        before = prior.log_likelihood(seqs)
    memory = []
    for _ in range(10):
        memory = reinvent._update(memory, ["a", "b"], seqs, torch.tensor([1.0, 0.0]), prior,
                                  np.random.default_rng(0), optimizer, agent)
    with torch.no_grad():
        gain = agent.log_likelihood(seqs) - before
    assert gain[0] > 5.0 and gain[0] > gain[1] + 5.0
    assert [m.smiles for m in memory] == ["a", "b"] and memory[0].score == 1.0


class Recording(BudgetedOracle):
    """Remembers every SMILES the optimizer asked about."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.asked: list[str] = []

    def __call__(self, smiles):
        self.asked.extend(smiles)
        return super().__call__(smiles)


def test_invalid_samples_are_not_charged(cache, pool):
    evaluated = []
    oracle = Oracle("size", lambda mol: evaluated.append(1) or min(1.0, mol.GetNumHeavyAtoms() / 30))
    budgeted = Recording(oracle, budget=1000)
    stopped = Reinvent(prior=TINY, cache_dir=str(cache), max_steps=3, progress=False).optimize(
        budgeted, pool, np.random.default_rng(0))
    assert stopped == "max_steps"
    parsed = [Chem.MolFromSmiles(s) if s else None for s in budgeted.asked]
    invalid = sum(m is None or m.GetNumAtoms() == 0 for m in parsed)
    valid = {Chem.MolToSmiles(m) for m in parsed if m is not None and m.GetNumAtoms()}
    assert invalid > 0 and budgeted.invalid == invalid
    assert len(budgeted) == len(valid) == len(evaluated)


def test_run_respects_the_budget_and_logs_every_call(cache, pool, tmp_path):
    optimizer = Reinvent(prior=TINY, cache_dir=str(cache), max_steps=100, progress=False)
    metrics = run_optimization(get_oracle("qed"), optimizer, pool, tmp_path, budget=20, seed=0)
    calls = pl.read_parquet(tmp_path / "calls.parquet")
    assert metrics["stopped"] == "budget" and metrics["calls_used"] == calls.height == 20
    assert calls.get_column("smiles").n_unique() == 20 and metrics["invalid_proposals"] > 0
    assert metrics["optimizer"] == "reinvent" and 0.0 < metrics["auc_top10"] <= metrics["top10"]


def test_the_settings_record_leaves_out_what_cannot_change_the_run():
    """A progress bar or another prior cache folder does not refuse a resume; a learning rate does."""
    from discovery.optimization.runner import run_settings

    qed = get_oracle("qed")
    recorded = run_settings(qed, Reinvent(prior=TINY), seed=0)
    assert "progress" not in recorded["settings"] and "cache_dir" not in recorded["settings"]
    assert recorded["settings"]["prior"]["epochs"] == TINY.epochs  # nested settings stay plain JSON
    assert run_settings(qed, Reinvent(prior=TINY, progress=False, cache_dir="elsewhere"), seed=0) == recorded
    assert run_settings(qed, Reinvent(prior=TINY, lr=1e-3), seed=0) != recorded
