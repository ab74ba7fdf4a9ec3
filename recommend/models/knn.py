"""Item-kNN: implicit's cosine / BM25 / TF-IDF item-item neighbourhoods (top-K per item)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp

from recommend.models.base import Recommender, _csr_arrays, _csr_from, register_model

SIMILARITIES = ("cosine", "bm25", "tfidf")


@register_model("itemknn")
class ItemKNNRecommender(Recommender):
    """score(u, i) = sum over past items j of x_uj * S[j, i], S the top-K neighbour similarity."""

    def __init__(self, similarity: str = "cosine", K: int = 20, K1: float = 1.2, B: float = 0.75,
                 num_threads: int = 1) -> None:
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, not {similarity!r}")
        self.similarity_name, self.K, self.K1, self.B, self.num_threads = similarity, K, K1, B, num_threads
        self.similarity: sp.csr_matrix | None = None

    def params(self) -> dict[str, Any]:
        return {"similarity": self.similarity_name, "K": self.K, "K1": self.K1, "B": self.B,
                "num_threads": self.num_threads}

    def fit(self, user_items: sp.csr_matrix) -> ItemKNNRecommender:
        from implicit.nearest_neighbours import BM25Recommender, CosineRecommender, TFIDFRecommender
        from implicit.utils import ParameterWarning

        if self.similarity_name == "bm25":
            model = BM25Recommender(K=self.K, K1=self.K1, B=self.B, num_threads=self.num_threads)
        elif self.similarity_name == "tfidf":
            model = TFIDFRecommender(K=self.K, num_threads=self.num_threads)
        else:
            model = CosineRecommender(K=self.K, num_threads=self.num_threads)
        with warnings.catch_warnings():
            # implicit's own fit passes its reweighted matrix on as COO and then warns about it.
            warnings.filterwarnings("ignore", category=ParameterWarning)
            model.fit(sp.csr_matrix(user_items, dtype=np.float32), show_progress=False)
        self.similarity = sp.csr_matrix(model.similarity, dtype=np.float32)
        self.n_items = user_items.shape[1]
        return self

    def score(self, user_ids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        return np.asarray((user_items @ self.similarity).todense(), dtype=np.float32)

    def item_similarity(self, item_ids: np.ndarray) -> np.ndarray:
        return self.similarity[item_ids].toarray()

    def explain(self, user_id: int, user_items: sp.csr_matrix, item_id: int, N: int = 5) -> list[tuple[int, float]]:
        row = user_items[user_id]
        contributions = row.data * self.similarity[row.indices, item_id].toarray().ravel()
        return _top_contributions(row.indices, contributions, N)

    def _state(self) -> dict[str, np.ndarray]:
        return _csr_arrays("similarity", self.similarity)

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.similarity = _csr_from("similarity", arrays)


def _top_contributions(items: np.ndarray, contributions: np.ndarray, N: int) -> list[tuple[int, float]]:
    """The N largest positive contributions, best first (ties: lower item first)."""
    order = np.lexsort((items, -contributions))
    return [(int(items[i]), float(contributions[i])) for i in order[:N] if contributions[i] > 0]
