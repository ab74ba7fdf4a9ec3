"""The budgeted oracle every optimizer calls: cache, hard budget, incremental call log, resume.

PMO accounting (Gao et al. 2022; mol_opt ``main/optimizer.py``): a molecule is charged
once, keyed by its RDKit canonical SMILES; a repeat is answered from the cache for free;
an unparseable SMILES is answered ``oracle.invalid_score`` and not charged (counted in
``invalid``). When a new molecule arrives after the budget is spent the call raises
:class:`BudgetExhausted`; everything scored before it is already in the log, so the
driver just catches it and stops.

The log (``calls.parquet``: call, smiles, inchikey, score, wall_time_s, oracle, error) is
rewritten atomically (temp file + rename) every ``flush_every`` new calls, on
:meth:`BudgetedOracle.flush` and when the run ends, so a reader never sees a partial file.
Opening a log that exists resumes it: its molecules are cached and never charged again;
a hard kill loses at most the ``flush_every - 1`` calls made since the last flush.
A resumed run sees only what it has asked for itself: :meth:`BudgetedOracle.scores` and
:attr:`BudgetedOracle.requested` count a logged molecule once the run requests it again, so a
seeded optimizer replays its killed run call for call (its stopping rule reads the scores
it has reached, not the whole log, which would look like a stall and stop it at once).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from rdkit import Chem

from discovery.oracles import Oracle
from featurestore.io import read_table, write_parquet_atomic
from featurestore.standardize import standardize_smiles

LOG_SCHEMA: dict[str, pl.DataType] = {
    "call": pl.Int64, "smiles": pl.String, "inchikey": pl.String, "score": pl.Float64,
    "wall_time_s": pl.Float64, "oracle": pl.String, "error": pl.String,
}


class BudgetExhausted(RuntimeError):
    """A new molecule was asked for after the oracle budget was spent."""


def canonical_smiles(smiles: str) -> tuple[str | None, Chem.Mol | None]:
    """``(RDKit canonical SMILES, mol)``, or ``(None, None)`` if it does not parse to atoms."""
    mol = Chem.MolFromSmiles(smiles) if smiles else None
    if mol is None or mol.GetNumAtoms() == 0:
        return None, None
    return Chem.MolToSmiles(mol), mol


@dataclass
class _Entry:
    call: int
    score: float


class BudgetedOracle:
    """Wraps an :class:`~discovery.oracles.Oracle` with PMO's cache, budget and call log.

    Call it with a list of SMILES; it returns their scores in order. ``log_path=None``
    keeps the log in memory only (tests, notebooks).
    """

    def __init__(
        self, oracle: Oracle, budget: int = 10_000, log_path: str | Path | None = None, flush_every: int = 100,
    ) -> None:
        if budget <= 0:
            raise ValueError(f"budget must be positive, got {budget}")
        if flush_every <= 0:
            raise ValueError(f"flush_every must be positive, got {flush_every}")
        self.oracle = oracle
        self.budget = budget
        self.log_path = Path(log_path) if log_path is not None else None
        self.flush_every = flush_every
        self.cache_hits = 0
        self.invalid = 0
        self._cache: dict[str, _Entry] = {}
        self._rows: list[dict] = []
        self._asked: list[bool] = []  # per logged call: requested by this run (resumed rows: once replayed)
        self._unflushed = 0
        self._time_offset = 0.0
        self._start = time.perf_counter()
        if self.log_path is not None and self.log_path.exists():
            self._resume(read_table(self.log_path))

    def _resume(self, log: pl.DataFrame) -> None:
        missing = [c for c in LOG_SCHEMA if c not in log.columns]
        if missing:
            raise ValueError(f"{self.log_path}: not a call log, missing column(s) {missing}")
        log = log.select(list(LOG_SCHEMA)).sort("call")
        for i, row in enumerate(log.iter_rows(named=True)):
            where = f"{self.log_path} row {i} (call {row['call']})"
            if row["call"] != i + 1:
                raise ValueError(f"{where}: calls must run 1..n without gaps, expected call {i + 1}")
            if row["oracle"] != self.oracle.name:
                raise ValueError(f"{where}: written by oracle {row['oracle']!r}, this run scores {self.oracle.name!r}")
            if row["smiles"] in self._cache:
                raise ValueError(f"{where}: {row['smiles']!r} was already scored at call {self._cache[row['smiles']].call}")
            if row["score"] is None:
                raise ValueError(f"{where}: score is missing")
            self._cache[row["smiles"]] = _Entry(row["call"], row["score"])
            self._rows.append(row)
            self._asked.append(False)
        if len(self._rows) > self.budget:
            raise ValueError(f"{self.log_path} holds {len(self._rows)} calls, more than the budget {self.budget}")
        self._time_offset = self._rows[-1]["wall_time_s"] if self._rows else 0.0

    @property
    def calls_used(self) -> int:
        """Unique molecules scored so far (charged calls)."""
        return len(self._rows)

    @property
    def remaining(self) -> int:
        """Calls left in the budget."""
        return self.budget - self.calls_used

    @property
    def exhausted(self) -> bool:
        """True once every call of the budget is spent."""
        return self.remaining <= 0

    @property
    def requested(self) -> int:
        """Logged molecules this run has requested: ``calls_used`` unless resumed and still replaying."""
        return sum(self._asked)

    def __len__(self) -> int:
        return self.calls_used

    def __call__(self, smiles: Sequence[str]) -> list[float]:
        """Scores of ``smiles`` in order; raises :class:`BudgetExhausted` at the first new
        molecule once the budget is spent (everything scored before it is kept)."""
        return [self.score(s) for s in smiles]

    def score(self, smiles: str) -> float:
        """Score one SMILES under the budget rules (see the class docstring)."""
        canonical, mol = canonical_smiles(smiles)
        if canonical is None:
            self.invalid += 1
            return self.oracle.invalid_score
        if canonical in self._cache:
            self.cache_hits += 1
            entry = self._cache[canonical]
            self._asked[entry.call - 1] = True
            return entry.score
        if self.exhausted:
            self.flush()
            raise BudgetExhausted(f"oracle budget of {self.budget} calls is spent")
        error = None
        try:
            value = self.oracle.score_mol(mol)
        except Exception as exc:  # a scoring bug on one odd molecule must not end a 10k-call run
            value, error = self.oracle.invalid_score, f"{type(exc).__name__}: {exc}"
        call = self.calls_used + 1
        self._cache[canonical] = _Entry(call, value)
        self._rows.append({
            "call": call, "smiles": canonical, "inchikey": standardize_smiles(canonical).inchikey, "score": value,
            "wall_time_s": self._time_offset + time.perf_counter() - self._start,
            "oracle": self.oracle.name, "error": error,
        })
        self._asked.append(True)
        self._unflushed += 1
        if self._unflushed >= self.flush_every or self.exhausted:
            self.flush()
        return value

    def flush(self) -> None:
        """Write the whole log to ``log_path`` atomically (no-op without a path or new rows)."""
        if self.log_path is not None and self._unflushed:
            write_parquet_atomic(self.log(), self.log_path)
        self._unflushed = 0

    def log(self) -> pl.DataFrame:
        """Every scored molecule in call order."""
        return pl.DataFrame(self._rows, schema=LOG_SCHEMA)

    def scores(self) -> np.ndarray:
        """Scores of the molecules this run has asked for (see :attr:`requested`), in call order."""
        return np.array([row["score"] for row, asked in zip(self._rows, self._asked) if asked], dtype=float)


