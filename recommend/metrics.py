"""Full-ranking recommendation metrics, beyond-accuracy metrics and visit-level set metrics.

Rankings are ``ids`` arrays (users × N item indices, best first, ``-1`` for an empty
slot) over the whole catalog; targets are a users × items CSR (nonzero = relevant).
Per-user values are averaged over users with at least one target.

- ``recall@K`` = hits@K / |T|; ``precision@K`` = hits@K / K (the standard one; implicit's
  "precision" divides by min(K, |T|), DESIGN.md 3.4); ``hr@K`` = 1 if any hit.
- ``ndcg@K``: binary gains, DCG / ideal DCG with min(K, |T|) ideal hits.
- ``map@K``: sum over hit ranks k of precision@k, divided by min(K, |T|).
- ``mrr``: 1 / rank of the first hit in the full list given (0 if none).
- ``coverage@K``: distinct items in any top-K / catalog size; ``gini@K``: Gini index of
  how often each catalog item is recommended (0 equal, 1 one item only);
  ``novelty@K``: mean -log2(popularity) of recommended items, popularity = share of
  training patients who took the item (at least 1 patient, so unseen items stay finite).
- Visit level (task c): ``jaccard``, ``f1`` of the predicted set against the visit's
  drugs, ``prauc`` = average precision of the full score ranking.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp


def hits_matrix(ids: np.ndarray, targets: sp.csr_matrix) -> np.ndarray:
    """Boolean users × N: is ``ids[u, r]`` a target of user u (empty slots are not)."""
    n_users, n_items = targets.shape
    if ids.shape[0] != n_users:
        raise ValueError(f"{ids.shape[0]} ranked users vs {n_users} target rows")
    coo = targets.tocoo()
    keys = np.unique(coo.row.astype(np.int64) * n_items + coo.col)
    query = np.arange(n_users, dtype=np.int64)[:, None] * n_items + ids
    return (ids >= 0) & np.isin(query, keys)


def ranking_metrics(ids: np.ndarray, targets: sp.csr_matrix, ks: Sequence[int]) -> dict[str, float]:
    """recall, precision, ndcg, map, hr at each K, and mrr, averaged over users with targets."""
    n_relevant = np.diff(targets.indptr)
    keep = n_relevant > 0
    hits = hits_matrix(ids, targets)[keep].astype(np.float64)
    n_relevant = n_relevant[keep].astype(np.float64)
    if not keep.any():
        raise ValueError("no user has a target")
    out: dict[str, float] = {}
    discounts = 1.0 / np.log2(np.arange(2, hits.shape[1] + 2))
    for k in ks:
        if k > hits.shape[1]:
            raise ValueError(f"K={k} exceeds the ranking length {hits.shape[1]}")
        top = hits[:, :k]
        n_hits = top.sum(axis=1)
        ideal = np.minimum(n_relevant, k)
        idcg = np.cumsum(discounts[:k])[ideal.astype(int) - 1]
        precision_at = np.cumsum(top, axis=1) / np.arange(1, k + 1)
        out[f"recall@{k}"] = float(np.mean(n_hits / n_relevant))
        out[f"precision@{k}"] = float(np.mean(n_hits / k))
        out[f"hr@{k}"] = float(np.mean(n_hits > 0))
        out[f"ndcg@{k}"] = float(np.mean((top * discounts[:k]).sum(axis=1) / idcg))
        out[f"map@{k}"] = float(np.mean((precision_at * top).sum(axis=1) / ideal))
    first = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, np.inf)
    out["mrr"] = float(np.mean(1.0 / first))
    return out


def beyond_accuracy(ids: np.ndarray, n_items: int, train_users_per_item: np.ndarray, n_train_users: int,
                    ks: Sequence[int]) -> dict[str, float]:
    """coverage, gini and novelty of the top-K lists at each K."""
    out = {}
    popularity = np.maximum(train_users_per_item, 1) / max(n_train_users, 1)
    for k in ks:
        top = ids[:, :k]
        valid = top[top >= 0]
        counts = np.bincount(valid, minlength=n_items).astype(np.float64)
        out[f"coverage@{k}"] = float((counts > 0).sum() / n_items)
        out[f"gini@{k}"] = gini(counts)
        out[f"novelty@{k}"] = float(np.mean(-np.log2(popularity[valid]))) if valid.size else 0.0
    return out


def gini(counts: np.ndarray) -> float:
    """Gini index of non-negative counts (0 when all equal, (n-1)/n when one holds all)."""
    values = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = values.size, values.sum()
    if n == 0 or total == 0:
        return 0.0
    index = np.arange(1, n + 1)
    return float(np.sum((2 * index - n - 1) * values) / (n * total))


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    """Average precision of ranking all items by ``scores`` (ties: lower index first)."""
    relevant = np.asarray(relevant, dtype=bool)
    if not relevant.any():
        raise ValueError("average precision needs at least one relevant item")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    hits = relevant[order]
    precision_at = np.cumsum(hits) / np.arange(1, hits.size + 1)
    return float(precision_at[hits].sum() / hits.sum())


def set_metrics(predicted: np.ndarray, scores: np.ndarray, targets: sp.csr_matrix) -> dict[str, float]:
    """Visit-level jaccard, f1 (predicted sets: rows of item ids, -1 = none) and prauc, averaged."""
    jaccards, f1s, praucs = [], [], []
    for u in range(targets.shape[0]):
        truth = set(targets.indices[targets.indptr[u] : targets.indptr[u + 1]].tolist())
        if not truth:
            continue
        guess = {int(i) for i in predicted[u] if i >= 0}
        overlap = len(truth & guess)
        jaccards.append(overlap / len(truth | guess))
        f1s.append(2 * overlap / (len(truth) + len(guess)))
        relevant = np.zeros(targets.shape[1], dtype=bool)
        relevant[list(truth)] = True
        praucs.append(average_precision(scores[u], relevant))
    if not jaccards:
        raise ValueError("no visit has a target")
    return {"jaccard": float(np.mean(jaccards)), "f1": float(np.mean(f1s)), "prauc": float(np.mean(praucs))}
