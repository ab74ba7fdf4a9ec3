"""Neural models over stored features: GINE and AttentiveFP on graphs, an MLP on fingerprints.

Every model maps a PyG batch to ``(graphs, tasks)`` raw outputs (regression values in
scaled units, or classification logits). Graph batches carry one-hot atoms ``x``
``(atoms, ATOM_DIM)``, ``edge_index`` ``(2, edges)``, ``edge_attr`` ``(edges, BOND_DIM)`` and
``batch`` ``(atoms,)``; fingerprint batches carry ``fp`` ``(molecules, bits)``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.nn import GINEConv
from torch_geometric.nn.models import AttentiveFP

from featurestore import ATOM_DIM, BOND_DIM

from discovery.models.layers import GraphEncoderModel, feed_forward
from discovery.models.registry import hyperparameters, register_model


class GINEEncoder(nn.Module):
    """Residual GINE layers: atoms embedded linearly to ``hidden``, then ``depth`` times
    ``h = h + dropout(relu(batchnorm(GINEConv(h, edge_attr))))``; ``(N, atom_dim)`` -> ``(N, hidden)``.
    """

    def __init__(self, atom_dim: int, bond_dim: int, hidden: int, depth: int, dropout: float) -> None:
        super().__init__()
        self.atom_encoder = nn.Linear(atom_dim, hidden)
        self.convs = nn.ModuleList(
            GINEConv(
                nn.Sequential(nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, hidden)),
                edge_dim=bond_dim,
            )
            for _ in range(depth)
        )
        self.norms = nn.ModuleList(nn.BatchNorm1d(hidden) for _ in range(depth))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        h = self.atom_encoder(x)
        for conv, norm in zip(self.convs, self.norms):
            h = h + self.dropout(torch.relu(norm(conv(h, edge_index, edge_attr))))
        return h


@register_model("gin")
class GINE(GraphEncoderModel):
    """GIN with bond features (GINE, Hu et al. 2020): GINE encoder, graph pooling, MLP head."""

    encoder_class = GINEEncoder


@register_model("attentivefp")
class AttentiveFPModel(nn.Module):
    """AttentiveFP (Xiong et al. 2020) as implemented in PyG: ``depth`` atom layers, ``timesteps`` readout steps."""

    input_kind = "graph"

    def __init__(
        self, n_tasks: int, atom_dim: int = ATOM_DIM, bond_dim: int = BOND_DIM, hidden: int = 200, depth: int = 2,
        timesteps: int = 2, dropout: float = 0.2, extra_dim: int = 0,
    ) -> None:
        if extra_dim:
            raise ValueError("attentivefp reads graphs only: use a graph view without a fingerprint (mol_features)")
        super().__init__()
        self.hparams = hyperparameters(locals())
        self.net = AttentiveFP(atom_dim, hidden, n_tasks, bond_dim, num_layers=depth, num_timesteps=timesteps, dropout=dropout)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.net(batch.x, batch.edge_index, batch.edge_attr, batch.batch)


@register_model("ecfp_mlp")
class FingerprintMLP(nn.Module):
    """Feed-forward network on a fingerprint view ``fp`` ``(molecules, in_dim)`` -> ``(molecules, n_tasks)``."""

    input_kind = "fingerprint"

    def __init__(self, n_tasks: int, in_dim: int, hidden: int = 1000, depth: int = 2, dropout: float = 0.2) -> None:
        super().__init__()
        self.hparams = hyperparameters(locals())
        self.net = feed_forward(in_dim, hidden, depth, n_tasks, dropout)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.net(batch.fp.float())
