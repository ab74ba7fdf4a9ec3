"""Molecule optimization under an oracle budget (PMO protocol, Gao et al. 2022).

    from discovery.oracles import get_oracle
    from discovery.optimization import GraphGA, run_optimization
    metrics = run_optimization(get_oracle("qed"), GraphGA(), pool_smiles, "outputs/qed", budget=1000, seed=0)

``BudgetedOracle`` is the one oracle wrapper every optimizer calls (cache of unique
canonical molecules, hard budget, incremental call log, resume); ``metrics`` holds the
PMO metrics (AUC top-k as mol_opt computes it, top-k means, diversity, novelty).
Optimizers: ``GraphGA``, ``SurrogateGA`` (GA + online GNN surrogate), ``Reinvent`` (SMILES RNN + policy gradient).
"""

from discovery.optimization.budget import BudgetedOracle, BudgetExhausted
from discovery.optimization.graph_ga import GraphGA
from discovery.optimization.metrics import auc_top_k, diversity, novelty, top_k_mean
from discovery.optimization.reinvent import Reinvent
from discovery.optimization.runner import Optimizer, run_optimization, summarize, top_table
from discovery.optimization.surrogate_ga import SurrogateGA

__all__ = [
    "BudgetExhausted", "BudgetedOracle", "GraphGA", "Optimizer", "Reinvent", "auc_top_k", "diversity", "novelty",
    "SurrogateGA", "run_optimization", "summarize", "top_k_mean", "top_table",
]
