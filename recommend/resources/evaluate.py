"""Resource-retrieval evaluation with PubMed's own indexing as relevance (no hand labels).

Relevance: a catalog drug is matched to the catalog keywords (MeSH headings and
chemicals) whose :func:`~recommend.resources.retrieval.normalize_term` form equals the
normalized form of the drug's name or of one of its synonyms (synonyms shorter than
``min_chars`` characters are skipped: "asa" is an abbreviation, not a name). Its
relevant documents are those indexed with a matched keyword; drugs with none are not
evaluated. Queries (and their weighted context) come from
:func:`recommend.resources.queries.drug_queries` (name, synonyms, definition): MeSH is
read on the document side only.

Metrics: :func:`recommend.metrics.ranking_metrics` over the whole catalog (queries as
users, documents as items): Recall@K, NDCG@K, MRR (first hit within ``depth``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from recommend.metrics import ranking_metrics
from recommend.resources.queries import QUERY_FIELDS, drug_queries
from recommend.resources.retrieval import Expansion, ResourceIndex, normalize_term, top_k

MIN_CHARS = 4


def relevance(drugs: pl.DataFrame, index: ResourceIndex, min_chars: int = MIN_CHARS) -> pl.DataFrame:
    """``drug_id, matched_keywords, relevant`` (document rows) for drugs with a relevant document.

    Reads the drugs' names and synonyms and the documents' keywords, nothing else.
    """
    lookup: dict[str, list[int]] = {}
    for j, keyword in enumerate(index.keyword_names):
        lookup.setdefault(normalize_term(keyword), []).append(j)
    keywords = index.keyword_matrix.tocsc()
    records = []
    for row in drugs.select("drug_id", "name", "synonyms").iter_rows(named=True):
        names = {normalize_term(n) for n in [row["name"], *(row["synonyms"] or [])] if n}
        columns = sorted({j for n in names if len(n) >= min_chars for j in lookup.get(n, [])})
        if not columns:
            continue
        docs = np.unique(keywords[:, columns].indices)
        records.append((row["drug_id"], [index.keyword_names[j] for j in columns], docs.tolist()))
    return pl.DataFrame(
        records, orient="row",
        schema={"drug_id": pl.String, "matched_keywords": pl.List(pl.String), "relevant": pl.List(pl.Int64)},
    )


def evaluation_tasks(drugs: pl.DataFrame, index: ResourceIndex, fields: Sequence[str] = QUERY_FIELDS,
                     min_chars: int = MIN_CHARS, context_fields: Sequence[str] = ()) -> pl.DataFrame:
    """``drug_id, name, query, context, matched_keywords, relevant``: one task per drug with relevant documents."""
    queries = drug_queries(drugs, fields, context_fields)
    return queries.join(relevance(drugs, index, min_chars), on="drug_id", how="inner")


def rank_queries(index: ResourceIndex, queries: Sequence[str], method: str, depth: int,
                 expansion: Expansion = Expansion(), contexts: Sequence[str] | None = None,
                 context_weight: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Top-``depth`` document rows per query (-1 pads an empty slot) and each query's seconds."""
    ids = np.full((len(queries), depth), -1, dtype=np.int64)
    seconds = np.zeros(len(queries))
    contexts = contexts if contexts is not None else [""] * len(queries)
    for q, (text, context) in enumerate(zip(queries, contexts, strict=True)):
        start = time.perf_counter()
        scores, _, _ = index.scores(text, method, expansion, context=context, context_weight=context_weight)
        ranked = top_k(scores, depth)
        seconds[q] = time.perf_counter() - start
        ids[q, : ranked.size] = ranked
    return ids, seconds


def targets_matrix(relevant: Sequence[Sequence[int]], n_docs: int) -> sp.csr_matrix:
    """Queries × documents CSR with a 1 for each relevant document."""
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in relevant])])
    indices = np.fromiter((d for r in relevant for d in r), dtype=np.int64, count=int(indptr[-1]))
    return sp.csr_matrix((np.ones(indices.size), indices, indptr), shape=(len(relevant), n_docs))


def evaluate_methods(index: ResourceIndex, tasks: pl.DataFrame, methods: Sequence[str], ks: Sequence[int],
                     depth: int = 1000, expansion: Expansion = Expansion(),
                     context_weight: float = 0.0) -> dict[str, dict[str, Any]]:
    """``{method: {recall@K, ndcg@K, mrr, ..., p50_ms, p95_ms}}`` over the tasks (``context`` column optional)."""
    contexts = tasks["context"].to_list() if "context" in tasks.columns else None
    depth = max(depth, *ks)  # slots past the catalog size stay -1 (empty)
    targets = targets_matrix(tasks["relevant"].to_list(), index.n_docs)
    results = {}
    for method in methods:
        ids, seconds = rank_queries(index, tasks["query"].to_list(), method, depth, expansion, contexts, context_weight)
        metrics = ranking_metrics(ids, targets, ks)
        keep = [f"{m}@{k}" for k in ks for m in ("recall", "ndcg")] + ["mrr"]
        results[method] = {name: metrics[name] for name in keep} | {
            "queries": len(seconds),
            "p50_ms": float(np.percentile(seconds, 50) * 1e3),
            "p95_ms": float(np.percentile(seconds, 95) * 1e3),
        }
    return results
