"""1-D CNNs over token ids (DeepDTA-style): SMILES tokens here, amino-acid tokens in the DTA models.

Examples carry a flat id tensor and its length (``<name>`` ``(L,)`` and ``<name>_length``
``(1,)``); PyG concatenates them per batch and :func:`pad_tokens` pads them into a
``(batch, longest)`` matrix. Convolutions are unpadded ("valid") and the global max pool
only looks at output positions whose window lies inside the sequence, so an example's
output never depends on what else is in its batch. A sequence shorter than the receptive
field is padded to it (its one window sees PAD embeddings, always the same ones).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch_geometric.data import Batch

from featurestore.featurizers.tokens import PAD_ID

from discovery.models.layers import feed_forward
from discovery.models.registry import hyperparameters, register_model


def pad_tokens(flat: torch.Tensor, lengths: torch.Tensor, min_length: int = 1) -> torch.Tensor:
    """``(batch, max(longest, min_length))`` ids from concatenated sequences ``flat`` ``(sum L,)``, PAD on the right."""
    rows = torch.repeat_interleave(torch.arange(len(lengths), device=flat.device), lengths)
    starts = torch.cumsum(lengths, 0) - lengths
    columns = torch.arange(len(flat), device=flat.device) - starts[rows]
    width = max(int(lengths.max()) if len(lengths) else 0, min_length)
    padded = flat.new_full((len(lengths), width), PAD_ID)
    padded[rows, columns] = flat
    return padded


class TokenCNNEncoder(nn.Module):
    """Embedding, ``len(filters)`` ReLU Conv1d layers (``kernel_sizes`` wide), masked global max pool.

    ``(flat ids, lengths)`` -> ``(batch, filters[-1])``.
    """

    def __init__(self, vocab_size: int, embed_dim: int, filters: Sequence[int], kernel_sizes: Sequence[int]) -> None:
        super().__init__()
        if len(filters) != len(kernel_sizes) or not filters:
            raise ValueError(f"one kernel size per conv layer: filters {list(filters)}, kernel_sizes {list(kernel_sizes)}")
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        layers: list[nn.Module] = []
        width = embed_dim
        for out, kernel in zip(filters, kernel_sizes):
            layers += [nn.Conv1d(width, out, kernel), nn.ReLU()]
            width = out
        self.convs = nn.Sequential(*layers)
        self.receptive_field = sum(kernel_sizes) - len(kernel_sizes) + 1
        self.out_dim = width

    def forward(self, flat: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        ids = pad_tokens(flat.long(), lengths.long(), self.receptive_field)
        # Pair batches repeat proteins (KIBA: 3,000 training pairs over 143 proteins): encode each distinct
        # sequence once. Real ids are never PAD, so equal padded rows are equal sequences.
        ids, inverse = torch.unique(ids, dim=0, return_inverse=True)
        lengths = (ids != PAD_ID).sum(dim=1)
        maps = self.convs(self.embedding(ids).transpose(1, 2))  # (distinct, filters, positions)
        windows = (lengths - self.receptive_field + 1).clamp(min=1)
        inside = torch.arange(maps.shape[2], device=maps.device)[None, :] < windows[:, None]
        return maps.masked_fill(~inside[:, None, :], float("-inf")).amax(dim=2)[inverse]


@register_model("smiles_cnn")
class SmilesCNN(nn.Module):
    """1-D CNN on SMILES tokens (the DeepDTA drug branch): token CNN encoder + feed-forward head."""

    input_kind = "smiles_tokens"

    def __init__(
        self, n_tasks: int, vocab_size: int, embed_dim: int = 64, filters: Sequence[int] = (32, 64, 96),
        kernel_sizes: Sequence[int] = (4, 6, 8), ffn_hidden: int = 256, ffn_layers: int = 2, dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.hparams = hyperparameters(locals())
        self.encoder = TokenCNNEncoder(vocab_size, embed_dim, filters, kernel_sizes)
        self.head = feed_forward(self.encoder.out_dim, ffn_hidden, ffn_layers, n_tasks, dropout)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.head(self.encoder(batch.smiles_tokens, batch.smiles_tokens_length))
