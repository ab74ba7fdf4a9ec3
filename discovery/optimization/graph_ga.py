"""Graph GA (Jensen, Chem. Sci. 2019) under a PMO oracle budget, following mol_opt's ``graph_ga``.

Per generation: sample a mating pool of ``population_size`` parents with probability
proportional to score (+1e-10, so all-zero populations still mate); make
``offspring_size`` children by graph crossover of two random mating-pool members, each
mutated with probability ``mutation_rate``; merge with the population, drop duplicates
(canonical SMILES), score everything through the budgeted oracle (known molecules are
free) and keep the best ``population_size``.

Start: like mol_opt's exploration run, ``population_size`` molecules drawn at random
(with replacement) from the pool and scored; mol_opt does *not* score the whole pool
(GuacaMol's original GA did: its ``heapq.nlargest`` over the pool is commented out there).

Stop: when the budget is spent, or after ``patience`` consecutive generations in which
the mean of the 100 best scores logged so far rose by less than ``min_improvement``
(mol_opt: patience 5, 1e-3, checked once more than 100 molecules are scored;
``patience=None`` runs to the budget). mol_opt's earlier version, the one committed with
these tuned defaults, stopped only when the whole population was unchanged for
``patience`` generations, which triggers far later.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from rdkit import Chem

from discovery.optimization.budget import BudgetedOracle
from discovery.optimization.graph_operators import Parent, SizeLimits, crossover, mutate
from discovery.optimization.metrics import top_k_mean

log = logging.getLogger(__name__)

# Makes a generation's children from the population and every molecule the previous
# generation scored (see ``GraphGA._breeder``).
Breeder = Callable[[list["Member"], list["Member"]], list[Chem.Mol]]

# mol_opt adds this to every score before normalizing to mating probabilities.
_MINIMUM_WEIGHT = 1e-10


@dataclass(frozen=True)
class Member:
    """One molecule of the population."""

    smiles: str
    mol: Chem.Mol
    score: float


@dataclass(frozen=True)
class GraphGA:
    """Graph GA hyper-parameters (defaults: mol_opt's tuned ``hparams_default.yaml``)."""

    name: str = "graph_ga"
    population_size: int = 120
    offspring_size: int = 70
    mutation_rate: float = 0.067
    patience: int | None = 5
    min_improvement: float = 1e-3
    max_generations: int | None = None
    average_size: float = 39.15
    size_stdev: float = 3.50

    def __post_init__(self) -> None:
        if self.population_size < 2 or self.offspring_size < 1:
            raise ValueError(f"need population_size >= 2 and offspring_size >= 1, got {self}")
        if not 0.0 <= self.mutation_rate <= 1.0:
            raise ValueError(f"mutation_rate must lie in [0, 1], got {self.mutation_rate}")

    def optimize(self, oracle: BudgetedOracle, pool: Sequence[str], rng: np.random.Generator) -> str:
        """Run until the budget is spent (``BudgetExhausted`` propagates) or convergence;
        returns why it stopped (``"converged"``, ``"max_generations"``, ``"budget"``)."""
        limits = SizeLimits(self.average_size, self.size_stdev)
        start = [pool[i] for i in rng.choice(len(pool), size=self.population_size, replace=True)]
        population = self._score(oracle, [Chem.MolFromSmiles(s) for s in start])
        if not population:
            raise ValueError(f"none of the {len(start)} sampled pool molecules parses; check the pool")
        breed, scored = self._breeder(rng, limits), population
        stalled, generation = 0, 0
        while self.max_generations is None or generation < self.max_generations:
            generation += 1
            before = top_k_mean(oracle.scores(), 100) if oracle.requested > 100 else 0.0
            children = breed(population, scored)
            scored = self._score(oracle, [m.mol for m in population] + children)
            population = sorted(scored, key=lambda m: -m.score)[: self.population_size]
            if generation % 10 == 0:
                log.info("generation %d: %d calls, best %.3f", generation, len(oracle), population[0].score)
            if oracle.exhausted:
                return "budget"
            if self.patience is not None and oracle.requested > 100:
                gained = top_k_mean(oracle.scores(), 100) - before
                stalled = stalled + 1 if gained < self.min_improvement else 0
                if stalled >= self.patience:
                    log.info("converged after %d generations (%d calls)", generation, len(oracle))
                    return "converged"
        return "max_generations"

    def _score(self, oracle: BudgetedOracle, mols: Sequence[Chem.Mol | None]) -> list[Member]:
        """Unique valid molecules with their scores, in input order."""
        unique: dict[str, Chem.Mol] = {}
        for mol in mols:
            if mol is not None:
                unique.setdefault(Chem.MolToSmiles(mol), mol)
        scores = oracle(list(unique))
        return [Member(s, m, score) for (s, m), score in zip(unique.items(), scores)]

    def _breeder(self, rng: np.random.Generator, limits: SizeLimits) -> Breeder:
        """The per-generation child maker; subclasses (the surrogate GA) filter a larger brood here."""
        return lambda population, _scored: self._offspring(population, rng, limits, self.offspring_size)

    def _offspring(
        self, population: list[Member], rng: np.random.Generator, limits: SizeLimits, n: int,
    ) -> list[Chem.Mol]:
        """Up to ``n`` children (crossover of two score-weighted parents, then mutation); failures are skipped."""
        scores = np.array([m.score for m in population])
        weights = scores - min(scores.min(), 0.0) + _MINIMUM_WEIGHT  # shift only for negative (unbounded) oracles
        mating_pool = rng.choice(len(population), size=self.population_size, replace=True, p=weights / weights.sum())
        parent = functools.cache(lambda index: Parent(population[index].mol))  # once per member and generation
        children = []
        for _ in range(n):
            a, b = rng.choice(mating_pool, size=2, replace=True)
            child = crossover(parent(a), parent(b), rng, limits)
            if child is not None:
                child = mutate(child, rng, self.mutation_rate, limits)
            if child is not None:
                children.append(child)
        return children
