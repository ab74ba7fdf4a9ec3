"""Objective terms: small callables ``mol -> float`` that compose into oracles.

A term is a similarity to a target, a descriptor, a SMARTS (anti-)pattern, a molecular
formula (isomer) score, a transformed term, or a weighted mean of terms. The PMO tasks
(:mod:`discovery.oracles.tasks`) and user-defined composite objectives (YAML, via
:func:`build_term`) are both built from these, so a YAML objective means exactly what
the same Python construction means.

Spec format for :func:`build_term` (one of the first six keys, plus optional
``transform`` and ``weight``)::

    {descriptor: MolLogP, transform: {kind: gaussian, mu: 2.5, sigma: 1}}
    {similarity: <SMILES>, fingerprint: ECFP4, transform: {kind: clipped, upper: 0.7}}
    {smarts: <SMARTS>, inverse: false}
    {isomer: C7H8N2O2, atoms: guacamol}      # atoms: pmo = PyTDC 0.3.6's total-atom count
    {oracle: celecoxib_rediscovery}          # any registered oracle, scored on the molecule
    {mean: geometric, components: [...]}     # nested composite
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from rdkit import Chem

from discovery.oracles.chem import descriptor, fingerprint, parse_formula, tanimoto
from discovery.oracles.transforms import Gaussian, Transform, make_transform


class Term(Protocol):
    """Anything that scores an RDKit molecule."""

    def __call__(self, mol: Chem.Mol) -> float: ...


@dataclass(frozen=True)
class Similarity:
    """Tanimoto similarity to ``target`` on a GuacaMol fingerprint (ECFP4, ECFP6, FCFP4, AP, PHCO)."""

    target: str
    fingerprint: str = "ECFP4"
    _target_fp: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        mol = Chem.MolFromSmiles(self.target)
        if mol is None:
            raise ValueError(f"similarity target {self.target!r} is not a valid SMILES")
        object.__setattr__(self, "_target_fp", fingerprint(mol, self.fingerprint))

    def __call__(self, mol: Chem.Mol) -> float:
        return tanimoto(fingerprint(mol, self.fingerprint), self._target_fp)


@dataclass(frozen=True)
class Descriptor:
    """A named descriptor (see :func:`discovery.oracles.chem.descriptor`)."""

    name: str
    _fn: Callable[[Chem.Mol], float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_fn", descriptor(self.name))

    def __call__(self, mol: Chem.Mol) -> float:
        return float(self._fn(mol))


@dataclass(frozen=True)
class Smarts:
    """1 if the SMARTS pattern matches, else 0; ``inverse`` flips it (an anti-pattern)."""

    pattern: str
    inverse: bool = False
    _query: Chem.Mol = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        query = Chem.MolFromSmarts(self.pattern)
        if query is None:
            raise ValueError(f"invalid SMARTS {self.pattern!r}")
        object.__setattr__(self, "_query", query)

    def __call__(self, mol: Chem.Mol) -> float:
        return float(mol.HasSubstructMatch(self._query) != self.inverse)


@dataclass(frozen=True)
class Transformed:
    """``transform(term(mol))``."""

    term: Term
    transform: Transform

    def __call__(self, mol: Chem.Mol) -> float:
        return float(self.transform(self.term(mol)))


@dataclass(frozen=True)
class Mean:
    """Weighted geometric or arithmetic mean of terms (GuacaMol's MPO aggregation).

    Geometric: prod(s_i ** w_i) ** (1 / sum w), so any zero term gives zero;
    arithmetic: sum(w_i s_i) / sum w. Equal weights reproduce GuacaMol's unweighted means.
    """

    terms: tuple[Term, ...]
    kind: str = "geometric"
    weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("geometric", "arithmetic"):
            raise ValueError(f"mean must be 'geometric' or 'arithmetic', got {self.kind!r}")
        if not self.terms:
            raise ValueError("a mean needs at least one term")
        weights = self.weights or (1.0,) * len(self.terms)
        if len(weights) != len(self.terms) or any(w <= 0 for w in weights):
            raise ValueError(f"need one positive weight per term: {len(self.terms)} terms, weights {weights}")
        object.__setattr__(self, "weights", tuple(float(w) for w in weights))

    def __call__(self, mol: Chem.Mol) -> float:
        scores = [term(mol) for term in self.terms]
        total = sum(self.weights)
        if self.kind == "arithmetic":
            return sum(w * s for w, s in zip(self.weights, scores)) / total
        if min(scores) <= 0.0:
            return 0.0
        return math.exp(sum(w * math.log(s) for w, s in zip(self.weights, scores)) / total)


# Total-atom rule of the isomer score -> the descriptor it counts with.
ATOM_COUNT_RULES: dict[str, str] = {"guacamol": "num_atoms", "pmo": "num_atoms_pmo"}


def isomer(formula: str, kind: str = "geometric", atoms: str = "guacamol") -> Mean:
    """Closeness to a molecular formula (GuacaMol's ``IsomerScoringFunction``).

    Mean of a Gaussian (sigma 1) on the count of each element of the formula (H counted
    implicitly) and a Gaussian (sigma 2) on the total atom count. ``atoms`` picks how that
    total is counted: ``"guacamol"`` (default; GuacaMol and current TDC) counts every atom
    including hydrogens; ``"pmo"`` reproduces PyTDC 0.3.6, used for the published PMO numbers,
    which counts the element tokens of the canonical SMILES string instead
    (:func:`discovery.oracles.chem.smiles_token_atom_count`). The element terms are the same.
    """
    if atoms not in ATOM_COUNT_RULES:
        raise ValueError(f"atom-count rule must be one of {sorted(ATOM_COUNT_RULES)}, got {atoms!r}")
    counts = parse_formula(formula)
    terms: list[Term] = [Transformed(Descriptor(f"count:{element}"), Gaussian(n, 1.0)) for element, n in counts]
    terms.append(Transformed(Descriptor(ATOM_COUNT_RULES[atoms]), Gaussian(sum(n for _, n in counts), 2.0)))
    return Mean(tuple(terms), kind)


def similarity(target: str, fp: str, transform: Transform | None = None) -> Term:
    """Similarity to ``target`` on fingerprint ``fp``, optionally transformed."""
    term = Similarity(target, fp)
    return term if transform is None else Transformed(term, transform)


def desirability(name: str, transform: Transform) -> Transformed:
    """A descriptor passed through a desirability transform."""
    return Transformed(Descriptor(name), transform)


_KINDS = ("descriptor", "similarity", "smarts", "isomer", "oracle", "components")


def build_term(spec: Mapping[str, Any], where: str = "objective") -> tuple[Term, float]:
    """``(term, weight)`` from one spec mapping (format in the module docstring).

    ``where`` names the spec's position in error messages (e.g. ``components[2]``).
    """
    kinds = [k for k in _KINDS if k in spec]
    if len(kinds) != 1:
        raise ValueError(f"{where}: give exactly one of {list(_KINDS)}, got {sorted(spec)}")
    kind = kinds[0]
    allowed = {kind, "transform", "weight", "name"} | {
        "similarity": {"fingerprint"}, "smarts": {"inverse"}, "components": {"mean"}, "isomer": {"mean", "atoms"},
    }.get(kind, set())
    unknown = set(spec) - allowed
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)} for a {kind} term; allowed: {sorted(allowed)}")
    try:
        if kind == "descriptor":
            term: Term = Descriptor(spec["descriptor"])
        elif kind == "similarity":
            term = Similarity(spec["similarity"], spec.get("fingerprint", "ECFP4"))
        elif kind == "smarts":
            term = Smarts(spec["smarts"], bool(spec.get("inverse", False)))
        elif kind == "isomer":
            term = isomer(spec["isomer"], spec.get("mean", "geometric"), spec.get("atoms", "guacamol"))
        elif kind == "oracle":
            from discovery.oracles.registry import get_oracle  # the registry imports this module

            term = get_oracle(spec["oracle"]).score_mol
        else:
            term = build_mean(spec["components"], spec.get("mean", "geometric"), where)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if spec.get("transform") is not None:
        try:
            term = Transformed(term, make_transform(spec["transform"]))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    return term, float(spec.get("weight", 1.0))


def build_mean(components: Sequence[Mapping[str, Any]], kind: str = "geometric", where: str = "objective") -> Mean:
    """A weighted mean of the terms described by ``components``."""
    if not components:
        raise ValueError(f"{where}: 'components' is empty")
    built = [build_term(c, f"{where}.components[{i}]") for i, c in enumerate(components)]
    try:
        return Mean(tuple(t for t, _ in built), kind, tuple(w for _, w in built))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
