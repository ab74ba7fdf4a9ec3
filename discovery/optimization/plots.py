"""Pictures of an optimization run: the running top-k curve and a grid of the best molecules."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; runs are headless
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402
from rdkit import Chem  # noqa: E402
from rdkit.Chem import Draw  # noqa: E402

from discovery.optimization.metrics import TOP_KS, running_curve  # noqa: E402
from featurestore.io import atomic_path  # noqa: E402


def plot_curve(calls: pl.DataFrame, budget: int, path: str | Path, title: str = "", freq: int = 100) -> Path:
    """Running mean of the top-1/10/100 scores against oracle calls (every ``freq`` calls and the last)."""
    curve = running_curve(calls.sort("call").get_column("score").to_numpy(), freq)
    fig, ax = plt.subplots(figsize=(6, 4))
    for k in TOP_KS:
        ax.plot(list(curve), [values[f"top{k}"] for values in curve.values()], label=f"top-{k} mean")
    ax.set_xlim(0, budget)
    ax.set_xlabel("oracle calls")
    ax.set_ylabel("score")
    ax.set_title(title)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return Path(path)


def plot_top_grid(top: pl.DataFrame, path: str | Path, per_row: int = 4) -> Path:
    """RDKit grid image of the molecules in ``top`` (rank, smiles, score, call) with scores as legends."""
    rows = top.select("rank", "smiles", "score", "call").rows()
    mols = [Chem.MolFromSmiles(smiles) for _, smiles, _, _ in rows]
    legends = [f"#{rank}  {score:.3f}  (call {call})" for rank, _, score, call in rows]
    image = Draw.MolsToGridImage(mols, molsPerRow=per_row, subImgSize=(260, 220), legends=legends)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)
