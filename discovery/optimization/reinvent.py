"""REINVENT (Olivecrona et al., J. Cheminform. 2017): a SMILES GRU prior, fine-tuned by policy gradient.

A prior :class:`SmilesRNN` (token embedding, multi-layer GRU, linear over the vocabulary;
sequences run ``<bos> tokens <eos>``) is trained by teacher-forced maximum likelihood on
the pool; the agent starts as a copy of it. Each step the agent samples ``batch_size``
SMILES; the unique sequences are scored through the budgeted oracle (invalid SMILES score
0 and are not charged, see ``budget.py``) and the agent minimizes

    (log P_prior(x) + sigma * score(x) - log P_agent(x))^2

over the batch plus ``experience_replay`` molecules drawn (with probability proportional
to score) from a memory of the ``memory_size`` best seen so far, plus REINVENT's penalty
``-likelihood_penalty * mean(1 / log P_agent)`` that keeps the agent from collapsing onto
a few very likely strings. Defaults are mol_opt's tuned ``reinvent/hparams_default.yaml``
(lr 5e-4, batch 64, sigma 500, replay 24) and its memory of 100; its early stop
(``patience`` steps with the top-100 unchanged, counted once 1,000 molecules are scored)
is ``patience=5, patience_after=1000, min_improvement=0``.

Pool use: the pool is the prior's training data only (the GA starts from the pool;
REINVENT samples from the prior). The prior is built on first use and cached under
``cache_dir/<hash of prior config and pool>/`` (``weights.pt`` state dict + ``model.json``:
vocabulary, sizes, training settings and the pool's fingerprint; no pickle), so later runs on
the same pool reuse it. Pretrain on its own (the 100k MOSES sample by default)::

    python -m discovery.optimization.reinvent pretrain [--epochs 1] [--cache-dir .cache/priors] [--samples 1000]

which also prints validity and uniqueness of ``--samples`` molecules drawn from the prior.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from discovery.optimization.budget import BudgetedOracle, canonical_smiles
from discovery.optimization.metrics import top_k_mean
from discovery.optimization.runner import NOT_RECORDED
from featurestore.featurizers.base import FeaturizationError
from featurestore.featurizers.tokens import tokenize_smiles
from featurestore.io import atomic_path, file_lock, write_json_atomic
from featurestore.shards import job_fingerprint

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>")
PAD, BOS, EOS = 0, 1, 2
DEFAULT_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "priors"


@dataclass(frozen=True)
class PriorConfig:
    """Size and training of the prior; all of it goes into the cache key."""

    embedding: int = 128
    hidden: int = 256
    layers: int = 3
    max_tokens: int = 100  # longest sequence trained on and sampled (tokens incl. <eos>)
    epochs: int = 1  # ~12 min on the 100k MOSES sample, 1 thread of a loaded 2-core machine
    batch_size: int = 128
    lr: float = 1e-3
    clip_norm: float = 1.0  # gradient norm clip: GRU language models spike early in training
    seed: int = 0


class SmilesRNN(nn.Module):
    """Token embedding -> ``layers``-layer GRU -> linear over the vocabulary (ids: PAD, BOS, EOS, tokens)."""

    def __init__(
        self, tokens: Sequence[str], embedding: int = 128, hidden: int = 256, layers: int = 3, max_tokens: int = 100,
        training: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.vocabulary = [*SPECIAL_TOKENS, *tokens]
        if len(set(self.vocabulary)) != len(self.vocabulary):
            raise ValueError("the token list repeats a token or uses a reserved name")
        self.ids = {token: i for i, token in enumerate(self.vocabulary)}
        self.sizes = {"embedding": embedding, "hidden": hidden, "layers": layers, "max_tokens": max_tokens}
        self.training_record = training or {}
        self.embed = nn.Embedding(len(self.vocabulary), embedding, padding_idx=PAD)
        self.gru = nn.GRU(embedding, hidden, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden, len(self.vocabulary))

    def forward(self, inputs: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Next-token logits ``[batch, time, vocabulary]`` (``-inf`` for PAD and BOS, which are never
        emitted: a sampled PAD would make an empty, zero-likelihood sequence) and the GRU state."""
        hidden, state = self.gru(self.embed(inputs), state)
        return self.out(hidden).index_fill(-1, torch.tensor([PAD, BOS]), float("-inf")), state

    def encode(self, smiles: Sequence[str]) -> torch.Tensor:
        """Padded ``[n, time]`` ids of ``tokens <eos>``; raises naming the first SMILES it cannot encode."""
        rows = []
        for i, text in enumerate(smiles):
            tokens = tokenize_smiles(text)
            unknown = [t for t in tokens if t not in self.ids]
            if unknown:
                raise ValueError(f"SMILES {i} {text!r}: token(s) {unknown} not in the prior's vocabulary")
            if len(tokens) + 1 > self.sizes["max_tokens"]:
                raise ValueError(f"SMILES {i} {text!r}: {len(tokens) + 1} tokens, more than max_tokens")
            rows.append(torch.tensor([self.ids[t] for t in tokens] + [EOS]))
        return nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=PAD)

    def decode(self, seqs: torch.Tensor) -> list[str]:
        """SMILES of sampled id rows (up to ``<eos>``; a row that never ended is joined as it stands)."""
        out = []
        for row in seqs.tolist():
            end = row.index(EOS) if EOS in row else len(row)
            out.append("".join(self.vocabulary[i] for i in row[:end] if i != PAD))
        return out

    def token_log_probs(self, seqs: torch.Tensor) -> torch.Tensor:
        """Teacher-forced ``log p(token | prefix)`` per position, 0 at padding."""
        inputs = torch.cat([torch.full_like(seqs[:, :1], BOS), seqs[:, :-1]], dim=1)
        logits, _ = self(inputs)
        picked = torch.log_softmax(logits, dim=-1).gather(-1, seqs.unsqueeze(-1)).squeeze(-1)
        return torch.where(seqs != PAD, picked, 0.0)  # PAD targets pick -inf: select, never multiply

    def log_likelihood(self, seqs: torch.Tensor) -> torch.Tensor:
        """``log P(sequence)`` per row (sum over its tokens and ``<eos>``)."""
        return self.token_log_probs(seqs).sum(dim=1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` id rows drawn token by token; after ``<eos>`` a row is padded."""
        token = torch.full((n, 1), BOS, dtype=torch.long)
        state, done, rows = None, torch.zeros(n, dtype=torch.bool), []
        for _ in range(self.sizes["max_tokens"]):
            logits, state = self(token, state)
            token = torch.multinomial(torch.softmax(logits[:, -1], dim=-1), 1, generator=generator)
            token[done] = PAD
            rows.append(token)
            done |= token.squeeze(1) == EOS
            if done.all():
                break
        return torch.cat(rows, dim=1)

    def config(self) -> dict[str, Any]:
        """Plain JSON that rebuilds this model (with ``weights.pt``)."""
        return {"tokens": self.vocabulary[len(SPECIAL_TOKENS):], **self.sizes, "training": self.training_record}

    def save(self, directory: str | Path) -> Path:
        """Write ``weights.pt`` (state dict) and ``model.json`` atomically; the JSON last marks it complete."""
        directory = Path(directory)
        with atomic_path(directory / "weights.pt") as tmp:
            torch.save(self.state_dict(), tmp)
        write_json_atomic(directory / "model.json", self.config())
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> SmilesRNN:
        """Rebuild a saved model (``torch.load(weights_only=True)``: nothing is unpickled)."""
        directory = Path(directory)
        config = json.loads((directory / "model.json").read_text())
        model = cls(config.pop("tokens"), **config)
        model.load_state_dict(torch.load(directory / "weights.pt", weights_only=True, map_location="cpu"))
        return model.eval()


def build_vocabulary(smiles: Sequence[str], max_tokens: int) -> tuple[list[str], list[str], list[str]]:
    """``(tokens by frequency, usable SMILES, reasons for the rest)``: a SMILES that does not tokenize or
    is longer than ``max_tokens - 1`` tokens is left out, and each one left out is reported."""
    counts: dict[str, int] = {}
    usable, rejected = [], []
    for i, text in enumerate(smiles):
        try:
            tokens = tokenize_smiles(text)
        except FeaturizationError as exc:
            rejected.append(f"row {i}: {exc}")
            continue
        if len(tokens) + 1 > max_tokens:
            rejected.append(f"row {i} {text!r}: {len(tokens) + 1} tokens > max_tokens {max_tokens}")
            continue
        usable.append(text)
        for token in tokens:
            counts[token] = counts.get(token, 0) + 1
    return sorted(counts, key=lambda t: (-counts[t], t)), usable, rejected


def pretrain_prior(smiles: Sequence[str], config: PriorConfig = PriorConfig(), progress: bool = True) -> SmilesRNN:
    """Maximum-likelihood (teacher-forced) prior on ``smiles``; deterministic for a seed and thread count."""
    tokens, usable, rejected = build_vocabulary(smiles, config.max_tokens)
    if rejected:
        log.warning("prior: %d of %d SMILES left out, e.g. %s", len(rejected), len(smiles), "; ".join(rejected[:3]))
    if not usable:
        raise ValueError(f"none of the {len(smiles)} SMILES can train a prior: {rejected[:3]}")
    torch.manual_seed(config.seed)
    model = SmilesRNN(tokens, config.embedding, config.hidden, config.layers, config.max_tokens, training={
        **asdict(config), "n_smiles": len(usable), "n_rejected": len(rejected), "data_fingerprint": data_fingerprint(smiles),
    })
    data = model.encode(usable)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    batches = -(-len(usable) // config.batch_size)
    model.train()
    with tqdm(total=config.epochs * batches, desc="prior", unit="batch", disable=not progress) as bar:
        for epoch in range(config.epochs):
            for idx in torch.randperm(len(usable), generator=generator).split(config.batch_size):
                batch = data[idx]
                batch = batch[:, : int((batch != PAD).sum(dim=1).max())]  # trim the columns padded for longer rows
                loss = -model.token_log_probs(batch).sum() / (batch != PAD).sum()
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
                optimizer.step()
                bar.update()
                bar.set_postfix(epoch=epoch + 1, nll=f"{loss.item():.3f}")
    return model.eval()


def data_fingerprint(smiles: Sequence[str]) -> str:
    """Short SHA-256 id of the SMILES list (in order): the training data's fingerprint."""
    return job_fingerprint({"smiles": "\n".join(smiles)})


def prior_dir(smiles: Sequence[str], config: PriorConfig, cache_dir: str | Path | None = None) -> Path:
    """Where the prior of ``(config, smiles)`` is cached: one folder per prior config and training data."""
    return Path(cache_dir or DEFAULT_CACHE) / job_fingerprint({**asdict(config), "data": data_fingerprint(smiles)})


def prior_for(smiles: Sequence[str], config: PriorConfig = PriorConfig(), cache_dir: str | Path | None = None,
              progress: bool = True) -> tuple[SmilesRNN, Path]:
    """The cached prior of ``(config, smiles)``, pretraining and saving it on first use."""
    directory = prior_dir(smiles, config, cache_dir)
    with file_lock(directory.with_suffix(".lock")):  # parallel benchmark runs on one pool train it once
        if (directory / "model.json").is_file():
            return SmilesRNN.load(directory), directory
        log.info("pretraining the prior on %d SMILES into %s", len(smiles), directory)
        start = time.perf_counter()
        model = pretrain_prior(smiles, config, progress)
        model.training_record["seconds"] = round(time.perf_counter() - start, 1)
        return model, model.save(directory)


def sample_quality(model: SmilesRNN, n: int, seed: int = 0) -> dict[str, float]:
    """Validity (RDKit parses) and uniqueness (distinct canonical among valid) of ``n`` samples."""
    smiles = model.decode(model.sample(n, torch.Generator().manual_seed(seed)))
    valid = [c for c in (canonical_smiles(s)[0] for s in smiles) if c is not None]
    return {"samples": n, "validity": len(valid) / n, "uniqueness": len(set(valid)) / max(len(valid), 1)}


@dataclass
class _Memory:
    """One remembered molecule for experience replay."""

    smiles: str
    seq: torch.Tensor
    score: float
    prior_log_likelihood: float


@dataclass(frozen=True)
class Reinvent:
    """REINVENT hyper-parameters (see the module docstring)."""

    name: str = "reinvent"
    batch_size: int = 64
    sigma: float = 500.0
    lr: float = 5e-4
    experience_replay: int = 24
    memory_size: int = 100
    likelihood_penalty: float = 5e3
    patience: int | None = 5
    patience_after: int = 1000
    min_improvement: float = 0.0
    max_steps: int | None = None
    prior: PriorConfig = field(default_factory=PriorConfig)
    cache_dir: str | None = field(default=None, metadata=NOT_RECORDED)
    num_threads: int | None = 1
    progress: bool = field(default=True, metadata=NOT_RECORDED)

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.memory_size < self.experience_replay or self.experience_replay < 0:
            raise ValueError(f"need batch_size >= 1 and 0 <= experience_replay <= memory_size, got {self}")

    def optimize(self, oracle: BudgetedOracle, pool: Sequence[str], rng: np.random.Generator) -> str:
        """Fine-tune an agent from the pool's prior until the budget is spent (``BudgetExhausted``
        propagates), convergence or ``max_steps``; returns ``"converged"``, ``"max_steps"`` or ``"budget"``."""
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        prior, where = prior_for(pool, self.prior, self.cache_dir, self.progress)
        log.info("prior %s (%d tokens)", where, len(prior.vocabulary))
        prior.requires_grad_(False)
        agent = copy.deepcopy(prior).requires_grad_(True)
        optimizer = torch.optim.Adam(agent.parameters(), lr=self.lr)
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        memory: list[_Memory] = []
        stalled, step = 0, 0
        while self.max_steps is None or step < self.max_steps:
            step += 1
            before = top_k_mean(oracle.scores(), 100)
            seqs = unique_rows(agent.sample(self.batch_size, generator))
            smiles = agent.decode(seqs)
            scores = torch.tensor(oracle(smiles), dtype=torch.float32)
            memory = self._update(memory, smiles, seqs, scores, prior, rng, optimizer, agent)
            if step % 20 == 0:
                log.info("step %d: %d calls, best %.3f", step, len(oracle), memory[0].score)
            if oracle.exhausted:
                return "budget"
            if self.patience is not None and oracle.requested > self.patience_after:
                stalled = stalled + 1 if top_k_mean(oracle.scores(), 100) - before <= self.min_improvement else 0
                if stalled >= self.patience:
                    log.info("converged after %d steps (%d calls)", step, len(oracle))
                    return "converged"
        return "max_steps"

    def _update(
        self, memory: list[_Memory], smiles: list[str], seqs: torch.Tensor, scores: torch.Tensor, prior: SmilesRNN,
        rng: np.random.Generator, optimizer: torch.optim.Optimizer, agent: SmilesRNN,
    ) -> list[_Memory]:
        """One policy step on the batch plus replayed memory; returns the updated memory."""
        with torch.no_grad():
            prior_ll = prior.log_likelihood(seqs)
        target, agent_ll = prior_ll + self.sigma * scores, agent.log_likelihood(seqs)
        if self.experience_replay and len(memory) > self.experience_replay:
            scores_seen = np.array([m.score for m in memory])
            # mol_opt's +1e-10 lets an all-zero memory sample; the shift only matters for negative (unbounded) oracles
            weights = scores_seen - min(scores_seen.min(), 0.0) + 1e-10
            picked = [memory[i] for i in rng.choice(len(memory), self.experience_replay, replace=False,
                                                    p=weights / weights.sum())]
            replay = nn.utils.rnn.pad_sequence([m.seq for m in picked], batch_first=True, padding_value=PAD)
            target = torch.cat([target, torch.tensor([m.prior_log_likelihood + self.sigma * m.score for m in picked])])
            agent_ll = torch.cat([agent_ll, agent.log_likelihood(replay)])
        loss = (target - agent_ll).pow(2).mean() - self.likelihood_penalty * (1.0 / agent_ll).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        lengths = (seqs != PAD).sum(dim=1)
        fresh = [_Memory(s, seqs[i, : lengths[i]], float(scores[i]), float(prior_ll[i])) for i, s in enumerate(smiles)]
        best: dict[str, _Memory] = {}
        for entry in sorted(memory + fresh, key=lambda m: -m.score):  # stable: an earlier copy of a SMILES wins
            best.setdefault(entry.smiles, entry)
        return list(best.values())[: self.memory_size]


def unique_rows(seqs: torch.Tensor) -> torch.Tensor:
    """The distinct rows of ``seqs`` in first-seen order (REINVENT scores each sampled sequence once)."""
    seen: dict[tuple[int, ...], int] = {}
    for i, row in enumerate(seqs.tolist()):
        seen.setdefault(tuple(row), i)
    return seqs[list(seen.values())]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``pretrain``: build (or find) the cached prior of a shipped dataset and report sample quality."""
    from featurestore.datasets import load_dataset

    parser = argparse.ArgumentParser(description="REINVENT prior: pretrain and cache")
    parser.add_argument("command", choices=["pretrain"])
    parser.add_argument("--dataset", default="moses_sample")
    parser.add_argument("--column", default="smiles")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    for name, value in asdict(PriorConfig()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = PriorConfig(**{name: getattr(args, name) for name in asdict(PriorConfig())})
    smiles = load_dataset(args.dataset).get_column(args.column).to_list()
    start = time.perf_counter()
    model, directory = prior_for(smiles, config, args.cache_dir)
    report = {"prior": str(directory), "seconds": round(time.perf_counter() - start, 1),
              **model.training_record, **sample_quality(model, args.samples)}
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
