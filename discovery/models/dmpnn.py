"""Directed message passing (D-MPNN, Yang et al. 2019, the model behind chemprop), written as a PyG module.

Hidden states live on directed bonds. For the bond ``v -> w``:

- ``h0[v->w] = W_i [x_v || e_vw]`` and ``h[v->w] = relu(h0[v->w])``
- ``depth - 1`` times: ``m[v->w] = sum_{k in N(v)} h[k->v] - h[w->v]`` (everything arriving at
  ``v`` except the message coming back from ``w``), then ``h[v->w] = dropout(relu(h0[v->w] + W_h m[v->w]))``
- atoms: ``h_v = dropout(relu(W_o [x_v || sum_{k in N(v)} h[k->v]]))``

Subtracting the reverse bond keeps a message from echoing straight back to where it came
from. The reverse of each directed edge is found from ``edge_index`` itself, so the module
does not rely on how edges are ordered in storage.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import MessagePassing

from discovery.models.layers import GraphEncoderModel
from discovery.models.registry import register_model


def reverse_edge_index(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """``(E,)`` position of the reverse edge ``w -> v`` of every edge ``v -> w`` in ``edge_index`` ``(2, E)``.

    Raises ``ValueError`` if some edge has no reverse (the graph is not undirected).
    """
    source, target = edge_index
    keys = source * num_nodes + target
    reverse_keys = target * num_nodes + source
    order = torch.argsort(keys)
    positions = torch.searchsorted(keys[order], reverse_keys).clamp(max=max(len(keys) - 1, 0))
    reverse = order[positions]
    if len(keys) and not torch.equal(keys[reverse], reverse_keys):
        raise ValueError("D-MPNN needs undirected graphs: some edge v->w has no edge w->v")
    return reverse


class DirectedMessagePassing(MessagePassing):
    """D-MPNN encoder: atoms ``x`` ``(N, atom_dim)``, ``edge_index`` ``(2, E)``, bonds ``edge_attr`` ``(E, bond_dim)``
    -> atom states ``(N, hidden)``. Directed-bond states are ``(E, hidden)``.
    """

    def __init__(self, atom_dim: int, bond_dim: int, hidden: int, depth: int, dropout: float) -> None:
        super().__init__(aggr="add")
        if depth < 1:
            raise ValueError(f"D-MPNN depth must be >= 1, got {depth}")
        self.depth = depth
        # No bias on the bond maps, as in chemprop: the update adds h0, which would carry a second bias.
        self.W_i = nn.Linear(atom_dim + bond_dim, hidden, bias=False)
        self.W_h = nn.Linear(hidden, hidden, bias=False)
        self.W_o = nn.Linear(atom_dim + hidden, hidden)
        self.dropout = nn.Dropout(dropout)

    def incoming(self, bond_states: torch.Tensor, edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
        """``(N, hidden)``: for each atom ``v``, the sum of the states of the bonds ``k -> v`` arriving at it."""
        return self.propagate(edge_index, bond_states=bond_states, size=(num_nodes, num_nodes))

    def message(self, bond_states: torch.Tensor) -> torch.Tensor:
        return bond_states

    def bond_messages(
        self, bond_states: torch.Tensor, edge_index: torch.Tensor, reverse: torch.Tensor, num_nodes: int
    ) -> torch.Tensor:
        """``(E, hidden)``: ``m[v->w] = sum_k h[k->v] - h[w->v]``."""
        return self.incoming(bond_states, edge_index, num_nodes)[edge_index[0]] - bond_states[reverse]

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        num_nodes = x.size(0)
        reverse = reverse_edge_index(edge_index, num_nodes)
        h0 = self.W_i(torch.cat([x[edge_index[0]], edge_attr], dim=1))
        h = torch.relu(h0)
        for _ in range(self.depth - 1):
            h = self.dropout(torch.relu(h0 + self.W_h(self.bond_messages(h, edge_index, reverse, num_nodes))))
        atoms = torch.cat([x, self.incoming(h, edge_index, num_nodes)], dim=1)
        return self.dropout(torch.relu(self.W_o(atoms)))


@register_model("dmpnn")
class DMPNN(GraphEncoderModel):
    """D-MPNN encoder + graph readout + feed-forward head (chemprop's model: hidden 300, depth 3, mean readout)."""

    encoder_class = DirectedMessagePassing
