"""Pictures of recommender internals: the content-similarity neighbourhood of a drug (RDKit grid)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from featurestore.datasets import load_dataset
from featurestore.io import atomic_path
from recommend.models.base import Recommender
from recommend.models.content import ContentRecommender

log = logging.getLogger(__name__)


def neighbourhood_png(model: ContentRecommender, item: int, path: str | Path, n: int = 8,
                      per_row: int = 3) -> Path | None:
    """Structure grid of ``item`` and its ``n`` most similar drugs, legends with name, similarity and Tanimoto.

    Structures are the catalog SMILES of the items; returns None (logged) for ATC-class items.
    """
    from rdkit import Chem
    from rdkit.Chem import Draw

    names = model.features["names"]
    if model.granularity != "ingredient":
        log.info("neighbourhood plot skipped: items are ATC classes (granularity %s), not molecules",
                 model.granularity)
        return None
    catalog = dict(load_dataset("drugs").select("drug_id", "smiles").iter_rows())
    smiles = [catalog.get(str(item_id)) or "" for item_id in model.features["items"]]
    ids, scores = model.similar_items(np.array([item]), N=n)
    legends, mols = [f"{names[item]} (query)"], [Chem.MolFromSmiles(smiles[item]) or Chem.Mol()]
    for other, score in zip(ids[0], scores[0]):
        if other < 0:
            break
        tanimoto = model.why_similar(item, int(other))["tanimoto"]
        shown = "n/a" if tanimoto is None else f"{tanimoto:.2f}"
        legends.append(f"{names[other]}: S={score:.2f}, Tanimoto={shown}")
        # An item without SMILES (or one RDKit rejects) shows an empty cell, not a gap in the ranking.
        mols.append(Chem.MolFromSmiles(smiles[other]) or Chem.Mol())
    image = Draw.MolsToGridImage(mols, molsPerRow=per_row, subImgSize=(320, 280), legends=legends)
    path = Path(path)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path


def content_of(model: Recommender) -> ContentRecommender | None:
    """The content model behind ``model`` (itself, or a hybrid's content part), or None."""
    content = model if isinstance(model, ContentRecommender) else getattr(model, "content", None)
    return content if isinstance(content, ContentRecommender) else None


def write_neighbourhood(model: Recommender, user_items: sp.csr_matrix, path: str | Path) -> Path | None:
    """:func:`neighbourhood_png` of the drug most patients took in ``user_items`` (content or hybrid models)."""
    content = content_of(model)
    if content is None:
        raise TypeError(f"{model.name} has no content similarity to plot")
    return neighbourhood_png(content, int(np.argmax(user_items.getnnz(axis=0))), path)
