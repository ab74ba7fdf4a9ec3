"""The :class:`Oracle` type and the string registry ``name -> oracle``.

An oracle scores a SMILES string: it parses it with RDKit and applies its objective
term; an unparseable or empty SMILES gets ``invalid_score`` (0 for the bounded tasks).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rdkit import Chem, RDLogger

from discovery.oracles.terms import Term, build_mean

# Parse failures are expected during optimization and scored as invalid; RDKit would print each one.
RDLogger.DisableLog("rdApp.*")


@dataclass(frozen=True)
class Oracle:
    """A named objective to maximize.

    ``bounded`` oracles score in [0, 1]; unbounded ones (penalized logP) say so, and
    their ``invalid_score`` sits below any valid molecule's score.
    """

    name: str
    objective: Term
    bounded: bool = True
    invalid_score: float = 0.0
    description: str = ""

    def score_mol(self, mol: Chem.Mol) -> float:
        """Score a sanitized RDKit molecule."""
        return float(self.objective(mol))

    def __call__(self, smiles: str) -> float:
        """Score a SMILES string; ``invalid_score`` if it does not parse to a molecule."""
        mol = Chem.MolFromSmiles(smiles) if smiles else None
        if mol is None or mol.GetNumAtoms() == 0:
            return self.invalid_score
        return self.score_mol(mol)


ORACLES: dict[str, Callable[[], Oracle]] = {}


def register_oracle(name: str) -> Callable[[Callable[[], Oracle]], Callable[[], Oracle]]:
    """Decorator: register a zero-argument factory that builds the oracle ``name``."""

    def decorate(factory: Callable[[], Oracle]) -> Callable[[], Oracle]:
        if name in ORACLES:
            raise ValueError(f"oracle {name!r} is already registered")
        ORACLES[name] = factory
        return factory

    return decorate


_BUILT: dict[str, Oracle] = {}


def get_oracle(name: str) -> Oracle:
    """The registered oracle ``name`` (built once, then shared: oracles are immutable)."""
    if name not in ORACLES:
        raise KeyError(f"unknown oracle {name!r}; registered: {sorted(ORACLES)}")
    if name not in _BUILT:
        _BUILT[name] = ORACLES[name]()
    return _BUILT[name]


def list_oracles() -> list[str]:
    """Names of every registered oracle, sorted."""
    return sorted(ORACLES)


def composite_oracle(
    name: str, components: Sequence[Mapping[str, Any]], mean: str = "geometric", description: str = ""
) -> Oracle:
    """An oracle defined by data: a weighted geometric/arithmetic mean of component terms.

    Components use the spec format of :func:`discovery.oracles.terms.build_term`; this is
    what ``conf/oracle/custom_mpo.yaml`` instantiates. Components without a transform must
    already lie in [0, 1] for the result to be a bounded score (e.g. ``qed``, a similarity).
    """
    return Oracle(name, build_mean(components, mean, where=f"oracle {name!r}"), description=description)
