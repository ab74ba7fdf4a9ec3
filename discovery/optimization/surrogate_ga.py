"""Graph GA with an online GNN surrogate: breed many children, score only the most promising.

Each generation the Graph GA operators propose ``proposal_factor x offspring_size``
children; duplicates and molecules this run has already scored are dropped; an ensemble
of small GIN regressors (``discovery.models``' GINE, trained with ``discovery.trainer.fit``)
predicts a mean and a spread for each; the ``offspring_size`` best by the acquisition rule
go to the budgeted oracle. The rest of the loop (start, mating, survival, stopping) is
:class:`~discovery.optimization.graph_ga.GraphGA`'s, so the runner, the app, the budget and
resume work unchanged.

Uncertainty: a deep ensemble (Lakshminarayanan et al. 2017) of ``ensemble`` members that
differ in initial weights and batch order. Ensembles are better calibrated on molecular
regression than MC dropout (Scalia et al., J. Chem. Inf. Model. 2020), and each member is
warm-started from its own previous weights, so refits stay cheap.

The surrogate learns from every molecule the run has scored (the start population and
every child, kept or not), refitting once ``refit_every`` new ones have arrived: a few
epochs (``epochs``) from the previous weights; the first fit runs ``first_epochs`` from
scratch. With ``refit_size`` a warm refit trains on the newest molecules and a random replay
sample of the older ones, so its cost stops growing with the log. It learns only from what
this run itself scored, not from the whole call log, so a resumed run replays its killed
run exactly (same training data, same seeds).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from rdkit import Chem
from scipy.stats import norm, spearmanr
from torch_geometric.data import Data

from discovery.checkpoint import TargetScaler
from discovery.models import build_model
from discovery.optimization.budget import canonical_smiles
from discovery.optimization.graph_ga import Breeder, GraphGA, Member
from discovery.optimization.graph_operators import SizeLimits
from discovery.trainer import TrainerConfig, fit, labelled_examples, predict_outputs
from featurestore import ATOM_DIM, BOND_DIM, graphs_from_frame
from featurestore.featurizers import GraphFeaturizer

log = logging.getLogger(__name__)

ACQUISITIONS = ("greedy", "ucb", "ei")


def acquisition_values(mean: np.ndarray, std: np.ndarray, rule: str, beta: float = 1.0, best: float = 0.0) -> np.ndarray:
    """Acquisition value per candidate: ``greedy`` = mean, ``ucb`` = mean + beta * std,
    ``ei`` = expected improvement over ``best`` under N(mean, std^2)."""
    if rule == "greedy":
        return mean
    if rule == "ucb":
        return mean + beta * std
    if rule == "ei":
        gain = mean - best
        sigma = np.maximum(std, 1e-12)  # a zero spread reduces EI to max(gain, 0)
        z = gain / sigma
        return np.where(std > 0, gain * norm.cdf(z) + sigma * norm.pdf(z), np.maximum(gain, 0.0))
    raise ValueError(f"unknown acquisition {rule!r}; choose from {ACQUISITIONS}")


def select_top(values: np.ndarray, n: int) -> list[int]:
    """Indices of the ``n`` largest values, best first (ties: earlier index first)."""
    return np.argsort(-values, kind="stable")[:n].tolist()


def smiles_graphs(smiles: Sequence[str]) -> list[Data | None]:
    """One-hot PyG graphs (the training app's graph view), ``None`` where featurization fails."""
    frame = GraphFeaturizer().batch(list(smiles))
    ok = frame.get_column("error").is_null().to_list()
    graphs = iter(graphs_from_frame(frame.filter(ok), one_hot=True) if any(ok) else [])
    return [next(graphs) if good else None for good in ok]


@dataclass(frozen=True)
class SurrogateGA(GraphGA):
    """Graph GA whose children are pre-screened by an online GIN ensemble (see the module docstring)."""

    name: str = "surrogate_ga"
    proposal_factor: int = 10
    acquisition: str = "ucb"
    beta: float = 1.0
    explore: float = 0.0
    ensemble: int = 3
    hidden: int = 64
    depth: int = 3
    refit_every: int = 200
    refit_size: int | None = 2000
    first_epochs: int = 30
    epochs: int = 3
    batch_size: int = 64
    lr: float = 1e-3
    num_threads: int | None = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.acquisition not in ACQUISITIONS:
            raise ValueError(f"unknown acquisition {self.acquisition!r}; choose from {ACQUISITIONS}")
        if self.proposal_factor < 1 or self.ensemble < 1 or self.refit_every < 1:
            raise ValueError(f"need proposal_factor, ensemble and refit_every >= 1, got {self}")
        if self.refit_size is not None and self.refit_size < 2:
            raise ValueError(f"refit_size is a number of molecules (>= 2) or None for all of them; got {self.refit_size}")
        if not 0.0 <= self.explore <= 1.0:
            raise ValueError(f"explore is a share of the oracle calls, in [0, 1]; got {self.explore}")
        if self.acquisition != "greedy" and self.ensemble < 2:
            raise ValueError(f"acquisition {self.acquisition!r} needs a spread: use ensemble >= 2")

    def _breeder(self, rng: np.random.Generator, limits: SizeLimits) -> Breeder:
        surrogate = Surrogate(self, seed=int(rng.integers(2**31)))

        def breed(population: list[Member], scored: list[Member]) -> list[Chem.Mol]:
            surrogate.observe(scored)
            brood = self._offspring(population, rng, limits, self.proposal_factor * self.offspring_size)
            candidates = surrogate.unscored(brood)
            return [candidates[s] for s in surrogate.choose(list(candidates), self.offspring_size)]

        return breed


class Surrogate:
    """The mutable half of :class:`SurrogateGA`: scored data, graphs, ensemble weights, timings."""

    def __init__(self, config: SurrogateGA, seed: int) -> None:
        if config.num_threads:
            # Tiny models gain nothing from more threads, and optimization runs share machines.
            torch.set_num_threads(config.num_threads)
        self.config = config
        self.seed = seed
        self.rng = np.random.default_rng(seed)  # exploration picks
        self.scores: dict[str, float] = {}  # budget-canonical SMILES -> oracle score, in scoring order
        self.graphs: dict[str, Data | None] = {}
        self.members: list[torch.nn.Module] = []
        self.scaler = TargetScaler.identity(1)
        self.fitted_on = 0
        self.fits = 0
        self.seconds = {"fit": 0.0, "predict": 0.0}
        self.generations = 0
        self._canonical: dict[str, str | None] = {}  # Member SMILES -> budget key, so each is parsed once
        self._built: dict[str, Data | None] = {}  # graphs of the last predict call's uncached molecules

    def key(self, smiles: str) -> str | None:
        """The key the budget charges ``smiles`` under (None if it does not parse)."""
        if smiles not in self._canonical:
            self._canonical[smiles] = canonical_smiles(smiles)[0]
        return self._canonical[smiles]

    def unscored(self, mols: Sequence[Chem.Mol]) -> dict[str, Chem.Mol]:
        """Unique children (by budget key) this run has not scored yet, in brood order."""
        fresh: dict[str, Chem.Mol] = {}
        for mol in mols:
            key = self.key(Chem.MolToSmiles(mol))
            if key is not None and key not in self.scores:
                fresh.setdefault(key, mol)
        return fresh

    def observe(self, scored: Sequence[Member]) -> None:
        """Record newly scored molecules; refit once ``refit_every`` have arrived since the last fit."""
        self.generations += 1
        for member in scored:
            key = self.key(member.smiles)
            if key is not None and key not in self.scores:
                self.scores[key] = member.score
        if len(self.scores) >= 2 and (not self.members or len(self.scores) - self.fitted_on >= self.config.refit_every):
            self.refit()

    def choose(self, candidates: list[str], n: int) -> list[str]:
        """The ``n`` candidates with the best acquisition value (all of them if there are at most ``n``), of which
        a share ``explore`` is instead drawn at random from the rest: a child the surrogate cannot judge (an
        element it never saw, say) still reaches the oracle now and then."""
        if len(candidates) <= n:
            return candidates
        mean, std = self.predict(candidates)
        values = acquisition_values(mean, std, self.config.acquisition, self.config.beta, max(self.scores.values()))
        ranked = select_top(values, len(candidates))
        random_picks = int(round(self.config.explore * n))
        picked = ranked[: n - random_picks]
        if random_picks:
            picked += sorted(self.rng.choice(ranked[n - random_picks:], random_picks, replace=False).tolist())
        chosen = [candidates[i] for i in picked]
        # The chosen go to the oracle and into the next fit: keep the graphs predict built so refit reuses them.
        self.graphs.update((key, self._built[key]) for key in chosen if key in self._built)
        return chosen

    def predict(self, smiles: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Ensemble mean and standard deviation in score units; ``-inf`` mean where featurization fails.
        Graphs already cached (scored molecules) are reused; the others are built and kept in ``_built``."""
        start = time.perf_counter()
        missing = [s for s in smiles if s not in self.graphs]
        self._built = dict(zip(missing, smiles_graphs(missing))) if missing else {}
        graphs = [self.graphs[s] if s in self.graphs else self._built[s] for s in smiles]
        ok = np.array([g is not None for g in graphs])
        mean, std = np.full(len(graphs), -np.inf), np.zeros(len(graphs))
        if ok.any():
            examples = [g for g in graphs if g is not None]
            outputs = np.stack([
                self.scaler.inverse(predict_outputs(m, examples, batch_size=1000, device="cpu"))[:, 0] for m in self.members
            ])
            mean[ok], std[ok] = outputs.mean(axis=0), outputs.std(axis=0)
        self.seconds["predict"] += time.perf_counter() - start
        return mean, std

    def refit(self) -> None:
        """Train every member on the scored molecules (warm start after the first fit; see ``_refit_rows``)."""
        start = time.perf_counter()
        keys = list(self.scores)
        missing = [k for k in keys if k not in self.graphs]
        self.graphs.update(zip(missing, smiles_graphs(missing)))
        usable = [k for k in keys if self.graphs[k] is not None]
        new = [k for k in keys[self.fitted_on:] if self.graphs[k] is not None]
        actual = [self.scores[k] for k in new]
        if self.members and len(actual) > 1 and np.ptp(actual) > 0:  # a rank correlation needs differing scores
            # How well the current surrogate ranked the molecules it helped pick: the diagnostic worth logging.
            predicted = self.predict(new)[0]
            rho = spearmanr(predicted, actual).statistic if np.ptp(predicted) > 0 else float("nan")
            log.info("surrogate Spearman on %d new molecules: %.2f", len(new), rho)
        targets = np.array([[self.scores[k]] for k in usable])
        self.scaler = TargetScaler.fit(targets, np.ones_like(targets, dtype=bool))
        first = not self.members
        rows = np.arange(len(usable)) if first else self._refit_rows(len(usable), len(new))
        examples = labelled_examples(
            [self.graphs[usable[i]] for i in rows], np.arange(len(rows)), self.scaler.transform(targets[rows]),
            np.ones((len(rows), 1), dtype=bool),
        )
        trainer = TrainerConfig(
            max_epochs=self.config.first_epochs if first else self.config.epochs, batch_size=self.config.batch_size,
            init_lr=self.config.lr, max_lr=self.config.lr, final_lr=self.config.lr, warmup_epochs=0.0, patience=None,
            device="cpu",
        )
        if first:
            self.members = [self._build(i) for i in range(self.config.ensemble)]
        # Validation is the newest molecules: fit keeps the epoch that predicts them best.
        val = examples[len(examples) - len(new):] or examples
        for i, member in enumerate(self.members):
            fit(member, examples, val, trainer, "regression", seed=self.seed + 7919 * self.fits + i)
        self.fits += 1
        self.fitted_on = len(keys)
        self.seconds["fit"] += time.perf_counter() - start
        log.info(
            "surrogate fit %d on %d of %d molecules; overhead so far %.2f s/generation (fit %.0f s, predict %.0f s)",
            self.fits, len(rows), len(usable), sum(self.seconds.values()) / self.generations, self.seconds["fit"],
            self.seconds["predict"],
        )

    def _refit_rows(self, total: int, new: int) -> np.ndarray:
        """Rows a warm refit trains on, in scoring order: every molecule, or with ``refit_size`` the ``new`` newest
        and a uniform draw of older ones up to ``refit_size`` (a replay sample), so a refit costs the same at call
        9,000 as at call 1,000 instead of growing with the log."""
        size = self.config.refit_size
        if size is None or total <= size:
            return np.arange(total)
        old = total - new
        replay = np.random.default_rng((self.seed, self.fits)).choice(old, max(size - new, 0), replace=False)
        return np.concatenate([np.sort(replay), np.arange(old, total)])

    def _build(self, index: int) -> torch.nn.Module:
        torch.manual_seed(self.seed + index)  # the member's initial weights
        return build_model("gin", {
            "n_tasks": 1, "atom_dim": ATOM_DIM, "bond_dim": BOND_DIM, "hidden": self.config.hidden,
            "depth": self.config.depth, "pooling": "sum", "ffn_hidden": self.config.hidden,
        })
