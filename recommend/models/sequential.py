"""Sequential next-drug recommender: a GRU over each patient's time-ordered drug starts (GRU4Rec-style).

A patient's history is the sequence of catalog items they started, in time order
(ties: column order), with consecutive repeats (refills, overlapping exposures of the
same drug) collapsed to one step: A A B B A C -> A B A C. The GRU reads the sequence
and, at each step, is trained to predict the next step's item with a cross-entropy
over the items (padding masked out). ``new_only`` keeps only the steps whose target
the patient did not take earlier in the window read (``max_len`` + 1 steps; the "new
drug" task). Scores for a patient are the logits after their last step; a patient
without history gets the output bias. The output layer covers the items with training interactions only (a few
hundred of a catalog of thousands: the costly part); the others score below every active item.

``covariates`` (any of sex, age, conditions, care_site; :mod:`recommend.models.covariates`) join the
state before the output layer as the sum of their features' embeddings: in scoring, taken at the
prediction time; in training, at a time drawn between each step and the next one, as a prediction
time falls between a patient's drug starts (:meth:`GRURecommender.covariate_times`). The logits are
linear in that sum, so each feature's share of a drug's score is exact (``explain_patient``).

The histories come from :meth:`with_context` (the fold's events; matrix rows map to
person ids through ``context.users``), so the model needs the context before ``fit``
and ``score``, also after ``load``. Saved as the state dict's arrays in the ``.npz``
(no pickle); training is seeded and deterministic on CPU.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch
from torch import nn

from recommend.models.base import FitContext, Recommender, register_model, sorted_positions
from recommend.models.covariates import CovariateInputs


class _GRUNet(nn.Module):
    """Item embedding (index 0 = padding) -> GRU -> [state | covariate features' summed embedding] -> logits over
    the active items."""

    def __init__(self, n_items: int, n_active: int, embedding_dim: int, hidden: int, dropout: float,
                 n_features: int = 0) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_items + 1, embedding_dim, padding_idx=0)
        self.gru = nn.GRU(embedding_dim, hidden, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.features = nn.EmbeddingBag(n_features, embedding_dim, mode="sum") if n_features else None
        if self.features is not None:
            # from zero: the net starts as the plain GRU and learns how much the covariates add (N(0, 1) summed
            # over a patient's diagnoses starts far from it: validation NDCG@10 on new drugs 0.322 vs 0.327 on the
            # 100k cohort, though 0.500 vs 0.467 on Eunomia)
            nn.init.zeros_(self.features.weight)
        with warnings.catch_warnings():  # a fold without history has no item to output: the empty layer is meant
            warnings.filterwarnings("ignore", "Initializing zero-element tensors", UserWarning)
            self.output = nn.Linear(hidden + (embedding_dim if n_features else 0), n_active)

    def states(self, tokens: torch.Tensor) -> torch.Tensor:
        """Hidden state after every step (batch × length × hidden); right padding does not leak back."""
        return self.dropout(self.gru(self.embedding(tokens))[0])

    def logits(self, states: torch.Tensor, features: sp.csr_matrix | None) -> torch.Tensor:
        """Logits (n × active items) from n states and, with covariates, the n rows of their features."""
        if self.features is not None:
            bags = self.features(torch.from_numpy(features.indices.astype(np.int64)),
                                 torch.from_numpy(features.indptr[:-1].astype(np.int64)),
                                 per_sample_weights=torch.from_numpy(features.data.astype(np.float32)))
            states = torch.cat([states, bags], dim=1)
        return self.output(states)


def _steps(context: FitContext) -> pl.DataFrame:
    """Every matrix row's collapsed, time-ordered steps: (row, col, person_id, start)."""
    users = pl.DataFrame({"person_id": context.users}).with_row_index("row")
    items = pl.DataFrame({"item": context.items["item"]}).with_row_index("col")
    steps = (
        context.events.select("person_id", "item", "start")
        .join(users, on="person_id", how="inner")
        .join(items, on="item", how="inner")
        .sort("row", "start", "col")
        .filter(((pl.col("col") != pl.col("col").shift(1)) | (pl.col("row") != pl.col("row").shift(1))).fill_null(True))
    )
    return steps


def item_sequences(context: FitContext, steps: pl.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per matrix row, its collapsed, time-ordered item columns as CSR-style ``(indptr, columns)``."""
    steps = _steps(context) if steps is None else steps
    rows = steps["row"].to_numpy().astype(np.int64)
    indptr = np.zeros(len(context.users) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=len(context.users)), out=indptr[1:])
    return indptr, steps["col"].to_numpy().astype(np.int64)


@register_model("gru")
class GRURecommender(Recommender):
    """Next-item GRU trained on the histories of :meth:`with_context` (see the module docstring)."""

    def __init__(self, embedding_dim: int = 64, hidden: int = 128, epochs: int = 5, batch_size: int = 256,
                 learning_rate: float = 0.005, max_len: int = 50, dropout: float = 0.0, new_only: bool = False,
                 seed: int = 0, num_threads: int = 1, covariates: Sequence[str] = ()) -> None:
        if max_len < 2:
            raise ValueError("max_len must be >= 2 (an input step and a target)")
        self._params = {"embedding_dim": embedding_dim, "hidden": hidden, "epochs": epochs, "batch_size": batch_size,
                        "learning_rate": learning_rate, "max_len": max_len, "dropout": dropout, "new_only": new_only,
                        "seed": seed, "num_threads": num_threads}
        self.covariates = CovariateInputs("gru", covariates)
        self.net: _GRUNet | None = None
        self.active: np.ndarray | None = None  # output position -> item column
        self.sequences: tuple[np.ndarray, np.ndarray] | None = None
        self.steps: pl.DataFrame | None = None  # with covariates: each step's person_id, start and the next start

    def params(self) -> dict[str, Any]:
        return {**self._params, "covariates": list(self.covariates.kinds)}  # no weight: the embeddings scale

    def with_context(self, context: FitContext) -> GRURecommender:
        steps = _steps(context)
        self.sequences = item_sequences(context, steps)
        self.covariates.set_context(context)
        if self.covariates:
            self.steps = steps.select("person_id", "start", next_start=pl.col("start").shift(-1).over("row"))
        return self

    def _padded(self, rows: np.ndarray, length: int) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        """The last ``length`` steps of each row's sequence, as tokens (column + 1), right-padded with 0; the rows'
        lengths and the index of their first step read."""
        if self.sequences is None:
            raise RuntimeError("gru needs the patients' event histories: call with_context(FitContext(...)) first")
        indptr, columns = self.sequences
        lo = np.maximum(indptr[rows], indptr[rows + 1] - length)
        lengths = indptr[rows + 1] - lo
        tokens = np.zeros((len(rows), max(int(lengths.max(initial=0)), 1)), dtype=np.int64)
        for i, (start, n) in enumerate(zip(lo, lengths)):
            tokens[i, :n] = columns[start : start + n] + 1
        return torch.from_numpy(tokens), lengths, lo

    def covariate_times(self) -> pl.DataFrame:
        """When each step's covariates are taken (query = step, person_id, reference): at a seeded uniform time
        between that step and the next one of the patient (the last step: just after it), as a prediction time
        falls somewhere between a patient's drug starts. Taken at the next start instead, they hold what happened just
        before it (a diagnosis, then its drug), which a prediction time rarely knows, and hurt on the 100k cohort
        (validation NDCG@10 on new drugs 0.314 vs 0.321 without covariates; 0.327 drawn like this)."""
        rng = np.random.default_rng(self._params["seed"])
        return self.steps.select(
            pl.int_range(pl.len(), dtype=pl.Int64).alias("query"), "person_id",
            reference=pl.coalesce(pl.col("start") + (pl.col("next_start") - pl.col("start"))
                                  * pl.Series(rng.random(self.steps.height)),
                                  pl.col("start") + timedelta(microseconds=1)))

    def fit(self, user_items: sp.csr_matrix) -> GRURecommender:
        with _torch_threads(self._params["num_threads"]):
            return self._fit(user_items)

    def _fit(self, user_items: sp.csr_matrix) -> GRURecommender:
        p = self._params
        self.n_items = user_items.shape[1]
        torch.manual_seed(p["seed"])  # weight initialization
        if self.sequences is None:
            raise RuntimeError("gru needs the patients' event histories: call with_context(FitContext(...)) first")
        indptr, columns = self.sequences
        self.active = np.unique(columns)
        # each step's covariates at a time between it and the next start, where a prediction time would fall
        step_features = self.covariates.fit_at(self.covariate_times()) if self.covariates else None
        self.net = _GRUNet(self.n_items, len(self.active), p["embedding_dim"], p["hidden"], p["dropout"],
                           len(self.covariates.features))
        position = np.zeros(self.n_items + 1, dtype=np.int64)  # token -> output position
        position[self.active + 1] = np.arange(len(self.active))
        position = torch.from_numpy(position)
        trainable = np.flatnonzero(np.diff(indptr) >= 2)  # at least one (input, next item) pair
        optimizer = torch.optim.Adam(self.net.parameters(), lr=p["learning_rate"])
        generator = torch.Generator().manual_seed(p["seed"])
        self.net.train()
        lengths = np.minimum(np.diff(indptr), p["max_len"] + 1)
        for _ in range(p["epochs"] if len(trainable) else 0):
            for batch in _length_batches(trainable, lengths, p["batch_size"], generator):
                tokens, _, first = self._padded(batch, p["max_len"] + 1)
                inputs, targets = tokens[:, :-1], tokens[:, 1:] - 1  # target -1 = padding
                keep = targets >= 0
                if p["new_only"]:
                    keep &= ~_seen_before(tokens)[:, 1:]
                if not keep.any():
                    continue
                # Logits only at the kept steps: the output layer is the costly part.
                features = None
                if step_features is not None:  # input position j of batch row i: step first[i] + j
                    i, j = np.nonzero(keep.numpy())
                    features = step_features[first[i] + j]
                logits = self.net.logits(self.net.states(inputs)[keep], features)
                loss = nn.functional.cross_entropy(logits, position[targets[keep] + 1])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        self.net.eval()
        return self

    def score(self, user_ids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        user_ids = np.asarray(user_ids, dtype=np.int64)
        tokens, lengths, _ = self._padded(user_ids, self._params["max_len"])
        features = self.covariates.rows(user_ids) if len(self.covariates.features) else None
        with torch.no_grad(), _torch_threads(self._params["num_threads"]):
            states = self.net.states(tokens)
            last = states[torch.arange(len(lengths)), torch.from_numpy(np.maximum(lengths - 1, 0))]
            last[torch.from_numpy(lengths == 0)] = 0.0  # no history: the output bias (and covariates) alone
            logits = self.net.logits(last, features).numpy()
        out = np.full((len(lengths), self.n_items), np.finfo(np.float32).min, dtype=np.float32)
        out[:, self.active] = logits  # items never seen in training rank last (finite: not filtered)
        return out

    def explain_patient(self, user_id: int, item_id: int, N: int = 5) -> list[tuple[str, float]]:
        """Each covariate feature's exact share of the drug's logit: its embedding times the output weights."""
        (position,), (active,) = sorted_positions(self.active, np.array([item_id]))
        if not active or not len(self.covariates.features):
            return []
        with torch.no_grad():
            on_features = self.net.output.weight[position, self._params["hidden"]:]
            weights = (self.net.features.weight @ on_features).numpy()
        return self.covariates.explain(user_id, weights, N)

    def _state(self) -> dict[str, np.ndarray]:
        return {"active": self.active, **self.covariates.state(),
                **{f"net.{name}": t.numpy() for name, t in self.net.state_dict().items()}}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        p = self._params
        self.active = arrays["active"]
        self.covariates.load_state(arrays)
        weights = {name.removeprefix("net."): torch.from_numpy(np.array(v)) for name, v in arrays.items()
                   if name.startswith("net.")}
        n_items = weights["embedding.weight"].shape[0] - 1
        self.net = _GRUNet(n_items, len(self.active), p["embedding_dim"], p["hidden"], p["dropout"],
                           len(self.covariates.features))
        self.net.load_state_dict(weights)
        self.net.eval()


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` inside the block (OpenMP spin-waits on busy shared cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _length_batches(rows: np.ndarray, lengths: np.ndarray, size: int, generator: torch.Generator) -> list[np.ndarray]:
    """Shuffled batches of rows; within each group of 32 batches rows are sorted by length (less padding)."""
    order = rows[torch.randperm(len(rows), generator=generator).numpy()]
    group = size * 32
    for lo in range(0, len(order), group):
        chunk = order[lo : lo + group]
        order[lo : lo + group] = chunk[np.argsort(lengths[chunk], kind="stable")]
    batches = [order[lo : lo + size] for lo in range(0, len(order), size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def _seen_before(tokens: torch.Tensor) -> torch.Tensor:
    """batch × length: does the token at each step occur earlier in its row (padding never counts)."""
    earlier = (tokens[:, :, None] == tokens[:, None, :]).tril(diagonal=-1).any(dim=2)
    return earlier & (tokens > 0)
