"""Oracles for molecule optimization: the 20 RDKit-only PMO tasks, QED, penalized logP, SA,
and composite objectives defined as data.

    from discovery.oracles import get_oracle, list_oracles, composite_oracle
    oracle = get_oracle("celecoxib_rediscovery")
    oracle("CC1=CC=C(C=C1)C1=CC(=NN1C1=CC=C(C=C1)S(N)(=O)=O)C(F)(F)F")   # 1.0
    oracle("not a smiles")                                               # 0.0
    mine = composite_oracle("mine", [{"descriptor": "qed"},
                                     {"descriptor": "MolLogP", "transform": {"kind": "gaussian", "mu": 2, "sigma": 1}}])
    solubility = checkpoint_oracle("sol", "outputs/train/esol/gin/<time>", transform={"kind": "clipped", "lower": -6, "upper": 0})
"""

from discovery.oracles import tasks as _tasks  # noqa: F401  (registers the tasks)
from discovery.oracles.checkpoint import checkpoint_oracle
from discovery.oracles.registry import ORACLES, Oracle, composite_oracle, get_oracle, list_oracles, register_oracle
from discovery.oracles.tasks import PMO_COMPAT, PMO_TASKS
from discovery.oracles.terms import build_term

__all__ = [
    "ORACLES", "Oracle", "PMO_COMPAT", "PMO_TASKS", "build_term", "checkpoint_oracle", "composite_oracle", "get_oracle", "list_oracles",
    "register_oracle",
]
