"""Building blocks shared by the neural models: readout poolings, the feed-forward head, encoder + readout models."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.nn import global_add_pool, global_max_pool, global_mean_pool

from featurestore import ATOM_DIM, BOND_DIM

from discovery.models.registry import hyperparameters

NORM_DIVISOR = 100.0  # chemprop 2's --aggregation-norm


def _norm_pool(x: torch.Tensor, batch: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """Sum over each graph's atoms divided by a constant: keeps molecular size (as sum does)
    at the scale of one atom's state (chemprop 2's default ``norm`` aggregation)."""
    return global_add_pool(x, batch, size=size) / NORM_DIVISOR


POOLINGS = {"sum": global_add_pool, "mean": global_mean_pool, "max": global_max_pool, "norm": _norm_pool}


def graph_pooling(name: str) -> Callable[..., torch.Tensor]:
    """Graph readout by name: ``sum``, ``mean``, ``max`` or ``norm`` (sum / 100) over each graph's atoms."""
    try:
        return POOLINGS[name]
    except KeyError:
        raise ValueError(f"unknown pooling {name!r}; choose from {sorted(POOLINGS)}") from None


def feed_forward(in_dim: int, hidden: int, layers: int, out_dim: int, dropout: float) -> nn.Sequential:
    """``layers`` hidden ReLU layers of width ``hidden`` (dropout before each linear map), then a linear output."""
    blocks: list[nn.Module] = []
    width = in_dim
    for _ in range(layers):
        blocks += [nn.Dropout(dropout), nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    blocks += [nn.Dropout(dropout), nn.Linear(width, out_dim)]
    return nn.Sequential(*blocks)


class GraphEncoderModel(nn.Module):
    """An atom encoder, a graph readout and a feed-forward head: a batch -> ``(graphs, n_tasks)``.

    Subclasses set ``encoder_class``, a module built as ``(atom_dim, bond_dim, hidden, depth,
    dropout)`` that maps ``x (N, atom_dim), edge_index (2, E), edge_attr (E, bond_dim)`` to
    atom states ``(N, hidden)``. Defaults are chemprop 2's; ``conf/model`` sets each model's own.

    ``extra_dim > 0``: the batch carries molecule-level features ``mol_features`` ``(graphs,
    extra_dim)`` (a graph view with a fingerprint and/or RDKit descriptors), concatenated to the
    readout as ``sign(x) log1p(|x|)``: counts span 0-255 and descriptors many orders of magnitude,
    and a fixed transform needs no fitted scaler (for counts it is ``log1p``).
    """

    input_kind = "graph"
    encoder_class: type[nn.Module]

    def __init__(
        self, n_tasks: int, atom_dim: int = ATOM_DIM, bond_dim: int = BOND_DIM, hidden: int = 300, depth: int = 3,
        dropout: float = 0.0, pooling: str = "norm", ffn_hidden: int = 300, ffn_layers: int = 1, extra_dim: int = 0,
    ) -> None:
        super().__init__()
        self.hparams = hyperparameters(locals())
        self.encoder = self.encoder_class(atom_dim, bond_dim, hidden, depth, dropout)
        self.readout = graph_pooling(pooling)
        self.extra_dim = extra_dim
        self.head = feed_forward(hidden + extra_dim, ffn_hidden, ffn_layers, n_tasks, dropout)

    def forward(self, batch: Batch) -> torch.Tensor:
        atoms = self.encoder(batch.x, batch.edge_index, batch.edge_attr)
        graphs = self.readout(atoms, batch.batch, size=batch.num_graphs)
        if self.extra_dim:
            features = batch.mol_features
            graphs = torch.cat([graphs, torch.sign(features) * torch.log1p(features.abs())], dim=1)
        return self.head(graphs)
