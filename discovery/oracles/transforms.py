"""Desirability transforms: map a raw property onto [0, 1] (GuacaMol's score modifiers).

Each transform is a small frozen dataclass with ``__call__(x) -> float``; ``make_transform``
builds one from a config mapping such as ``{kind: max_gaussian, mu: 100, sigma: 10}``.

- ``identity``: x unchanged (for terms already in [0, 1], e.g. a Tanimoto similarity).
- ``gaussian``: exp(-((x - mu) / sigma)^2 / 2), 1 at ``mu``.
- ``min_gaussian``: 1 for x <= mu, Gaussian decay above (lower is fine).
- ``max_gaussian``: 1 for x >= mu, Gaussian decay below (higher is fine).
- ``clipped``: linear from (lower, 0) to (upper, 1), clipped to [0, 1] (GuacaMol's
  ``ClippedScoreModifier``; with lower=0 it is the "thresholded" similarity of the
  similarity tasks: x / upper capped at 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Identity:
    """x unchanged."""

    def __call__(self, x: float) -> float:
        return float(x)


@dataclass(frozen=True)
class Gaussian:
    """Bell curve centred on ``mu`` (1 at ``mu``)."""

    mu: float
    sigma: float

    def __post_init__(self) -> None:
        if self.sigma <= 0:
            raise ValueError(f"Gaussian transform needs sigma > 0, got {self.sigma}")

    def __call__(self, x: float) -> float:
        return math.exp(-0.5 * ((x - self.mu) / self.sigma) ** 2)


@dataclass(frozen=True)
class MinGaussian(Gaussian):
    """1 for ``x <= mu``; Gaussian decay for larger x ("at most mu")."""

    def __call__(self, x: float) -> float:
        return super().__call__(max(x, self.mu))


@dataclass(frozen=True)
class MaxGaussian(Gaussian):
    """1 for ``x >= mu``; Gaussian decay for smaller x ("at least mu")."""

    def __call__(self, x: float) -> float:
        return super().__call__(min(x, self.mu))


@dataclass(frozen=True)
class Clipped:
    """Linear ramp from ``(lower, 0)`` to ``(upper, 1)``, clipped to [0, 1].

    ``upper < lower`` gives a decreasing ramp (1 below ``upper``, 0 above ``lower``).
    """

    upper: float
    lower: float = 0.0

    def __post_init__(self) -> None:
        if self.upper == self.lower:
            raise ValueError(f"clipped transform needs upper != lower, got {self.upper}")

    def __call__(self, x: float) -> float:
        return min(1.0, max(0.0, (x - self.lower) / (self.upper - self.lower)))


Transform = Callable[[float], float]

TRANSFORMS: dict[str, type] = {
    "identity": Identity,
    "gaussian": Gaussian,
    "min_gaussian": MinGaussian,
    "max_gaussian": MaxGaussian,
    "clipped": Clipped,
}


def make_transform(spec: Mapping[str, Any] | None) -> Transform:
    """Build a transform from ``{kind: NAME, **params}``; ``None`` means identity."""
    if spec is None:
        return Identity()
    params = dict(spec)
    kind = params.pop("kind", None)
    if kind not in TRANSFORMS:
        raise ValueError(f"unknown transform kind {kind!r} in {dict(spec)}; known: {sorted(TRANSFORMS)}")
    try:
        return TRANSFORMS[kind](**params)
    except TypeError as exc:
        raise ValueError(f"bad parameters for transform {kind!r}: {params} ({exc})") from None
