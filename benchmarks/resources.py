"""Resource-retrieval benchmark: BM25, MeSH-expanded BM25, MeSH feedback overlap, TF-IDF + SVD on PubMed.

What is measured (``recommend.resources``), on the shipped ``pubmed_resources`` corpus
(PubMed citations with abstracts) and the drug catalog:

- relevance from PubMed's own indexing, no hand labels: a drug's relevant documents are
  those indexed with a MeSH heading or chemical whose normalized name equals the drug's
  normalized name or a synonym (``recommend.resources.evaluate.relevance``); drugs with
  none are not evaluated;
- queries from the drug's name, synonyms and ChEBI definition (``drug_annotations``;
  name only when that file is absent, said in the output), never from MeSH: the name is
  the query, synonyms + definition its context at ``conf/resources.yaml``'s
  ``drugs.context_weight`` (0.2); two extra BM25 rows show the alternatives: name only,
  and all three fields concatenated into one query;
- full ranking over the whole corpus: Recall@10, Recall@100, NDCG@10, MRR (first hit in
  the top 1,000), via ``recommend.metrics.ranking_metrics``;
- index build seconds (bm25s + keyword matrix, then the TF-IDF + SVD fit), and query
  latency p50 / p95 per method over 1,000 drug queries (top 10, one query at a time,
  after one warm-up query; catalog drugs sampled with seed 0).

Run (from the repo root)::

    nice -n 5 .venv/bin/python benchmarks/resources.py
    .venv/bin/python benchmarks/resources.py --max-drugs 100 --latency-queries 200

Prints one table and writes ``benchmarks/results/resources.json``. ``resource_table()``
returns the table as a polars DataFrame (``benchmarks/content.py`` prints it too).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# benchmarks/recommend.py would shadow the recommend package: take this folder off the path, put the repo first.
sys.path[:] = [str(REPO), *(p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent)]

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from benchmarks.featurize import _machine  # noqa: E402
from featurestore.io import write_json_atomic  # noqa: E402
from recommend.resources.catalog import load_pubmed_catalog  # noqa: E402
from recommend.resources.evaluate import evaluate_methods, evaluation_tasks, rank_queries  # noqa: E402
from recommend.resources.queries import QUERY_FIELDS, drug_queries, drug_texts  # noqa: E402
from recommend.resources.retrieval import METHODS, Expansion, IndexConfig, ResourceIndex  # noqa: E402

DEFAULT_OUT = REPO / "benchmarks" / "results" / "resources.json"
KS = (10, 100)
N_LATENCY = 1000
CONTEXT_FIELDS = ("synonyms", "definition")
CONTEXT_WEIGHT = 0.2  # conf/resources.yaml drugs.context_weight


def run_benchmark(max_drugs: int | None = None, n_latency: int = N_LATENCY, methods: tuple[str, ...] = METHODS,
                  config: IndexConfig = IndexConfig(), expansion: Expansion = Expansion(),
                  context_weight: float = CONTEXT_WEIGHT) -> dict[str, Any]:
    """Build the index, evaluate every method, time queries; rows plus the run's context."""
    catalog = load_pubmed_catalog()
    if "svd" not in methods:
        config = IndexConfig(**{**config.__dict__, "svd_components": 0})
    index = ResourceIndex.build(catalog, config)
    texts, source = drug_texts()
    tasks = evaluation_tasks(texts, index, ["name"], context_fields=CONTEXT_FIELDS)
    if max_drugs is not None:
        tasks = tasks.head(max_drugs)
    results = evaluate_methods(index, tasks, methods, KS, expansion=expansion, context_weight=context_weight)
    for label, fields in (("name only", ["name"]), ("all fields, one query", QUERY_FIELDS)):
        alternative = evaluation_tasks(texts, index, fields).join(tasks.select("drug_id"), on="drug_id")
        results[f"bm25 ({label})"] = evaluate_methods(index, alternative, ["bm25"], KS)["bm25"]
    queries = drug_queries(texts, ["name"], CONTEXT_FIELDS)
    sample = queries[np.random.default_rng(0).choice(queries.height, min(n_latency, queries.height), replace=False)]
    sample_queries, contexts = sample["query"].to_list(), sample["context"].to_list()
    latency = {}
    for method in methods:
        rank_queries(index, sample_queries[:1], method, 10, expansion, contexts[:1], context_weight)  # warm-up
        _, seconds = rank_queries(index, sample_queries, method, 10, expansion, contexts, context_weight)
        latency[method] = {"p50_ms": float(np.percentile(seconds, 50) * 1e3),
                           "p95_ms": float(np.percentile(seconds, 95) * 1e3), "queries": int(seconds.size)}
    rows = [
        {"method": method, "drugs": values["queries"],
         **{name: values[name] for name in ("recall@10", "recall@100", "ndcg@10", "mrr")},
         **{f"latency_{k}": v for k, v in latency.get(method, {}).items()}}
        for method, values in results.items()
    ]
    relevant = tasks["relevant"].list.len()
    return {
        "rows": rows, "documents": index.n_docs, "drug_text_source": source, "evaluated_drugs": tasks.height,
        "relevant_per_drug": {"median": float(relevant.median()), "mean": float(relevant.mean()),
                              "max": int(relevant.max())},
        "index_seconds": {name: round(seconds, 2) for name, seconds in index.build_seconds.items()},
        "index_config": config.__dict__, "expansion": expansion.__dict__, "context_weight": context_weight,
        "context_fields": list(CONTEXT_FIELDS),
    }


def resource_table(max_drugs: int | None = None, n_latency: int = N_LATENCY) -> pl.DataFrame:
    """The resource-retrieval table: one row per method (metrics, evaluated drugs, latency)."""
    return pl.DataFrame(run_benchmark(max_drugs, n_latency)["rows"])


def print_result(result: dict[str, Any]) -> None:
    """The retrieval table of :func:`run_benchmark`'s result, on stdout."""
    print(f"PubMed resources: {result['documents']:,} documents; {result['evaluated_drugs']} drugs evaluated "
          f"(relevant documents per drug: median {result['relevant_per_drug']['median']:.0f}, "
          f"mean {result['relevant_per_drug']['mean']:.1f}); queries: {result['drug_text_source']}")
    print(f"index build: bm25 (tokenize, stem, index) {result['index_seconds']['bm25']:.1f} s; "
          f"TF-IDF + SVD {result['index_seconds']['svd']:.1f} s")
    print(f"{'method':28s} {'drugs':>5s} {'R@10':>7s} {'R@100':>7s} {'NDCG@10':>8s} {'MRR':>7s} {'p50 ms':>8s} {'p95 ms':>8s}")
    for r in result["rows"]:
        lat = (f"{r['latency_p50_ms']:8.2f} {r['latency_p95_ms']:8.2f}" if "latency_p50_ms" in r else f"{'-':>8s} {'-':>8s}")
        print(f"{r['method']:28s} {r['drugs']:5d} {r['recall@10']:7.4f} {r['recall@100']:7.4f} {r['ndcg@10']:8.4f} "
              f"{r['mrr']:7.4f} {lat}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-drugs", type=int, default=None, help="evaluate only the first N drugs")
    parser.add_argument("--latency-queries", type=int, default=N_LATENCY)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    began = time.perf_counter()
    result = run_benchmark(args.max_drugs, args.latency_queries)
    print_result(result)
    write_json_atomic(args.out, {
        "benchmark": "resources", "created": datetime.now(timezone.utc).isoformat(), **result,
        "machine": _machine() | {"load_avg_1m_at_end": os.getloadavg()[0]},
        "seconds": round(time.perf_counter() - began, 1),
    })
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
