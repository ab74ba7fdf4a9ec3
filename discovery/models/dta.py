"""Drug–target affinity models on (drug, protein) pairs: GraphDTA and an ECFP + k-mer random forest.

``graphdta`` (Nguyen et al. 2021, GraphDTA): a graph encoder for the drug (the GINE or
D-MPNN encoder of ``model=gin`` / ``model=dmpnn``) pooled to a vector, a 1-D CNN over the
protein's amino-acid tokens (the DeepDTA protein branch), concatenated into a feed-forward
head. ``ecfp_kmer_rf``: the ``ecfp_rf`` forest on ECFP bits followed by the protein's k-mer
composition.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch_geometric.data import Batch

from featurestore import ATOM_DIM, BOND_DIM

from discovery.models.classical import FingerprintRandomForest
from discovery.models.cnn import TokenCNNEncoder
from discovery.models.dmpnn import DirectedMessagePassing
from discovery.models.gnn import GINEEncoder
from discovery.models.layers import feed_forward, graph_pooling
from discovery.models.registry import hyperparameters, register_model

DRUG_ENCODERS: dict[str, type[nn.Module]] = {"gin": GINEEncoder, "dmpnn": DirectedMessagePassing}


@register_model("graphdta")
class GraphDTA(nn.Module):
    """Drug graph encoder + protein token CNN -> concatenated -> feed-forward head: a pair batch -> ``(pairs, n_tasks)``."""

    input_kind = "graph_protein_tokens"

    def __init__(
        self, n_tasks: int, protein_vocab_size: int, atom_dim: int = ATOM_DIM, bond_dim: int = BOND_DIM,
        drug_encoder: str = "gin", hidden: int = 128, depth: int = 3, pooling: str = "sum", protein_embed_dim: int = 64,
        protein_filters: Sequence[int] = (32, 32, 64), protein_kernel_sizes: Sequence[int] = (4, 8, 8),
        ffn_hidden: int = 512, ffn_layers: int = 2, dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if drug_encoder not in DRUG_ENCODERS:
            raise ValueError(f"unknown drug_encoder {drug_encoder!r}; choose from {sorted(DRUG_ENCODERS)}")
        self.hparams = hyperparameters(locals())
        self.drug = DRUG_ENCODERS[drug_encoder](atom_dim, bond_dim, hidden, depth, dropout)
        self.readout = graph_pooling(pooling)
        self.protein = TokenCNNEncoder(protein_vocab_size, protein_embed_dim, protein_filters, protein_kernel_sizes)
        self.head = feed_forward(hidden + self.protein.out_dim, ffn_hidden, ffn_layers, n_tasks, dropout)

    def forward(self, batch: Batch) -> torch.Tensor:
        atoms = self.drug(batch.x, batch.edge_index, batch.edge_attr)
        drug = self.readout(atoms, batch.batch, size=batch.num_graphs)
        protein = self.protein(batch.protein_tokens, batch.protein_tokens_length)
        return self.head(torch.cat([drug, protein], dim=1))


@register_model("ecfp_kmer_rf")
class FingerprintKmerRandomForest(FingerprintRandomForest):
    """``ecfp_rf`` on pairs: each row is the drug's fingerprint bits followed by the protein's k-mer composition."""

    input_kind = "fingerprint_protein_kmer"
